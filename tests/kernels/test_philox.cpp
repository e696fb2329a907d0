// test_philox.cpp: kernels/philox.h on the CPU against Random123's published known-answer
// vectors (tests/kat_vectors of Random123, philox4x32 at 7 and 10 rounds), plus sanity checks
// of the stream layout and of the uniform generator's distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/philox.h"

namespace {

using gl::rng::Philox4x32Ctr;
using gl::rng::Philox4x32Key;

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t expected[4];
};

template <int R>
void check_kats(const std::vector<Kat>& kats) {
  for (const Kat& k : kats) {
    Philox4x32Ctr c{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}};
    Philox4x32Key key{{k.key[0], k.key[1]}};
    const Philox4x32Ctr out = gl::rng::philox4x32<R>(c, key);
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(out.v[i], k.expected[i])
          << "rounds " << R << " word " << i << " ctr0 " << std::hex << k.ctr[0];
  }
}

TEST(Philox, KnownAnswers10Rounds) {
  check_kats<10>({
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  });
  // The named 10-round entry point is the same function.
  const Philox4x32Ctr z = gl::rng::philox4x32_10({{0, 0, 0, 0}}, {{0, 0}});
  EXPECT_EQ(z.v[0], 0x6627e8d5u);
}

TEST(Philox, KnownAnswers7Rounds) {
  check_kats<7>({
      {{0, 0, 0, 0}, {0, 0}, {0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}},
  });
}

TEST(Philox, StreamLayoutMatchesDocumentedCounter) {
  const uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
  for (uint64_t index : {0ull, 1ull, 5ull, 1ull << 33}) {
    const uint64_t block = index / 4;
    Philox4x32Ctr c{
        {uint32_t(block), uint32_t(block >> 32), uint32_t(stream), uint32_t(stream >> 32)}};
    Philox4x32Key k{{uint32_t(seed), uint32_t(seed >> 32)}};
    EXPECT_EQ(gl::rng::philox_u32(seed, stream, index), gl::rng::philox4x32_10(c, k).v[index % 4]);
  }
  // Different streams and seeds give different numbers.
  EXPECT_NE(gl::rng::philox_u32(1, 0, 0), gl::rng::philox_u32(1, 1, 0));
  EXPECT_NE(gl::rng::philox_u32(1, 0, 0), gl::rng::philox_u32(2, 0, 0));
}

TEST(Philox, UniformRangeAndEdges) {
  EXPECT_EQ(gl::rng::philox_u01(0u), 0.0f);
  const float top = gl::rng::philox_u01(0xffffffffu);
  EXPECT_LT(top, 1.0f);
  EXPECT_EQ(top, 1.0f - 1.0f / 16777216.0f);
}

TEST(Philox, UniformMomentsAndBuckets) {
  // 2^20 draws: mean 1/2 and variance 1/12 within ~6 sigma; 16 equal buckets by chi-square.
  const int n = 1 << 20;
  double sum = 0, sumsq = 0;
  std::vector<int> buckets(16, 0);
  for (int i = 0; i < n; ++i) {
    const float u = gl::rng::philox_uniform(42, 7, uint64_t(i));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    sumsq += double(u) * u;
    ++buckets[int(u * 16)];
  }
  const double mean = sum / n;
  const double var = sumsq / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 6 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 0.002);
  double chi2 = 0;
  const double expect = n / 16.0;
  for (int b : buckets) chi2 += (b - expect) * (b - expect) / expect;
  // 15 degrees of freedom: P(chi2 > 50) is about 1e-5.
  EXPECT_LT(chi2, 50.0);
}

}  // namespace
