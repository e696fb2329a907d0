// stats.cu: per-column moments, extrema and counts, and fixed-bin histograms, accumulated on
// the device. Column statistics: a 32 x 8 thread block per (32 columns, class); lanes read
// consecutive columns of a row (coalesced), the 8 row lanes are combined in shared memory in
// a fixed order and one thread per column adds into the accumulators, which no other block
// touches, so no atomics and a deterministic result. Sums are in double. The per-class
// variant launches one block row per class, each reading every label. Histograms: per-block
// bins privatized in shared memory (32-bit counters) when groups * (nbins + 3) fits in 48 KB,
// merged with 64-bit global atomics at the end; otherwise global atomics per element.
// speed: not yet measured on a GPU.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/index_math.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/stats.h"

namespace gl::kernels::cuda {
namespace {

constexpr int kTile = 32;
constexpr int kRowLanes = 8;

__global__ void reset_kernel(ColumnStatsAccum acc, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    acc.sum[i] = 0.0;
    acc.sumsq[i] = 0.0;
    acc.min[i] = INFINITY;
    acc.max[i] = -INFINITY;
    acc.count_pos[i] = 0;
    acc.count_abs_gt[i] = 0;
  }
}

struct Partial {
  double sum, sumsq;
  float mn, mx;
  unsigned long long pos, gt;
};

__global__ void column_stats_kernel(const float* x, const int64_t* labels, int64_t rows,
                                    int64_t cols, float threshold, ColumnStatsAccum acc) {
  __shared__ Partial part[kRowLanes][kTile];
  const int64_t c = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const int64_t k = blockIdx.y;  // class (0 when labels is null)
  Partial s{0.0, 0.0, INFINITY, -INFINITY, 0ull, 0ull};
  if (c < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) {
      if (labels && labels[r] != k) continue;
      const float v = x[r * cols + c];
      s.sum += double(v);
      s.sumsq += double(v) * double(v);
      s.mn = fminf(s.mn, v);
      s.mx = fmaxf(s.mx, v);
      s.pos += v > 0.0f ? 1ull : 0ull;
      s.gt += fabsf(v) > threshold ? 1ull : 0ull;
    }
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    Partial t = part[0][threadIdx.x];
#pragma unroll
    for (int i = 1; i < kRowLanes; ++i) {
      const Partial& u = part[i][threadIdx.x];
      t.sum += u.sum;
      t.sumsq += u.sumsq;
      t.mn = fminf(t.mn, u.mn);
      t.mx = fmaxf(t.mx, u.mx);
      t.pos += u.pos;
      t.gt += u.gt;
    }
    const int64_t e = k * cols + c;
    acc.sum[e] += t.sum;
    acc.sumsq[e] += t.sumsq;
    acc.min[e] = fminf(acc.min[e], t.mn);
    acc.max[e] = fmaxf(acc.max[e], t.mx);
    acc.count_pos[e] += t.pos;
    acc.count_abs_gt[e] += t.gt;
  }
}

// Group of element e: 0 without labels, labels[e / cols] with; -1 to skip.
__device__ __forceinline__ int64_t group_of(const int64_t* labels, int64_t e, int64_t cols,
                                            int groups) {
  if (!labels) return 0;
  const int64_t k = labels[e / cols];
  return (k >= 0 && k < groups) ? k : -1;
}

__device__ __forceinline__ int64_t slot_of(int b, int nbins, int64_t g, int groups) {
  // bins first (groups * nbins), then the outside counters (groups * 3)
  if (b >= 0) return g * nbins + b;
  const int which = b == kBinBelow ? 0 : (b == kBinAbove ? 1 : 2);
  return int64_t(groups) * nbins + g * 3 + which;
}

__global__ void histogram_shared_kernel(const float* x, const int64_t* labels, int64_t n,
                                        int64_t cols, int groups, float lo, float hi, int nbins,
                                        HistogramAccum acc) {
  extern __shared__ unsigned int counts[];
  const int slots = groups * (nbins + 3);
  for (int i = threadIdx.x; i < slots; i += blockDim.x) counts[i] = 0u;
  __syncthreads();
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = group_of(labels, e, cols, groups);
    if (g < 0) continue;
    atomicAdd(&counts[slot_of(histogram_bin(x[e], lo, hi, nbins), nbins, g, groups)], 1u);
  }
  __syncthreads();
  const int bin_slots = groups * nbins;
  for (int i = threadIdx.x; i < slots; i += blockDim.x) {
    const unsigned int v = counts[i];
    if (v == 0u) continue;
    unsigned long long* dst = i < bin_slots ? acc.bins + i : acc.outside + (i - bin_slots);
    atomicAdd(dst, (unsigned long long)v);
  }
}

__global__ void histogram_global_kernel(const float* x, const int64_t* labels, int64_t n,
                                        int64_t cols, int groups, float lo, float hi, int nbins,
                                        HistogramAccum acc) {
  const int64_t bin_slots = int64_t(groups) * nbins;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = group_of(labels, e, cols, groups);
    if (g < 0) continue;
    const int64_t s = slot_of(histogram_bin(x[e], lo, hi, nbins), nbins, g, groups);
    atomicAdd(s < bin_slots ? acc.bins + s : acc.outside + (s - bin_slots), 1ull);
  }
}

void check_accum(const ColumnStatsAccum& a, const char* op) {
  if (!a.sum || !a.sumsq || !a.min || !a.max || !a.count_pos || !a.count_abs_gt)
    throw std::invalid_argument(std::string(op) + ": every accumulator pointer must be set");
}

void launch_column_stats(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                         int groups, float threshold, const ColumnStatsAccum& acc,
                         cudaStream_t stream, const char* op) {
  check_accum(acc, op);
  if (rows < 0 || cols < 0)
    throw std::invalid_argument(std::string(op) + ": negative shape [" + std::to_string(rows) +
                                ", " + std::to_string(cols) + "]");
  if (groups < 1 || groups > 65535)
    throw std::invalid_argument(std::string(op) + ": nclasses " + std::to_string(groups) +
                                " outside [1, 65535]");
  if (rows == 0 || cols == 0) return;
  const dim3 grid(unsigned((cols + kTile - 1) / kTile), unsigned(groups));
  column_stats_kernel<<<grid, dim3(kTile, kRowLanes), 0, resolve_stream(stream)>>>(
      x, labels, rows, cols, threshold, acc);
  GL_CUDA_CHECK_LAUNCH();
}

void launch_histogram(const float* x, const int64_t* labels, int64_t n, int64_t cols, int groups,
                      float lo, float hi, int nbins, const HistogramAccum& acc,
                      cudaStream_t stream, const char* op) {
  if (!acc.bins || !acc.outside)
    throw std::invalid_argument(std::string(op) + ": bins and outside must be set");
  if (nbins < 1) throw std::invalid_argument(std::string(op) + ": nbins must be >= 1, got " + std::to_string(nbins));
  if (!(lo < hi) || !std::isfinite(lo) || !std::isfinite(hi))
    throw std::invalid_argument(std::string(op) + ": need finite lo < hi, got [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  if (groups < 1) throw std::invalid_argument(std::string(op) + ": nclasses must be >= 1");
  if (n < 0) throw std::invalid_argument(std::string(op) + ": negative size");
  if (n == 0) return;
  stream = resolve_stream(stream);
  constexpr int kThreads = 256;
  int64_t blocks = (n + kThreads * 16 - 1) / (kThreads * 16);
  if (blocks > 65535) blocks = 65535;
  const int64_t slots = int64_t(groups) * (int64_t(nbins) + 3);
  constexpr int64_t kMaxSharedSlots = 48 * 1024 / 4;
  if (slots <= kMaxSharedSlots) {
    histogram_shared_kernel<<<unsigned(blocks), kThreads, size_t(slots) * 4, stream>>>(
        x, labels, n, cols, groups, lo, hi, nbins, acc);
  } else {
    histogram_global_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(x, labels, n, cols, groups,
                                                                       lo, hi, nbins, acc);
  }
  GL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void column_stats_reset(const ColumnStatsAccum& acc, int64_t entries, cudaStream_t stream) {
  check_accum(acc, "cuda::column_stats_reset");
  if (entries <= 0) return;
  int64_t blocks = (entries + 255) / 256;
  if (blocks > 65535) blocks = 65535;
  reset_kernel<<<unsigned(blocks), 256, 0, resolve_stream(stream)>>>(acc, entries);
  GL_CUDA_CHECK_LAUNCH();
}

void column_stats(const float* x, int64_t rows, int64_t cols, float threshold,
                  const ColumnStatsAccum& acc, cudaStream_t stream) {
  launch_column_stats(x, nullptr, rows, cols, 1, threshold, acc, stream, "cuda::column_stats");
}

void column_stats_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                           int nclasses, float threshold, const ColumnStatsAccum& acc,
                           cudaStream_t stream) {
  if (!labels) throw std::invalid_argument("cuda::column_stats_by_class: labels is null");
  launch_column_stats(x, labels, rows, cols, nclasses, threshold, acc, stream,
                      "cuda::column_stats_by_class");
}

void histogram(const float* x, int64_t n, float lo, float hi, int nbins, const HistogramAccum& acc,
               cudaStream_t stream) {
  launch_histogram(x, nullptr, n, 1, 1, lo, hi, nbins, acc, stream, "cuda::histogram");
}

void histogram_by_class(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                        int nclasses, float lo, float hi, int nbins, const HistogramAccum& acc,
                        cudaStream_t stream) {
  if (!labels) throw std::invalid_argument("cuda::histogram_by_class: labels is null");
  if (rows < 0 || cols < 0)
    throw std::invalid_argument("cuda::histogram_by_class: negative shape");
  if (cols == 0) return;
  launch_histogram(x, labels, rows * cols, cols, nclasses, lo, hi, nbins, acc, stream,
                   "cuda::histogram_by_class");
}

}  // namespace gl::kernels::cuda
