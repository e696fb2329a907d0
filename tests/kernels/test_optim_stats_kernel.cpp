// test_optim_stats_kernel.cpp: the optimization-statistics passes (kernels/cpu/optim_stats.h)
// against a naive double-precision loop written from the definitions: v1 (one pass over the kept
// previous gradient and weight) and v2 (the update pass across the previous step's update, then
// the record pass over one code byte per component); AVX2 and scalar paths, odd lengths (vector
// tails), several chunks and blocks, NaN and infinity, thresholds on the boundary, the snapshot
// and moving-average updates, whole arrays against their blocks, and independence of the thread
// count.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/optim_stats.h"

namespace kc = gl::kernels::cpu;

namespace {

struct Arrays {
  std::vector<float> g, w, pg, pw, eg, ew;
};

// Gradients spread over many magnitudes (so every threshold splits them), exact zeros and
// repeated values (ties of w and pw, g and pg), optionally NaN and infinities.
Arrays make(int64_t n, uint32_t seed, bool special) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::uniform_int_distribution<int> e(-12, 0), pick(0, 19);
  Arrays a;
  auto grad = [&] { return u(rng) * std::pow(10.0f, float(e(rng))); };
  for (int64_t i = 0; i < n; ++i) {
    a.g.push_back(grad());
    a.pg.push_back(grad());
    a.pw.push_back(u(rng));
    a.w.push_back(a.pw.back() + 1e-3f * u(rng));
    a.eg.push_back(1e-3f * u(rng));
    a.ew.push_back(u(rng));
    switch (pick(rng)) {
      case 0:
        a.g.back() = 0.0f;
        break;
      case 1:
        a.pg.back() = 0.0f;
        break;
      case 2:
        a.w.back() = a.pw.back();
        break;
      case 3:
        a.g.back() = a.pg.back();
        break;
      case 4:
        a.g.back() = -0.0f;
        break;
      case 5:
        a.g.back() = 1e-7f;
        break;  // the zero threshold itself
      default:
        break;
    }
  }
  if (special && n > 0) {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
    const float vals[] = {nan, inf, -inf};
    for (int64_t i = 0; i < n; i += 13) a.g[std::size_t(i)] = vals[i % 3];
    for (int64_t i = 5; i < n; i += 17) a.pg[std::size_t(i)] = vals[(i + 1) % 3];
    for (int64_t i = 7; i < n; i += 29) a.w[std::size_t(i)] = vals[(i + 2) % 3];
  }
  return a;
}

struct Naive {
  int64_t zero = 0, small_prev = 0, retained = 0, flip = 0, lmin = 0, lmax = 0;
  double wd = 0, zgdw = 0, eg = 0, ew = 0;
  std::vector<float> eg_new, ew_new;
};

// From the definitions, in double, with no shared code.
Naive naive(const Arrays& a, double zt, double st, float keep, float fresh) {
  Naive r;
  for (std::size_t i = 0; i < a.g.size(); ++i) {
    const double g = a.g[i], p = a.pg[i], w = a.w[i], pw = a.pw[i];
    r.zero += std::fabs(g) < zt;
    if (std::fabs(p) < st) {
      ++r.small_prev;
      r.retained += std::fabs(g) < st;
    }
    const bool flip = (g > 0 && p < 0) || (g < 0 && p > 0);
    r.flip += flip;
    if (flip && ((w > pw && g > p) || (w < pw && g < p))) ++r.lmin;
    if (flip && ((w > pw && g < p) || (w < pw && g > p))) ++r.lmax;
    const double dw = w - pw;
    r.wd += dw * dw;
    if (std::fabs(p) < zt) r.zgdw += dw * dw;
    // The moving averages are float state: each product rounds to float, then the sum.
    const float e1 = float(keep * a.eg[i]) + float(fresh * a.g[i]);
    const float e2 = float(keep * a.ew[i]) + float(fresh * a.w[i]);
    r.eg_new.push_back(e1);
    r.ew_new.push_back(e2);
    r.eg += double(e1) * double(e1);
    r.ew += double(e2) * double(e2);
  }
  return r;
}

void expect_close(double got, double want, const char* what, int64_t n) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << " n=" << n;
  } else if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what << " n=" << n;
  } else {
    EXPECT_NEAR(got, want, 1e-12 * std::max(std::fabs(want), 1e-300)) << what << " n=" << n;
  }
}

bool same_float(float x, float y) {
  return (std::isnan(x) && std::isnan(y)) || x == y;
}

// The instruction sets this CPU runs, each selected while a Path is alive.
std::vector<std::string> paths() {
  std::vector<std::string> out;
  for (const char* isa : {"avx512", "avx2", "scalar"}) {
    try {
      kc::optim_stats_force_isa(isa);
      out.push_back(isa);
    } catch (const std::invalid_argument&) {
    }
  }
  kc::optim_stats_force_isa("auto");
  return out;
}
struct Path {
  explicit Path(const std::string& isa) { kc::optim_stats_force_isa(isa); }
  ~Path() { kc::optim_stats_force_isa("auto"); }
};

kc::OptimStepSums run(Arrays& a, const kc::OptimStepParams& p) {
  return kc::optim_step_stats(a.g.data(), a.w.data(), a.pg.data(), a.pw.data(), a.eg.data(),
                              a.ew.data(), int64_t(a.g.size()), p);
}

void check(int64_t n, uint32_t seed, bool special, bool first_ema) {
  Arrays a = make(n, seed, special);
  kc::OptimStepParams p;
  p.zero_threshold = 1e-7f;  // float(1e-7) > 1e-7: x < 1e-7f equals double(x) < 1e-7 here
  p.small_threshold = 1e-5f;
  p.ema_keep = first_ema ? 0.0f : 0.99f;
  p.ema_new = first_ema ? 1.0f : 1.0f - 0.99f;
  const Naive want =
      naive(a, double(p.zero_threshold), double(p.small_threshold), p.ema_keep, p.ema_new);
  const Arrays before = a;
  const kc::OptimStepSums got = run(a, p);
  EXPECT_EQ(got.zero, want.zero) << "n=" << n;
  EXPECT_EQ(got.small_prev, want.small_prev) << "n=" << n;
  EXPECT_EQ(got.retained, want.retained) << "n=" << n;
  EXPECT_EQ(got.sign_flip, want.flip) << "n=" << n;
  EXPECT_EQ(got.local_min, want.lmin) << "n=" << n;
  EXPECT_EQ(got.local_max, want.lmax) << "n=" << n;
  expect_close(got.weight_diff_sq, want.wd, "weight_diff_sq", n);
  expect_close(got.zero_grad_weight_change_sq, want.zgdw, "zero_grad_weight_change_sq", n);
  expect_close(got.ema_grad_sq, want.eg, "ema_grad_sq", n);
  expect_close(got.ema_weight_sq, want.ew, "ema_weight_sq", n);
  for (std::size_t i = 0; i < a.g.size(); ++i) {
    ASSERT_TRUE(same_float(a.pg[i], before.g[i])) << "snapshot grad " << i << " n=" << n;
    ASSERT_TRUE(same_float(a.pw[i], before.w[i])) << "snapshot weight " << i << " n=" << n;
    ASSERT_TRUE(same_float(a.eg[i], want.eg_new[i])) << "ema grad " << i << " n=" << n;
    ASSERT_TRUE(same_float(a.ew[i], want.ew_new[i])) << "ema weight " << i << " n=" << n;
    ASSERT_TRUE(same_float(a.g[i], before.g[i]) && same_float(a.w[i], before.w[i]));
  }
}

// Lengths around the vector width, v2's block (2^12) and v1's chunk size (2^14), and a
// parallel-sized one.
const int64_t kLengths[] = {0,    1,    7,    8,    9,     15,    17,    63,   1001,
                            4095, 4096, 4097, 8200, 16383, 16384, 16385, 70001};

// v2 over one pair of steps: the update pass across the previous step's update (pg, pw before,
// w after: the codes), then the record pass of this step (g, w).
struct V2 {
  kc::OptimUpdateSums update;
  kc::OptimRecordSums record;
  std::vector<uint8_t> code;
};
V2 run_v2(Arrays& a, const kc::OptimStepParams& p) {
  V2 r;
  const int64_t n = int64_t(a.g.size());
  r.code.assign(a.g.size(), 0xff);
  r.update = kc::optim_update_pass(a.pg.data(), a.pw.data(), a.w.data(), r.code.data(), n, p);
  r.record =
      kc::optim_record_pass(a.g.data(), a.w.data(), r.code.data(), a.eg.data(), a.ew.data(), n, p);
  return r;
}

void check_v2(int64_t n, uint32_t seed, bool special, bool first_ema) {
  Arrays a = make(n, seed, special);
  kc::OptimStepParams p;
  p.ema_keep = first_ema ? 0.0f : 0.99f;
  p.ema_new = first_ema ? 1.0f : 1.0f - 0.99f;
  const Naive want =
      naive(a, double(p.zero_threshold), double(p.small_threshold), p.ema_keep, p.ema_new);
  const Arrays before = a;
  const V2 got = run_v2(a, p);
  EXPECT_EQ(got.record.zero, want.zero) << "n=" << n;
  EXPECT_EQ(got.update.small_prev, want.small_prev) << "n=" << n;
  EXPECT_EQ(got.record.retained, want.retained) << "n=" << n;
  EXPECT_EQ(got.record.sign_flip, want.flip) << "n=" << n;
  EXPECT_EQ(got.record.local_min, want.lmin) << "n=" << n;
  EXPECT_EQ(got.record.local_max, want.lmax) << "n=" << n;
  expect_close(got.update.weight_diff_sq, want.wd, "weight_diff_sq", n);
  expect_close(got.update.zero_grad_weight_change_sq, want.zgdw, "zero_grad_weight_change_sq", n);
  expect_close(got.record.ema_grad_sq, want.eg, "ema_grad_sq", n);
  expect_close(got.record.ema_weight_sq, want.ew, "ema_weight_sq", n);
  for (std::size_t i = 0; i < a.g.size(); ++i) {
    ASSERT_TRUE(same_float(a.eg[i], want.eg_new[i])) << "ema grad " << i << " n=" << n;
    ASSERT_TRUE(same_float(a.ew[i], want.ew_new[i])) << "ema weight " << i << " n=" << n;
    ASSERT_TRUE(same_float(a.g[i], before.g[i]) && same_float(a.w[i], before.w[i]) &&
                same_float(a.pg[i], before.pg[i]) && same_float(a.pw[i], before.pw[i]))
        << "inputs are read only, " << i;
    // The code is what its bits say of the previous gradient and the weight change.
    const double pg = before.pg[i], dw = double(before.w[i]) - double(before.pw[i]);
    const int code = (pg > 0 ? kc::kCodeGradPositive : 0) | (pg < 0 ? kc::kCodeGradNegative : 0) |
                     (dw > 0 ? kc::kCodeWeightUp : 0) | (dw < 0 ? kc::kCodeWeightDown : 0) |
                     (std::fabs(pg) < 1e-5 ? kc::kCodeGradSmall : 0);
    ASSERT_EQ(int(got.code[i]), code) << "code " << i << " n=" << n;
  }
}

}  // namespace

TEST(OptimStatsKernel, MatchesNaiveLoopEveryPath) {
  for (const auto& isa : paths()) {
    SCOPED_TRACE(isa);
    Path path(isa);
    for (int64_t n : kLengths)
      for (bool first : {false, true}) check(n, uint32_t(n + 3), false, first);
  }
}

TEST(OptimStatsKernel, SplitPassesMatchNaiveLoopEveryPath) {
  EXPECT_FALSE(paths().empty());
  for (const auto& isa : paths()) {
    SCOPED_TRACE(isa);
    Path path(isa);
    for (int64_t n : kLengths)
      for (bool first : {false, true}) check_v2(n, uint32_t(n + 5), false, first);
    for (int64_t n : {int64_t(9), int64_t(31), int64_t(1000), int64_t(16390)})
      check_v2(n, uint32_t(n), true, false);
  }
}

TEST(OptimStatsKernel, SplitPassesAreTheirBlocksInOrder) {
  // A caller that runs the blocks itself (inside an optimizer's step) and adds their sums in
  // block order gets the whole-array results bit for bit, whatever the thread count.
  const int64_t n = 3 * kc::kOptimBlock + 1234 + 70000;
  const Arrays a = make(n, 21, false);
  const kc::OptimStepParams p;
  const int threads = omp_get_max_threads();
  for (const auto& isa : paths()) {
    SCOPED_TRACE(isa);
    Path path(isa);
    Arrays blocks = a;
    std::vector<uint8_t> code(std::size_t(n), 0);
    kc::OptimUpdateSums u;
    kc::OptimRecordSums r;
    for (int64_t lo = 0; lo < n; lo += kc::kOptimBlock) {
      const int64_t len = std::min(kc::kOptimBlock, n - lo);
      u += kc::optim_update_block(blocks.pg.data() + lo, blocks.pw.data() + lo,
                                  blocks.w.data() + lo, code.data() + lo, len, p);
    }
    for (int64_t lo = 0; lo < n; lo += kc::kOptimBlock) {
      const int64_t len = std::min(kc::kOptimBlock, n - lo);
      r += kc::optim_record_block(blocks.g.data() + lo, blocks.w.data() + lo, code.data() + lo,
                                  blocks.eg.data() + lo, blocks.ew.data() + lo, len, p);
    }
    for (int t : {1, 2, 3}) {
      omp_set_num_threads(t);
      Arrays whole = a;
      const V2 got = run_v2(whole, p);
      EXPECT_EQ(got.code, code) << t;
      EXPECT_EQ(got.update.weight_diff_sq, u.weight_diff_sq) << t;
      EXPECT_EQ(got.update.zero_grad_weight_change_sq, u.zero_grad_weight_change_sq) << t;
      EXPECT_EQ(got.record.ema_grad_sq, r.ema_grad_sq) << t;
      EXPECT_EQ(got.record.ema_weight_sq, r.ema_weight_sq) << t;
      EXPECT_EQ(got.record.zero, r.zero) << t;
      EXPECT_EQ(got.record.sign_flip, r.sign_flip) << t;
      EXPECT_EQ(got.record.local_min, r.local_min) << t;
      EXPECT_EQ(got.record.local_max, r.local_max) << t;
      EXPECT_EQ(got.record.retained, r.retained) << t;
      EXPECT_EQ(got.update.small_prev, u.small_prev) << t;
      EXPECT_EQ(whole.eg, blocks.eg) << t;
      EXPECT_EQ(whole.ew, blocks.ew) << t;
    }
  }
  omp_set_num_threads(threads);
}

TEST(OptimStatsKernel, NaNAndInfinityFollowTheDefinitions) {
  for (const auto& isa : paths()) {
    SCOPED_TRACE(isa);
    Path path(isa);
    for (int64_t n : {int64_t(9), int64_t(31), int64_t(1000), int64_t(16390)})
      check(n, uint32_t(n), true, false);
  }
}

TEST(OptimStatsKernel, LargeValuesDoNotOverflowInTheSquares) {
  // 1e20^2 overflows float but not the double the definitions use.
  Arrays a = make(11, 5, false);
  a.w[3] = 1e20f;
  a.pw[3] = -1e20f;
  for (const auto& isa : paths()) {
    SCOPED_TRACE(isa);
    Path path(isa);
    Arrays b = a;
    const auto s = run(b, {});
    EXPECT_TRUE(std::isfinite(s.weight_diff_sq));
    EXPECT_GE(s.weight_diff_sq, 4e40);
    Arrays c = a;
    const V2 v2 = run_v2(c, {});
    EXPECT_TRUE(std::isfinite(v2.update.weight_diff_sq));
    EXPECT_GE(v2.update.weight_diff_sq, 4e40);
  }
}

TEST(OptimStatsKernel, AvxAndScalarAgreeAndThreadCountDoesNotMatter) {
  const int64_t n = 200003;
  const Arrays a = make(n, 11, false);
  kc::OptimStepParams p;
  std::vector<kc::OptimStepSums> results;
  const int threads = omp_get_max_threads();
  const std::vector<std::string> isas = paths();
  for (const auto& isa : isas)
    for (int t : {1, 2, 3}) {
      Path path(isa);
      omp_set_num_threads(t);
      Arrays b = a;
      results.push_back(run(b, p));
    }
  omp_set_num_threads(threads);
  for (const auto& r : results) {
    EXPECT_EQ(r.zero, results[0].zero);
    EXPECT_EQ(r.sign_flip, results[0].sign_flip);
    EXPECT_EQ(r.local_min, results[0].local_min);
    EXPECT_EQ(r.local_max, results[0].local_max);
    EXPECT_EQ(r.retained, results[0].retained);
    EXPECT_EQ(r.small_prev, results[0].small_prev);
  }
  // Within a path, every thread count gives the same bits.
  for (std::size_t path = 0; path < isas.size(); ++path)
    for (int t = 1; t < 3; ++t) {
      const auto& x = results[path * 3 + std::size_t(t)];
      const auto& y = results[path * 3];
      EXPECT_EQ(x.weight_diff_sq, y.weight_diff_sq);
      EXPECT_EQ(x.zero_grad_weight_change_sq, y.zero_grad_weight_change_sq);
      EXPECT_EQ(x.ema_grad_sq, y.ema_grad_sq);
      EXPECT_EQ(x.ema_weight_sq, y.ema_weight_sq);
    }
}
