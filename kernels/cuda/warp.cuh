// warp.cuh: warp-shuffle and block reductions shared by the reduction, softmax and statistics
// kernels (device code only; included from .cu files).
#pragma once
#include <cuda_runtime.h>

namespace gl::kernels::cuda {

struct SumOp {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
  template <class T> __device__ __forceinline__ static T identity() { return T(0); }
};
struct MaxOp {
  // NaN-propagating: a NaN anywhere in the row makes the max NaN (as the CPU's std::max
  // loops would not; callers that need NaN checks read this as "row contains NaN").
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const {
    return (a != a || a > b) ? a : b;
  }
  template <class T> __device__ __forceinline__ static T identity() { return -T(INFINITY); }
};

// Every lane of the warp returns the reduction of the 32 lanes' values.
template <class Op, class T>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block returns the reduction. blockDim.x must be a multiple of 32 and at
// most 1024; `scratch` holds at least 32 values. Contains __syncthreads: call from all threads.
template <class Op, class T>
__device__ __forceinline__ T block_reduce(T v, Op op, T* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : Op::template identity<T>();
  return warp_reduce(v, op);
}

}  // namespace gl::kernels::cuda
