// stats.h: on-device statistics for training diagnostics, accumulated into device buffers
// across calls so that probes never synchronize the stream. Inputs are row-major
// [rows, cols] float arrays (rows = samples, cols = units); per-class variants key each row by
// an int64 label (rows whose label is outside [0, nclasses) are skipped).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace gl::kernels::cuda {

// Per-column accumulators, each with groups * cols entries (groups = 1, or nclasses for the
// per-class variant, entry [k * cols + c]). NaN inputs make sum/sumsq NaN and are skipped by
// min/max (fminf/fmaxf).
struct ColumnStatsAccum {
  double* sum = nullptr;
  double* sumsq = nullptr;
  float* min = nullptr;
  float* max = nullptr;
  unsigned long long* count_pos = nullptr;     // x > 0 (alive ReLU units)
  unsigned long long* count_abs_gt = nullptr;  // |x| > threshold (saturation)
};

// Sets sums and counts to 0, min to +inf, max to -inf for `entries` entries.
void column_stats_reset(const ColumnStatsAccum& acc, int64_t entries, cudaStream_t stream = nullptr);
void column_stats(const float* x, int64_t rows, int64_t cols, float threshold,
                  const ColumnStatsAccum& acc, cudaStream_t stream = nullptr);
void column_stats_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                           int nclasses, float threshold, const ColumnStatsAccum& acc,
                           cudaStream_t stream = nullptr);

// Fixed-bin histogram over [lo, hi] with nbins equal bins (see histogram_bin in
// index_math.h: left-closed bins, the last also right-closed). Values outside never fall into
// the edge bins; they are counted in outside[0] (x < lo), outside[1] (x > hi) and
// outside[2] (NaN). Counts are added to the buffers (zero them to start).
struct HistogramAccum {
  unsigned long long* bins = nullptr;     // [groups * nbins]
  unsigned long long* outside = nullptr;  // [groups * 3]
};
void histogram(const float* x, int64_t n, float lo, float hi, int nbins, const HistogramAccum& acc,
               cudaStream_t stream = nullptr);
// Element (r, c) of the [rows, cols] array counts in group labels[r].
void histogram_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                        int nclasses, float lo, float hi, int nbins, const HistogramAccum& acc,
                        cudaStream_t stream = nullptr);

}  // namespace gl::kernels::cuda
