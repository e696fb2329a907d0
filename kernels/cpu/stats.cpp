// stats.cpp: the host statistics kernels of stats.h. Column statistics run over blocks of
// columns, one block per thread: every thread owns its accumulator entries, so no locks and a
// result that does not depend on the thread count. The per-row update is a straight loop over
// contiguous columns that the compiler vectorizes (an AVX-512 or AVX2 clone is picked at load
// time; every clone adds in the same order, so all give the same bits).
// Histograms are counted per thread and merged once per call.
#include "kernels/cpu/stats.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace gl::kernels::cpu {
namespace {

// Below this many elements a call runs on one thread: the fork costs more than the work.
constexpr int64_t kParallelMin = int64_t(1) << 15;

__attribute__((target_clones("avx512f", "avx2", "default"))) void accumulate_row(
    const float* __restrict x, int64_t n, float threshold, double* __restrict sum,
    double* __restrict sumsq, float* __restrict mn, float* __restrict mx, uint64_t* __restrict pos,
    uint64_t* __restrict gt) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const double d = double(v);
    sum[i] += d;
    sumsq[i] += d * d;
    // Written as selects (not std::min) so NaN keeps the old value and the loop vectorizes.
    mn[i] = v < mn[i] ? v : mn[i];
    mx[i] = v > mx[i] ? v : mx[i];
    pos[i] += v > 0.0f ? 1u : 0u;
    gt[i] += std::fabs(v) > threshold ? 1u : 0u;
  }
}

// counts: nbins bins followed by the 3 outside counters.
struct Binner {
  float lo, hi, scale;
  int nbins;
  Binner(float lo_, float hi_, int nbins_)
      : lo(lo_), hi(hi_), scale(float(nbins_) / (hi_ - lo_)), nbins(nbins_) {}
  void add(const float* x, int64_t n, uint64_t* counts) const {
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      if (!(v == v)) {
        ++counts[nbins + 2];
        continue;
      }
      int b;
      if (v < lo) {
        ++counts[nbins];
        b = 0;
      } else if (v > hi) {
        ++counts[nbins + 1];
        b = nbins - 1;
      } else {
        b = int((v - lo) * scale);  // same arithmetic as histogram_bin on the device
        b = std::clamp(b, 0, nbins - 1);
      }
      ++counts[b];
    }
  }
};

void merge_counts(const std::vector<uint64_t>& local, int nbins, int groups,
                  const HistogramAccum& acc) {
  for (int g = 0; g < groups; ++g) {
    const uint64_t* l = local.data() + std::size_t(g) * std::size_t(nbins + 3);
    for (int b = 0; b < nbins; ++b)
      acc.bins[std::size_t(g) * std::size_t(nbins) + std::size_t(b)] += l[b];
    if (acc.outside)
      for (int o = 0; o < 3; ++o) acc.outside[std::size_t(g) * 3 + std::size_t(o)] += l[nbins + o];
  }
}

int threads_for(int64_t work) {
  return work >= kParallelMin ? omp_get_max_threads() : 1;
}

}  // namespace

void column_stats_reset(const ColumnStatsAccum& acc, int64_t entries) {
  const float inf = std::numeric_limits<float>::infinity();
  std::fill(acc.sum, acc.sum + entries, 0.0);
  std::fill(acc.sumsq, acc.sumsq + entries, 0.0);
  std::fill(acc.min, acc.min + entries, inf);
  std::fill(acc.max, acc.max + entries, -inf);
  std::fill(acc.count_pos, acc.count_pos + entries, uint64_t(0));
  std::fill(acc.count_abs_gt, acc.count_abs_gt + entries, uint64_t(0));
}

void column_stats_histogram(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                            int nclasses, float threshold, const ColumnStatsAccum& acc, float lo,
                            float hi, int nbins, const HistogramAccum& hist) {
  if (rows <= 0 || cols <= 0) return;
  if (!labels) nclasses = 1;
  const bool do_hist = hist.bins != nullptr && nbins > 0;
  const Binner binner(lo, hi, std::max(nbins, 1));
  const int nt = threads_for(rows * cols);
  // Column blocks of a multiple of 16 floats so blocks start on cache-line boundaries.
  int64_t block = (cols + nt - 1) / nt;
  block = std::max<int64_t>(16, (block + 15) / 16 * 16);
  const int64_t nblocks = (cols + block - 1) / block;
#pragma omp parallel num_threads(int(std::min <int64_t>(nt, nblocks))) if (nblocks > 1)
  {
    // Reused across calls: no allocation per batch once the scratch has grown.
    static thread_local std::vector<uint64_t> local;
    if (do_hist) local.assign(std::size_t(nbins + 3), 0);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t c0 = blk * block, n = std::min(cols, c0 + block) - c0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t k = labels ? labels[r] : 0;
        if (k < 0 || k >= nclasses) continue;
        const float* xr = x + r * cols + c0;
        const int64_t e = k * cols + c0;
        accumulate_row(xr, n, threshold, acc.sum + e, acc.sumsq + e, acc.min + e, acc.max + e,
                       acc.count_pos + e, acc.count_abs_gt + e);
        if (do_hist) binner.add(xr, n, local.data());
      }
    }
    if (do_hist) {
#pragma omp critical(gl_stats_hist_merge)
      merge_counts(local, nbins, 1, hist);
    }
  }
}

void column_stats(const float* x, int64_t rows, int64_t cols, float threshold,
                  const ColumnStatsAccum& acc) {
  column_stats_histogram(x, nullptr, rows, cols, 1, threshold, acc, 0.f, 1.f, 0, {});
}

void column_stats_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                           int nclasses, float threshold, const ColumnStatsAccum& acc) {
  column_stats_histogram(x, labels, rows, cols, nclasses, threshold, acc, 0.f, 1.f, 0, {});
}

void histogram_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                        int nclasses, float lo, float hi, int nbins, const HistogramAccum& acc) {
  if (rows <= 0 || cols <= 0 || nbins <= 0) return;
  if (!labels) nclasses = 1;
  const Binner binner(lo, hi, nbins);
  const std::size_t stride = std::size_t(nbins + 3);
#pragma omp parallel num_threads(threads_for(rows* cols))
  {
    static thread_local std::vector<uint64_t> local;
    local.assign(stride * std::size_t(nclasses), 0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t k = labels ? labels[r] : 0;
      if (k < 0 || k >= nclasses) continue;
      binner.add(x + r * cols, cols, local.data() + std::size_t(k) * stride);
    }
#pragma omp critical(gl_stats_hist_merge)
    merge_counts(local, nbins, nclasses, acc);
  }
}

void histogram(const float* x, int64_t n, float lo, float hi, int nbins,
               const HistogramAccum& acc) {
  // Viewed as rows of 4096 elements (plus a tail) so the row loop spreads over threads.
  constexpr int64_t kRow = 4096;
  const int64_t full = n / kRow;
  if (full > 0) histogram_by_class(x, nullptr, full, kRow, 1, lo, hi, nbins, acc);
  if (n > full * kRow)
    histogram_by_class(x + full * kRow, nullptr, 1, n - full * kRow, 1, lo, hi, nbins, acc);
}

}  // namespace gl::kernels::cpu
