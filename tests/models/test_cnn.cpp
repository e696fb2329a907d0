// test_cnn.cpp: Conv2d, pooling and BatchNorm2d modules and the CNN builder: PyTorch's
// nn.Sequential layout and state-dict keys, output shapes on 1x28x28 and 3x32x32 inputs, taps,
// initialization fans, gradients reaching every parameter, and one-line errors.
#include <gtest/gtest.h>

#include <cmath>

#include "models/cnn.h"
#include "models/init.h"
#include "tests/error_of.h"

using namespace gl;
using namespace gl::models;

using gl::testing::error_of;

TEST(Cnn, DefaultLayoutMatchesPyTorchSequential) {
  CnnConfig c;  // 1x28x28, channels 32,64, fc 128
  CNN cnn(c);
  auto sd = cnn.state_dict();
  std::map<std::string, Shape> shapes;
  for (auto& [k, v] : sd) shapes[k] = v.shape();
  // 0 conv, 1 relu, 2 pool, 3 conv, 4 relu, 5 pool, 6 flatten, 7 linear, 8 relu, 9 linear
  EXPECT_EQ(shapes.size(), 8u);
  EXPECT_EQ(shapes["0.weight"], (Shape{32, 1, 3, 3}));
  EXPECT_EQ(shapes["0.bias"], (Shape{32}));
  EXPECT_EQ(shapes["3.weight"], (Shape{64, 32, 3, 3}));
  EXPECT_EQ(shapes["7.weight"], (Shape{128, 64 * 7 * 7}));
  EXPECT_EQ(shapes["9.weight"], (Shape{10, 128}));
  EXPECT_EQ(cnn.size(), 10u);
  EXPECT_EQ(cnn[2].kind(), "MaxPool2d");
  EXPECT_EQ(cnn[6].kind(), "Flatten");
  ASSERT_EQ(cnn.taps().size(), 3u);
  EXPECT_TRUE(cnn.taps()[0].is_conv());
  EXPECT_EQ(cnn.taps()[1].units(), 64);
  EXPECT_EQ(cnn.taps()[1].fan_in(), 32 * 9);
  EXPECT_FALSE(cnn.taps()[2].is_conv());
  EXPECT_EQ(cnn.taps()[0].post_name, "1");
  EXPECT_EQ(&cnn.output_layer(), &cnn[9]);
}

// With batch norm the convs and hidden Linears it follows have no bias (PyTorch's bias=False),
// the classifier keeps its own; bias_before_batchnorm gives them one, as before that choice.
TEST(Cnn, NoBiasBeforeBatchNormUnlessKept) {
  CnnConfig c;  // 1x28x28
  c.channels = {4, 6};
  c.fc = {12, 8};
  c.batchnorm = true;
  auto shapes_of = [](const CNN& cnn) {
    std::vector<std::string> s;
    for (auto& [k, v] : cnn.named_parameters()) s.push_back(k + shape_str(v.shape()));
    return s;
  };
  // 0 conv, 1 bn, 2 relu, 3 pool, 4 conv, 5 bn, 6 relu, 7 pool, 8 flatten,
  // 9 linear, 10 bn, 11 relu, 12 linear, 13 bn, 14 relu, 15 linear
  CNN bn(c);
  EXPECT_EQ(
      shapes_of(bn),
      (std::vector<std::string>{
          "0.weight[4, 1, 3, 3]", "1.weight[4]", "1.bias[4]", "4.weight[6, 4, 3, 3]", "5.weight[6]",
          "5.bias[6]", "9.weight[12, 294]", "10.weight[12]", "10.bias[12]", "12.weight[8, 12]",
          "13.weight[8]", "13.bias[8]", "15.weight[10, 8]", "15.bias[10]"}));
  ASSERT_EQ(bn.taps().size(), 4u);
  for (const LayerTap& tap : bn.taps()) EXPECT_FALSE(tap.bias().defined()) << tap.layer;
  EXPECT_NE(bn[0].extra_repr().find("bias=False"), std::string::npos) << bn[0].extra_repr();
  EXPECT_TRUE(bn.output_layer().bias().defined());
  // The model still trains every parameter it has.
  Generator g(5);
  init_model(bn, parse_init("he_normal", {}), g);
  sum(mul(bn.forward(Tensor::randn({3, 1, 28, 28}, g)), Tensor::randn({3, 10}, g))).backward();
  for (auto& [name, p] : bn.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;

  c.bias_before_batchnorm = true;
  CNN kept(c);
  for (const LayerTap& tap : kept.taps()) EXPECT_TRUE(tap.bias().defined()) << tap.layer;
  EXPECT_EQ(kept.num_parameters(), bn.num_parameters() + 4 + 6 + 12 + 8);
  EXPECT_EQ(kept.named_parameters()[1].first, "0.bias");

  // Without batch norm every layer has its bias.
  c.batchnorm = false;
  c.bias_before_batchnorm = false;
  CNN plain(c);
  for (const LayerTap& tap : plain.taps()) EXPECT_TRUE(tap.bias().defined()) << tap.layer;
}

TEST(Cnn, ForwardShapesAndGradientsFor1x28And3x32) {
  for (auto [ch, hw] : std::vector<std::pair<int64_t, int64_t>>{{1, 28}, {3, 32}}) {
    CnnConfig c;
    c.in_channels = ch;
    c.height = c.width = hw;
    c.channels = {4, 8};
    c.fc = {16};
    c.batchnorm = true;
    c.dropout = 0.2;
    CNN cnn(c);
    Generator g(1);
    init_model(cnn, parse_init("he_normal", {}), g);
    Generator dg(2);
    set_dropout_generator(cnn, &dg);
    EXPECT_EQ(cnn.config().feature_shape(), (std::array<int64_t, 3>{8, hw / 4, hw / 4}));
    Tensor x = Tensor::randn({5, ch, hw, hw}, g);
    Tensor y = cnn.forward(x);
    EXPECT_EQ(y.shape(), (Shape{5, 10}));
    sum(mul(y, y)).backward();
    for (auto& [name, p] : cnn.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      double s = 0;
      for (float v : p.grad().to_vector<float>()) s += std::fabs(v);
      EXPECT_GT(s, 0.0) << name;
    }
    // BatchNorm2d counted the batch and moved its running mean.
    auto& bn = dynamic_cast<BatchNorm2d&>(cnn[1]);
    EXPECT_EQ(bn.num_batches_tracked().item(), 1.0);
  }
}

TEST(Cnn, InitUsesConvFans) {
  CnnConfig c;
  c.channels = {64};
  c.fc = {};
  CNN cnn(c);
  Generator g(3);
  init_model(cnn, parse_init("he_uniform", {}), g);
  const Tensor& w = cnn.taps()[0].weight();  // fan_in = 1 * 3 * 3
  double bound = std::sqrt(6.0 / 9.0), mx = 0;
  for (float v : w.to_vector<float>()) mx = std::max(mx, double(std::fabs(v)));
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.8 * bound);
}

TEST(Cnn, EvalUsesRunningStatistics) {
  Generator g(4);
  BatchNorm2d bn(2);
  Tensor x = Tensor::randn({4, 2, 3, 3}, g, DType::f32, 1.0, 2.0);
  bn.forward(x);  // training: running stats move
  bn.eval();
  Tensor y = bn.forward(x);
  float rm = bn.running_mean().to_vector<float>()[0], rv = bn.running_var().to_vector<float>()[0];
  EXPECT_NEAR(y.at({1, 0, 2, 1}), (x.at({1, 0, 2, 1}) - rm) / std::sqrt(rv + 1e-5), 1e-5);
}

TEST(Cnn, BadShapesGiveOneLineErrors) {
  CnnConfig c;
  CNN cnn(c);
  Generator g(5);
  std::string e = error_of([&] { cnn.forward(Tensor::randn({2, 784}, g)); });
  EXPECT_NE(e.find("CNN: input f32[2, 784] must be [N, 1, 28, 28]"), std::string::npos) << e;
  Conv2d conv(3, 8);
  e = error_of([&] { conv.forward(Tensor::randn({1, 1, 8, 8}, g)); });
  EXPECT_NE(e.find("Conv2d(3 -> 8): input f32[1, 1, 8, 8] must be [N, 3, H, W]"), std::string::npos)
      << e;
  e = error_of([&] { conv.forward(Tensor::randn({1, 3, 2, 2}, g)); });
  EXPECT_NE(e.find("kernel 3x3 (dilated 3x3) is larger than the padded input 2x2"),
            std::string::npos)
      << e;
  Conv2dOptions o;
  o.groups = 2;
  e = error_of([&] { Conv2d(3, 8, o); });
  EXPECT_NE(e.find("channels are not divisible by groups 2"), std::string::npos) << e;
  CnnConfig small;
  small.height = small.width = 4;
  small.channels = {4, 4, 4};
  e = error_of([&] { CNN{small}; });
  EXPECT_NE(e.find("too small for conv stage 2"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

// Channel, fc and padding values whose sizes pass 64 bits: feature_shape once built trial
// layers (allocating their weights) and blamed a wrapped allocation on a too-small input, and
// the flattened fan-in wrapped to 0. Each is now named for what it is.
TEST(Cnn, SizesPastSixtyFourBitsNameTheStageAndTheShape) {
  const int64_t big = int64_t{1} << 62;
  CnnConfig c;
  c.channels = {big};
  // The feature shape is arithmetic alone: no weights are allocated for it.
  EXPECT_EQ(c.feature_shape(), (std::array<int64_t, 3>{big, 14, 14}));
  std::string e = error_of([&] { c.validate(); });
  EXPECT_NE(e.find("flattened features 4611686018427387904x14x14"), std::string::npos) << e;
  EXPECT_EQ(e.find("too small"), std::string::npos) << e;
  c.channels = {4, big};
  e = error_of([&] { CNN{c}; });
  EXPECT_NE(e.find("flattened features 4611686018427387904x7x7"), std::string::npos) << e;
  c.channels = {int64_t{1} << 58};  // weights [2^58, 1, 3, 3]: 9 * 2^58 elements, 4x more bytes
  c.pool = 0;
  c.height = c.width = 3;
  c.padding = 0;
  e = error_of([&] { CNN{c}; });
  EXPECT_NE(e.find("CNN: conv stage 0 (1 -> 288230376151711744 channels): shape "
                   "[288230376151711744, 1, 3, 3] of f32"),
            std::string::npos)
      << e;
  CnnConfig f;
  f.fc = {big};
  e = error_of([&] { CNN{f}; });
  EXPECT_NE(e.find("CNN: fc layer 0 (3136 -> 4611686018427387904): shape "
                   "[4611686018427387904, 3136]"),
            std::string::npos)
      << e;
  CnnConfig p;
  p.padding = big;
  e = error_of([&] { p.validate(); });
  EXPECT_NE(e.find("padding 4611686018427387904x4611686018427387904 on a 28x28 input give sizes "
                   "past 64 bits"),
            std::string::npos)
      << e;
  // The conv and pooling ops check their padded extents too.
  Generator g(1);
  Tensor x = Tensor::randn({1, 1, 4, 4}, g), w = Tensor::randn({1, 1, 3, 3}, g);
  Conv2dParams cp;
  cp.padding = {big, 0};
  e = error_of([&] { conv2d(x, w, Tensor(), cp); });
  EXPECT_NE(e.find("conv2d: the padded input height 4611686018427387904 * 2 + 4 passes 64 bits"),
            std::string::npos)
      << e;
  cp.padding = {0, 0};
  cp.dilation = {big, 1};
  e = error_of([&] { conv2d(x, w, Tensor(), cp); });
  EXPECT_NE(e.find("conv2d: the dilated kernel height"), std::string::npos) << e;
}
