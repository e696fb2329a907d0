// Forward values against naive references and closed forms.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops.h"

using namespace gl;

TEST(Ops, MatmulMatchesNaiveLoopsForAllLayouts) {
  Generator g(3);
  for (auto [M, K, N] :
       std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {5, 7, 3}, {33, 17, 65}, {128, 784, 10}}) {
    Tensor a = Tensor::randn({M, K}, g, DType::f64), b = Tensor::randn({K, N}, g, DType::f64);
    Tensor at = a.t().contiguous().t(), bt = b.t().contiguous().t();  // transposed storage
    for (auto [x, y] : std::vector<std::pair<Tensor, Tensor>>{{a, b}, {at, b}, {a, bt}, {at, bt}}) {
      Tensor c = matmul(x, y);
      for (int64_t i = 0; i < M; i += std::max<int64_t>(1, M / 7))
        for (int64_t j = 0; j < N; j += std::max<int64_t>(1, N / 5)) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k) s += a.at({i, k}) * b.at({k, j});
          ASSERT_NEAR(c.at({i, j}), s, 1e-10 * (1 + std::fabs(s)));
        }
    }
  }
  // f32 path, batched.
  Tensor a = Tensor::randn({3, 4, 5}, g), b = Tensor::randn({3, 5, 2}, g);
  Tensor c = matmul(a, b);
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        double s = 0;
        for (int64_t k = 0; k < 5; ++k) s += a.at({n, i, k}) * b.at({n, k, j});
        EXPECT_NEAR(c.at({n, i, j}), s, 1e-5);
      }
}

TEST(Ops, LinearEqualsMatmulPlusBias) {
  Generator g(4);
  Tensor x = Tensor::randn({6, 5}, g), w = Tensor::randn({3, 5}, g), b = Tensor::randn({3}, g);
  Tensor y = linear(x, w, b);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t o = 0; o < 3; ++o) {
      double s = b.at({o});
      for (int64_t k = 0; k < 5; ++k) s += x.at({i, k}) * w.at({o, k});
      EXPECT_NEAR(y.at({i, o}), s, 1e-5);
    }
}

TEST(Ops, SoftmaxAndCrossEntropyClosedForms) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 1000, 1000, 1000}, {2, 3});
  Tensor s = softmax(x, -1);
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(s.at({0, 2}), std::exp(3.0) / z, 1e-15);
  EXPECT_NEAR(s.at({1, 0}), 1.0 / 3, 1e-15);  // stable at large logits
  Tensor ls = log_softmax(x, -1);
  EXPECT_NEAR(ls.at({0, 0}), 1.0 - std::log(z), 1e-14);
  Tensor labels = Tensor::from_vector<int64_t>({2, 1}, {2});
  double expected = (-(3.0 - std::log(z)) + std::log(3.0)) / 2;
  EXPECT_NEAR(cross_entropy(x, labels).item(), expected, 1e-13);
  EXPECT_NEAR(nll_loss(ls, labels).item(), expected, 1e-13);
}

TEST(Ops, ReductionsMatchLoops) {
  Generator g(5);
  Tensor x = Tensor::randn({3, 4, 5}, g, DType::f64);
  Tensor s = sum(x, {0, 2});
  for (int64_t j = 0; j < 4; ++j) {
    double r = 0;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t k = 0; k < 5; ++k) r += x.at({i, j, k});
    EXPECT_NEAR(s.at({j}), r, 1e-12);
  }
  Tensor m = max(x, 1, true);
  EXPECT_EQ(m.shape(), (Shape{3, 1, 5}));
  Tensor am = argmax(x, 1);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t k = 0; k < 5; ++k) {
      double best = -1e300;
      int64_t bi = 0;
      for (int64_t j = 0; j < 4; ++j)
        if (x.at({i, j, k}) > best) {
          best = x.at({i, j, k});
          bi = j;
        }
      EXPECT_DOUBLE_EQ(m.at({i, 0, k}), best);
      EXPECT_EQ(int64_t(am.at({i, k})), bi);
    }
  EXPECT_NEAR(mean(x).item(), sum(x).item() / 60, 1e-14);
}

// Column sums of a contiguous f32 matrix (every bias gradient) take a plain loop; a strided
// view of the same values takes the general one. Both must give the f64-accumulated sum, the
// same bits, and match a naive loop.
TEST(Ops, ColumnSumsAgreeAcrossLayouts) {
  Generator g(11);
  Tensor x = Tensor::randn({129, 37}, g);   // f32, contiguous
  Tensor strided = x.t().contiguous().t();  // the same values, column-major strides
  ASSERT_FALSE(strided.is_contiguous());
  Tensor a = sum(x, {0}), b = sum(strided, {0});
  ASSERT_EQ(a.shape(), (Shape{37}));
  for (int64_t j = 0; j < 37; ++j) {
    double r = 0;
    for (int64_t i = 0; i < 129; ++i) r += double(x.at({i, j}));
    EXPECT_EQ(a.at({j}), float(r)) << "column " << j;
    EXPECT_EQ(a.at({j}), b.at({j})) << "column " << j;
  }
}

TEST(Ops, ActivationsMatchClosedForms) {
  std::vector<double> v{-3, -0.5, 0.25, 2};
  Tensor x = Tensor::from_vector(v, {4});
  for (int i = 0; i < 4; ++i) {
    double a = v[i];
    EXPECT_NEAR(relu(x).at({i}), std::max(a, 0.0), 0);
    EXPECT_NEAR(leaky_relu(x, 0.2).at({i}), a > 0 ? a : 0.2 * a, 1e-15);
    EXPECT_NEAR(tanh(x).at({i}), std::tanh(a), 1e-15);
    EXPECT_NEAR(sigmoid(x).at({i}), 1 / (1 + std::exp(-a)), 1e-15);
    EXPECT_NEAR(gelu(x).at({i}), 0.5 * a * (1 + std::erf(a / std::sqrt(2.0))), 1e-15);
    EXPECT_NEAR(gelu(x, true).at({i}),
                0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a))), 1e-15);
    EXPECT_NEAR(silu(x).at({i}), a / (1 + std::exp(-a)), 1e-15);
  }
  // NaN propagates through every activation (ReLU included, as in PyTorch), in f32 (the
  // vectorized maps) and f64 (the functors); ReLU(-0) is +0.
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor special = Tensor::from_vector<double>({std::nan(""), -0.0}, {2}).to(dt);
    for (const Tensor& y : {relu(special), leaky_relu(special, 0.2), tanh(special),
                            sigmoid(special), gelu(special), silu(special)})
      EXPECT_TRUE(std::isnan(y.at({0}))) << dtype_name(dt);
    EXPECT_FALSE(std::signbit(relu(special).at({1}))) << dtype_name(dt);
  }
  EXPECT_EQ(sigmoid(Tensor::from_vector<float>({-1000.f, 1000.f}, {2})).to_vector<float>(),
            (std::vector<float>{0.f, 1.f}));
}

TEST(Ops, DropoutKeepsExpectationAndIsReproducible) {
  Tensor x = Tensor::ones({100000}, DType::f64);
  Generator g1(3), g2(3);
  Tensor a = dropout(x, 0.25, g1), b = dropout(x, 0.25, g2);
  EXPECT_EQ(a.to_vector<double>(), b.to_vector<double>());
  auto v = a.to_vector<double>();
  int64_t zeros = 0;
  for (double e : v) {
    if (e == 0)
      ++zeros;
    else
      EXPECT_NEAR(e, 1 / 0.75, 1e-15);
  }
  double frac = double(zeros) / v.size();
  EXPECT_NEAR(frac, 0.25, 4 * std::sqrt(0.25 * 0.75 / v.size()));
  EXPECT_EQ(dropout(x, 0.5, g1, false).raw_data(), x.raw_data());
  EXPECT_THROW(dropout(x, 1.0, g1), Error);
}

TEST(Ops, ConcatIndexSelectGather) {
  Tensor a = Tensor::arange(6, DType::f64).reshape({2, 3});
  Tensor b = Tensor::full({2, 1}, -1, DType::f64);
  Tensor c = concat({a, b}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 4}));
  EXPECT_DOUBLE_EQ(c.at({1, 3}), -1);
  EXPECT_DOUBLE_EQ(c.at({1, 2}), 5);
  Tensor s = index_select(a, 1, Tensor::from_vector<int64_t>({2, 0}, {2}));
  EXPECT_EQ(s.to_vector<double>(), (std::vector<double>{2, 0, 5, 3}));
  Tensor gth = gather(a, 1, Tensor::from_vector<int64_t>({1, 2}, {2, 1}));
  EXPECT_EQ(gth.to_vector<double>(), (std::vector<double>{1, 5}));
  EXPECT_THROW(index_select(a, 1, Tensor::from_vector<int64_t>({3}, {1})), Error);
}
