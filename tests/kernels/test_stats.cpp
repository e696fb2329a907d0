// test_stats.cpp: the host statistics kernels (kernels/cpu/stats.h) against naive per-element
// loops: per-column and per-class moments, extrema and counts, fixed-bin histograms with
// out-of-range values and NaN, accumulation across calls, and independence of the thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/stats.h"
#include "kernels/kernels.h"

namespace kc = gl::kernels::cpu;

namespace {

struct Acc {
  std::vector<double> sum, sumsq;
  std::vector<float> mn, mx;
  std::vector<uint64_t> pos, gt;
  explicit Acc(std::size_t n) : sum(n), sumsq(n), mn(n), mx(n), pos(n), gt(n) {
    kc::column_stats_reset(view(), int64_t(n));
  }
  kc::ColumnStatsAccum view() {
    return {sum.data(), sumsq.data(), mn.data(), mx.data(), pos.data(), gt.data()};
  }
};

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.3f, 1.5f);
  std::vector<float> x(std::size_t(rows * cols));
  for (auto& v : x) v = nd(rng);
  // Exact zeros (ReLU-like), and a column that is never positive.
  for (std::size_t i = 0; i < x.size(); i += 7) x[i] = 0.0f;
  for (int64_t r = 0; r < rows; ++r)
    x[std::size_t(r * cols + 3 % cols)] = -std::fabs(x[std::size_t(r * cols + 3 % cols)]);
  return x;
}

void check_against_naive(const std::vector<float>& x, const std::vector<int64_t>* labels,
                         int64_t rows, int64_t cols, int classes, float thr, Acc& a) {
  for (int k = 0; k < classes; ++k)
    for (int64_t c = 0; c < cols; ++c) {
      long double s = 0, sq = 0;
      float mn = std::numeric_limits<float>::infinity(), mx = -mn;
      uint64_t pos = 0, gt = 0;
      for (int64_t r = 0; r < rows; ++r) {
        if (labels && (*labels)[std::size_t(r)] != k) continue;
        const float v = x[std::size_t(r * cols + c)];
        s += v;
        sq += (long double)v * v;
        mn = std::min(mn, v);
        mx = std::max(mx, v);
        pos += v > 0;
        gt += std::fabs(v) > thr;
      }
      const std::size_t e = std::size_t(k * cols + c);
      EXPECT_NEAR(a.sum[e], double(s), 1e-9 * (1 + std::fabs(double(s)))) << k << "," << c;
      EXPECT_NEAR(a.sumsq[e], double(sq), 1e-9 * (1 + double(sq))) << k << "," << c;
      EXPECT_EQ(a.mn[e], mn) << k << "," << c;
      EXPECT_EQ(a.mx[e], mx) << k << "," << c;
      EXPECT_EQ(a.pos[e], pos) << k << "," << c;
      EXPECT_EQ(a.gt[e], gt) << k << "," << c;
    }
}

}  // namespace

TEST(Stats, ColumnStatsMatchNaive) {
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {5, 3}, {37, 17}, {600, 130}, {257, 1000}}) {
    auto x = random_matrix(rows, cols, uint32_t(rows * 31 + cols));
    Acc a{std::size_t(cols)};
    kc::column_stats(x.data(), rows, cols, 1.25f, a.view());
    check_against_naive(x, nullptr, rows, cols, 1, 1.25f, a);
  }
}

TEST(Stats, PerClassSkipsOutOfRangeLabels) {
  const int64_t rows = 700, cols = 70;
  const int classes = 4;
  auto x = random_matrix(rows, cols, 7);
  std::mt19937 rng(3);
  std::vector<int64_t> labels(static_cast<std::size_t>(rows));
  for (auto& l : labels) l = int64_t(rng() % 6) - 1;  // -1 and 4 are skipped
  Acc a(std::size_t(classes * cols));
  kc::column_stats_by_class(x.data(), labels.data(), rows, cols, classes, 0.5f, a.view());
  check_against_naive(x, &labels, rows, cols, classes, 0.5f, a);
}

TEST(Stats, AccumulatesAcrossCallsAndThreadCounts) {
  const int64_t rows = 900, cols = 200;
  auto x = random_matrix(rows, cols, 11);
  std::vector<int64_t> labels(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) labels[std::size_t(r)] = r % 3;
  const int saved = omp_get_max_threads();
  Acc whole(3 * cols), halves(3 * cols);
  omp_set_num_threads(1);
  kc::column_stats_by_class(x.data(), labels.data(), rows, cols, 3, 1.0f, whole.view());
  omp_set_num_threads(2);
  kc::column_stats_by_class(x.data(), labels.data(), 450, cols, 3, 1.0f, halves.view());
  kc::column_stats_by_class(x.data() + 450 * cols, labels.data() + 450, 450, cols, 3, 1.0f,
                            halves.view());
  omp_set_num_threads(saved);
  for (std::size_t e = 0; e < whole.sum.size(); ++e) {
    EXPECT_NEAR(whole.sum[e], halves.sum[e], 1e-9 * (1 + std::fabs(whole.sum[e])));
    EXPECT_EQ(whole.mn[e], halves.mn[e]);
    EXPECT_EQ(whole.mx[e], halves.mx[e]);
    EXPECT_EQ(whole.pos[e], halves.pos[e]);
    EXPECT_EQ(whole.gt[e], halves.gt[e]);
  }
  check_against_naive(x, &labels, rows, cols, 3, 1.0f, halves);
}

TEST(Stats, NaNPoisonsSumsButNotExtrema) {
  std::vector<float> x = {1.0f, std::nanf(""), -2.0f, 0.5f};  // [4, 1]
  Acc a(1);
  kc::column_stats(x.data(), 4, 1, 0.9f, a.view());
  EXPECT_TRUE(std::isnan(a.sum[0]));
  EXPECT_EQ(a.mn[0], -2.0f);
  EXPECT_EQ(a.mx[0], 1.0f);
  EXPECT_EQ(a.pos[0], 2u);
  EXPECT_EQ(a.gt[0], 2u);
}

TEST(Stats, HistogramEdgesOutsideAndNaN) {
  const float lo = -1.0f, hi = 3.0f;
  const int nbins = 4;  // edges -1, 0, 1, 2, 3
  std::vector<float> x = {-1.0f, -0.5f, 0.0f, 2.999f, 3.0f, -7.0f, 9.0f, std::nanf(""), 1.5f, 1.0f};
  std::vector<uint64_t> bins(nbins, 0), outside(3, 0);
  kc::histogram(x.data(), int64_t(x.size()), lo, hi, nbins, {bins.data(), outside.data()});
  // By hand: bin0 = {-1, -0.5, -7(below)}, bin1 = {0}, bin2 = {1.5, 1.0}, bin3 = {2.999, 3,
  // 9(above)}.
  EXPECT_EQ(bins, (std::vector<uint64_t>{3, 1, 2, 3}));
  EXPECT_EQ(outside, (std::vector<uint64_t>{1, 1, 1}));
}

TEST(Stats, HistogramMatchesNaiveAndFusedPass) {
  const int64_t rows = 513, cols = 96;
  const int nbins = 50, classes = 3;
  const float lo = -2.0f, hi = 3.0f;
  const double w = (double(hi) - lo) / nbins;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> bin(-3, nbins + 2);  // some outside the range
  std::uniform_real_distribution<double> jitter(-0.4, 0.4);
  std::vector<float> x(std::size_t(rows * cols));
  std::vector<uint64_t> ref(nbins, 0), ref_cls(std::size_t(classes * nbins), 0);
  std::vector<int64_t> labels(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) labels[std::size_t(r)] = int64_t(rng() % classes);
  // Values at bin centres plus jitter: no value near an edge, so the bin is unambiguous.
  for (std::size_t i = 0; i < x.size(); ++i) {
    int b = bin(rng);
    x[i] = float(lo + (b + 0.5 + jitter(rng)) * w);
    int cb = std::clamp(b, 0, nbins - 1);
    ++ref[std::size_t(cb)];
    ++ref_cls[std::size_t(labels[i / std::size_t(cols)] * nbins + cb)];
  }
  std::vector<uint64_t> bins(nbins, 0), outside(3, 0);
  kc::histogram(x.data(), int64_t(x.size()), lo, hi, nbins, {bins.data(), outside.data()});
  EXPECT_EQ(bins, ref);
  std::vector<uint64_t> cb(std::size_t(classes * nbins), 0), co(std::size_t(classes * 3), 0);
  kc::histogram_by_class(x.data(), labels.data(), rows, cols, classes, lo, hi, nbins,
                         {cb.data(), co.data()});
  EXPECT_EQ(cb, ref_cls);
  // The fused pass: the same histogram and the same statistics as the separate calls.
  std::vector<uint64_t> fb(nbins, 0), fo(3, 0);
  Acc fused(std::size_t(classes * cols)), sep(std::size_t(classes * cols));
  kc::column_stats_histogram(x.data(), labels.data(), rows, cols, classes, 0.7f, fused.view(), lo,
                             hi, nbins, {fb.data(), fo.data()});
  kc::column_stats_by_class(x.data(), labels.data(), rows, cols, classes, 0.7f, sep.view());
  EXPECT_EQ(fb, ref);
  EXPECT_EQ(fo, outside);
  EXPECT_EQ(fused.sum, sep.sum);
  EXPECT_EQ(fused.gt, sep.gt);
}

// The AVX-512 path (rows grouped by class, accumulators in registers) adds in the same order as
// the per-row loop of the baseline ISA: the same bits, NaN and partial column blocks included.
TEST(Stats, GroupedRowsGiveTheBitsOfThePerRowLoop) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "CPU without AVX-512";
  const int64_t rows = 301, cols = 45;  // 45 = 2 full blocks of 16 and a partial one
  const int classes = 5;
  auto x = random_matrix(rows, cols, 23);
  // Magnitudes far apart, so that the double sums round and their order shows in the bits.
  for (std::size_t i = 0; i < x.size(); ++i) x[i] *= i % 3 == 0 ? 3e10f : i % 3 == 1 ? 1e-10f : 1.f;
  x[17 * cols + 30] = std::nanf("");
  std::vector<int64_t> labels(static_cast<std::size_t>(rows));
  std::mt19937 rng(9);
  for (auto& l : labels) l = int64_t(rng() % 7) - 1;  // -1 and 5 are skipped
  Acc fast(std::size_t(classes * cols)), base(std::size_t(classes * cols));
  for (int half = 0; half < 2; ++half) {  // two calls: the running values carry over
    const float* xs = x.data() + half * 150 * cols;
    const int64_t* ls = labels.data() + half * 150;
    const int64_t n = half ? rows - 150 : 150;
    kc::set_isa("avx512");
    kc::column_stats_by_class(xs, ls, n, cols, classes, 0.8f, fast.view());
    kc::set_isa("avx2");
    kc::column_stats_by_class(xs, ls, n, cols, classes, 0.8f, base.view());
    kc::set_isa("auto");
  }
  EXPECT_EQ(std::memcmp(fast.sum.data(), base.sum.data(), fast.sum.size() * 8), 0);
  EXPECT_EQ(std::memcmp(fast.sumsq.data(), base.sumsq.data(), fast.sumsq.size() * 8), 0);
  EXPECT_EQ(fast.mn, base.mn);
  EXPECT_EQ(fast.mx, base.mx);
  EXPECT_EQ(fast.pos, base.pos);
  EXPECT_EQ(fast.gt, base.gt);
  EXPECT_TRUE(std::isnan(fast.sum[std::size_t(labels[17] * cols + 30)]) || labels[17] < 0 ||
              labels[17] >= classes);
}
