// elementwise.h: unary and binary elementwise kernels over contiguous arrays and over N-d
// strided / broadcast layouts (index_math.h StridedLayout). The math is the functors of
// kernels/functors.h, the same types the CPU loops instantiate. Types: float and double.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/index_math.h"

namespace gl::kernels::cuda {

// y = f(x). Parameters: pow_scalar uses a (exponent), leaky_relu a (slope), clamp a, b (lo, hi).
enum class UnaryOp : int {
  neg,
  exp,
  log,
  sqrt,
  abs,
  relu,
  tanh,
  sigmoid,
  silu,
  gelu_erf,
  gelu_tanh,
  pow_scalar,
  leaky_relu,
  clamp
};
// out = f(a, b). The *_back ops take (grad_out, saved) in that order, see functors.h;
// leaky_relu_back uses a (slope), clamp_back a, b (lo, hi).
enum class BinaryOp : int {
  add,
  sub,
  mul,
  div,
  relu_back,
  leaky_relu_back,
  tanh_back_from_y,
  sigmoid_back_from_y,
  silu_back,
  gelu_erf_back,
  gelu_tanh_back,
  clamp_back
};
struct OpParams {
  double a = 0, b = 0;
};

const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);

// Contiguous: n elements. In-place (y == x, out == a or b) is allowed. Float uses 16-byte
// vector accesses when every pointer is 16-byte aligned.
template <class T>
void unary(UnaryOp op, OpParams p, int64_t n, const T* x, T* y, cudaStream_t stream = nullptr);
template <class T>
void binary(BinaryOp op, OpParams p, int64_t n, const T* a, const T* b, T* out,
            cudaStream_t stream = nullptr);

// Pointer-array batches of float arrays of n elements each, one op for all: y[k] = f(x[k]),
// out[k] = f(a[k], b[k]) for k < count, up to 32 arrays per launch; each the values unary and
// binary give that array alone. Pointers are host arrays of device pointers.
void unary_batched(UnaryOp op, OpParams p, int64_t n, const float* const* x, float* const* y,
                   int64_t count, cudaStream_t stream = nullptr);
void binary_batched(BinaryOp op, OpParams p, int64_t n, const float* const* a,
                    const float* const* b, float* const* out, int64_t count,
                    cudaStream_t stream = nullptr);

// Strided: operand 0 of the layout is the output, operand 1 the input (unary) or a, operand 2
// b. Pointers point at each operand's first element. The output must not overlap an input
// unless it is the same array with the same strides.
template <class T>
void unary_strided(UnaryOp op, OpParams p, const StridedLayout& layout, const T* x, T* y,
                   cudaStream_t stream = nullptr);
template <class T>
void binary_strided(BinaryOp op, OpParams p, const StridedLayout& layout, const T* a, const T* b,
                    T* out, cudaStream_t stream = nullptr);

// y[i] = philox_uniform(seed, stream_id, offset + i) (kernels/philox.h): the same numbers the
// CPU draws for the same (seed, stream_id, index), bit for bit.
void fill_uniform(float* y, int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset,
                  cudaStream_t stream = nullptr);

}  // namespace gl::kernels::cuda
