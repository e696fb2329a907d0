// sgemm.h: single-precision GEMM on the GPU with the contract of kernels::cpu::sgemm
// (kernels/kernels.h): row-major, C[M,N] = act(alpha * op(A) op(B) + beta * C + bias[col]),
// op(A) = A^T when trans_a (A stored K x M with row stride lda), likewise B; C is not read
// when beta == 0; ep.bias is a device pointer to N floats or null. All matrices are device
// pointers. Bad arguments throw std::invalid_argument naming the function and the values.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernels.h"

namespace gl::kernels::cuda {

enum class GemmAlgo : int {
  naive = 0,  // v1: one thread per output, the teaching reference
  tiled = 1,  // v2: shared-memory blocking, register tiles, double buffering (the default)
  tf32 = 2,   // opt-in tensor cores (WMMA m16n16k8 tf32): 10-bit mantissa inputs, fp32 sums
  cublas = 3  // cublasSgemm (FP32 math mode) + our epilogue kernel: the reference backend
};
const char* gemm_algo_name(GemmAlgo algo);

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           Epilogue ep = {}, cudaStream_t stream = nullptr);

void sgemm_with(GemmAlgo algo, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                float* C, int64_t ldc, Epilogue ep = {}, cudaStream_t stream = nullptr);

// `count` GEMMs of one shape and layout with the tiled backend (the contract of
// kernels::cpu::sgemm_batched): C[i] = act(alpha * op(A[i]) op(B[i]) + beta * C[i] + bias[i]).
// A, B, C and bias are host arrays of device pointers (bias may be null, or bias[i] null).
// Up to 32 entries per launch; each C[i] is bit for bit what sgemm_tiled computes for entry i
// alone (the same plan, tiles and K splits). Bad arguments throw naming the entry.
void sgemm_tiled_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                         float beta, float* const* C, int64_t ldc, const float* const* bias,
                         Activation act, int64_t count, cudaStream_t stream = nullptr);

// The individual backends, same signature (sgemm_with dispatches to these).
#define GL_SGEMM_SIGNATURE(name)                                                            \
  void name(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,       \
            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, \
            int64_t ldc, Epilogue ep = {}, cudaStream_t stream = nullptr)
GL_SGEMM_SIGNATURE(sgemm_naive);
GL_SGEMM_SIGNATURE(sgemm_tiled);
GL_SGEMM_SIGNATURE(sgemm_tf32);
GL_SGEMM_SIGNATURE(sgemm_cublas);
#undef GL_SGEMM_SIGNATURE

}  // namespace gl::kernels::cuda
