// Tape behaviour: accumulation, NoGrad, detach, retain_grad, hooks, freed graphs, deep chains,
// and a 50-layer tanh MLP against a hand-written backward in f64.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops.h"

using namespace gl;

namespace {
Tensor vec(std::vector<double> v) { return Tensor::from_vector(v, {int64_t(v.size())}); }
}  // namespace

TEST(Autograd, AccumulatesWhenATensorIsUsedTwice) {
  Tensor x = vec({1.0, 2.0, 3.0}).requires_grad_();
  Tensor y = sum(add(mul(x, x), mul(x, 3.0)));  // dy/dx = 2x + 3
  y.backward();
  auto g = x.grad().to_vector<double>();
  EXPECT_DOUBLE_EQ(g[0], 5.0);
  EXPECT_DOUBLE_EQ(g[2], 9.0);
  // A second backward on a fresh graph accumulates into .grad.
  sum(x).backward();
  EXPECT_DOUBLE_EQ(x.grad().to_vector<double>()[1], 8.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, LeafGradientsDoNotAlias) {
  Tensor a = vec({1, 2}).requires_grad_(), b = vec({3, 4}).requires_grad_();
  sum(add(a, b)).backward();
  a.grad().set_at({0}, 100);
  EXPECT_DOUBLE_EQ(b.grad().at({0}), 1.0);
}

TEST(Autograd, NoGradAndDetachRecordNothing) {
  Tensor x = vec({1, 2}).requires_grad_();
  {
    NoGrad ng;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.raw_data(), x.raw_data());
  Tensor z = mul(d, x);
  sum(z).backward();
  EXPECT_DOUBLE_EQ(x.grad().at({1}), 2.0);  // only the non-detached path contributes
}

TEST(Autograd, RetainGradKeepsIntermediateGradients) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor h = mul(x, 2.0);
  h.retain_grad();
  Tensor y = sum(mul(h, h));
  y.backward();
  EXPECT_DOUBLE_EQ(h.grad().at({1}), 8.0);  // dy/dh = 2h
  EXPECT_DOUBLE_EQ(x.grad().at({1}), 16.0);
}

TEST(Autograd, HooksReadAndReplaceGradients) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor h = mul(x, 3.0);
  double seen = 0;
  h.add_hook([&](const Tensor& g) {
    seen = g.at({0});
    return Tensor();
  });
  int id = h.add_hook([](const Tensor& g) { return mul(g, 10.0); });
  sum(mul(h, 2.0)).backward(Tensor(), true);
  EXPECT_DOUBLE_EQ(seen, 2.0);
  EXPECT_DOUBLE_EQ(x.grad().at({0}), 60.0);
  h.remove_hook(id);
  x.zero_grad();
  // Leaf hooks too.
  x.add_hook([](const Tensor& g) { return mul(g, 0.5); });
  Tensor y2 = sum(mul(mul(x, 3.0), 2.0));
  y2.backward();
  EXPECT_DOUBLE_EQ(x.grad().at({0}), 3.0);
}

TEST(Autograd, SecondBackwardThroughFreedGraphIsAClearError) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("freed"), std::string::npos) << e.what();
  }
  // retain_graph keeps it usable.
  Tensor z = sum(exp(x));
  z.backward(Tensor(), true);
  EXPECT_NO_THROW(z.backward());
}

TEST(Autograd, NonScalarBackwardNeedsAGradient) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  y.backward(vec({1.0, -1.0}));
  EXPECT_DOUBLE_EQ(x.grad().at({1}), -2.0);
  EXPECT_THROW(vec({1.0}).backward(), Error);  // does not require grad
}

TEST(Autograd, TenThousandOpChainDoesNotOverflowTheStack) {
  Tensor x = Tensor::from_vector<double>({0.5}, {1}).requires_grad_();
  Tensor y = x;
  const int n = 10000;
  for (int i = 0; i < n; ++i) y = mul(y, 1.0001);
  sum(y).backward();
  EXPECT_NEAR(x.grad().item(), std::pow(1.0001, n), 1e-9);
  // Tearing down an un-backpropagated chain of the same length must not recurse either.
  Tensor z = x;
  for (int i = 0; i < 50000; ++i) z = add(z, 1.0);
  z = Tensor();
  SUCCEED();
}

// 50-layer tanh MLP: the tape's gradients against a hand-written backward, f64, rtol 1e-10.
TEST(Autograd, FiftyLayerTanhMlpMatchesHandWrittenBackward) {
  const int L = 50, width = 16, batch = 8, in = 12, classes = 5;
  Generator gen(42);
  std::vector<Tensor> W, b;
  int64_t fan = in;
  for (int l = 0; l < L; ++l) {
    int64_t out = l == L - 1 ? classes : width;
    W.push_back(Tensor::randn({out, fan}, gen, DType::f64, 0.0, 1.0 / std::sqrt(double(fan))).requires_grad_());
    b.push_back(Tensor::randn({out}, gen, DType::f64, 0.0, 0.1).requires_grad_());
    fan = out;
  }
  Tensor x = Tensor::randn({batch, in}, gen, DType::f64);
  std::vector<int64_t> lab(batch);
  for (auto& v : lab) v = int64_t(gen.below(classes));
  Tensor labels = Tensor::from_vector(lab, {batch});

  Tensor h = x;
  for (int l = 0; l < L; ++l) {
    h = linear(h, W[l], b[l]);
    if (l < L - 1) h = tanh(h);
  }
  cross_entropy(h, labels).backward();

  // Hand-written forward and backward with plain loops.
  using Mat = std::vector<std::vector<double>>;
  auto get = [](const Tensor& t) {
    Mat m(t.shape()[0], std::vector<double>(t.dim() > 1 ? t.shape()[1] : 1));
    auto v = t.to_vector<double>();
    for (std::size_t i = 0; i < m.size(); ++i)
      for (std::size_t j = 0; j < m[i].size(); ++j) m[i][j] = v[i * m[i].size() + j];
    return m;
  };
  std::vector<Mat> acts{get(x)};  // post-activation inputs to each layer
  Mat z;
  for (int l = 0; l < L; ++l) {
    Mat w = get(W[l]);
    auto bv = b[l].to_vector<double>();
    const Mat& a = acts.back();
    z.assign(batch, std::vector<double>(w.size()));
    for (int n = 0; n < batch; ++n)
      for (std::size_t o = 0; o < w.size(); ++o) {
        double s = bv[o];
        for (std::size_t i = 0; i < w[o].size(); ++i) s += a[n][i] * w[o][i];
        z[n][o] = s;
      }
    if (l < L - 1) {
      Mat t = z;
      for (auto& r : t)
        for (auto& v : r) v = std::tanh(v);
      acts.push_back(t);
    }
  }
  // dL/dz for the last layer: (softmax - onehot) / batch
  Mat dz = z;
  for (int n = 0; n < batch; ++n) {
    double m = *std::max_element(z[n].begin(), z[n].end()), s = 0;
    for (double v : z[n]) s += std::exp(v - m);
    for (int c = 0; c < classes; ++c) dz[n][c] = (std::exp(z[n][c] - m) / s - (c == lab[n])) / batch;
  }
  for (int l = L - 1; l >= 0; --l) {
    Mat w = get(W[l]);
    const Mat& a = acts[l];
    auto gw = W[l].grad().to_vector<double>();
    auto gb = b[l].grad().to_vector<double>();
    for (std::size_t o = 0; o < w.size(); ++o) {
      double sb = 0;
      for (int n = 0; n < batch; ++n) sb += dz[n][o];
      ASSERT_NEAR(gb[o], sb, 1e-10 * std::max(1e-300, std::fabs(sb)) + 1e-300) << "layer " << l;
      for (std::size_t i = 0; i < w[o].size(); ++i) {
        double s = 0;
        for (int n = 0; n < batch; ++n) s += dz[n][o] * a[n][i];
        double got = gw[o * w[o].size() + i];
        ASSERT_LE(std::fabs(got - s), 1e-10 * std::fabs(s) + 1e-300) << "layer " << l << " W[" << o << "," << i << "]";
      }
    }
    if (l == 0) break;
    Mat da(batch, std::vector<double>(w[0].size(), 0.0));
    for (int n = 0; n < batch; ++n)
      for (std::size_t i = 0; i < w[0].size(); ++i) {
        double s = 0;
        for (std::size_t o = 0; o < w.size(); ++o) s += dz[n][o] * w[o][i];
        da[n][i] = s * (1 - a[n][i] * a[n][i]);  // tanh' from its output
      }
    dz = da;
  }
}
