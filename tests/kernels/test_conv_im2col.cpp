// The im2col convolution paths (per image and batched) where the padding is wider than the
// input, so that some taps miss every output: forward, input, weight and bias gradients against
// naive loops in f64. Such a tap once filled past the end of its im2col row.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/cpu/conv.h"
#include "tests/kernels/conv_test_util.h"

using namespace gl::kernels::cpu;
using gl::testing::random_floats;
using gl::testing::rel_err;
using gl::testing::widen;

namespace {

// The gradients of sum(out * dy) by direct summation over every (output, tap) pair.
struct NaiveGrads {
  std::vector<double> dx, dw, db;
};
NaiveGrads naive_backward(const ConvGeometry& g, const std::vector<double>& x,
                          const std::vector<double>& w, const std::vector<double>& dy) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  NaiveGrads r{std::vector<double>(x.size()), std::vector<double>(w.size()),
               std::vector<double>(std::size_t(g.oc))};
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.oc; ++o)
      for (int64_t p = 0; p < oh; ++p)
        for (int64_t q = 0; q < ow; ++q) {
          const double d = dy[std::size_t(((n * g.oc + o) * oh + p) * ow + q)];
          r.db[std::size_t(o)] += d;
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t y = p * g.stride_h - g.pad_h + i * g.dil_h,
                              xx = q * g.stride_w - g.pad_w + j * g.dil_w;
                if (y < 0 || y >= g.h || xx < 0 || xx >= g.w) continue;
                const std::size_t xi = std::size_t(((n * g.c + c) * g.h + y) * g.w + xx),
                                  wi = std::size_t(((o * g.c + c) * g.kh + i) * g.kw + j);
                r.dx[xi] += d * w[wi];
                r.dw[wi] += d * x[xi];
              }
        }
  return r;
}

}  // namespace

TEST(ConvIm2col, PaddingWiderThanTheInput) {
  std::mt19937 rng(11);
  struct Case {
    int64_t n, c, h, w, oc, k, pad, stride;
  };
  // A 31x31 kernel with "same" padding on 14x14 (the CNN's --kernel 31 second stage), a 9x9
  // kernel padded by 7 on 6x5, and a strided one.
  const std::vector<Case> cases = {
      {2, 2, 14, 14, 3, 31, 15, 1}, {2, 2, 6, 5, 3, 9, 7, 1}, {1, 3, 4, 7, 2, 5, 4, 2}};
  const ConvAlgo saved = conv_algo();
  for (ConvAlgo algo : {ConvAlgo::per_image, ConvAlgo::batched}) {
    set_conv_algo(algo);
    for (const Case& s : cases) {
      SCOPED_TRACE("k=" + std::to_string(s.k) + " pad=" + std::to_string(s.pad) +
                   " algo=" + std::to_string(int(algo)));
      ConvGeometry g;
      g.n = s.n, g.c = s.c, g.h = s.h, g.w = s.w, g.oc = s.oc, g.kh = g.kw = s.k;
      g.pad_h = g.pad_w = s.pad;
      g.stride_h = g.stride_w = s.stride;
      const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
      const auto w = random_floats(std::size_t(g.oc * g.c * g.kh * g.kw), rng);
      const auto b = random_floats(std::size_t(g.oc), rng);
      const std::size_t out_size = std::size_t(g.n * g.oc * g.out_h() * g.out_w());
      std::vector<double> want(out_size);
      conv2d_reference(g, widen(x).data(), widen(w).data(), widen(b).data(), want.data());
      std::vector<float> got(out_size, NAN);
      conv2d_forward(g, x.data(), w.data(), b.data(), got.data());
      EXPECT_LT(rel_err(got, want), 1e-5);

      const auto dy = random_floats(out_size, rng);
      const NaiveGrads ref = naive_backward(g, widen(x), widen(w), widen(dy));
      std::vector<float> dx(x.size(), NAN), dw(w.size(), NAN), db(b.size(), NAN);
      conv2d_backward(g, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
      EXPECT_LT(rel_err(dx, ref.dx), 1e-5);
      EXPECT_LT(rel_err(dw, ref.dw), 1e-5);
      EXPECT_LT(rel_err(db, ref.db), 1e-5);
    }
  }
  set_conv_algo(saved);
}

// The per-image path sums the weight gradient in up to 16 chunks of images. Batch sizes that do
// not divide into 16 equal chunks (17, 40, 100) once left chunks without an image, whose partial
// sums (stale scratch from the previous call) were added in; the empty batch gives zeros.
TEST(ConvIm2col, WeightGradientOfEveryBatchSize) {
  std::mt19937 rng(12);
  const ConvAlgo saved = conv_algo();
  set_conv_algo(ConvAlgo::per_image);
  auto geometry = [](int64_t n, int64_t c) {
    ConvGeometry g;
    g.n = n, g.c = c, g.h = 6, g.w = 6, g.oc = 3, g.kh = g.kw = 3;
    g.pad_h = g.pad_w = 1;
    return g;
  };
  auto check = [&](const ConvGeometry& g) {
    SCOPED_TRACE("n=" + std::to_string(g.n) + " c=" + std::to_string(g.c));
    const auto x = random_floats(std::size_t(g.n * g.c * g.h * g.w), rng);
    const auto w = random_floats(std::size_t(g.oc * g.c * 9), rng);
    const auto dy = random_floats(std::size_t(g.n * g.oc * g.out_h() * g.out_w()), rng);
    const NaiveGrads ref = naive_backward(g, widen(x), widen(w), widen(dy));
    std::vector<float> dx(x.size(), NAN), dw(w.size(), NAN), db(std::size_t(g.oc), NAN);
    conv2d_backward(g, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    if (g.n == 0) {
      for (float v : dw) EXPECT_EQ(v, 0.0f);
      for (float v : db) EXPECT_EQ(v, 0.0f);
      return;
    }
    EXPECT_LT(rel_err(dx, ref.dx), 1e-5);
    EXPECT_LT(rel_err(dw, ref.dw), 1e-5);
    EXPECT_LT(rel_err(db, ref.db), 1e-5);
  };
  for (int64_t n : {17, 40, 100, 1, 16, 0}) {
    check(geometry(64, 8));  // fills the scratch the next call's chunks use
    check(geometry(n, 8));
  }
  set_conv_algo(saved);
}
