// test_layers.cpp: Linear against naive loops; BatchNorm1d against its formula in f64, f64
// finite differences through the whole module, running statistics and PyTorch; Dropout,
// Flatten, Activation and Sequential.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops.h"
#include "models/layers.h"
#include "tests/models/torch_oracle.h"

namespace gl::models {
namespace {

TEST(Linear, MatchesNaiveLoops) {
  Generator gen(3);
  Linear lin(7, 5);
  lin.reset_parameters(gen);
  EXPECT_EQ(lin.weight().shape(), (Shape{5, 7}));
  EXPECT_EQ(lin.bias().shape(), (Shape{5}));
  double bound = 1 / std::sqrt(7.0);
  for (float w : lin.weight().to_vector<float>()) EXPECT_LE(std::abs(w), bound);
  Tensor x = Tensor::randn({2, 3, 7}, gen);  // leading dims are flattened and restored
  Tensor y = lin(x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5}));
  auto W = lin.weight().to_vector<float>(), B = lin.bias().to_vector<float>();
  auto X = x.to_vector<float>(), Y = y.to_vector<float>();
  for (int r = 0; r < 6; ++r)
    for (int o = 0; o < 5; ++o) {
      double acc = B[o];
      for (int i = 0; i < 7; ++i) acc += double(X[r * 7 + i]) * W[o * 7 + i];
      EXPECT_NEAR(Y[r * 5 + o], acc, 1e-5);
    }
  Linear nob(7, 5, false);
  EXPECT_FALSE(nob.bias().defined());
  EXPECT_EQ(nob.named_parameters().size(), 1u);
  EXPECT_EQ(nob(x).to_vector<float>(), std::vector<float>(30, 0.0f));
  try {
    lin(Tensor::zeros({4, 6}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Linear(7 -> 5)"), std::string::npos) << e.what();
  }
}

// Reference batch norm in f64 on [N, C].
std::vector<double> bn_reference(const std::vector<double>& x, int64_t N, int64_t C,
                                 const std::vector<double>& w, const std::vector<double>& b,
                                 double eps, std::vector<double>* mean_out,
                                 std::vector<double>* var_out) {
  std::vector<double> y(x.size());
  for (int64_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (int64_t n = 0; n < N; ++n) m += x[n * C + c];
    m /= N;
    for (int64_t n = 0; n < N; ++n) v += (x[n * C + c] - m) * (x[n * C + c] - m);
    v /= N;
    for (int64_t n = 0; n < N; ++n)
      y[n * C + c] = (x[n * C + c] - m) / std::sqrt(v + eps) * w[c] + b[c];
    if (mean_out) (*mean_out)[c] = m;
    if (var_out) (*var_out)[c] = v;
  }
  return y;
}

TEST(BatchNorm1d, TrainingForwardAndRunningStatsMatchFormula) {
  const int64_t N = 6, C = 4;
  BatchNorm1d bn(C, 1e-5, 0.1, true, DType::f64);
  Generator gen(11);
  Tensor(bn.weight()).copy_(Tensor::randn({C}, gen, DType::f64, 1.0, 0.5));
  Tensor(bn.bias()).copy_(Tensor::randn({C}, gen, DType::f64));
  auto w = bn.weight().to_vector<double>(), b = bn.bias().to_vector<double>();
  std::vector<double> rm(C, 0.0), rv(C, 1.0);
  for (int step = 0; step < 3; ++step) {
    Tensor x = Tensor::randn({N, C}, gen, DType::f64, 2.0, 3.0);
    std::vector<double> m(C), v(C);
    auto ref = bn_reference(x.to_vector<double>(), N, C, w, b, 1e-5, &m, &v);
    auto y = bn(x).to_vector<double>();
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-12);
    for (int64_t c = 0; c < C; ++c) {
      rm[c] = 0.9 * rm[c] + 0.1 * m[c];
      rv[c] = 0.9 * rv[c] + 0.1 * v[c] * N / (N - 1);  // unbiased in the running update
    }
  }
  auto got_m = bn.running_mean().to_vector<double>(), got_v = bn.running_var().to_vector<double>();
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_NEAR(got_m[c], rm[c], 1e-12);
    EXPECT_NEAR(got_v[c], rv[c], 1e-12);
  }
  EXPECT_EQ(bn.num_batches_tracked().dtype(), DType::i64);
  EXPECT_EQ(bn.num_batches_tracked().item(), 3);

  // Eval normalizes with the running estimates and leaves them alone.
  bn.eval();
  Tensor x = Tensor::randn({3, C}, gen, DType::f64);
  auto xv = x.to_vector<double>();
  auto y = bn(x).to_vector<double>();
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(y[n * C + c], (xv[n * C + c] - rm[c]) / std::sqrt(rv[c] + 1e-5) * w[c] + b[c],
                  1e-12);
  EXPECT_EQ(bn.num_batches_tracked().item(), 3);
  EXPECT_EQ(bn.running_mean().to_vector<double>(), got_m);
}

TEST(BatchNorm1d, RejectsBadInput) {
  BatchNorm1d bn(4);
  EXPECT_THROW(bn(Tensor::zeros({1, 4})), Error);  // one value per channel in training
  EXPECT_THROW(bn(Tensor::zeros({3, 5})), Error);
  EXPECT_THROW(bn(Tensor::zeros({3, 4}, DType::f64)), Error);
  bn.eval();
  EXPECT_NO_THROW(bn(Tensor::zeros({1, 4})));
}

// Central differences in f64 of L = sum(bn(x) * R) with respect to x, weight and bias,
// against backward through the whole module.
void gradcheck_bn(bool training, bool three_d) {
  const int64_t N = 5, C = 3, L = 2;
  BatchNorm1d bn(C, 1e-5, 0.1, true, DType::f64);
  bn.train(training);
  Generator gen(5);
  Tensor(bn.weight()).copy_(Tensor::randn({C}, gen, DType::f64, 1.0, 0.5));
  Tensor(bn.bias()).copy_(Tensor::randn({C}, gen, DType::f64));
  Tensor(bn.running_mean()).copy_(Tensor::randn({C}, gen, DType::f64));
  Tensor(bn.running_var()).copy_(Tensor::rand({C}, gen, DType::f64, 0.5, 2.0));
  Shape xs = three_d ? Shape{N, C, L} : Shape{N, C};
  Tensor x = Tensor::randn(xs, gen, DType::f64);
  x.requires_grad_(true);
  Tensor R = Tensor::randn(xs, gen, DType::f64);
  auto loss = [&] { return sum(bn(x) * R).item(); };
  Tensor out = sum(bn(x) * R);
  out.backward();
  std::vector<std::pair<const char*, Tensor>> wrt{
      {"x", x}, {"weight", bn.weight()}, {"bias", bn.bias()}};
  const double eps = 1e-6;
  for (auto& [name, t] : wrt) {
    ASSERT_TRUE(t.grad().defined()) << name;
    auto g = t.grad().to_vector<double>();
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double saved = p[i];
      p[i] = saved + eps;
      double up = loss();
      p[i] = saved - eps;
      double down = loss();
      p[i] = saved;
      double fd = (up - down) / (2 * eps);
      EXPECT_NEAR(g[std::size_t(i)], fd, 1e-5 + 1e-3 * std::abs(fd))
          << name << "[" << i << "] training=" << training << " 3d=" << three_d;
    }
  }
}

TEST(BatchNorm1d, GradcheckTrainingF64) {
  gradcheck_bn(true, false);
}
TEST(BatchNorm1d, GradcheckEvalF64) {
  gradcheck_bn(false, false);
}
TEST(BatchNorm1d, GradcheckTraining3dF64) {
  gradcheck_bn(true, true);
}

TEST(BatchNorm1d, MatchesTorch) {
  GL_REQUIRE_TORCH();
  const int64_t N = 8, C = 5;
  Generator gen(21);
  BatchNorm1d bn(C, 1e-5, 0.1, true, DType::f64);
  Tensor(bn.weight()).copy_(Tensor::randn({C}, gen, DType::f64, 1.0, 0.3));
  Tensor(bn.bias()).copy_(Tensor::randn({C}, gen, DType::f64));
  std::vector<Tensor> xs;
  for (int i = 0; i < 3; ++i) xs.push_back(Tensor::randn({N, C}, gen, DType::f64, 1.0, 2.0));
  Tensor R = Tensor::randn({N, C}, gen, DType::f64);
  std::vector<double> ours;
  for (auto& x : xs) {
    x.requires_grad_(true);
    Tensor y = bn(x);
    for (double v : y.to_vector<double>()) ours.push_back(v);
  }
  sum(bn(xs[2]) * R).backward();  // a 4th training step: its input gradient is compared
  for (double v : xs[2].grad().to_vector<double>()) ours.push_back(v);
  for (auto& t : {bn.running_mean(), bn.running_var()})
    for (double v : t.to_vector<double>()) ours.push_back(v);
  ours.push_back(bn.num_batches_tracked().item());
  bn.eval();
  for (double v : bn(xs[0]).to_vector<double>()) ours.push_back(v);

  std::string code = fmt::format(R"(
import torch
torch.set_printoptions(precision=17)
bn = torch.nn.BatchNorm1d({C}).double()
with torch.no_grad():
    bn.weight.copy_(torch.tensor({w}, dtype=torch.float64))
    bn.bias.copy_(torch.tensor({b}, dtype=torch.float64))
xs = [torch.tensor(v, dtype=torch.float64).reshape({N}, {C}) for v in [{x0}, {x1}, {x2}]]
out = []
for x in xs:
    out += bn(x).flatten().tolist()
x2 = xs[2].clone().requires_grad_(True)
(bn(x2) * torch.tensor({r}, dtype=torch.float64).reshape({N}, {C})).sum().backward()
out += x2.grad.flatten().tolist()
out += bn.running_mean.tolist() + bn.running_var.tolist() + [float(bn.num_batches_tracked)]
bn.eval()
out += bn(xs[0]).flatten().tolist()
print(' '.join(repr(v) for v in out))
)",
                                 fmt::arg("C", C), fmt::arg("N", N),
                                 fmt::arg("w", testing::py_list(bn.weight().to_vector<double>())),
                                 fmt::arg("b", testing::py_list(bn.bias().to_vector<double>())),
                                 fmt::arg("x0", testing::py_list(xs[0].to_vector<double>())),
                                 fmt::arg("x1", testing::py_list(xs[1].to_vector<double>())),
                                 fmt::arg("x2", testing::py_list(xs[2].to_vector<double>())),
                                 fmt::arg("r", testing::py_list(R.to_vector<double>())));
  auto theirs = testing::parse_numbers(testing::run_python(code));
  ASSERT_EQ(theirs.size(), ours.size());
  for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], theirs[i], 1e-10) << i;
}

// Why the builders give no bias to a layer that batch norm follows: in training, batch norm
// subtracts the batch mean, so y = bn(x W^T + b) does not depend on b, and dL/db is zero but for
// rounding. Two chains with the same weights, one with a large bias and one without, against
// each other: the same outputs and weight gradients (to the dtype's rounding), and a bias
// gradient that is rounding noise next to the weight gradient.
void expect_bias_before_norm_changes_nothing(Module& biased, Module& unbiased, Module& bn,
                                             const Tensor& x, const Tensor& bias,
                                             const Tensor& weight, const Tensor& bare_weight,
                                             double tol) {
  Generator gen(17);
  Tensor y_biased = bn(biased(x));
  Tensor R = Tensor::randn(y_biased.shape(), gen, x.dtype());
  sum(y_biased * R).backward();
  Tensor y_bare = bn(unbiased(x));
  sum(y_bare * R).backward();
  auto a = y_biased.to_vector<double>(), b = y_bare.to_vector<double>();
  double y_scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i], b[i], tol) << "output " << i;
    y_scale = std::max(y_scale, std::abs(b[i]));
  }
  EXPECT_GT(y_scale, 0.5) << "the outputs are normalized, not all zero";
  auto gw = weight.grad().to_vector<double>(), gw_bare = bare_weight.grad().to_vector<double>();
  double gw_max = 0;
  for (std::size_t i = 0; i < gw.size(); ++i) {
    EXPECT_NEAR(gw[i], gw_bare[i], tol * (1 + std::abs(gw_bare[i]))) << "weight grad " << i;
    gw_max = std::max(gw_max, std::abs(gw_bare[i]));
  }
  ASSERT_GT(gw_max, 0.1);
  for (double g : bias.grad().to_vector<double>()) EXPECT_LE(std::abs(g), tol * gw_max);
}

TEST(BatchNorm1d, BiasOfTheLinearBeforeItChangesNothingInTraining) {
  for (auto [dtype, tol] : {std::pair{DType::f64, 1e-10}, std::pair{DType::f32, 2e-5}}) {
    SCOPED_TRACE(dtype_name(dtype));
    Generator gen(23);
    Linear biased(9, 6, true, dtype), bare(9, 6, false, dtype);
    BatchNorm1d bn(6, 1e-5, 0.1, true, dtype);
    biased.reset_parameters(gen);
    Tensor(bare.weight()).copy_(biased.weight());
    Tensor(biased.bias()).copy_(Tensor::randn({6}, gen, dtype, 0.0, 3.0));  // far from zero
    Tensor(bn.weight()).copy_(Tensor::randn({6}, gen, dtype, 1.0, 0.5));
    Tensor(bn.bias()).copy_(Tensor::randn({6}, gen, dtype));
    expect_bias_before_norm_changes_nothing(biased, bare, bn, Tensor::randn({16, 9}, gen, dtype),
                                            biased.bias(), biased.weight(), bare.weight(), tol);
  }
}

TEST(BatchNorm2d, BiasOfTheConvBeforeItChangesNothingInTraining) {
  Generator gen(29);
  Conv2dOptions with, without;
  with.padding = without.padding = {1, 1};
  without.bias = false;
  Conv2d biased(3, 5, with), bare(3, 5, without);
  BatchNorm2d bn(5);
  biased.reset_parameters(gen);
  Tensor(bare.weight()).copy_(biased.weight());
  Tensor(biased.bias()).copy_(Tensor::randn({5}, gen, DType::f32, 0.0, 3.0));
  expect_bias_before_norm_changes_nothing(biased, bare, bn, Tensor::randn({4, 3, 6, 6}, gen),
                                          biased.bias(), biased.weight(), bare.weight(), 5e-5);
}

TEST(Dropout, IdentityInEvalAndNeedsAGenerator) {
  Dropout d(0.3);
  Tensor x = Tensor::ones({100, 50});
  EXPECT_THROW(d(x), Error);
  Generator gen(2);
  d.set_generator(&gen);
  auto y = d(x).to_vector<float>();
  int64_t zeros = 0;
  for (float v : y) {
    if (v == 0)
      ++zeros;
    else
      EXPECT_FLOAT_EQ(v, 1 / 0.7f);
  }
  // 5000 Bernoulli(0.3) draws: mean 1500, sd ~32.
  EXPECT_NEAR(double(zeros), 1500.0, 5 * std::sqrt(5000 * 0.3 * 0.7));
  d.eval();
  EXPECT_TRUE(d(x).same(x));
  EXPECT_THROW(Dropout(1.0), Error);
  Sequential s;
  auto* inner = s.emplace<Dropout>(0.5);
  set_dropout_generator(s, &gen);
  EXPECT_EQ(inner->generator(), &gen);
}

TEST(Flatten, AndActivationKinds) {
  Flatten f;
  EXPECT_EQ(f(Tensor::zeros({2, 3, 4})).shape(), (Shape{2, 12}));
  Activation leaky(ActivationKind::leaky_relu, 0.2);
  EXPECT_EQ(leaky.kind(), "LeakyReLU");
  auto y = leaky(Tensor::from_vector<float>({-1.0f, 2.0f}, {2})).to_vector<float>();
  EXPECT_FLOAT_EQ(y[0], -0.2f);
  EXPECT_FLOAT_EQ(y[1], 2.0f);
  EXPECT_EQ(Activation(ActivationKind::silu).kind(), "SiLU");
  EXPECT_TRUE(Activation(ActivationKind::silu).named_parameters().empty());
}

}  // namespace
}  // namespace gl::models
