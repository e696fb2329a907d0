// stats.h: host statistics for training diagnostics, accumulated across calls (one call per
// evaluation batch) so a probe reduces each batch where it is and reads nothing back until the
// epoch ends. The argument order mirrors kernels/cuda/stats.h so a device path plugs in behind
// the same call sites. Inputs are row-major [rows, cols] float arrays (rows = samples,
// cols = units); per-class variants key each row by an int64 label (rows whose label is
// outside [0, nclasses) are skipped).
#pragma once
#include <cstdint>

namespace gl::kernels::cpu {

// Per-column accumulators, each with groups * cols entries (groups = 1, or nclasses for the
// per-class variant, entry [k * cols + c]). NaN inputs make sum/sumsq NaN and are skipped by
// min/max, as on the device.
struct ColumnStatsAccum {
  double* sum = nullptr;
  double* sumsq = nullptr;
  float* min = nullptr;
  float* max = nullptr;
  uint64_t* count_pos = nullptr;     // x > 0 (alive ReLU units)
  uint64_t* count_abs_gt = nullptr;  // |x| > threshold (saturation)
};

// Sets sums and counts to 0, min to +inf, max to -inf for `entries` entries.
void column_stats_reset(const ColumnStatsAccum& acc, int64_t entries);
void column_stats(const float* x, int64_t rows, int64_t cols, float threshold,
                  const ColumnStatsAccum& acc);
void column_stats_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                           int nclasses, float threshold, const ColumnStatsAccum& acc);

// Fixed-bin histogram over [lo, hi] with nbins equal bins (left-closed, the last also
// right-closed; the bin of x is histogram_bin in kernels/cuda/index_math.h). As
// docs/run_directory.md asks, values below lo are counted in bin 0 and values above hi in
// bin nbins-1; they are also counted in outside[0] (x < lo) and outside[1] (x > hi) so the
// clipping stays visible. NaN goes in outside[2] only. (The device kernel keeps out-of-range
// values out of the edge bins; add outside[0]/[1] to them to get these counts.)
// Counts are added to the buffers (zero them to start).
struct HistogramAccum {
  uint64_t* bins = nullptr;     // [groups * nbins]
  uint64_t* outside = nullptr;  // [groups * 3]
};
void histogram(const float* x, int64_t n, float lo, float hi, int nbins, const HistogramAccum& acc);
// Element (r, c) of the [rows, cols] array counts in group labels[r].
void histogram_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                        int nclasses, float lo, float hi, int nbins, const HistogramAccum& acc);

// The fused pass used by the probes: per-class column statistics (labels may be null:
// nclasses is then taken as 1) and, when hist.bins is not null, one histogram over every
// element of the array (a single group), reading x once.
void column_stats_histogram(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                            int nclasses, float threshold, const ColumnStatsAccum& acc, float lo,
                            float hi, int nbins, const HistogramAccum& hist);

}  // namespace gl::kernels::cpu
