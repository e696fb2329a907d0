// activation.cpp: relu, leaky_relu, tanh, sigmoid, gelu (erf and tanh forms), silu.
#include <algorithm>

#include "engine/ops.h"
#include "engine/ops/map.h"
#include "kernels/cpu/vecmath.h"
#include "kernels/functors.h"

namespace gl {

using detail::binary_map;
using detail::unary_map;

namespace {
using F32Kernel = void (*)(const float*, float*, int64_t);
// out = g * f'(keep) over contiguous f32 arrays (keep: what the backward reads, x or y).
using F32BackKernel = void (*)(const float*, const float*, float*, int64_t);
// y = f(x) and d = f'(x) in one pass (GELU): the tape then keeps d and its backward is g * d.
using F32DerivKernel = void (*)(const float*, float*, float*, int64_t);

// f32 on the CPU: evaluated by the vectorized kernels (whatever the strides: a non-contiguous
// input is made contiguous first, so a value never depends on the layout, and the tape and
// the fused step agree).
bool fast_f32(const Tensor& t) {
  return t.defined() && t.dtype() == DType::f32 && t.device().is_cpu();
}

// f(start, count) over [0, n) in chunks, split across threads for large tensors.
template <class F>
void in_chunks(int64_t n, F f) {
  constexpr int64_t chunk = 1 << 14;
  const int64_t chunks = (n + chunk - 1) / chunk;
  loops::parallel_for(chunks, n, [&](int64_t c) { f(c * chunk, std::min(chunk, n - c * chunk)); });
}

// The forward map: f32 goes to the vectorized CPU kernel when there is one; everything else
// evaluates the functor.
template <class Fwd>
Tensor forward_map(const Tensor& x_in, Fwd fwd, F32Kernel fast, const char* name) {
  if (fast && fast_f32(x_in)) {
    const Tensor x = x_in.contiguous();
    Tensor out = Tensor::empty(x.shape(), DType::f32);
    const float* xp = x.data<float>();
    float* op = out.data<float>();
    in_chunks(x.numel(), [&](int64_t s, int64_t n) { fast(xp + s, op + s, n); });
    return out;
  }
  return unary_map(x_in, fwd, name);
}

// An activation whose backward reads either its input x (Saved::input) or its output y, which
// is cheaper when the derivative is a function of y (tanh, sigmoid) and lets the input go once
// the forward is done. ReLU's backward reads its input only through x > 0, and y = relu(x) > 0
// exactly when x > 0 (a NaN input gives y = NaN and a zero gradient either way), so ReluBack is
// handed y.
enum class Saved { input, output };

template <class Back>
Tensor backward_map(const Tensor& g_in, const Tensor& keep_in, Back back, F32BackKernel fast) {
  if (fast && fast_f32(g_in) && fast_f32(keep_in) && g_in.shape() == keep_in.shape()) {
    const Tensor g = g_in.contiguous(), keep = keep_in.contiguous();
    Tensor out = Tensor::empty(g.shape(), DType::f32);
    const float *gp = g.data<float>(), *kp = keep.data<float>();
    float* op = out.data<float>();
    in_chunks(g.numel(), [&](int64_t s, int64_t n) { fast(gp + s, kp + s, op + s, n); });
    return out;
  }
  return binary_map(g_in, keep_in, back, "activation_backward");
}

// y = f(x) and d = f'(x) in one pass over contiguous f32.
std::pair<Tensor, Tensor> forward_and_derivative(const Tensor& x, F32DerivKernel k) {
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(xc.shape(), DType::f32), d = Tensor::empty(xc.shape(), DType::f32);
  const float* xp = xc.data<float>();
  float *yp = y.data<float>(), *dp = d.data<float>();
  in_chunks(xc.numel(), [&](int64_t s, int64_t n) { k(xp + s, yp + s, dp + s, n); });
  return {y, d};
}

template <class Fwd, class Back>
Tensor activation(const Tensor& x, Fwd fwd, Back back, const char* name, Saved saved,
                  F32Kernel fast, F32BackKernel fast_back, F32DerivKernel fast_deriv) {
  if (fast_deriv && fast_f32(x) && needs_grad({&x})) {
    // The forward also writes the derivative, which the tape keeps instead of x: the backward
    // is one product (the backward kernel's bits from x).
    auto [out, d] = forward_and_derivative(x, fast_deriv);
    attach_grad_fn(out, name, {x},
                   [d = d](const Tensor& g) -> std::vector<Tensor> {
                     return {backward_from_derivative(g, d)};
                   },
                   {x.shape()});
    return out;
  }
  Tensor out = forward_map(x, fwd, fast, name);
  if (needs_grad({&x})) {
    Tensor keep = saved == Saved::input ? x.detach() : out.detach();
    attach_grad_fn(out, name, {x},
                   [keep, back, fast_back](const Tensor& g) -> std::vector<Tensor> {
                     return {backward_map(g, keep, back, fast_back)};
                   },
                   {x.shape()});
  }
  return out;
}

// Every activation's forward and backward functors, what its backward reads and its fast f32
// kernels (forward, backward, forward with derivative where the backward is g * f'(x)), in one
// place: the ops and activate_backward both go through this
// table, so the tape and the fused step compute the same values.
template <class F>
auto visit_activation(ActivationKind a, double s, F&& f) {
  switch (a) {
    case ActivationKind::relu:
      return f(fn::Relu{}, fn::ReluBack{}, "relu", Saved::output, kernels::cpu::relu_f32,
               kernels::cpu::relu_backward_f32, nullptr);
    case ActivationKind::leaky_relu:
      return f(fn::LeakyRelu{s}, fn::LeakyReluBack{s}, "leaky_relu", Saved::input, nullptr, nullptr,
               nullptr);
    case ActivationKind::tanh:
      return f(fn::Tanh{}, fn::TanhBackFromY{}, "tanh", Saved::output, kernels::cpu::tanh_f32,
               kernels::cpu::tanh_backward_from_y_f32, nullptr);
    case ActivationKind::sigmoid:
      return f(fn::Sigmoid{}, fn::SigmoidBackFromY{}, "sigmoid", Saved::output,
               kernels::cpu::sigmoid_f32, kernels::cpu::sigmoid_backward_from_y_f32, nullptr);
    case ActivationKind::gelu:
      return f(fn::GeluErf{}, fn::GeluErfBack{}, "gelu", Saved::input, kernels::cpu::gelu_f32,
               kernels::cpu::gelu_backward_f32, kernels::cpu::gelu_and_derivative_f32);
    case ActivationKind::gelu_tanh:
      return f(fn::GeluTanh{}, fn::GeluTanhBack{}, "gelu_tanh", Saved::input,
               kernels::cpu::gelu_tanh_f32, kernels::cpu::gelu_tanh_backward_f32,
               kernels::cpu::gelu_tanh_and_derivative_f32);
    case ActivationKind::silu:
      return f(fn::Silu{}, fn::SiluBack{}, "silu", Saved::input, kernels::cpu::silu_f32,
               kernels::cpu::silu_backward_f32, nullptr);
    case ActivationKind::identity:
      break;
  }
  throw Error("activation: identity has no functors");
}

Tensor apply_activation(ActivationKind a, const Tensor& x, double slope) {
  return visit_activation(a, slope,
                          [&x](auto fwd, auto back, const char* name, Saved saved, F32Kernel fast,
                               F32BackKernel fast_back, F32DerivKernel fast_deriv) {
                            return activation(x, fwd, back, name, saved, fast, fast_back,
                                              fast_deriv);
                          });
}
}  // namespace

bool activation_backward_reads_input(ActivationKind a, double slope) {
  if (a == ActivationKind::identity) return false;
  return visit_activation(
      a, slope, [](auto, auto, const char*, Saved saved, F32Kernel, F32BackKernel, F32DerivKernel) {
        return saved == Saved::input;
      });
}

Tensor relu(const Tensor& x) {
  return apply_activation(ActivationKind::relu, x, 0);
}
Tensor leaky_relu(const Tensor& x, double s) {
  return apply_activation(ActivationKind::leaky_relu, x, s);
}
Tensor tanh(const Tensor& x) {
  return apply_activation(ActivationKind::tanh, x, 0);
}
Tensor sigmoid(const Tensor& x) {
  return apply_activation(ActivationKind::sigmoid, x, 0);
}
Tensor gelu(const Tensor& x, bool approximate) {
  return apply_activation(approximate ? ActivationKind::gelu_tanh : ActivationKind::gelu, x, 0);
}
Tensor silu(const Tensor& x) {
  return apply_activation(ActivationKind::silu, x, 0);
}

std::pair<Tensor, Tensor> activate_with_derivative(const Tensor& x, ActivationKind a,
                                                   double slope) {
  const F32DerivKernel k =
      a == ActivationKind::identity
          ? nullptr
          : visit_activation(a, slope,
                             [](auto, auto, const char*, Saved, F32Kernel, F32BackKernel,
                                F32DerivKernel fast_deriv) { return fast_deriv; });
  if (k == nullptr || !fast_f32(x)) return {activate(x, a, slope), Tensor()};
  return forward_and_derivative(x, k);
}

Tensor activate_in_place(const Tensor& x, ActivationKind a, double slope) {
  if (a == ActivationKind::identity) return x;
  const F32Kernel k = visit_activation(
      a, slope, [](auto, auto, const char*, Saved, F32Kernel fast, F32BackKernel, F32DerivKernel) {
        return fast;
      });
  if (k == nullptr || !fast_f32(x) || !x.is_contiguous() || needs_grad({&x}))
    return activate(x, a, slope);
  float* p = x.data<float>();
  in_chunks(x.numel(), [&](int64_t s, int64_t n) { k(p + s, p + s, n); });
  return x;
}

Tensor backward_from_derivative(const Tensor& grad, const Tensor& d) {
  GL_CHECK(grad.shape() == d.shape(), "backward_from_derivative: gradient {} and derivative {}",
           grad.str(), d.str());
  if (!fast_f32(grad) || !fast_f32(d)) return mul(grad, d);
  const Tensor g = grad.contiguous(), dc = d.contiguous();
  Tensor out = Tensor::empty(g.shape(), DType::f32);
  const float *gp = g.data<float>(), *dp = dc.data<float>();
  float* op = out.data<float>();
  in_chunks(g.numel(),
            [&](int64_t s, int64_t n) { kernels::cpu::times_f32(gp + s, dp + s, op + s, n); });
  return out;
}

Tensor activate_backward(const Tensor& grad, const Tensor& x, const Tensor& y, ActivationKind a,
                         double slope) {
  if (a == ActivationKind::identity) return grad;
  return visit_activation(
      a, slope,
      [&](auto, auto back, const char*, Saved saved, F32Kernel, F32BackKernel fast_back,
          F32DerivKernel) {
        const Tensor& keep = saved == Saved::input ? x : y;
        GL_CHECK(keep.defined(), "activate_backward: {} reads its {}, which was not given",
                 activation_name(a), saved == Saved::input ? "input x" : "output y");
        return backward_map(grad, keep.detach(), back, fast_back);
      });
}

#if defined(GRADLENS_HAVE_CUDA)
namespace {
// Whether every tensor of every list is a contiguous f32 tensor of the size of lists[0][0] on
// its CUDA device (and records no gradient): then the batched kernels take them.
bool batchable(std::initializer_list<const std::vector<Tensor>*> lists) {
  const Tensor& f = (*lists.begin())->front();
  for (const auto* l : lists)
    for (const Tensor& t : *l)
      if (!t.defined() || !t.device().is_cuda() || t.device() != f.device() ||
          t.dtype() != DType::f32 || !t.is_contiguous() || t.numel() != f.numel() ||
          needs_grad({&t}))
        return false;
  return true;
}

// run(indices) for each group of entries sharing (a, slope), in order of first appearance.
template <class F>
void for_each_activation_group(const std::vector<ActivationKind>& a,
                               const std::vector<double>& slope, F&& run) {
  std::vector<char> done(a.size(), 0);
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (done[k]) continue;
    std::vector<std::size_t> idx;
    for (std::size_t i = k; i < a.size(); ++i)
      if (!done[i] && a[i] == a[k] && slope[i] == slope[k]) {
        idx.push_back(i);
        done[i] = 1;
      }
    run(idx);
  }
}
}  // namespace
#endif

std::vector<Tensor> activate_batched(const std::vector<Tensor>& x,
                                     const std::vector<ActivationKind>& a,
                                     const std::vector<double>& slope) {
  GL_CHECK(a.size() == x.size() && slope.size() == x.size(),
           "activate_batched: {} tensors, {} activations, {} slopes", x.size(), a.size(),
           slope.size());
  std::vector<Tensor> out(x.size());
#if defined(GRADLENS_HAVE_CUDA)
  if (x.size() > 1 && batchable({&x})) {
    for_each_activation_group(a, slope, [&](const std::vector<std::size_t>& idx) {
      if (a[idx[0]] == ActivationKind::identity) {
        for (std::size_t i : idx) out[i] = x[i];
        return;
      }
      std::vector<Tensor> xs;
      for (std::size_t i : idx) xs.push_back(x[i]);
      visit_activation(
          a[idx[0]], slope[idx[0]],
          [&](auto fwd, auto, const char* name, Saved, F32Kernel, F32BackKernel, F32DerivKernel) {
            std::vector<Tensor> ys = cuda_ops::map_batched(xs, {}, fwd, name);
            for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]] = ys[j];
            return 0;
          });
    });
    return out;
  }
#endif
  for (std::size_t k = 0; k < x.size(); ++k) out[k] = activate(x[k], a[k], slope[k]);
  return out;
}

std::vector<Tensor> activate_backward_batched(const std::vector<Tensor>& grad,
                                              const std::vector<Tensor>& x,
                                              const std::vector<Tensor>& y,
                                              const std::vector<ActivationKind>& a,
                                              const std::vector<double>& slope) {
  GL_CHECK(x.size() == grad.size() && y.size() == grad.size() && a.size() == grad.size() &&
               slope.size() == grad.size(),
           "activate_backward_batched: {} gradients, {} inputs, {} outputs, {} activations, {} "
           "slopes",
           grad.size(), x.size(), y.size(), a.size(), slope.size());
  std::vector<Tensor> out(grad.size());
#if defined(GRADLENS_HAVE_CUDA)
  // What each entry's backward reads beside its gradient.
  std::vector<Tensor> keep(grad.size());
  for (std::size_t k = 0; k < grad.size(); ++k)
    keep[k] = a[k] == ActivationKind::identity                  ? grad[k]  // reads nothing
              : activation_backward_reads_input(a[k], slope[k]) ? x[k]
                                                                : y[k];
  if (grad.size() > 1 && batchable({&grad, &keep})) {
    for_each_activation_group(a, slope, [&](const std::vector<std::size_t>& idx) {
      if (a[idx[0]] == ActivationKind::identity) {
        for (std::size_t i : idx) out[i] = grad[i];
        return;
      }
      std::vector<Tensor> gs, ks;
      for (std::size_t i : idx) {
        gs.push_back(grad[i]);
        ks.push_back(keep[i]);
      }
      visit_activation(
          a[idx[0]], slope[idx[0]],
          [&](auto, auto back, const char* name, Saved, F32Kernel, F32BackKernel, F32DerivKernel) {
            std::vector<Tensor> ds = cuda_ops::map_batched(gs, ks, back, name);
            for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]] = ds[j];
            return 0;
          });
    });
    return out;
  }
#endif
  for (std::size_t k = 0; k < grad.size(); ++k)
    out[k] = activate_backward(grad[k], x[k], y[k], a[k], slope[k]);
  return out;
}

ActivationKind parse_activation(const std::string& n) {
  if (n == "identity" || n == "none" || n == "linear") return ActivationKind::identity;
  if (n == "relu") return ActivationKind::relu;
  if (n == "leaky_relu") return ActivationKind::leaky_relu;
  if (n == "tanh") return ActivationKind::tanh;
  if (n == "sigmoid") return ActivationKind::sigmoid;
  if (n == "gelu") return ActivationKind::gelu;
  if (n == "gelu_tanh") return ActivationKind::gelu_tanh;
  if (n == "silu") return ActivationKind::silu;
  throw Error(fmt::format(
      "unknown activation '{}' (known: relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh, silu, "
      "identity)",
      n));
}

const char* activation_name(ActivationKind a) {
  switch (a) {
    case ActivationKind::identity:
      return "identity";
    case ActivationKind::relu:
      return "relu";
    case ActivationKind::leaky_relu:
      return "leaky_relu";
    case ActivationKind::tanh:
      return "tanh";
    case ActivationKind::sigmoid:
      return "sigmoid";
    case ActivationKind::gelu:
      return "gelu";
    case ActivationKind::gelu_tanh:
      return "gelu_tanh";
    case ActivationKind::silu:
      return "silu";
  }
  return "?";
}

Tensor activate(const Tensor& x, ActivationKind a, double slope) {
  switch (a) {
    case ActivationKind::identity:
      return x;
    case ActivationKind::relu:
      return relu(x);
    case ActivationKind::leaky_relu:
      return leaky_relu(x, slope);
    case ActivationKind::tanh:
      return tanh(x);
    case ActivationKind::sigmoid:
      return sigmoid(x);
    case ActivationKind::gelu:
      return gelu(x, false);
    case ActivationKind::gelu_tanh:
      return gelu(x, true);
    case ActivationKind::silu:
      return silu(x);
  }
  return x;
}

}  // namespace gl
