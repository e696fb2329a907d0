// softmax_xent.cu: softmax, log-softmax and fused softmax + cross-entropy over the rows of a
// row-major [rows, cols] array, one warp per row (lanes stride the columns; a row costs three
// passes over global memory: max, sum of exp(x - max), write). Numerically stable: exp only
// ever sees x - rowmax <= 0. The mean loss is a second single-block kernel over the per-row
// losses in a fixed order, so it is deterministic.
// speed: not yet measured on a GPU.
#include <cmath>
#include <stdexcept>
#include <string>

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

#define GL_FOR_EACH_WARP_ROW(r)                                                   \
  const int lane = threadIdx.x & 31;                                              \
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

template <class T>
__global__ void xent_forward_kernel(const T* logits, const int64_t* labels, int64_t rows,
                                    int64_t cols, T* loss_rows) {
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

template <class T>
__global__ void mean_kernel(const T* v, int64_t n, T* mean, bool accumulate) {
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
__global__ void xent_backward_kernel(const T* logits, const int64_t* labels, int64_t rows,
                                     int64_t cols, T scale, T* dlogits) {
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
  softmax_kernel<T, false><<<grid_for_rows(rows), kThreads, 0, resolve_stream(stream)>>>(x, rows,
                                                                                       cols, y);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void log_softmax_rows(const T* x, int64_t rows, int64_t cols, T* y, cudaStream_t stream) {
  check_shape(rows, cols, "cuda::log_softmax_rows");
  if (rows == 0) return;
  softmax_kernel<T, true><<<grid_for_rows(rows), kThreads, 0, resolve_stream(stream)>>>(x, rows,
                                                                                      cols, y);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void softmax_xent_forward(const T* logits, const int64_t* labels, int64_t rows, int64_t cols,
                          T* loss_rows, T* loss_mean, bool accumulate_mean, cudaStream_t stream) {
  check_shape(rows, cols, "cuda::softmax_xent_forward");
  if (rows == 0)
    throw std::invalid_argument("cuda::softmax_xent_forward: empty batch (rows == 0)");
  stream = resolve_stream(stream);
  xent_forward_kernel<T><<<grid_for_rows(rows), kThreads, 0, stream>>>(logits, labels, rows, cols,
                                                                       loss_rows);
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

#define GL_INSTANTIATE(T)                                                                   \
  template void softmax_rows<T>(const T*, int64_t, int64_t, T*, cudaStream_t);              \
  template void log_softmax_rows<T>(const T*, int64_t, int64_t, T*, cudaStream_t);          \
  template void softmax_xent_forward<T>(const T*, const int64_t*, int64_t, int64_t, T*, T*, \
                                        bool, cudaStream_t);                                \
  template void softmax_xent_backward<T>(const T*, const int64_t*, int64_t, int64_t, T, T*,  \
                                         cudaStream_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::kernels::cuda
