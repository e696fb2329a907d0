// test_init.cpp: every initializer's sample statistics on a 1000x1000 weight against its
// formula (means and variances within 5 standard errors; uniform bounds; orthogonality;
// truncated-normal closed form), the factor/gain rule, seeding, init_model and the parser.
#include <gtest/gtest.h>

#include <cmath>

#include "models/init.h"
#include "models/mlp.h"
#include "tests/models/torch_oracle.h"

namespace gl::models {
namespace {

struct Moments {
  double n, mean, var, m4;  // var and m4 are central moments (var unbiased)
};

Moments moments(const Tensor& t) {
  auto v = t.to_vector<double>();
  double n = double(v.size()), s = 0;
  for (double x : v) s += x;
  double mean = s / n, s2 = 0, s4 = 0;
  for (double x : v) {
    double d = (x - mean) * (x - mean);
    s2 += d;
    s4 += d * d;
  }
  return {n, mean, s2 / (n - 1), s4 / n};
}

// Mean within 5 standard errors of `mean`, variance within 5 standard errors of `var`, where
// the variance's standard error is sqrt((mu4 - var^2) / n) with mu4 the population's fourth
// central moment.
void expect_moments(const Tensor& t, double mean, double var, double mu4, const char* what) {
  Moments m = moments(t);
  double se_mean = std::sqrt(var / m.n);
  double se_var = std::sqrt((mu4 - var * var) / m.n);
  EXPECT_NEAR(m.mean, mean, 5 * se_mean) << what;
  EXPECT_NEAR(m.var, var, 5 * se_var) << what;
}
void expect_normal(const Tensor& t, double mean, double std, const char* what) {
  double var = std * std;
  expect_moments(t, mean, var, 3 * var * var, what);
}
void expect_uniform(const Tensor& t, double bound, const char* what) {
  double var = bound * bound / 3, mu4 = std::pow(bound, 4) / 5;
  expect_moments(t, 0, var, mu4, what);
  auto v = t.to_vector<double>();
  double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
  EXPECT_GE(lo, -bound * (1 + 1e-7)) << what;
  EXPECT_LE(hi, bound * (1 + 1e-7)) << what;
  // With 1e6 draws the extremes come within 1e-4 of the bounds.
  EXPECT_LT(lo, -bound * (1 - 1e-4)) << what;
  EXPECT_GT(hi, bound * (1 - 1e-4)) << what;
}

Tensor draw(const std::string& spec, Shape shape = {1000, 800}, uint64_t seed = 1) {
  Tensor w = Tensor::zeros(shape);
  Generator gen(seed);
  init_tensor(w, parse_init_string(spec), gen);
  return w;
}

// Weight [1000, 800]: fan_in 800, fan_out 1000.
TEST(Init, HeNormalAndUniform) {
  expect_normal(draw("he_normal"), 0, std::sqrt(2.0 / 800), "he_normal default");
  expect_normal(draw("he_normal:mode=fan_out,factor=1"), 0, std::sqrt(1.0 / 1000), "fan_out");
  expect_normal(draw("he_normal:nonlinearity=tanh"), 0, 5.0 / 3 / std::sqrt(800.0), "tanh gain");
  expect_uniform(draw("he_uniform"), std::sqrt(6.0 / 800), "he_uniform");
  expect_uniform(draw("he_uniform:factor=3,mode=fan_out"), std::sqrt(9.0 / 1000), "he_uniform f3");
}

TEST(Init, HeFactorRule) {
  EXPECT_EQ(parse_init("he_normal").he_factor(), 2.0);  // exactly: the same draws as factor=2
  EXPECT_EQ(parse_init("he_normal", {{"nonlinearity", "tanh"}}).he_factor(), 25.0 / 9);
  EXPECT_NEAR(parse_init("he_normal", {{"nonlinearity", "leaky_relu"}, {"negative_slope", "0.2"}})
                  .he_factor(),
              2.0 / 1.04, 1e-12);
  EXPECT_DOUBLE_EQ(parse_init("he_uniform", {{"nonlinearity", "sigmoid"}}).he_factor(), 1.0);
  EXPECT_DOUBLE_EQ(parse_init("he_uniform", {{"nonlinearity", "linear"}}).he_factor(), 1.0);
  // An explicit factor wins.
  EXPECT_DOUBLE_EQ(
      parse_init("he_normal", {{"nonlinearity", "tanh"}, {"factor", "1.5"}}).he_factor(), 1.5);
  // The default and the factor written out draw the same weights, bit for bit; draws() says so.
  for (const char* spec : {"he_normal:factor=2", "he_normal:nonlinearity=relu"}) {
    EXPECT_EQ(draw("he_normal", {300, 200}).to_vector<float>(),
              draw(spec, {300, 200}).to_vector<float>())
        << spec;
    EXPECT_EQ(parse_init_string(spec).draws(), parse_init_string("he_normal").draws()) << spec;
  }
  EXPECT_NE(parse_init_string("he_normal:factor=2.5").draws(),
            parse_init_string("he_normal").draws());
  EXPECT_EQ(parse_init_string("orthogonal:gain=1.0").draws(),
            parse_init_string("orthogonal").draws());
  EXPECT_NE(parse_init_string("normal:bias=torch").draws(), parse_init_string("normal").draws());
}

TEST(Init, XavierNormalUniformAndNormal) {
  expect_normal(draw("xavier_normal"), 0, std::sqrt(2.0 / 1800), "xavier_normal");
  expect_normal(draw("xavier_normal:gain=2"), 0, 2 * std::sqrt(2.0 / 1800), "xavier gain");
  expect_uniform(draw("xavier_uniform"), std::sqrt(6.0 / 1800), "xavier_uniform");
  expect_uniform(draw("xavier_uniform:gain=0.5"), 0.5 * std::sqrt(6.0 / 1800), "xavier_u gain");
  expect_normal(draw("normal:mean=0.3,std=0.02"), 0.3, 0.02, "normal");
  auto z = draw("zero").to_vector<float>();
  EXPECT_TRUE(std::all_of(z.begin(), z.end(), [](float v) { return v == 0; }));
}

void expect_truncated(const std::string& spec, double mu, double sigma, double a, double b) {
  Tensor t = draw(spec);
  auto v = t.to_vector<double>();
  for (double x : v) {
    ASSERT_GE(x, a) << spec;
    ASSERT_LE(x, b) << spec;
  }
  auto pdf = [](double x) { return std::exp(-x * x / 2) / std::sqrt(2 * M_PI); };
  double al = (a - mu) / sigma, be = (b - mu) / sigma;
  double Z = normal_cdf(be) - normal_cdf(al);
  double d = (pdf(al) - pdf(be)) / Z;
  double mean = mu + sigma * d;
  double var = sigma * sigma * (1 + (al * pdf(al) - be * pdf(be)) / Z - d * d);
  // The variance's standard error uses the sample fourth moment (no simple closed form).
  Moments m = moments(t);
  EXPECT_NEAR(m.mean, mean, 5 * std::sqrt(var / m.n)) << spec;
  EXPECT_NEAR(m.var, var, 5 * std::sqrt((m.m4 - var * var) / m.n)) << spec;
}

TEST(Init, TruncNormalMatchesClosedForm) {
  expect_truncated("trunc_normal", 0, 1, -2, 2);
  expect_truncated("trunc_normal:mean=0.5,std=1,a=-1,b=2", 0.5, 1, -1, 2);
  expect_truncated("trunc_normal:mean=0,std=0.5,a=1.5,b=2.5", 0, 0.5, 1.5, 2.5);  // far tail
  expect_truncated("trunc_normal:mean=0,std=1,a=-6,b=-4", 0, 1, -6, -4);
}

TEST(Init, NormalIcdfInvertsCdf) {
  // Upper-tail round trips lose digits in the CDF itself (1 - p rounds), so stop at 3.
  for (double x : {-8.0, -5.0, -2.5, -1.0, -0.1, 0.0, 0.3, 1.7, 3.0})
    EXPECT_NEAR(normal_icdf(normal_cdf(x)), x, 1e-9 * std::max(1.0, std::abs(x))) << x;
}

// W W^T (rows <= cols) or W^T W (rows > cols) must be gain^2 I.
void expect_orthogonal(const Tensor& w, double gain) {
  int64_t r = w.shape()[0], c = w.shape()[1];
  auto v = w.to_vector<double>();
  bool wide = r <= c;
  int64_t k = wide ? r : c, len = wide ? c : r;
  double worst = 0;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double dot = 0;
      for (int64_t t = 0; t < len; ++t)
        dot += wide ? v[i * c + t] * v[j * c + t] : v[t * c + i] * v[t * c + j];
      worst = std::max(worst, std::abs(dot - (i == j ? gain * gain : 0.0)));
    }
  EXPECT_LT(worst, 1e-5) << shape_str(w.shape());
}

TEST(Init, OrthogonalRowsAndColumns) {
  expect_orthogonal(draw("orthogonal", {256, 512}), 1.0);
  expect_orthogonal(draw("orthogonal:gain=1.5", {384, 200}), 1.5);
  expect_orthogonal(draw("orthogonal", {64, 64}), 1.0);
  Tensor w3 = draw("orthogonal", {8, 3, 5});  // conv-like: rows 8, cols 15
  expect_orthogonal(w3.reshape({8, 15}), 1.0);
}

TEST(Init, OrthogonalMatchesTorchQrWithSignCorrection) {
  GL_REQUIRE_TORCH();
  // One Python run for both a wide and a tall weight: torch.linalg.qr of the same Gaussian
  // (regenerated from the same seed), with orthogonal_'s sign correction and gain.
  std::vector<Shape> shapes{{6, 9}, {9, 6}};
  std::vector<std::vector<double>> ours;
  std::string code = "import torch\n";
  for (const Shape& shape : shapes) {
    Tensor w = Tensor::zeros(shape, DType::f64);
    Generator gen(17), same(17);
    init_tensor(w, parse_init("orthogonal", {{"gain", "2"}}), gen);
    ours.push_back(w.to_vector<double>());
    Tensor g = Tensor::randn(shape, same, DType::f64);  // the Gaussian orthogonal drew
    code += fmt::format(R"(
g = torch.tensor({g}, dtype=torch.float64).reshape({r}, {c})
rows, cols = g.shape
if rows < cols:
    g = g.t()
q, r = torch.linalg.qr(g)
q *= torch.diag(r, 0).sign()
if rows < cols:
    q = q.t()
print(' '.join(repr(v) for v in (2 * q).flatten().tolist()))
)",
                        fmt::arg("g", testing::py_list(g.to_vector<double>())),
                        fmt::arg("r", shape[0]), fmt::arg("c", shape[1]));
  }
  std::string out = testing::run_python(code);
  auto nl = out.find('\n');
  std::vector<std::vector<double>> theirs{testing::parse_numbers(out.substr(0, nl)),
                                          testing::parse_numbers(out.substr(nl + 1))};
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    ASSERT_EQ(theirs[k].size(), ours[k].size());
    for (std::size_t i = 0; i < ours[k].size(); ++i)
      EXPECT_NEAR(ours[k][i], theirs[k][i], 1e-12) << shape_str(shapes[k]) << " " << i;
  }
}

TEST(Init, SeedFixesWeights) {
  EXPECT_EQ(draw("he_normal", {50, 40}, 5).to_vector<float>(),
            draw("he_normal", {50, 40}, 5).to_vector<float>());
  EXPECT_NE(draw("he_normal", {50, 40}, 5).to_vector<float>(),
            draw("he_normal", {50, 40}, 6).to_vector<float>());
  EXPECT_EQ(draw("orthogonal", {20, 30}, 5).to_vector<float>(),
            draw("orthogonal", {20, 30}, 5).to_vector<float>());
}

TEST(Init, InitModelSetsBiasesAndBatchNorm) {
  MlpConfig c = MlpConfig::uniform(20, 2, 30, 4);
  c.batchnorm = true;
  c.bias_before_batchnorm = true;  // so the hidden Linears have biases to initialize
  MLP mlp(c);
  Generator gen(3);
  for (auto& [k, t] : mlp.state_dict())
    if (is_floating(t.dtype())) t.fill_(7);
  init_model(mlp, parse_init("he_uniform"), gen);
  for (auto& tap : mlp.taps()) {
    for (float b : tap.linear->bias().to_vector<float>()) EXPECT_EQ(b, 0.0f);
    for (float w : tap.batchnorm->weight().to_vector<float>()) EXPECT_EQ(w, 1.0f);
    for (float b : tap.batchnorm->bias().to_vector<float>()) EXPECT_EQ(b, 0.0f);
    for (float v : tap.batchnorm->running_var().to_vector<float>()) EXPECT_EQ(v, 1.0f);
    double bound = std::sqrt(6.0 / double(tap.linear->in_features()));
    for (float w : tap.linear->weight().to_vector<float>()) EXPECT_LE(std::abs(w), bound);
  }
  init_model(mlp, parse_init("zero", {{"bias", "torch"}}), gen);
  auto b = mlp.output_layer().bias().to_vector<float>();
  double bound = 1 / std::sqrt(30.0);
  EXPECT_TRUE(std::any_of(b.begin(), b.end(), [](float v) { return v != 0; }));
  for (float v : b) EXPECT_LE(std::abs(v), bound);
}

TEST(Init, ParserErrors) {
  auto expect_error = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { parse_init("kaiming"); }, "unknown init 'kaiming'");
  expect_error([] { parse_init("xavier_normal", {{"std", "1"}}); }, "unknown key 'std'");
  expect_error([] { parse_init("he_normal", {{"mode", "fan_avg"}}); }, "mode='fan_avg'");
  expect_error([] { parse_init("he_normal", {{"nonlinearity", "gelu"}}); }, "nonlinearity='gelu'");
  expect_error([] { parse_init("normal", {{"std", "abc"}}); }, "std='abc' is not a finite number");
  expect_error([] { parse_init("normal", {{"std", "-1"}}); }, "std=-1 must be positive");
  expect_error(
      [] {
        parse_init("trunc_normal", {{"a", "2"}, {"b", "1"}});
      },
      "a=2 must be below b=1");
  expect_error([] { parse_init_string("normal:std"); }, "not key=value");
  InitSpec s = parse_init_string("trunc_normal:mean=0.1,std=0.2,a=-0.3,b=0.4");
  EXPECT_EQ(s.kind, InitKind::trunc_normal);
  EXPECT_DOUBLE_EQ(s.mean, 0.1);
  EXPECT_DOUBLE_EQ(s.std, 0.2);
  EXPECT_DOUBLE_EQ(s.a, -0.3);
  EXPECT_DOUBLE_EQ(s.b, 0.4);
  EXPECT_EQ(s.str(), "trunc_normal(mean=0.1, std=0.2, a=-0.3, b=0.4, bias=zero)");
}

}  // namespace
}  // namespace gl::models
