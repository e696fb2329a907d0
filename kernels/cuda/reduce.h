// reduce.h: sums and maxima on the GPU over a row-major [rows, cols] array: per row (last
// dim), per column (bias gradients), and over all elements. Types: float and double.
// Results are deterministic (fixed reduction trees, no atomics).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace gl::kernels::cuda {

// out[r] = sum_c x[r*cols + c] (out has `rows` entries). cols == 0 gives 0.
template <class T>
void sum_rows(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t stream = nullptr);
// out[r] = max_c x[r*cols + c]; -inf when cols == 0; NaN when the row holds a NaN.
template <class T>
void max_rows(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t stream = nullptr);
// out[0] = sum (max) of all n elements; a device scalar. n == 0 gives 0 (-inf).
template <class T>
void sum_all(const T* x, int64_t n, T* out, cudaStream_t stream = nullptr);
template <class T>
void max_all(const T* x, int64_t n, T* out, cudaStream_t stream = nullptr);
// out[c] (+)= sum_r x[r*cols + c]; with accumulate the sums are added to out.
template <class T>
void sum_cols(const T* x, int64_t rows, int64_t cols, T* out, bool accumulate = false,
              cudaStream_t stream = nullptr);
// sum_cols for `count` arrays of one shape: out[k][c] (+)= sum_r x[k][r*cols + c], up to 32
// arrays per launch, each entry the bits sum_cols gives that array alone. x and out are host
// arrays of device pointers.
template <class T>
void sum_cols_batched(const T* const* x, int64_t rows, int64_t cols, T* const* out, int64_t count,
                      bool accumulate = false, cudaStream_t stream = nullptr);

}  // namespace gl::kernels::cuda
