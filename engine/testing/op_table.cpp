// op_table.cpp: the rows of the op table and the f64 gradcheck that runs them.
#include "engine/testing/op_table.h"

#include <cmath>

namespace gl::testing {

namespace {
using Inputs = std::vector<Tensor>;

// Uniform values in [lo, hi).
Tensor uniform(const Shape& s, Generator& g, DType dt, double lo, double hi) {
  return Tensor::rand(s, g, dt, lo, hi);
}
// Values in [-hi, -lo] U [lo, hi]: away from the kink at 0.
Tensor away_from_zero(const Shape& s, Generator& g, DType dt, double lo = 0.1, double hi = 2.0) {
  Tensor u = Tensor::rand(s, g, dt, -1.0, 1.0);
  Tensor m = Tensor::rand(s, g, dt, lo, hi);
  std::vector<double> uv = u.to_vector<double>(), mv = m.to_vector<double>();
  for (std::size_t i = 0; i < uv.size(); ++i) uv[i] = uv[i] < 0 ? -mv[i] : mv[i];
  return Tensor::from_vector(uv, s).to(dt);
}
Tensor labels(int64_t n, int64_t classes, Generator& g) {
  std::vector<int64_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = int64_t(g.below(uint64_t(classes)));
  return Tensor::from_vector(v, {n});
}

auto make(std::vector<Shape> shapes, double lo = -2.0, double hi = 2.0) {
  return [shapes, lo, hi](Generator& g, DType dt) {
    Inputs r;
    for (auto& s : shapes) r.push_back(uniform(s, g, dt, lo, hi));
    return r;
  };
}
auto make_away(std::vector<Shape> shapes) {
  return [shapes](Generator& g, DType dt) {
    Inputs r;
    for (auto& s : shapes) r.push_back(away_from_zero(s, g, dt));
    return r;
  };
}

std::vector<OpCase> build_table() {
  std::vector<OpCase> t;
  auto row = [&t](std::string name, std::string op, auto mk, auto fn, double atol = 1e-5,
                  double rtol = 1e-3) {
    t.push_back({std::move(name), std::move(op), mk, fn, atol, rtol});
  };
  // ---- arithmetic, broadcasting, non-contiguous ----
  row("add/same", "add", make({{3, 4}, {3, 4}}), [](const Inputs& x) { return add(x[0], x[1]); });
  row("add/broadcast", "add", make({{2, 3, 4}, {3, 1}}),
      [](const Inputs& x) { return add(x[0], x[1]); });
  row("add/transposed", "add", make({{4, 3}, {3, 4}}),
      [](const Inputs& x) { return add(x[0].t(), x[1]); });
  row("add/scalar", "add", make({{5}}), [](const Inputs& x) { return add(x[0], 1.5); });
  row("sub/broadcast", "sub", make({{4}, {3, 4}}), [](const Inputs& x) { return sub(x[0], x[1]); });
  row("mul/broadcast", "mul", make({{2, 1, 4}, {3, 1}}),
      [](const Inputs& x) { return mul(x[0], x[1]); });
  row("mul/same_input_twice", "mul", make({{3, 3}}),
      [](const Inputs& x) { return mul(x[0], x[0]); });
  row(
      "div/broadcast", "div",
      [](Generator& g, DType dt) {
        return Inputs{uniform({3, 4}, g, dt, -2, 2), uniform({4}, g, dt, 0.5, 2.0)};
      },
      [](const Inputs& x) { return div(x[0], x[1]); });
  row("neg", "neg", make({{3, 5}}), [](const Inputs& x) { return neg(x[0]); });
  row("pow/cube", "pow", make({{4, 3}}), [](const Inputs& x) { return pow(x[0], 3.0); });
  row("pow/fractional", "pow", make({{6}}, 0.5, 2.0),
      [](const Inputs& x) { return pow(x[0], 1.7); });
  row("exp", "exp", make({{3, 4}}), [](const Inputs& x) { return exp(x[0]); });
  row("log", "log", make({{3, 4}}, 0.5, 3.0), [](const Inputs& x) { return log(x[0]); });
  row("sqrt", "sqrt", make({{3, 4}}, 0.5, 3.0), [](const Inputs& x) { return sqrt(x[0]); });
  row("abs", "abs", make_away({{3, 4}}), [](const Inputs& x) { return abs(x[0]); });
  row(
      "clamp", "clamp",
      [](Generator& g, DType dt) {
        // Values clearly inside or outside [-0.5, 0.5], never at the bounds.
        Tensor a = away_from_zero({4, 5}, g, dt, 0.05, 0.4);
        Tensor b = away_from_zero({4, 5}, g, dt, 0.6, 2.0);
        return Inputs{a, b};
      },
      [](const Inputs& x) { return add(clamp(x[0], -0.5, 0.5), clamp(x[1], -0.5, 0.5)); });
  // ---- reductions ----
  row("sum/all", "sum", make({{3, 4}}), [](const Inputs& x) { return sum(x[0]); });
  row("sum/dims_keepdim", "sum", make({{2, 3, 4}}), [](const Inputs& x) {
    return sum(x[0], {0, 2}, true);
  });
  row("sum/dim_noncontig", "sum", make({{4, 3}}),
      [](const Inputs& x) { return sum(x[0].t(), {1}); });
  row("mean/all", "mean", make({{3, 4}}), [](const Inputs& x) { return mean(x[0]); });
  row("mean/dim", "mean", make({{2, 3, 4}}), [](const Inputs& x) { return mean(x[0], {-1}); });
  row(
      "max/dim", "max",
      [](Generator& g, DType dt) {
        // A permutation of spaced values: the argmax is unique and stable under +-eps.
        std::vector<double> v(24);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1 * double(i);
        for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[g.below(i)]);
        return Inputs{Tensor::from_vector(v, {2, 3, 4}).to(dt)};
      },
      [](const Inputs& x) { return max(x[0], 1, false); });
  row(
      "max/keepdim_last", "max",
      [](Generator& g, DType dt) {
        std::vector<double> v(12);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1 * double(i);
        for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[g.below(i)]);
        return Inputs{Tensor::from_vector(v, {3, 4}).to(dt)};
      },
      [](const Inputs& x) { return max(x[0], -1, true); });
  // ---- linear algebra ----
  row("matmul/2d", "matmul", make({{3, 5}, {5, 4}}),
      [](const Inputs& x) { return matmul(x[0], x[1]); });
  row("matmul/2d_transposed", "matmul", make({{5, 3}, {4, 5}}),
      [](const Inputs& x) { return matmul(x[0].t(), x[1].t()); });
  row("matmul/batched", "matmul", make({{2, 3, 5}, {2, 5, 4}}),
      [](const Inputs& x) { return matmul(x[0], x[1]); });
  row("matmul/batched_2d", "matmul", make({{2, 3, 5}, {5, 4}}),
      [](const Inputs& x) { return matmul(x[0], x[1]); });
  row("linear/bias", "linear", make({{4, 6}, {3, 6}, {3}}),
      [](const Inputs& x) { return linear(x[0], x[1], x[2]); });
  row("linear/no_bias", "linear", make({{4, 6}, {3, 6}}),
      [](const Inputs& x) { return linear(x[0], x[1], Tensor()); });
  // ---- activations ----
  row("relu", "relu", make_away({{4, 5}}), [](const Inputs& x) { return relu(x[0]); });
  row("leaky_relu", "leaky_relu", make_away({{4, 5}}),
      [](const Inputs& x) { return leaky_relu(x[0], 0.1); });
  row("tanh", "tanh", make({{4, 5}}), [](const Inputs& x) { return tanh(x[0]); });
  row("sigmoid", "sigmoid", make({{4, 5}}, -4, 4), [](const Inputs& x) { return sigmoid(x[0]); });
  row("gelu/erf", "gelu", make({{4, 5}}, -3, 3), [](const Inputs& x) { return gelu(x[0], false); });
  row("gelu/tanh", "gelu_tanh", make({{4, 5}}, -3, 3),
      [](const Inputs& x) { return gelu(x[0], true); });
  row("silu", "silu", make({{4, 5}}, -4, 4), [](const Inputs& x) { return silu(x[0]); });
  // ---- softmax and losses ----
  row("softmax/last", "softmax", make({{3, 5}}), [](const Inputs& x) { return softmax(x[0], -1); });
  row("softmax/dim0", "softmax", make({{3, 5}}), [](const Inputs& x) { return softmax(x[0], 0); });
  row("log_softmax/last", "log_softmax", make({{3, 5}}),
      [](const Inputs& x) { return log_softmax(x[0], -1); });
  row("log_softmax/dim1_3d", "log_softmax", make({{2, 4, 3}}),
      [](const Inputs& x) { return log_softmax(x[0], 1); });
  row("cross_entropy", "cross_entropy", make({{6, 5}}, -3, 3), [](const Inputs& x) {
    Generator g(7);
    return cross_entropy(x[0], labels(6, 5, g));
  });
  row("cross_entropy/large_logits", "cross_entropy", make({{4, 3}}, 50, 60), [](const Inputs& x) {
    Generator g(8);
    return cross_entropy(x[0], labels(4, 3, g));
  });
  row("nll_loss", "nll_loss", make({{6, 5}}), [](const Inputs& x) {
    Generator g(9);
    return nll_loss(log_softmax(x[0], -1), labels(6, 5, g));
  });
  row("mse_loss", "mse_loss", make({{4, 3}, {4, 3}}),
      [](const Inputs& x) { return mse_loss(x[0], x[1]); });
  // ---- dropout (fixed seed so every evaluation draws the same mask) ----
  row("dropout", "dropout", make({{8, 8}}), [](const Inputs& x) {
    Generator g(11);
    return dropout(x[0], 0.3, g, true);
  });
  // ---- indexing and joining ----
  row("concat/dim1", "concat", make({{2, 3}, {2, 2}}), [](const Inputs& x) {
    return concat({x[0], x[1]}, 1);
  });
  row("concat/dim0", "concat", make({{1, 3}, {2, 3}}), [](const Inputs& x) {
    return concat({x[0], x[1]}, 0);
  });
  row("index_select/repeats", "index_select", make({{5, 3}}), [](const Inputs& x) {
    return index_select(x[0], 0, Tensor::from_vector<int64_t>({4, 0, 4, 2}, {4}));
  });
  row("gather/labels", "gather", make({{4, 5}}), [](const Inputs& x) {
    return gather(x[0], 1, Tensor::from_vector<int64_t>({1, 4, 0, 4}, {4, 1}));
  });
  // ---- convolution and pooling (NCHW) ----
  auto conv = [](Conv2dParams p) {
    return [p](const Inputs& x) { return conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), p); };
  };
  row("conv2d/basic", "conv2d", make({{2, 3, 5, 5}, {4, 3, 3, 3}, {4}}), conv({}));
  row("conv2d/stride2_pad1", "conv2d", make({{2, 2, 7, 6}, {3, 2, 3, 2}, {3}}),
      conv({{2, 2}, {1, 1}, {1, 1}, 1}));
  row("conv2d/stride_pad_rect", "conv2d", make({{1, 2, 6, 7}, {2, 2, 2, 3}, {2}}),
      conv({{1, 2}, {1, 0}, {1, 1}, 1}));
  row("conv2d/dilation2", "conv2d", make({{2, 2, 7, 7}, {3, 2, 3, 3}, {3}}),
      conv({{1, 1}, {2, 2}, {2, 2}, 1}));
  row("conv2d/groups2_no_bias", "conv2d", make({{2, 4, 5, 5}, {6, 2, 3, 3}}),
      conv({{1, 1}, {1, 1}, {1, 1}, 2}));
  row("conv2d/depthwise_stride2", "conv2d", make({{1, 3, 6, 6}, {3, 1, 3, 3}, {3}}),
      conv({{2, 2}, {1, 1}, {1, 1}, 3}));
  row("conv2d/noncontig_nhwc_input", "conv2d", make({{2, 5, 4, 3}, {2, 3, 3, 3}, {2}}),
      [](const Inputs& x) {
        return conv2d(x[0].permute({0, 3, 1, 2}), x[1], x[2], {{1, 1}, {1, 1}});
      });
  row("conv2d/noncontig_weight", "conv2d", make({{1, 2, 5, 5}, {3, 3, 2, 2}}), [](const Inputs& x) {
    return conv2d(x[0], x[1].permute({3, 2, 0, 1}), Tensor());
  });
  // Pooling inputs are permutations of spaced values: the max is unique and stable under eps.
  auto spaced = [](Shape s) {
    return [s](Generator& g, DType dt) {
      int64_t n = 1;
      for (auto d : s) n *= d;
      std::vector<double> v(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.01 * double(i) - 0.3;
      for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[g.below(i)]);
      return Inputs{Tensor::from_vector(v, s).to(dt)};
    };
  };
  row("max_pool2d/k2", "max_pool2d", spaced({2, 3, 6, 6}), [](const Inputs& x) {
    return max_pool2d(x[0], {2, 2});
  });
  row("max_pool2d/k3_s2_pad1", "max_pool2d", spaced({2, 2, 7, 6}), [](const Inputs& x) {
    return max_pool2d(x[0], {3, 3}, {2, 2}, {1, 1});
  });
  row("max_pool2d/overlap_noncontig", "max_pool2d", spaced({2, 5, 5, 3}), [](const Inputs& x) {
    return max_pool2d(x[0].permute({0, 3, 1, 2}), {3, 2}, {1, 1});
  });
  row("avg_pool2d/k2", "avg_pool2d", make({{2, 3, 6, 6}}), [](const Inputs& x) {
    return avg_pool2d(x[0], {2, 2});
  });
  row("avg_pool2d/k3_s2_pad1", "avg_pool2d", make({{2, 2, 7, 6}}), [](const Inputs& x) {
    return avg_pool2d(x[0], {3, 3}, {2, 2}, {1, 1});
  });
  row("avg_pool2d/noncontig", "avg_pool2d", make({{2, 5, 4, 3}}), [](const Inputs& x) {
    return avg_pool2d(x[0].permute({0, 3, 1, 2}), {2, 3}, {1, 1});
  });
  row("adaptive_avg_pool2d/5x7_to_3x2", "adaptive_avg_pool2d", make({{2, 3, 5, 7}}),
      [](const Inputs& x) {
        return adaptive_avg_pool2d(x[0], {3, 2});
      });
  row("adaptive_avg_pool2d/global", "adaptive_avg_pool2d", make({{2, 3, 4, 4}}),
      [](const Inputs& x) {
        return adaptive_avg_pool2d(x[0], {1, 1});
      });
  // ---- batch normalization (fresh running buffers per call, so every evaluation agrees) ----
  row("batch_norm2d/train", "batch_norm2d", make({{3, 2, 3, 3}, {2}, {2}}), [](const Inputs& x) {
    const Device dev = x[0].device();
    Tensor rm = Tensor::zeros({2}, x[0].dtype()).to(dev),
           rv = Tensor::ones({2}, x[0].dtype()).to(dev);
    return batch_norm(x[0], x[1], x[2], rm, rv, true);
  });
  row("batch_norm2d/eval", "batch_norm2d", make({{3, 2, 3, 3}, {2}, {2}}), [](const Inputs& x) {
    Tensor rm = Tensor::from_vector<double>({0.3, -0.2}, {2}).to(x[0].dtype()).to(x[0].device());
    Tensor rv = Tensor::from_vector<double>({0.5, 2.0}, {2}).to(x[0].dtype()).to(x[0].device());
    return batch_norm(x[0], x[1], x[2], rm, rv, false);
  });
  row("batch_norm2d/noncontig_no_affine", "batch_norm2d", make({{2, 3, 3, 2}}),
      [](const Inputs& x) {
        return batch_norm(x[0].permute({0, 3, 1, 2}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      });
  row("batch_norm1d/train", "batch_norm1d", make({{5, 3}, {3}, {3}}),
      [](const Inputs& x) { return batch_norm(x[0], x[1], x[2], Tensor(), Tensor(), true); });
  // ---- views (differentiable, share storage) ----
  row("view/reshape", "reshape", make({{3, 4}}), [](const Inputs& x) {
    return mul(x[0].reshape({2, 6}), x[0].reshape({2, 6}));
  });
  row("view/transpose_reshape", "transpose", make({{3, 4}}),
      [](const Inputs& x) { return x[0].t().reshape({12}); });
  row("view/permute", "permute", make({{2, 3, 4}}), [](const Inputs& x) {
    return exp(x[0].permute({2, 0, 1}));
  });
  row("view/slice_step", "slice", make({{6, 3}}),
      [](const Inputs& x) { return x[0].slice(0, 1, 6, 2); });
  row("view/narrow_select", "narrow", make({{4, 5}}),
      [](const Inputs& x) { return x[0].narrow(1, 1, 3).select(0, 2); });
  row("view/expand", "expand", make({{3, 1}}), [](const Inputs& x) {
    return mul(x[0].expand({3, 4}), x[0].expand({3, 4}));
  });
  row("view/squeeze_unsqueeze", "unsqueeze", make({{3, 1}}),
      [](const Inputs& x) { return x[0].squeeze(1).unsqueeze(0); });
  return t;
}
}  // namespace

const std::vector<OpCase>& op_table() {
  static const std::vector<OpCase> table = build_table();
  return table;
}

const std::vector<std::string>& required_ops() {
  static const std::vector<std::string> ops = {"add",
                                               "sub",
                                               "mul",
                                               "div",
                                               "neg",
                                               "pow",
                                               "exp",
                                               "log",
                                               "sqrt",
                                               "abs",
                                               "clamp",
                                               "sum",
                                               "mean",
                                               "max",
                                               "matmul",
                                               "linear",
                                               "relu",
                                               "leaky_relu",
                                               "tanh",
                                               "sigmoid",
                                               "gelu",
                                               "gelu_tanh",
                                               "silu",
                                               "softmax",
                                               "log_softmax",
                                               "cross_entropy",
                                               "nll_loss",
                                               "mse_loss",
                                               "dropout",
                                               "concat",
                                               "index_select",
                                               "gather",
                                               "reshape",
                                               "transpose",
                                               "permute",
                                               "slice",
                                               "narrow",
                                               "expand",
                                               "unsqueeze",
                                               "conv2d",
                                               "max_pool2d",
                                               "avg_pool2d",
                                               "adaptive_avg_pool2d",
                                               "batch_norm2d",
                                               "batch_norm1d"};
  return ops;
}

GradcheckResult gradcheck(const OpCase& c, uint64_t seed, double eps) {
  GradcheckResult res;
  res.name = c.name;
  Generator gen(seed);
  std::vector<Tensor> inputs = c.make_inputs(gen, DType::f64);
  for (auto& x : inputs) x.requires_grad_(true);
  Tensor out = c.fn(inputs);
  Generator wgen(seed + 1000);
  Tensor weights = Tensor::rand(out.shape(), wgen, DType::f64, -1.0, 1.0);
  Tensor loss = sum(mul(out, weights));
  loss.backward();

  NoGrad ng;
  auto objective = [&]() { return sum(mul(c.fn(inputs), weights)).item(); };
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    Tensor analytic = x.grad();
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double orig = p[i];
      p[i] = orig + eps;
      double fp = objective();
      p[i] = orig - eps;
      double fm = objective();
      p[i] = orig;
      double numeric = (fp - fm) / (2 * eps);
      double a = analytic.defined() ? analytic.contiguous().data<double>()[i] : 0.0;
      double abs_err = std::fabs(a - numeric);
      // Relative to the larger of the two magnitudes, so an analytic gradient where the numeric
      // one is 0 shows its error (1: all of it) instead of none; elements where both are
      // within atol of 0 have no meaningful relative error and are left out.
      const double scale = std::max(std::fabs(a), std::fabs(numeric));
      res.max_abs_err = std::max(res.max_abs_err, abs_err);
      if (scale > c.atol) res.max_rel_err = std::max(res.max_rel_err, abs_err / scale);
      ++res.checked;
      if (!(abs_err <= c.atol + c.rtol * std::fabs(numeric)) && res.passed) {
        res.passed = false;
        res.detail = fmt::format("input {} element {}: analytic {:.10g} vs numeric {:.10g}", k, i,
                                 a, numeric);
      }
    }
  }
  return res;
}

}  // namespace gl::testing
