// reduce.cu: row, column and full reductions (sum, max) of a row-major [rows, cols] array.
// Rows: one warp per row (shuffle reduction) when cols < 4096, else one 256-thread block per
// row (warp shuffles, then a shared-memory pass over the warps). All elements: two passes,
// per-block partials into an allocator scratch buffer, then one block. Columns: a 32 x 8
// thread block per 32 columns; lanes read consecutive columns (coalesced), the 8 row lanes are
// combined in a fixed order; a batch of same-shape arrays runs that block code for each array,
// blockIdx.y naming the array (up to 32 per launch). Per-column work is serial over rows/8, so
// a tall narrow array (rows >> cols) uses few SMs.
// speed: not yet measured on a GPU.
#include <stdexcept>
#include <string>

#include "kernels/cuda/batch.h"
#include "kernels/cuda/reduce.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/warp.cuh"

namespace gl::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kBlockPerRowCols = 4096;
constexpr int kMaxGrid = 65535;

template <class T, class Op>
__global__ void rows_warp_kernel(const T* x, int64_t rows, int64_t cols, T* out, Op op) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x >> 5;
  for (int64_t r = int64_t(blockIdx.x) * warps_per_block + (threadIdx.x >> 5); r < rows;
       r += int64_t(gridDim.x) * warps_per_block) {
    const T* row = x + r * cols;
    T acc = Op::template identity<T>();
    for (int64_t c = lane; c < cols; c += 32) acc = op(acc, row[c]);
    acc = warp_reduce(acc, op);
    if (lane == 0) out[r] = acc;
  }
}

template <class T, class Op>
__global__ void rows_block_kernel(const T* x, int64_t rows, int64_t cols, T* out, Op op) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    T acc = Op::template identity<T>();
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc = op(acc, row[c]);
    acc = block_reduce(acc, op, scratch);
    if (threadIdx.x == 0) out[r] = acc;
  }
}

// Pass 1 of a full reduction: partial[blockIdx.x] = reduction of a grid-stride slice.
template <class T, class Op>
__global__ void partial_kernel(const T* x, int64_t n, T* partial, Op op) {
  __shared__ T scratch[32];
  T acc = Op::template identity<T>();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    acc = op(acc, x[i]);
  acc = block_reduce(acc, op, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2: one block reduces `count` partials into out[0].
template <class T, class Op>
__global__ void final_kernel(const T* partial, int count, T* out, Op op) {
  __shared__ T scratch[32];
  T acc = Op::template identity<T>();
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc = op(acc, partial[i]);
  acc = block_reduce(acc, op, scratch);
  if (threadIdx.x == 0) out[0] = acc;
}

constexpr int kColTile = 32;
constexpr int kColRowLanes = 8;

// Block blockIdx.x's 32 columns of out (+)= the column sums of x: the lone and the batched
// kernels run this same code, so each batched entry gets the lone call's bits.
template <class T>
__device__ __forceinline__ void cols_sum_block(const T* x, int64_t rows, int64_t cols, T* out,
                                               bool accumulate) {
  __shared__ T part[kColRowLanes][kColTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  T acc = T(0);
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kColRowLanes) acc += x[r * cols + c];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    T s = T(0);
#pragma unroll
    for (int i = 0; i < kColRowLanes; ++i) s += part[i][threadIdx.x];
    out[c] = accumulate ? out[c] + s : s;
  }
}

template <class T>
__global__ void cols_sum_kernel(const T* x, int64_t rows, int64_t cols, T* out, bool accumulate) {
  cols_sum_block(x, rows, cols, out, accumulate);
}

// Up to kColBatchMax arrays per launch, by value (2 * 32 pointers: 512 bytes of the 4 KB of
// kernel arguments): entry blockIdx.y.
constexpr int kColBatchMax = 32;
template <class T>
struct ColBatch {
  const T* x[kColBatchMax];
  T* out[kColBatchMax];
};

template <class T>
__global__ void cols_sum_batched_kernel(ColBatch<T> t, int64_t rows, int64_t cols,
                                        bool accumulate) {
  cols_sum_block(t.x[blockIdx.y], rows, cols, t.out[blockIdx.y], accumulate);
}

// The grid's x extent for the column sums: one block per 32 columns.
unsigned cols_grid(int64_t cols, const char* op) {
  const int64_t grid = (cols + kColTile - 1) / kColTile;
  if (grid > 0x7fffffff)
    throw std::invalid_argument(std::string(op) + ": too many columns " + std::to_string(cols));
  return unsigned(grid);
}

void check_shape(int64_t rows, int64_t cols, const char* op) {
  if (rows < 0 || cols < 0)
    throw std::invalid_argument(std::string(op) + ": negative shape [" + std::to_string(rows) +
                                ", " + std::to_string(cols) + "]");
}

template <class T, class Op>
void reduce_rows(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t s, const char* name) {
  check_shape(rows, cols, name);
  if (rows == 0) return;
  s = resolve_stream(s);
  if (cols >= kBlockPerRowCols) {
    const int grid = int(rows < kMaxGrid ? rows : kMaxGrid);
    rows_block_kernel<T, Op><<<grid, kThreads, 0, s>>>(x, rows, cols, out, Op{});
  } else {
    const int64_t rows_per_block = kThreads / 32;
    int64_t grid = (rows + rows_per_block - 1) / rows_per_block;
    if (grid > kMaxGrid) grid = kMaxGrid;
    rows_warp_kernel<T, Op><<<int(grid), kThreads, 0, s>>>(x, rows, cols, out, Op{});
  }
  GL_CUDA_CHECK_LAUNCH();
}

template <class T, class Op>
void reduce_all(const T* x, int64_t n, T* out, cudaStream_t s, const char* name) {
  if (n < 0)
    throw std::invalid_argument(std::string(name) + ": negative size " + std::to_string(n));
  s = resolve_stream(s);
  constexpr int64_t kMaxPartials = 1024;
  int64_t blocks = (n + kThreads * 4 - 1) / (kThreads * 4);
  if (blocks > kMaxPartials) blocks = kMaxPartials;
  if (blocks == 0) {
    final_kernel<T, Op><<<1, kThreads, 0, s>>>(nullptr, 0, out, Op{});
    GL_CUDA_CHECK_LAUNCH();
    return;
  }
  // Freed when this returns or throws; stream-ordered: reused only by later work on `s`.
  const DeviceBuffer<T> partial(size_t(blocks), s);
  partial_kernel<T, Op><<<int(blocks), kThreads, 0, s>>>(x, n, partial.get(), Op{});
  GL_CUDA_CHECK_LAUNCH();
  final_kernel<T, Op><<<1, kThreads, 0, s>>>(partial.get(), int(blocks), out, Op{});
  GL_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class T>
void sum_rows(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t stream) {
  reduce_rows<T, SumOp>(x, rows, cols, out, stream, "cuda::sum_rows");
}
template <class T>
void max_rows(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t stream) {
  reduce_rows<T, MaxOp>(x, rows, cols, out, stream, "cuda::max_rows");
}
template <class T>
void sum_all(const T* x, int64_t n, T* out, cudaStream_t stream) {
  reduce_all<T, SumOp>(x, n, out, stream, "cuda::sum_all");
}
template <class T>
void max_all(const T* x, int64_t n, T* out, cudaStream_t stream) {
  reduce_all<T, MaxOp>(x, n, out, stream, "cuda::max_all");
}
template <class T>
void sum_cols(const T* x, int64_t rows, int64_t cols, T* out, bool accumulate,
              cudaStream_t stream) {
  check_shape(rows, cols, "cuda::sum_cols");
  if (cols == 0) return;
  stream = resolve_stream(stream);
  cols_sum_kernel<T>
      <<<cols_grid(cols, "cuda::sum_cols"), dim3(kColTile, kColRowLanes), 0, stream>>>(
          x, rows, cols, out, accumulate);
  GL_CUDA_CHECK_LAUNCH();
}
template <class T>
void sum_cols_batched(const T* const* x, int64_t rows, int64_t cols, T* const* out, int64_t count,
                      bool accumulate, cudaStream_t stream) {
  const char* name = "cuda::sum_cols_batched";
  check_shape(rows, cols, name);
  check_batch(name, count, x, out);
  if (cols == 0) return;
  const unsigned grid = cols_grid(cols, name);
  stream = resolve_stream(stream);
  for_each_launch<kColBatchMax>(count, [&](int64_t first, int entries) {
    ColBatch<T> t{};
    for (int e = 0; e < entries; ++e) {
      t.x[e] = x[first + e];
      t.out[e] = out[first + e];
    }
    cols_sum_batched_kernel<T>
        <<<dim3(grid, unsigned(entries)), dim3(kColTile, kColRowLanes), 0, stream>>>(t, rows, cols,
                                                                                     accumulate);
    GL_CUDA_CHECK_LAUNCH();
  });
}

#define GL_INSTANTIATE(T)                                                                        \
  template void sum_rows<T>(const T*, int64_t, int64_t, T*, cudaStream_t);                       \
  template void max_rows<T>(const T*, int64_t, int64_t, T*, cudaStream_t);                       \
  template void sum_all<T>(const T*, int64_t, T*, cudaStream_t);                                 \
  template void max_all<T>(const T*, int64_t, T*, cudaStream_t);                                 \
  template void sum_cols<T>(const T*, int64_t, int64_t, T*, bool, cudaStream_t);                 \
  template void sum_cols_batched<T>(const T* const*, int64_t, int64_t, T* const*, int64_t, bool, \
                                    cudaStream_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::kernels::cuda
