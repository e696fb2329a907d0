// kernels.h: the engine's own small CUDA kernels that the kernel layer does not provide:
// strided copies with dtype conversion, fills, row argmax, index gathers and scatter-adds,
// the dropout mask and the correct-prediction counter. Pointer-level and free of engine
// headers, because the .cu side is compiled as C++17 by nvcc.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/index_math.h"

namespace gl::engine_cuda {

// Element type codes; the values match gl::DType.
enum class ElemType : int { f32 = 0, f64 = 1, i64 = 2, u8 = 3 };

// dst = convert(src) elementwise. Layout operand 0 is dst, operand 1 src (strides in
// elements of each tensor's own type; pointers at element 0).
void strided_copy(const kernels::cuda::StridedLayout& L, void* dst, ElemType dst_type,
                  const void* src, ElemType src_type, cudaStream_t stream);
// dst = value over layout operand 0.
void fill(const kernels::cuda::StridedLayout& L, void* dst, ElemType type, double value,
          cudaStream_t stream);

// Row argmax of a contiguous [rows, n] array, the first index on ties and a NaN winning (the
// CPU's rule). values may be null.
template <class T>
void argmax_rows(const T* x, int64_t rows, int64_t n, int64_t* idx, T* values, cudaStream_t stream);
// out[r * n + idx[r]] = g[r] (out zeroed by the caller).
template <class T>
void scatter_rows(const T* g, const int64_t* idx, int64_t rows, int64_t n, T* out,
                  cudaStream_t stream);

// Index gather along dimension `dim` of a contiguous input x of shape xshape (ndim dims).
// The output is contiguous with shape oshape (same ndim). Output element with coordinates c
// reads x at c with c[dim] replaced by
//   per_coord: index[c[dim]]  (index_select: index has oshape[dim] entries)
//   otherwise: index[flat]    (gather: index has the output's shape)
// An index outside [0, xshape[dim]) yields NaN for floating types and 0 for integers: a
// kernel cannot throw, and the host checks indices whenever they live on the host.
struct GatherGeom {
  int ndim = 0;
  int dim = 0;
  bool per_coord = false;
  int64_t xshape[kernels::cuda::kMaxDims] = {};
  int64_t oshape[kernels::cuda::kMaxDims] = {};
};
void index_gather(const GatherGeom& g, const void* x, ElemType type, const int64_t* index,
                  void* out, cudaStream_t stream);
// The adjoint: out (contiguous, xshape, zeroed by the caller) += src (contiguous, oshape)
// at the gathered positions, with atomic adds (floating types only). Out-of-range indices
// are skipped.
void index_scatter_add(const GatherGeom& g, const void* src, ElemType type, const int64_t* index,
                       void* out, cudaStream_t stream);

// mask[i] = philox::uniform_at(seed, offset, i) < p ? 0 : scale (the CPU dropout rule).
template <class T>
void dropout_mask(T* mask, int64_t n, uint64_t seed, uint64_t offset, double p, double scale,
                  cudaStream_t stream);

// counter[0] += number of r with pred[r] == labels[r].
void count_equal(const int64_t* pred, const int64_t* labels, int64_t n, int64_t* counter,
                 cudaStream_t stream);

}  // namespace gl::engine_cuda
