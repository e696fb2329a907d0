// AVX-512 2x2 stride-2 max pooling (kernels/cpu/pool_avx512.h) against a naive window loop
// with the first-maximum and first-NaN rules: values, argmax indices and the backward scatter,
// on odd sizes (a column and row outside every window), widths over one vector, ties and NaNs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/pool_avx512.h"

using namespace gl::kernels::cpu;

namespace {

struct Naive {
  std::vector<float> out;
  std::vector<int32_t> arg;
  std::vector<float> dx;
};

Naive naive(int64_t planes, int64_t h, int64_t w, const std::vector<float>& x,
            const std::vector<float>& gy) {
  const int64_t oh = h / 2, ow = w / 2;
  Naive r{std::vector<float>(std::size_t(planes * oh * ow)),
          std::vector<int32_t>(std::size_t(planes * oh * ow)),
          std::vector<float>(std::size_t(planes * h * w), 0.0f)};
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t at = 2 * i * w + 2 * j;
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t b = 0; b < 2; ++b) {
            const int64_t k = (2 * i + a) * w + 2 * j + b;
            const float v = x[std::size_t(p * h * w + k)];
            if (v > best || (std::isnan(v) && !std::isnan(best))) best = v, at = k;
          }
        const std::size_t o = std::size_t((p * oh + i) * ow + j);
        r.out[o] = best;
        r.arg[o] = int32_t(at);
        r.dx[std::size_t(p * h * w + at)] += gy[o];
      }
  return r;
}

}  // namespace

TEST(PoolAvx512, MaxPool2x2MatchesTheWindowLoop) {
  if (!cpu_runs_avx512()) GTEST_SKIP() << "this CPU does not run the AVX-512 kernels";
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> small(-3, 3);  // many ties
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct S {
    int64_t planes, h, w;
  };
  for (S s : {S{6, 28, 28}, S{3, 7, 9}, S{2, 5, 70}, S{4, 2, 2}, S{1, 3, 33}}) {
    std::vector<float> x(std::size_t(s.planes * s.h * s.w));
    for (auto& v : x) v = float(small(rng));
    for (std::size_t i = 0; i < x.size(); i += 13) x[i] = nan;  // NaNs in some windows
    const int64_t oh = s.h / 2, ow = s.w / 2;
    std::vector<float> gy(std::size_t(s.planes * oh * ow));
    for (auto& v : gy) v = float(small(rng)) + 0.5f;
    const Naive want = naive(s.planes, s.h, s.w, x, gy);
    std::vector<float> out(want.out.size());
    std::vector<int32_t> arg(want.arg.size(), -1);
    max_pool_2x2_forward_avx512(s.planes, s.h, s.w, x.data(), out.data(), arg.data());
    EXPECT_EQ(arg, want.arg) << s.h << "x" << s.w;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (std::isnan(want.out[i]))
        EXPECT_TRUE(std::isnan(out[i])) << i;
      else
        EXPECT_EQ(out[i], want.out[i]) << i;
    }
    std::vector<float> dx(want.dx.size(), 99.0f);  // every entry must be written
    max_pool_2x2_backward_avx512(s.planes, s.h, s.w, gy.data(), want.arg.data(), dx.data());
    EXPECT_EQ(dx, want.dx) << s.h << "x" << s.w;
  }
}
