// Winograd F(2x2, 3x3) to F(5x5, 3x3) convolution (kernels/cpu/winograd.h) against
// the f64 im2col path and the 7-loop reference: forward, input gradient, weight gradient and bias
// gradient, over odd and even sizes, paddings 0 to 2, channel counts that are not multiples of
// the vector width, images large enough to be cut into bands of tile rows, and batches whose
// chunks start and end inside images. Every instruction set, every tile size. Results must not
// depend on the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/winograd.h"
#include "kernels/kernels.h"
#include "tests/kernels/conv_test_util.h"

using namespace gl::kernels::cpu;
using gl::testing::random_floats;
using gl::testing::rel_err;
using gl::testing::widen;

namespace {

struct Shape {
  int64_t n, c, h, w, oc, pad_h, pad_w;
};

ConvGeometry geometry(const Shape& s) {
  ConvGeometry g;
  g.n = s.n, g.c = s.c, g.h = s.h, g.w = s.w, g.oc = s.oc, g.kh = 3, g.kw = 3;
  g.pad_h = s.pad_h, g.pad_w = s.pad_w;
  return g;
}

const std::vector<Shape> kShapes = {
    {64, 32, 14, 14, 64, 1, 1},  // the default CNN's second layer
    {3, 5, 7, 9, 6, 0, 0},       // odd sizes: partial tiles on both axes
    {2, 17, 8, 5, 19, 2, 2},     // channels off the vector width, padding 2
    {2, 3, 6, 6, 4, 1, 0},       // mixed padding
    {1, 8, 100, 40, 12, 1, 1},   // one image larger than a chunk: bands of tile rows
    {5, 20, 3, 3, 9, 1, 1},      // 3x3 images, several per chunk
    {2, 4, 3, 4, 3, 0, 0},       // one output row
};

}  // namespace

TEST(Winograd, AppliesOnlyToThreeByThreeStrideOneUngrouped) {
  ConvGeometry g = geometry({1, 4, 8, 8, 4, 1, 1});
  EXPECT_TRUE(winograd_applies(g));
  ConvGeometry s = g;
  s.stride_h = 2;
  EXPECT_FALSE(winograd_applies(s));
  ConvGeometry d = g;
  d.dil_w = 2;
  EXPECT_FALSE(winograd_applies(d));
  ConvGeometry k = g;
  k.kh = 5;
  EXPECT_FALSE(winograd_applies(k));
  ConvGeometry gr = g;
  gr.groups = 2;
  EXPECT_FALSE(winograd_applies(gr));
  ConvGeometry p = g;
  p.pad_h = 3;
  EXPECT_FALSE(winograd_applies(p));
  // The first layer of a CNN (one input channel) stays on im2col.
  EXPECT_FALSE(winograd_preferred(geometry({64, 1, 28, 28, 32, 1, 1})));
  EXPECT_TRUE(winograd_preferred(geometry({64, 32, 14, 14, 64, 1, 1})));
}

// Runs f(isa, tile) under every instruction set this CPU has (the transforms have AVX-512, AVX2
// and plain builds) and every tile size, restoring automatic selection.
void for_each_isa(const std::function<void(const char*, int)>& f) {
  for (const char* isa : {"avx512", "avx2", "scalar"}) {
    try {
      set_isa(isa);
    } catch (const std::invalid_argument&) {
      continue;
    }
    for (int tile : {2, 3, 4, 5}) {
      set_winograd_tile(tile);
      f(isa, tile);
    }
  }
  set_winograd_tile(0);
  set_isa("auto");
}

// F(5x5)'s transforms scale by up to 16, F(4x4)'s by up to 5 and 8 before the products and back,
// F(3x3)'s by up to 4: a few times F(2x2)'s rounding error (all far below what training notices).
double tolerance(int tile) {
  return tile == 5 ? 4e-5 : tile == 4 ? 2e-5 : tile == 3 ? 1e-5 : 2e-6;
}

TEST(Winograd, ForwardMatchesTheSevenLoopReference) {
  for_each_isa([](const char* isa, int tile) {
    std::mt19937 rng(1);
    for (const Shape& s : kShapes) {
      const ConvGeometry g = geometry(s);
      const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
      const auto w = random_floats(std::size_t(g.oc * g.c * 9), rng);
      const auto b = random_floats(std::size_t(g.oc), rng);
      const std::size_t out_size = std::size_t(g.n * g.oc * g.out_h() * g.out_w());
      std::vector<double> want(out_size);
      conv2d_reference(g, widen(x).data(), widen(w).data(), widen(b).data(), want.data());
      std::vector<float> got(out_size, NAN);
      winograd_conv2d_forward(g, x.data(), w.data(), b.data(), got.data());
      EXPECT_LT(rel_err(got, want), tolerance(tile))
          << "n=" << s.n << " c=" << s.c << " h=" << s.h << " w=" << s.w << " oc=" << s.oc
          << " pad=" << s.pad_h << " " << isa << " tile " << tile;
      conv2d_reference(g, widen(x).data(), widen(w).data(), nullptr, want.data());
      winograd_conv2d_forward(g, x.data(), w.data(), nullptr, got.data());
      EXPECT_LT(rel_err(got, want), tolerance(tile)) << "no bias, h=" << s.h << " " << isa;
    }
  });
}

TEST(Winograd, GradientsMatchTheF64Path) {
  for_each_isa([](const char* isa, int tile) {
    std::mt19937 rng(2);
    for (const Shape& s : kShapes) {
      const ConvGeometry g = geometry(s);
      const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
      const auto w = random_floats(std::size_t(g.oc * g.c * 9), rng);
      const auto dy = random_floats(std::size_t(g.n * g.oc * g.out_h() * g.out_w()), rng);
      std::vector<double> dx(x.size()), dw(w.size()), db(std::size_t(g.oc));
      set_conv_algo(ConvAlgo::per_image);
      conv2d_backward(g, widen(x).data(), widen(w).data(), widen(dy).data(), dx.data(), dw.data(),
                      db.data());
      set_conv_algo(ConvAlgo::automatic);
      std::vector<float> gx(x.size(), NAN), gw(w.size(), NAN), gb(db.size(), NAN);
      winograd_conv2d_backward(g, x.data(), w.data(), dy.data(), gx.data(), gw.data(), gb.data());
      EXPECT_LT(rel_err(gx, dx), tolerance(tile))
          << "dx h=" << s.h << " w=" << s.w << " pad=" << s.pad_h << " " << isa << " tile " << tile;
      EXPECT_LT(rel_err(gw, dw), tolerance(tile))
          << "dw h=" << s.h << " w=" << s.w << " pad=" << s.pad_h << " " << isa << " tile " << tile;
      EXPECT_LT(rel_err(gb, db), 1e-6) << "db h=" << s.h;
      // Each output may be asked for alone (the input gradient alone runs as a forward pass
      // over dY with the flipped filters, not through the weight pass's tiles).
      std::vector<float> only_x(x.size(), NAN);
      winograd_conv2d_backward(g, x.data(), w.data(), dy.data(), only_x.data(), nullptr, nullptr);
      EXPECT_LT(rel_err(only_x, dx), tolerance(tile)) << "dx alone, h=" << s.h << " " << isa;
      std::vector<float> only_w(w.size(), NAN);
      winograd_conv2d_backward(g, x.data(), w.data(), dy.data(), nullptr, only_w.data(), nullptr);
      EXPECT_EQ(only_w, gw) << isa;
      // The bias gradient alone (without the weight pass that also sums it).
      std::vector<float> only_b(db.size(), NAN);
      winograd_conv2d_backward(g, x.data(), w.data(), dy.data(), nullptr, nullptr, only_b.data());
      EXPECT_LT(rel_err(only_b, db), 1e-6) << "db alone, h=" << s.h;
    }
  });
}

TEST(Winograd, AnEmptyBatchGivesZeroGradients) {
  const ConvGeometry g = geometry({0, 8, 6, 6, 8, 1, 1});
  std::vector<float> w(8 * 8 * 9, 1.0f), dw(w.size(), NAN), db(8, NAN);
  winograd_conv2d_forward(g, nullptr, w.data(), nullptr, nullptr);
  winograd_conv2d_backward(g, nullptr, w.data(), nullptr, nullptr, dw.data(), db.data());
  EXPECT_EQ(dw, std::vector<float>(w.size(), 0.0f));
  EXPECT_EQ(db, std::vector<float>(8, 0.0f));
}

TEST(Winograd, ResultsDoNotDependOnTheThreadCount) {
  for (int tile : {2, 3, 4, 5}) {
    set_winograd_tile(tile);
    std::mt19937 rng(3);
    const ConvGeometry g = geometry({37, 24, 14, 14, 40, 1, 1});
    const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
    const auto w = random_floats(std::size_t(g.oc * g.c * 9), rng);
    const auto dy = random_floats(std::size_t(g.n * g.oc * 14 * 14), rng);
    auto run = [&](int threads) {
      return gl::testing::with_threads(threads, [&] {
        std::vector<float> y(dy.size()), gx(x.size()), gw(w.size()), gb(std::size_t(g.oc));
        winograd_conv2d_forward(g, x.data(), w.data(), nullptr, y.data());
        winograd_conv2d_backward(g, x.data(), w.data(), dy.data(), gx.data(), gw.data(), gb.data());
        return std::vector<std::vector<float>>{y, gx, gw, gb};
      });
    };
    const auto one = run(1);
    for (int t : {2, 3, 5}) EXPECT_EQ(run(t), one) << t << " threads, tile " << tile;
  }
  set_winograd_tile(0);
}

TEST(Winograd, TileChoice) {
  // The fewest products weighted 1, 1.12, 1.25 and 1.3 for F(2x2) to F(5x5): F(4x4) where the
  // output divides into 4x4 tiles (0.5625 of F(2x2)'s products; F(5x5) on 16 x 16 needs 0.77, on
  // 28 x 28 0.5625 too, on 7 x 7 0.77), F(5x5) on 14 x 14 (0.5625, F(3x3) 0.80, F(4x4) 0.73) and
  // 10 x 10 (0.49, F(4x4) 0.81), F(3x3) on 9 x 9 (0.56, F(5x5) 0.60 weighted 1.3 against 1.12),
  // F(2x2) for a single 2x2 tile.
  EXPECT_EQ(winograd_tile(geometry({64, 32, 16, 16, 64, 1, 1})), 4);
  EXPECT_EQ(winograd_tile(geometry({64, 64, 7, 7, 64, 1, 1})), 4);
  EXPECT_EQ(winograd_tile(geometry({32, 32, 28, 28, 32, 1, 1})), 4);
  EXPECT_EQ(winograd_tile(geometry({64, 32, 14, 14, 64, 1, 1})), 5);
  EXPECT_EQ(winograd_tile(geometry({64, 32, 10, 10, 64, 1, 1})), 5);
  EXPECT_EQ(winograd_tile(geometry({8, 16, 9, 9, 16, 1, 1})), 3);
  EXPECT_EQ(winograd_tile(geometry({8, 16, 12, 12, 16, 1, 1})), 4);
  EXPECT_EQ(winograd_tile(geometry({8, 16, 2, 2, 16, 1, 1})), 2);
  EXPECT_EQ(winograd_tile(geometry({8, 16, 4, 4, 16, 0, 0})), 2);
  set_winograd_tile(2);
  EXPECT_EQ(winograd_tile(geometry({64, 32, 16, 16, 64, 1, 1})), 2);
  set_winograd_tile(0);
  EXPECT_THROW(set_winograd_tile(6), std::invalid_argument);
  EXPECT_THROW(set_winograd_tile(1), std::invalid_argument);
  EXPECT_EQ(winograd_tile(geometry({64, 32, 16, 16, 64, 1, 1})), 4);
}
