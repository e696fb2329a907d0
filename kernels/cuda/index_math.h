// index_math.h: the index arithmetic of the CUDA kernels, kept free of CUDA headers so that the
// CPU tests can check it exhaustively (a wrong offset here would be a silent wrong answer on
// the GPU). Covers N-d strided offsets, histogram bin selection, the SGEMM thread-to-element
// maps, split-K ranges and the multi-tensor optimizer chunk table.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/functors.h"  // GL_HD

namespace gl::kernels::cuda {

inline constexpr int kMaxDims = 8;

// Layout of an N-d elementwise op: one logical shape, and per operand element strides
// (0 for a broadcast dimension). Operand 0 is the output, 1 and 2 the inputs. Passed to
// kernels by value. Element i of the op (row-major order over `shape`) lives at
// sum_d coord_d(i) * stride[operand][d] elements from each operand's base pointer.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[3][kMaxDims] = {};
};

struct Offsets3 {
  int64_t o[3];
};

GL_HD int64_t layout_numel(const StridedLayout& L) {
  int64_t n = 1;
  for (int d = 0; d < L.ndim; ++d) n *= L.shape[d];
  return n;
}

// Offsets of logical element `linear` in each operand (last dimension fastest).
GL_HD Offsets3 layout_offsets(const StridedLayout& L, int64_t linear) {
  Offsets3 r{{0, 0, 0}};
  for (int d = L.ndim - 1; d >= 0; --d) {
    const int64_t extent = L.shape[d];
    const int64_t coord = linear % extent;
    linear /= extent;
    r.o[0] += coord * L.stride[0][d];
    r.o[1] += coord * L.stride[1][d];
    r.o[2] += coord * L.stride[2][d];
  }
  return r;
}

// Host validation shared by the strided entry points.
inline void check_layout(const StridedLayout& L, const char* op) {
  if (L.ndim < 0 || L.ndim > kMaxDims)
    throw std::invalid_argument(std::string(op) + ": ndim " + std::to_string(L.ndim) +
                                " outside [0, " + std::to_string(kMaxDims) + "]");
  for (int d = 0; d < L.ndim; ++d)
    if (L.shape[d] < 0)
      throw std::invalid_argument(std::string(op) + ": negative extent " +
                                  std::to_string(L.shape[d]) + " in dim " + std::to_string(d));
}

// ---- histogram ----
// Bins split [lo, hi] into nbins equal intervals, each closed on the left; the last bin is
// also closed on the right so x == hi is counted (numpy.histogram's convention). Returns
// the bin index, or kBinBelow (x < lo), kBinAbove (x > hi), kBinNaN. The float computation
// here *is* the definition: CPU and GPU both call this function.
inline constexpr int kBinBelow = -1;
inline constexpr int kBinAbove = -2;
inline constexpr int kBinNaN = -3;

GL_HD int histogram_bin(float x, float lo, float hi, int nbins) {
  if (!(x == x)) return kBinNaN;
  if (x < lo) return kBinBelow;
  if (x > hi) return kBinAbove;
  const float scale = float(nbins) / (hi - lo);
  int b = int((x - lo) * scale);
  // Rounding can push values just below hi (and hi itself) to nbins.
  if (b >= nbins) b = nbins - 1;
  if (b < 0) b = 0;
  return b;
}

// ---- SGEMM thread maps ----
// A thread of a tiled GEMM block owns TM x TN outputs as (TM/4) x (TN/4) groups of 4x4.
// Group g of a thread at row position `ty` (0 <= ty < threads_m = BM/TM) covers tile rows
// g * (threads_m * 4) + ty * 4 + [0, 4). Consecutive threads thus read consecutive float4s
// from shared memory (no bank conflicts), and the groups of all threads tile [0, BM) once.
GL_HD int gemm_frag_row(int ty, int i, int BM, int TM) {
  const int threads_m = BM / TM;
  return (i / 4) * (threads_m * 4) + ty * 4 + (i % 4);
}

// Global->shared load map for a tile of `rows` x `cols` floats that is contiguous along
// `cols` in memory: float4 number f covers row f / (cols/4), columns (f % (cols/4)) * 4 + [0,4).
struct TileCoord {
  int row, col;
};
GL_HD TileCoord gemm_load_coord(int f, int cols) {
  const int per_row = cols / 4;
  return TileCoord{f / per_row, (f % per_row) * 4};
}

// Split-K: split s of `splits` covers k in [begin, end); chunks are multiples of BK so that
// every split except the last runs whole tiles.
struct KRange {
  int64_t begin, end;
};
GL_HD int64_t splitk_chunk(int64_t K, int splits, int BK) {
  int64_t chunk = (K + splits - 1) / splits;
  chunk = (chunk + BK - 1) / BK * BK;
  return chunk;
}
GL_HD KRange splitk_range(int64_t K, int splits, int BK, int s) {
  const int64_t chunk = splitk_chunk(K, splits, BK);
  int64_t b = chunk * s;
  int64_t e = b + chunk;
  if (b > K) b = K;
  if (e > K) e = K;
  return KRange{b, e};
}

// ---- launch grids ----
// gridDim.x may reach 2^31 - 1 blocks, gridDim.y and gridDim.z only 65535. A launcher whose y
// or z extent grows with the problem launches in chunks: f(first, count) for consecutive
// ranges [first, first + count) of at most `limit` blocks covering [0, total), none when
// total <= 0; the kernel adds `first` to its blockIdx.
inline constexpr int64_t kMaxGridX = 0x7fffffff;
inline constexpr int64_t kMaxGridYZ = 65535;
template <class F>
void for_each_grid_chunk(int64_t total, F&& f, int64_t limit = kMaxGridYZ) {
  if (limit <= 0) throw std::invalid_argument("for_each_grid_chunk: limit must be positive");
  for (int64_t first = 0; first < total; first += limit)
    f(first, total - first < limit ? total - first : limit);
}

// ---- multi-tensor chunk table ----
// One CUDA block per chunk: chunk c updates elements [start, start + min(chunk, n - start)) of
// tensor `tensor`. Empty tensors get no chunk.
struct TensorChunk {
  int32_t tensor;
  int32_t pad_;
  int64_t start;
};
inline std::vector<TensorChunk> build_chunks(const std::vector<int64_t>& sizes, int64_t chunk) {
  if (chunk <= 0) throw std::invalid_argument("build_chunks: chunk must be positive");
  std::vector<TensorChunk> out;
  for (size_t t = 0; t < sizes.size(); ++t) {
    if (sizes[t] < 0)
      throw std::invalid_argument("build_chunks: tensor " + std::to_string(t) +
                                  " has negative size " + std::to_string(sizes[t]));
    for (int64_t s = 0; s < sizes[t]; s += chunk) out.push_back({int32_t(t), 0, s});
  }
  return out;
}

}  // namespace gl::kernels::cuda

namespace gl::kernels::cuda {

// ---- SGEMM tiling choice (host) ----
// large: 128x128x8 block tiles, 8x8 per thread, 256 threads.
// small: 32x32x16 block tiles, 4x4 per thread, 64 threads, optionally split along K.
enum class GemmTiling : int { large = 0, small = 1 };
struct GemmPlan {
  GemmTiling tiling;
  int splits;  // K splits (1 = none); partial sums go through a workspace, then one reduction
};
inline constexpr int kSmallSplitMinK = 128;
inline constexpr int kMaxSplits = 16;

// Enough 128x128 tiles to occupy half the SMs -> large tiles. Otherwise small tiles, split
// along K until there are about two blocks per SM, each split keeping at least 128 of K.
// (Thresholds chosen by reasoning, not yet tuned on a GPU.)
inline GemmPlan plan_sgemm(int64_t M, int64_t N, int64_t K, int sms) {
  const int64_t large_tiles = ((M + 127) / 128) * ((N + 127) / 128);
  if (large_tiles * 2 >= sms) return {GemmTiling::large, 1};
  const int64_t small_tiles = ((M + 31) / 32) * ((N + 31) / 32);
  int64_t splits = 1;
  if (small_tiles < sms && K >= 2 * kSmallSplitMinK) {
    splits = (2 * int64_t(sms) + small_tiles - 1) / small_tiles;
    const int64_t by_k = K / kSmallSplitMinK;
    if (splits > by_k) splits = by_k;
    if (splits > kMaxSplits) splits = kMaxSplits;
    if (splits < 1) splits = 1;
  }
  return {GemmTiling::small, int(splits)};
}

// a / b and a % b for 0 <= a, 0 < b: in 32 bits when both fit (a GPU divides 64-bit integers in
// software, many times slower), else in 64.
GL_HD void divmod_nonneg(int64_t a, int64_t b, int64_t& q, int64_t& r) {
  if (((a | b) >> 31) == 0) {
    const uint32_t q32 = uint32_t(a) / uint32_t(b);
    q = int64_t(q32);
    r = int64_t(uint32_t(a) - q32 * uint32_t(b));
  } else {
    q = a / b;
    r = a - q * b;
  }
}

// ---- convolution and pooling gathers (the backward passes read, never scatter) ----
// The output position o (0 <= o < n_out) whose tap k reads input position i, for a window of
// o * stride - pad + k * dil; -1 when no output's tap k lands on i.
GL_HD int64_t conv_tap_source(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                              int64_t n_out) {
  const int64_t t = i + pad - k * dil;
  if (t < 0) return -1;
  int64_t o, rest;
  divmod_nonneg(t, stride, o, rest);
  return rest == 0 && o < n_out ? o : -1;
}

struct IndexRange {
  int64_t lo, hi;  // [lo, hi), empty when hi <= lo
};

// The pooling windows [o * stride - pad, o * stride - pad + k) (0 <= o < n_out) that hold
// input position i.
GL_HD IndexRange pool_windows(int64_t i, int64_t stride, int64_t pad, int64_t k, int64_t n_out) {
  // o * stride - pad <= i  and  i < o * stride - pad + k
  const int64_t last = (i + pad) / stride;  // i + pad >= 0 always
  const int64_t t = i + pad - k + 1;        // o * stride >= t
  const int64_t first = t <= 0 ? 0 : (t + stride - 1) / stride;
  return {first, last + 1 < n_out ? last + 1 : n_out};
}

// Adaptive pooling's bins over n_in positions: bin b covers [b * n_in / n_out,
// ceil((b + 1) * n_in / n_out)) (kernels/cpu/conv.h); the bins that hold input position i.
GL_HD int64_t adaptive_bin_start(int64_t b, int64_t n_in, int64_t n_out) {
  return b * n_in / n_out;
}
GL_HD int64_t adaptive_bin_end(int64_t b, int64_t n_in, int64_t n_out) {
  return ((b + 1) * n_in + n_out - 1) / n_out;
}
GL_HD IndexRange adaptive_bins(int64_t i, int64_t n_in, int64_t n_out) {
  // Bins are at least one position wide and their starts and ends never decrease, so the bins
  // holding i are consecutive, around i * n_out / n_in.
  int64_t lo = i * n_out / n_in, hi = lo;
  while (lo > 0 && adaptive_bin_end(lo - 1, n_in, n_out) > i) --lo;
  while (lo < n_out && adaptive_bin_end(lo, n_in, n_out) <= i) ++lo;
  hi = lo;
  while (hi < n_out && adaptive_bin_start(hi, n_in, n_out) <= i) ++hi;
  return {lo, hi};
}

}  // namespace gl::kernels::cuda
