// ops_cuda.h: the device halves of the engine's ops. Each function takes and returns CUDA
// tensors and does no autograd: the ops in engine/ops/*.cpp check arguments, call these for
// device tensors and attach the same backward closures as on the CPU. Only compiled in CUDA
// builds (the layer glob drops engine/cuda/ otherwise); callers guard with GRADLENS_HAVE_CUDA.
// Each function runs on the device of its tensors, whichever device is current: it makes that
// device current for the call (device_scope), so every launch goes to the runtime's default
// stream of the device that holds the memory; the ops on a device are ordered among
// themselves and none waits for the host.
#pragma once
#include <utility>
#include <vector>

#include "engine/cuda/functor_ops.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace gl::kernels::cuda {
class DeviceScope;  // kernels/cuda/runtime.h, which callers of device_scope include
}

namespace gl::cuda_ops {

// Makes the device of t (a CUDA tensor) the current one until the scope ends; a CPU or
// undefined tensor changes nothing. Every entry point below opens one, and so does any other
// code that hands a tensor's memory to a kernel (engine/ops/conv.cpp, the optimizers).
kc::DeviceScope device_scope(const Tensor& t);
kc::DeviceScope device_scope(Device d);

// Throws naming `op`, the devices and dtypes unless x is a floating CUDA tensor (f32 or f64;
// f32 only when f32_only).
void check_device_float(const Tensor& x, const char* op, bool f32_only = false);
// Throws naming `op`, both devices and dtypes unless a and b share device and dtype.
void check_same(const Tensor& a, const Tensor& b, const char* op);

// ---- elementwise (contiguous fast path, else strided / broadcast layout) ----
Tensor unary(const Tensor& x, kc::UnaryOp f, kc::OpParams p, const char* op);
Tensor binary(const Tensor& a, const Tensor& b, kc::BinaryOp f, kc::OpParams p, const char* op);

template <class Fn>
Tensor unary_map(const Tensor& x, const Fn& fn, const char* op) {
  if constexpr (CudaOp<Fn>::kind == MapKind::unary) {
    return unary(x, CudaOp<Fn>::op, CudaOp<Fn>::params(fn), op);
  } else {
    throw Error(fmt::format("{}: no CUDA kernel for this elementwise function (tensor {} on {})",
                            op, x.str(), x.device().str()));
  }
}
template <class Fn>
Tensor binary_map(const Tensor& a, const Tensor& b, const Fn& fn, const char* op) {
  if constexpr (CudaOp<Fn>::kind == MapKind::binary) {
    return binary(a, b, CudaOp<Fn>::op, CudaOp<Fn>::params(fn), op);
  } else {
    throw Error(fmt::format("{}: no CUDA kernel for this elementwise function ({} on {}, {} on {})",
                            op, a.str(), a.device().str(), b.str(), b.device().str()));
  }
}

// Per entry f(x[k]) / f(a[k], b[k]) over contiguous f32 tensors of one size on one device (the
// caller checks), one launch per 32 entries: each the tensor unary / binary give it alone.
std::vector<Tensor> unary_batched(const std::vector<Tensor>& x, kc::UnaryOp f, kc::OpParams p);
std::vector<Tensor> binary_batched(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                                   kc::BinaryOp f, kc::OpParams p);
template <class Fn>
std::vector<Tensor> map_batched(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                                const Fn& fn, const char* op) {
  if constexpr (CudaOp<Fn>::kind == MapKind::unary)
    return unary_batched(a, CudaOp<Fn>::op, CudaOp<Fn>::params(fn));
  else if constexpr (CudaOp<Fn>::kind == MapKind::binary)
    return binary_batched(a, b, CudaOp<Fn>::op, CudaOp<Fn>::params(fn));
  else
    throw Error(fmt::format("{}: no CUDA kernel for this elementwise function", op));
}

// ---- copies and fills (any dtype, any strides; both tensors on the same CUDA device) ----
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);

// ---- reductions ----
// Sum over the masked dims; the result has the keepdim shape and x's dtype.
Tensor sum_keepdim(const Tensor& x, const std::vector<bool>& mask);
// Whether x holds at least one tensor and every entry is a contiguous, non-empty 2-D f32 or f64
// tensor with x[0]'s shape and dtype on x[0]'s CUDA device: what the batched reductions and
// losses below take.
bool uniform_matrix_batch(const std::vector<Tensor>& x);
// sum over dim 0 of each contiguous 2-D tensor of one shape, dtype and device (the caller
// checks), one launch per 32 tensors: each the bits sum_keepdim gives it alone.
std::vector<Tensor> column_sums_batched(const std::vector<Tensor>& x);
// Row max / argmax of a contiguous [rows, n] tensor: values (x's dtype) and idx (i64), [rows].
void max_rows(const Tensor& xl, int64_t rows, int64_t n, Tensor* values, Tensor& idx);
// A zero tensor of `shape` (contiguous [rows, n]) with g[r] at (r, idx[r]).
Tensor scatter_rows(const Tensor& g, const Tensor& idx, const Shape& shape);

// ---- GEMM: C[M,N] = op(A) op(B) (+ bias), f32, through the process-wide algorithm; every
// pointer is memory of `device` ----
void sgemm(Device device, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
           const float* bias);
// `count` such GEMMs of one shape and layout (host arrays of device pointers; bias may be null,
// or an entry null): one batched launch per 32 entries with the native algorithm, else one call
// each. Each C[i] is bit for bit what sgemm computes for entry i.
void sgemm_batched(Device device, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                   float* const* C, int64_t ldc, const float* const* bias, int64_t count);

// ---- softmax and cross-entropy on contiguous [rows, n] tensors ----
Tensor softmax_rows(const Tensor& xl, bool log_form);
// Mean loss as a 0-d device tensor; labels: contiguous i64 [rows] on the same device.
Tensor xent_forward(const Tensor& logits, const Tensor& labels);
// d mean-loss / d logits for an upstream gradient of 1.
Tensor xent_backward(const Tensor& logits, const Tensor& labels);
// xent_forward and xent_backward of contiguous logits of one shape, dtype and device (the
// caller checks) against the same labels: three launches per 32 problems, each loss and
// gradient the lone calls' bits.
std::pair<std::vector<Tensor>, std::vector<Tensor>> xent_batched(const std::vector<Tensor>& logits,
                                                                 const Tensor& labels);

// ---- dropout: the multiplier mask (0 or 1/(1-p)) of the CPU rule ----
Tensor dropout_mask(const Shape& shape, DType dtype, Device device, uint64_t seed, uint64_t offset,
                    double p);

// ---- indexing; index: contiguous i64 on x's device ----
// per_coord = true: index_select along dim (index [K]); false: gather (index of oshape).
Tensor index_gather(const Tensor& x, int64_t dim, const Tensor& index, bool per_coord,
                    const Shape& oshape);
// Adjoint of index_gather: zeros(xshape) with src added at the gathered positions.
Tensor index_scatter_add(const Tensor& src, int64_t dim, const Tensor& index, bool per_coord,
                         const Shape& xshape);

// ---- metrics kept on the device ----
// counter (i64 0-d on the device) += number of rows where argmax(logits) == labels.
void count_correct(const Tensor& logits, const Tensor& labels, const Tensor& counter);

}  // namespace gl::cuda_ops
