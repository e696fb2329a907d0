// softmax_xent.cu: softmax, log-softmax and fused softmax + cross-entropy over the rows of a
// row-major [rows, cols] array, one warp per row (lanes stride the columns; a row costs three
// passes over global memory: max, sum of exp(x - max), write). Numerically stable: exp only
// ever sees x - rowmax <= 0. The mean loss is a second single-block kernel over the per-row
// losses in a fixed order, so it is deterministic. The batched loss and gradient run the same
// row and block code per problem, blockIdx.y naming the problem (up to 32 per launch).
// speed: not yet measured on a GPU.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/batch.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/softmax_xent.h"
#include "kernels/cuda/warp.cuh"
#include "kernels/functors.h"

namespace gl::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;
constexpr int kMaxGrid = 65535;

// Row max and sum of exp(x - max) for the warp's row; every lane gets both.
template <class T>
__device__ __forceinline__ void row_max_sum(const T* row, int64_t cols, int lane, T& mx, T& sum) {
  T m = -T(INFINITY);
  for (int64_t c = lane; c < cols; c += 32) m = fmax(m, row[c]);
  m = warp_reduce(m, MaxOp{});
  T s = T(0);
  for (int64_t c = lane; c < cols; c += 32) s += fn::m_exp(row[c] - m);
  s = warp_reduce(s, SumOp{});
  mx = m;
  sum = s;
}

#define GL_FOR_EACH_WARP_ROW(r)                                                        \
  const int lane = threadIdx.x & 31;                                                   \
  for (int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5); r < rows; \
       r += int64_t(gridDim.x) * kRowsPerBlock)

template <class T, bool kLog>
__global__ void softmax_kernel(const T* x, int64_t rows, int64_t cols, T* y) {
  GL_FOR_EACH_WARP_ROW(r) {
    const T* in = x + r * cols;
    T* out = y + r * cols;
    T m, s;
    row_max_sum(in, cols, lane, m, s);
    if constexpr (kLog) {
      const T lse = fn::m_log(s);
      for (int64_t c = lane; c < cols; c += 32) out[c] = in[c] - m - lse;
    } else {
      const T inv = T(1) / s;
      for (int64_t c = lane; c < cols; c += 32) out[c] = fn::m_exp(in[c] - m) * inv;
    }
  }
}

// The bodies of the cross-entropy kernels, shared by the lone and the batched kernels so that
// each batched entry gets the lone call's bits.
template <class T>
__device__ __forceinline__ void xent_forward_rows(const T* logits, const int64_t* labels,
                                                  int64_t rows, int64_t cols, T* loss_rows) {
  GL_FOR_EACH_WARP_ROW(r) {
    const T* in = logits + r * cols;
    T m, s;
    row_max_sum(in, cols, lane, m, s);
    if (lane == 0) {
      const int64_t y = labels[r];
      loss_rows[r] = (y >= 0 && y < cols) ? m + fn::m_log(s) - in[y] : T(NAN);
    }
  }
}

// One block: *mean (+)= the mean of v's n entries.
template <class T>
__device__ __forceinline__ void mean_block(const T* v, int64_t n, T* mean, bool accumulate) {
  __shared__ T scratch[32];
  T acc = T(0);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += v[i];
  acc = block_reduce(acc, SumOp{}, scratch);
  if (threadIdx.x == 0) {
    const T m = acc / T(n);
    *mean = accumulate ? *mean + m : m;
  }
}

template <class T>
__device__ __forceinline__ void xent_backward_rows(const T* logits, const int64_t* labels,
                                                   int64_t rows, int64_t cols, T scale,
                                                   T* dlogits) {
  GL_FOR_EACH_WARP_ROW(r) {
    const T* in = logits + r * cols;
    T* out = dlogits + r * cols;
    T m, s;
    row_max_sum(in, cols, lane, m, s);
    const int64_t y = labels[r];
    const bool ok = y >= 0 && y < cols;
    const T inv = T(1) / s;
    for (int64_t c = lane; c < cols; c += 32) {
      const T p = fn::m_exp(in[c] - m) * inv;
      out[c] = ok ? scale * (p - (c == y ? T(1) : T(0))) : T(NAN);
    }
  }
}

template <class T>
__global__ void xent_forward_kernel(const T* logits, const int64_t* labels, int64_t rows,
                                    int64_t cols, T* loss_rows) {
  xent_forward_rows(logits, labels, rows, cols, loss_rows);
}

template <class T>
__global__ void mean_kernel(const T* v, int64_t n, T* mean, bool accumulate) {
  mean_block(v, n, mean, accumulate);
}

template <class T>
__global__ void xent_backward_kernel(const T* logits, const int64_t* labels, int64_t rows,
                                     int64_t cols, T scale, T* dlogits) {
  xent_backward_rows(logits, labels, rows, cols, scale, dlogits);
}

// Up to kXentBatchMax problems per launch, by value (4 * 32 pointers: 1 KB of the 4 KB of
// kernel arguments): entry blockIdx.y.
constexpr int kXentBatchMax = 32;
template <class T>
struct XentBatch {
  const T* logits[kXentBatchMax];
  T* loss_rows[kXentBatchMax];
  T* loss_mean[kXentBatchMax];
  T* dlogits[kXentBatchMax];
};

template <class T>
__global__ void xent_forward_batched_kernel(XentBatch<T> t, const int64_t* labels, int64_t rows,
                                            int64_t cols) {
  xent_forward_rows(t.logits[blockIdx.y], labels, rows, cols, t.loss_rows[blockIdx.y]);
}

template <class T>
__global__ void mean_batched_kernel(XentBatch<T> t, int64_t n) {
  mean_block(t.loss_rows[blockIdx.y], n, t.loss_mean[blockIdx.y], false);
}

template <class T>
__global__ void xent_backward_batched_kernel(XentBatch<T> t, const int64_t* labels, int64_t rows,
                                             int64_t cols, T scale) {
  xent_backward_rows(t.logits[blockIdx.y], labels, rows, cols, scale, t.dlogits[blockIdx.y]);
}

int grid_for_rows(int64_t rows) {
  int64_t g = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  return int(g > kMaxGrid ? kMaxGrid : g);
}

void check_shape(int64_t rows, int64_t cols, const char* op) {
  if (rows < 0 || cols <= 0)
    throw std::invalid_argument(std::string(op) + ": bad shape [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "] (need rows >= 0, cols >= 1)");
}

}  // namespace

template <class T>
void softmax_rows(const T* x, int64_t rows, int64_t cols, T* y, cudaStream_t stream) {
  check_shape(rows, cols, "cuda::softmax_rows");
  if (rows == 0) return;
  softmax_kernel<T, false>
      <<<grid_for_rows(rows), kThreads, 0, resolve_stream(stream)>>>(x, rows, cols, y);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void log_softmax_rows(const T* x, int64_t rows, int64_t cols, T* y, cudaStream_t stream) {
  check_shape(rows, cols, "cuda::log_softmax_rows");
  if (rows == 0) return;
  softmax_kernel<T, true>
      <<<grid_for_rows(rows), kThreads, 0, resolve_stream(stream)>>>(x, rows, cols, y);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void softmax_xent_forward(const T* logits, const int64_t* labels, int64_t rows, int64_t cols,
                          T* loss_rows, T* loss_mean, bool accumulate_mean, cudaStream_t stream) {
  check_shape(rows, cols, "cuda::softmax_xent_forward");
  if (rows == 0) throw std::invalid_argument("cuda::softmax_xent_forward: empty batch (rows == 0)");
  stream = resolve_stream(stream);
  xent_forward_kernel<T>
      <<<grid_for_rows(rows), kThreads, 0, stream>>>(logits, labels, rows, cols, loss_rows);
  GL_CUDA_CHECK_LAUNCH();
  if (loss_mean) {
    mean_kernel<T><<<1, kThreads, 0, stream>>>(loss_rows, rows, loss_mean, accumulate_mean);
    GL_CUDA_CHECK_LAUNCH();
  }
}

template <class T>
void softmax_xent_backward(const T* logits, const int64_t* labels, int64_t rows, int64_t cols,
                           T grad_scale, T* dlogits, cudaStream_t stream) {
  check_shape(rows, cols, "cuda::softmax_xent_backward");
  if (rows == 0) return;
  xent_backward_kernel<T><<<grid_for_rows(rows), kThreads, 0, resolve_stream(stream)>>>(
      logits, labels, rows, cols, grad_scale / T(rows), dlogits);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void softmax_xent_batched(const T* const* logits, const int64_t* labels, int64_t rows, int64_t cols,
                          T* const* loss_rows, T* const* loss_mean, T* const* dlogits,
                          int64_t count, cudaStream_t stream) {
  const char* name = "cuda::softmax_xent_batched";
  check_shape(rows, cols, name);
  if (rows == 0) throw std::invalid_argument(std::string(name) + ": empty batch (rows == 0)");
  if (!labels) throw std::invalid_argument(std::string(name) + ": null labels");
  check_batch(name, count, logits, loss_rows, loss_mean, dlogits);
  stream = resolve_stream(stream);
  // softmax_xent_backward's scale for a grad_scale of 1.
  const T scale = T(1) / T(rows);
  for_each_launch<kXentBatchMax>(count, [&](int64_t first, int entries) {
    XentBatch<T> t{};
    for (int e = 0; e < entries; ++e) {
      t.logits[e] = logits[first + e];
      t.loss_rows[e] = loss_rows[first + e];
      t.loss_mean[e] = loss_mean[first + e];
      t.dlogits[e] = dlogits[first + e];
    }
    const dim3 grid(unsigned(grid_for_rows(rows)), unsigned(entries));
    xent_forward_batched_kernel<T><<<grid, kThreads, 0, stream>>>(t, labels, rows, cols);
    GL_CUDA_CHECK_LAUNCH();
    mean_batched_kernel<T><<<dim3(1, unsigned(entries)), kThreads, 0, stream>>>(t, rows);
    GL_CUDA_CHECK_LAUNCH();
    xent_backward_batched_kernel<T><<<grid, kThreads, 0, stream>>>(t, labels, rows, cols, scale);
    GL_CUDA_CHECK_LAUNCH();
  });
}

#define GL_INSTANTIATE(T)                                                                         \
  template void softmax_rows<T>(const T*, int64_t, int64_t, T*, cudaStream_t);                    \
  template void log_softmax_rows<T>(const T*, int64_t, int64_t, T*, cudaStream_t);                \
  template void softmax_xent_forward<T>(const T*, const int64_t*, int64_t, int64_t, T*, T*, bool, \
                                        cudaStream_t);                                            \
  template void softmax_xent_backward<T>(const T*, const int64_t*, int64_t, int64_t, T, T*,       \
                                         cudaStream_t);                                           \
  template void softmax_xent_batched<T>(const T* const*, const int64_t*, int64_t, int64_t,        \
                                        T* const*, T* const*, T* const*, int64_t, cudaStream_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::kernels::cuda
