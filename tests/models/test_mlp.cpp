// test_mlp.cpp: the MLP builder: layout, state-dict keys (against PyTorch's nn.Sequential
// where installed), forward against a hand-composed chain, taps and validation errors.
#include <gtest/gtest.h>

#include "engine/ops.h"
#include "models/init.h"
#include "models/mlp.h"
#include "tests/models/torch_oracle.h"

namespace gl::models {
namespace {

MlpConfig config_bn_dropout() {
  MlpConfig c;
  c.in_features = 12;
  c.hidden = {16, 8};
  c.activation = ActivationKind::leaky_relu;
  c.leaky_slope = 0.1;
  c.batchnorm = true;
  c.dropout = 0.25;
  c.num_classes = 3;
  return c;
}

TEST(MLP, LayoutAndKeys) {
  MLP mlp(config_bn_dropout());
  std::vector<std::string> kinds;
  for (std::size_t i = 0; i < mlp.size(); ++i) kinds.push_back(mlp[i].kind());
  EXPECT_EQ(kinds,
            (std::vector<std::string>{"Linear", "BatchNorm1d", "LeakyReLU", "Dropout", "Linear",
                                      "BatchNorm1d", "LeakyReLU", "Dropout", "Linear"}));
  std::vector<std::string> keys;
  for (auto& [k, t] : mlp.state_dict()) keys.push_back(k + shape_str(t.shape()));
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "0.weight[16, 12]", "1.weight[16]", "1.bias[16]", "1.running_mean[16]",
                      "1.running_var[16]", "1.num_batches_tracked[]", "4.weight[8, 16]",
                      "5.weight[8]", "5.bias[8]", "5.running_mean[8]", "5.running_var[8]",
                      "5.num_batches_tracked[]", "8.weight[3, 8]", "8.bias[3]"}));
  ASSERT_EQ(mlp.taps().size(), 2u);
  const LayerTap& t1 = mlp.taps()[1];
  EXPECT_EQ(t1.layer, 1);
  EXPECT_EQ(t1.linear, &mlp[4]);
  EXPECT_EQ(t1.pre, &mlp[5]);
  EXPECT_EQ(t1.post, &mlp[6]);
  EXPECT_EQ(t1.dropout, &mlp[7]);
  EXPECT_EQ(t1.pre_name, "5");
  EXPECT_EQ(t1.post_name, "6");
  EXPECT_EQ(&mlp.output_layer(), &mlp[8]);

  MLP plain(MlpConfig::uniform(5, 3, 4, 2, ActivationKind::tanh));
  EXPECT_EQ(plain.size(), 7u);  // (Linear, Tanh) x 3 + Linear
  EXPECT_EQ(plain.taps()[2].pre, &plain[4]);
  EXPECT_EQ(plain.taps()[2].batchnorm, nullptr);
  EXPECT_EQ(plain.taps()[2].dropout, nullptr);
  EXPECT_EQ(plain.num_parameters(), (5 * 4 + 4) + 2 * (4 * 4 + 4) + (4 * 2 + 2));
}

// A Linear that batch norm follows has no bias (batch norm subtracts the batch mean, so the bias
// could only add rounding noise), unless bias_before_batchnorm keeps it as runs made before
// that choice had it; every Linear without batch norm after it, the classifier included, has
// one.
TEST(MLP, NoBiasBeforeBatchNormUnlessKept) {
  auto param_names = [](const MLP& m) {
    std::vector<std::string> names;
    for (auto& [n, p] : m.named_parameters()) names.push_back(n);
    return names;
  };
  MlpConfig c = MlpConfig::uniform(6, 3, 5, 4);
  c.batchnorm = true;
  MLP bn(c);
  EXPECT_EQ(param_names(bn), (std::vector<std::string>{"0.weight", "1.weight", "1.bias", "3.weight",
                                                       "4.weight", "4.bias", "6.weight", "7.weight",
                                                       "7.bias", "9.weight", "9.bias"}));
  for (const LayerTap& tap : bn.taps()) {
    EXPECT_FALSE(tap.linear->bias().defined()) << tap.layer;
    EXPECT_FALSE(tap.bias().defined()) << tap.layer;
    EXPECT_NE(tap.linear->extra_repr().find("bias=False"), std::string::npos);
  }
  EXPECT_TRUE(bn.output_layer().bias().defined());
  // Per hidden layer: W, BatchNorm's weight and bias; then the classifier's W and b.
  EXPECT_EQ(bn.num_parameters(), (6 * 5 + 2 * 5) + 2 * (5 * 5 + 2 * 5) + (5 * 4 + 4));

  c.bias_before_batchnorm = true;
  MLP kept(c);
  EXPECT_EQ(param_names(kept),
            (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "3.weight",
                                      "3.bias", "4.weight", "4.bias", "6.weight", "6.bias",
                                      "7.weight", "7.bias", "9.weight", "9.bias"}));
  EXPECT_EQ(kept.num_parameters(), bn.num_parameters() + 3 * 5);

  // Without batch norm the setting changes nothing: every Linear has its bias.
  for (bool keep : {false, true}) {
    MlpConfig plain = MlpConfig::uniform(6, 3, 5, 4);
    plain.bias_before_batchnorm = keep;
    MLP m(plain);
    for (const LayerTap& tap : m.taps()) EXPECT_TRUE(tap.linear->bias().defined()) << keep;
    EXPECT_EQ(m.num_parameters(), (6 * 5 + 5) + 2 * (5 * 5 + 5) + (5 * 4 + 4)) << keep;
  }
}

void expect_close(const Tensor& a, const Tensor& b, double tol, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (std::size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(av[i], bv[i], tol) << what << " " << i;
}

TEST(MLP, ForwardEqualsHandChainAndTapsSeeIt) {
  MlpConfig c = config_bn_dropout();
  c.dropout = 0;
  MLP mlp(c);
  Generator gen(4);
  init_model(mlp, parse_init("he_normal"), gen);
  Tensor x = Tensor::randn({10, 12}, gen);
  std::vector<Tensor> pre, post;
  for (auto& tap : mlp.taps()) {
    tap.pre->add_forward_hook(
        [&](const Module&, const Tensor&, const Tensor& o) { pre.push_back(o); });
    tap.post->add_forward_hook(
        [&](const Module&, const Tensor&, const Tensor& o) { post.push_back(o); });
  }
  mlp.eval();
  Tensor y = mlp(x);
  ASSERT_EQ(y.shape(), (Shape{10, 3}));
  ASSERT_EQ(pre.size(), 2u);
  ASSERT_EQ(post.size(), 2u);
  // Eval chain by hand: linear, batchnorm with fresh statistics (mean 0, var 1), leaky relu.
  auto X = x.to_vector<double>();
  int64_t in = 12;
  for (std::size_t l = 0; l < 2; ++l) {
    auto& tap = mlp.taps()[l];
    ASSERT_FALSE(tap.linear->bias().defined()) << "batch norm follows it";
    auto W = tap.linear->weight().to_vector<double>();
    int64_t out = tap.linear->out_features();
    std::vector<double> z(std::size_t(10 * out)), a(z.size());
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < in; ++i) acc += X[r * in + i] * W[o * in + i];
        z[r * out + o] = acc / std::sqrt(1 + 1e-5);
        a[r * out + o] = z[r * out + o] > 0 ? z[r * out + o] : 0.1 * z[r * out + o];
      }
    expect_close(pre[l], Tensor::from_vector(z, {10, out}), 1e-4, "pre");
    expect_close(post[l], Tensor::from_vector(a, {10, out}), 1e-4, "post");
    X = a;
    in = out;
  }
  // Training with batchnorm and dropout runs and backpropagates to every parameter.
  MLP train_mlp(config_bn_dropout());
  init_model(train_mlp, parse_init("xavier_uniform"), gen);
  set_dropout_generator(train_mlp, &gen);
  sum(train_mlp(x)).backward();
  for (auto& [n, p] : train_mlp.named_parameters()) EXPECT_TRUE(p.grad().defined()) << n;
}

TEST(MLP, ValidationErrorsNameTheProblem) {
  auto expect_error = [](MlpConfig c, const std::string& needle) {
    try {
      MLP m(c);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  MlpConfig ok = MlpConfig::uniform(4, 2, 3, 2);
  EXPECT_NO_THROW(MLP{ok});
  MlpConfig c = ok;
  c.hidden = {3, 0};
  expect_error(c, "width 0");
  c = ok;
  c.hidden.clear();
  expect_error(c, "depth 0");
  c = ok;
  c.in_features = 0;
  expect_error(c, "in_features 0");
  c = ok;
  c.num_classes = 1;
  expect_error(c, "num_classes 1");
  c = ok;
  c.dropout = 1.0;
  expect_error(c, "dropout 1");
  c.dropout = -0.1;
  expect_error(c, "dropout -0.1");
  EXPECT_THROW(MlpConfig::uniform(4, 0, 3, 2), Error);
  EXPECT_THROW(MlpConfig::uniform(4, 2, 0, 2), Error);
}

TEST(MLP, KeysAndOutputsMatchTorchSequential) {
  GL_REQUIRE_TORCH();
  MlpConfig c = config_bn_dropout();
  MLP mlp(c, DType::f64);
  Generator gen(9);
  init_model(mlp, parse_init("he_uniform"), gen);
  // Give batchnorm non-trivial state so the comparison covers it.
  for (auto& [k, t] : mlp.state_dict())
    if (k.find("running_var") != std::string::npos)
      t.copy_(Tensor::rand(t.shape(), gen, DType::f64, 0.5, 2));
  mlp.eval();
  Tensor x = Tensor::randn({4, 12}, gen, DType::f64);
  auto y = mlp(x).to_vector<double>();
  std::string loads;
  for (auto& [k, t] : mlp.state_dict())
    loads += fmt::format("sd['{}'] = torch.tensor({}, dtype=torch.float64).reshape({})\n", k,
                         testing::py_list(t.to_vector<double>()),
                         t.dim() == 0 ? "()" : fmt::format("{},", fmt::join(t.shape(), ",")));
  std::string code =
      fmt::format(R"(
import torch
nn = torch.nn
m = nn.Sequential(nn.Linear(12, 16, bias=False), nn.BatchNorm1d(16), nn.LeakyReLU(0.1),
                  nn.Dropout(0.25), nn.Linear(16, 8, bias=False), nn.BatchNorm1d(8),
                  nn.LeakyReLU(0.1), nn.Dropout(0.25), nn.Linear(8, 3)).double()
print(' '.join(k + str(list(v.shape)) for k, v in m.state_dict().items()))
sd = {{}}
{loads}
sd = {{k: (v.long() if 'num_batches' in k else v) for k, v in sd.items()}}
m.load_state_dict(sd, strict=True)
m.eval()
x = torch.tensor({x}, dtype=torch.float64).reshape(4, 12)
print(' '.join(repr(v) for v in m(x).flatten().tolist()))
)",
                  fmt::arg("loads", loads), fmt::arg("x", testing::py_list(x.to_vector<double>())));
  std::string out = testing::run_python(code);
  auto nl = out.find('\n');
  std::string torch_keys = out.substr(0, nl);
  std::string ours;
  for (auto& [k, t] : mlp.state_dict())
    ours += (ours.empty() ? "" : " ") + k + fmt::format("[{}]", fmt::join(t.shape(), ", "));
  EXPECT_EQ(ours, torch_keys);
  auto theirs = testing::parse_numbers(out.substr(nl + 1));
  ASSERT_EQ(theirs.size(), y.size());
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], theirs[i], 1e-10) << i;
}

}  // namespace
}  // namespace gl::models
