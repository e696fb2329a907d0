// The direct AVX-512 convolution for few input channels (kernels/cpu/conv_direct.h) against the
// 7-loop reference and the f64 im2col path: forward, weight and bias gradients (the weight
// gradient's flat kernel for "same" padding and its row kernel for the others), for 1 to 4
// input channels, 3x3 and 5x5 kernels, paddings, widths that end mid-vector and output
// channel counts that are not whole blocks. Results must not depend on the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_direct.h"
#include "tests/kernels/conv_test_util.h"

using namespace gl::kernels::cpu;
using gl::testing::random_floats;
using gl::testing::rel_err;
using gl::testing::widen;

namespace {

struct Shape {
  int64_t n, c, h, w, oc, k, pad;
};
ConvGeometry geometry(const Shape& s) {
  ConvGeometry g;
  g.n = s.n, g.c = s.c, g.h = s.h, g.w = s.w, g.oc = s.oc, g.kh = s.k, g.kw = s.k;
  g.pad_h = g.pad_w = s.pad;
  return g;
}
const std::vector<Shape> kShapes = {
    {64, 1, 28, 28, 32, 3, 1},  // the default CNN's first layer
    {3, 3, 32, 32, 6, 3, 1},    // CIFAR-like, oc not a whole block of 8
    {2, 2, 9, 37, 5, 3, 0},     // widths ending mid-vector, one odd output channel
    {3, 2, 9, 37, 5, 3, 1},     // the same with "same" padding: planes ending mid-vector
    {2, 3, 13, 6, 4, 5, 2},     // "same" 5x5: 75 taps, groups of 9 and a last of 3
    {2, 4, 11, 20, 3, 5, 2},    // 5x5
    {1, 1, 5, 5, 1, 5, 0},      // a single output
};

bool have_direct() {
  return direct_conv_preferred(geometry(kShapes[0]));
}

}  // namespace

TEST(ConvDirect, ForwardMatchesTheSevenLoopReference) {
  if (!have_direct()) GTEST_SKIP() << "the direct kernel needs AVX-512; this CPU has none";
  std::mt19937 rng(4);
  for (const Shape& s : kShapes) {
    const ConvGeometry g = geometry(s);
    ASSERT_TRUE(direct_conv_preferred(g)) << "c=" << s.c << " k=" << s.k;
    const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
    const auto w = random_floats(std::size_t(g.oc * g.c * g.kh * g.kw), rng);
    const auto b = random_floats(std::size_t(g.oc), rng);
    const std::size_t out_size = std::size_t(g.n * g.oc * g.out_h() * g.out_w());
    std::vector<double> want(out_size);
    conv2d_reference(g, widen(x).data(), widen(w).data(), widen(b).data(), want.data());
    std::vector<float> got(out_size, NAN);
    direct_conv2d_forward(g, x.data(), w.data(), b.data(), got.data());
    EXPECT_LT(rel_err(got, want), 1e-6) << "c=" << s.c << " w=" << s.w << " k=" << s.k;
    conv2d_reference(g, widen(x).data(), widen(w).data(), nullptr, want.data());
    direct_conv2d_forward(g, x.data(), w.data(), nullptr, got.data());
    EXPECT_LT(rel_err(got, want), 1e-6) << "no bias";
  }
}

TEST(ConvDirect, WeightAndBiasGradientsMatchTheF64Path) {
  if (!have_direct()) GTEST_SKIP() << "the direct kernel needs AVX-512; this CPU has none";
  std::mt19937 rng(5);
  for (const Shape& s : kShapes) {
    const ConvGeometry g = geometry(s);
    const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
    const auto w = random_floats(std::size_t(g.oc * g.c * g.kh * g.kw), rng);
    const auto dy = random_floats(std::size_t(g.n * g.oc * g.out_h() * g.out_w()), rng);
    std::vector<double> dw(w.size()), db(std::size_t(g.oc));
    conv2d_backward(g, widen(x).data(), widen(w).data(), widen(dy).data(), nullptr, dw.data(),
                    db.data());
    std::vector<float> gw(w.size(), NAN), gb(db.size(), NAN);
    direct_conv2d_weight_grad(g, x.data(), dy.data(), gw.data(), gb.data());
    EXPECT_LT(rel_err(gw, dw), 2e-6) << "dw c=" << s.c << " w=" << s.w << " k=" << s.k;
    EXPECT_LT(rel_err(gb, db), 1e-6) << "db c=" << s.c;
    std::vector<float> only_w(w.size(), NAN);
    direct_conv2d_weight_grad(g, x.data(), dy.data(), only_w.data(), nullptr);
    EXPECT_EQ(only_w, gw);
  }
}

TEST(ConvDirect, AnEmptyBatchGivesZeroGradients) {
  if (!have_direct()) GTEST_SKIP() << "the direct kernel needs AVX-512; this CPU has none";
  const ConvGeometry g = geometry({0, 1, 6, 6, 3, 3, 1});
  std::vector<float> dw(27, NAN), db(3, NAN);
  direct_conv2d_forward(g, nullptr, dw.data(), nullptr, nullptr);
  direct_conv2d_weight_grad(g, nullptr, nullptr, dw.data(), db.data());
  EXPECT_EQ(dw, std::vector<float>(27, 0.0f));
  EXPECT_EQ(db, std::vector<float>(3, 0.0f));
}

TEST(ConvDirect, ResultsDoNotDependOnTheThreadCount) {
  if (!have_direct()) GTEST_SKIP() << "the direct kernel needs AVX-512; this CPU has none";
  std::mt19937 rng(6);
  const ConvGeometry g = geometry({19, 3, 20, 21, 7, 3, 1});
  const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
  const auto w = random_floats(std::size_t(g.oc * g.c * 9), rng);
  const auto dy = random_floats(std::size_t(g.n * g.oc * g.out_h() * g.out_w()), rng);
  auto run = [&](int threads) {
    return gl::testing::with_threads(threads, [&] {
      std::vector<float> y(dy.size()), gw(w.size()), gb(std::size_t(g.oc));
      direct_conv2d_forward(g, x.data(), w.data(), nullptr, y.data());
      direct_conv2d_weight_grad(g, x.data(), dy.data(), gw.data(), gb.data());
      return std::vector<std::vector<float>>{y, gw, gb};
    });
  };
  const auto one = run(1);
  for (int t : {2, 3}) EXPECT_EQ(run(t), one) << t << " threads";
}
