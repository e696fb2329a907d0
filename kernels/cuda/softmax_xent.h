// softmax_xent.h: row softmax, log-softmax and fused softmax + cross-entropy from int64 class
// labels on the GPU, for row-major [rows, cols] logits. Types: float and double.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace gl::kernels::cuda {

// y[r, :] = softmax(x[r, :]) (resp. log_softmax), computed with the row max subtracted.
template <class T>
void softmax_rows(const T* x, int64_t rows, int64_t cols, T* y, cudaStream_t stream = nullptr);
template <class T>
void log_softmax_rows(const T* x, int64_t rows, int64_t cols, T* y, cudaStream_t stream = nullptr);

// Forward: loss_rows[r] = logsumexp(logits[r, :]) - logits[r, labels[r]].
// loss_mean (a device scalar, may be null) receives mean_r loss_rows[r]; with
// accumulate_mean it is added to the value already there (an epoch total built on the device
// with no host synchronization). A label outside [0, cols) makes that row's loss NaN, which
// then shows in the mean: kernels cannot throw, and a NaN is never mistaken for a loss.
// loss_rows must hold `rows` entries (it is the scratch of the mean as well).
template <class T>
void softmax_xent_forward(const T* logits, const int64_t* labels, int64_t rows, int64_t cols,
                          T* loss_rows, T* loss_mean, bool accumulate_mean = false,
                          cudaStream_t stream = nullptr);

// Backward of the mean loss: dlogits[r, c] = grad_scale * (softmax(logits[r])[c] - [c == label]) /
// rows. grad_scale is d(objective)/d(mean loss), usually 1. Rows with a bad label get NaN.
template <class T>
void softmax_xent_backward(const T* logits, const int64_t* labels, int64_t rows, int64_t cols,
                           T grad_scale, T* dlogits, cudaStream_t stream = nullptr);

// `count` problems of one shape [rows, cols] that share the labels: for each k the forward
// (loss_rows[k], loss_mean[k]) and the backward (dlogits[k], grad_scale 1), bit for bit what
// softmax_xent_forward and softmax_xent_backward give that problem alone; up to 32 problems per
// launch, three launches (row losses, means, gradients). Host arrays of device pointers;
// loss_rows[k] holds `rows` entries.
template <class T>
void softmax_xent_batched(const T* const* logits, const int64_t* labels, int64_t rows, int64_t cols,
                          T* const* loss_rows, T* const* loss_mean, T* const* dlogits,
                          int64_t count, cudaStream_t stream = nullptr);

}  // namespace gl::kernels::cuda
