// stats.cpp: the host statistics kernels of stats.h. Column statistics run over blocks of
// columns, one block per thread: every thread owns its accumulator entries, so no locks and a
// result that does not depend on the thread count. The per-row update is a straight loop over
// contiguous columns that the compiler vectorizes (an AVX-512 or AVX2 clone is picked at load
// time; every clone adds in the same order, so all give the same bits). With AVX-512 the rows
// are first grouped by class (keeping their order) and each class's rows run through
// accumulators held in registers, 16 columns at a time: the same additions in the same order,
// without loading and storing every accumulator once per row.
// Histograms are counted per thread and merged once per call.
#include "kernels/cpu/stats.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"

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

// The rows listed in `rows` (in that order) of x (row stride ldx), columns [0, n), into one
// class's accumulators: accumulate_row's arithmetic, element for element, with the running
// values in registers for 16 columns at a time.
// GCC 12 flags the intrinsics' internal undefined vectors as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void accumulate_rows_avx512(
    const float* x, int64_t ldx, const int32_t* rows, int64_t nrows, int64_t n, float threshold,
    double* sum, double* sumsq, float* mn, float* mx, uint64_t* pos, uint64_t* gt) {
  const __m512 zero = _mm512_setzero_ps(), thr = _mm512_set1_ps(threshold);
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t c = 0; c < n; c += 16) {
    const int64_t w = std::min<int64_t>(16, n - c);
    const __mmask16 m = __mmask16((1u << w) - 1u);
    const __mmask8 mlo = __mmask8(m & 0xff), mhi = __mmask8(m >> 8);
    __m512d s0 = _mm512_maskz_loadu_pd(mlo, sum + c), s1 = _mm512_maskz_loadu_pd(mhi, sum + c + 8);
    __m512d q0 = _mm512_maskz_loadu_pd(mlo, sumsq + c);
    __m512d q1 = _mm512_maskz_loadu_pd(mhi, sumsq + c + 8);
    __m512 lo = _mm512_maskz_loadu_ps(m, mn + c), hi = _mm512_maskz_loadu_ps(m, mx + c);
    __m512i np = _mm512_setzero_si512(), ng = _mm512_setzero_si512();  // counts of this call
    for (int64_t i = 0; i < nrows; ++i) {
      const __m512 v = _mm512_maskz_loadu_ps(m, x + int64_t(rows[i]) * ldx + c);
      const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
      const __m512d d1 =
          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
      s0 = _mm512_add_pd(s0, d0);
      s1 = _mm512_add_pd(s1, d1);
      q0 = _mm512_add_pd(q0, _mm512_mul_pd(d0, d0));
      q1 = _mm512_add_pd(q1, _mm512_mul_pd(d1, d1));
      lo = _mm512_min_ps(v, lo);  // v < lo ? v : lo, so NaN keeps the old value
      hi = _mm512_max_ps(v, hi);
      np = _mm512_mask_add_epi32(np, _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), np, one);
      const __m512 av = _mm512_castsi512_ps(
          _mm512_and_epi32(_mm512_castps_si512(v), _mm512_castps_si512(abs_mask)));
      ng = _mm512_mask_add_epi32(ng, _mm512_cmp_ps_mask(av, thr, _CMP_GT_OQ), ng, one);
    }
    _mm512_mask_storeu_pd(sum + c, mlo, s0);
    _mm512_mask_storeu_pd(sum + c + 8, mhi, s1);
    _mm512_mask_storeu_pd(sumsq + c, mlo, q0);
    _mm512_mask_storeu_pd(sumsq + c + 8, mhi, q1);
    _mm512_mask_storeu_ps(mn + c, m, lo);
    _mm512_mask_storeu_ps(mx + c, m, hi);
    alignas(64) uint32_t cp[16], cg[16];
    _mm512_store_si512(cp, np);
    _mm512_store_si512(cg, ng);
    for (int64_t j = 0; j < w; ++j) {
      pos[c + j] += cp[j];
      gt[c + j] += cg[j];
    }
  }
}
#pragma GCC diagnostic pop

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
  // With AVX-512: the rows of each class, in order (a counting sort by label), for the
  // register-held accumulators. Row numbers fit 32 bits: rows * cols floats are in memory.
  const bool grouped = cpu_runs_avx512() && rows < (int64_t(1) << 31);
  static thread_local std::vector<int32_t> by_class;
  static thread_local std::vector<std::size_t> class_start;
  if (grouped) {
    class_start.assign(std::size_t(nclasses) + 1, 0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t k = labels ? labels[r] : 0;
      if (k >= 0 && k < nclasses) ++class_start[std::size_t(k) + 1];
    }
    for (int k = 0; k < nclasses; ++k)
      class_start[std::size_t(k) + 1] += class_start[std::size_t(k)];
    by_class.resize(class_start[std::size_t(nclasses)]);
    static thread_local std::vector<std::size_t> next;
    next.assign(class_start.begin(), class_start.end() - 1);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t k = labels ? labels[r] : 0;
      if (k >= 0 && k < nclasses) by_class[next[std::size_t(k)]++] = int32_t(r);
    }
  }
  // The threads of the region below read the calling thread's lists through these.
  const int32_t* const class_rows = by_class.data();
  const std::size_t* const starts = class_start.data();
  // One block of columns; `local` is the calling thread's histogram.
  auto one_block = [&](int64_t blk, std::vector<uint64_t>& counts) {
    const int64_t c0 = blk * block, n = std::min(cols, c0 + block) - c0;
    if (grouped) {
      for (int k = 0; k < nclasses; ++k) {
        const std::size_t b = starts[k];
        const int64_t e = int64_t(k) * cols + c0;
        accumulate_rows_avx512(x + c0, cols, class_rows + b, int64_t(starts[k + 1] - b), n,
                               threshold, acc.sum + e, acc.sumsq + e, acc.min + e, acc.max + e,
                               acc.count_pos + e, acc.count_abs_gt + e);
      }
      if (do_hist)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t k = labels ? labels[r] : 0;
          if (k >= 0 && k < nclasses) binner.add(x + r * cols + c0, n, counts.data());
        }
      return;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t k = labels ? labels[r] : 0;
      if (k < 0 || k >= nclasses) continue;
      const float* xr = x + r * cols + c0;
      const int64_t e = k * cols + c0;
      accumulate_row(xr, n, threshold, acc.sum + e, acc.sumsq + e, acc.min + e, acc.max + e,
                     acc.count_pos + e, acc.count_abs_gt + e);
      if (do_hist) binner.add(xr, n, counts.data());
    }
  };
  // Reused across calls: no allocation per batch once the scratch has grown.
  static thread_local std::vector<uint64_t> local;
  if (nt > 1 && nblocks > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(int(std::min <int64_t>(nt, nblocks)))
    {
      std::vector<uint64_t>& mine = local;  // this thread's own
      if (do_hist) mine.assign(std::size_t(nbins + 3), 0);
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < nblocks; ++blk) one_block(blk, mine);
      if (do_hist) {
#pragma omp critical(gl_stats_hist_merge)
        merge_counts(mine, nbins, 1, hist);
      }
    }
  } else {
    // One thread: no parallel region at all (even one that runs on one thread costs libgomp
    // a team set-up of about a microsecond, and this runs per layer and batch).
    if (do_hist) local.assign(std::size_t(nbins + 3), 0);
    for (int64_t blk = 0; blk < nblocks; ++blk) one_block(blk, local);
    if (do_hist) merge_counts(local, nbins, 1, hist);
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
