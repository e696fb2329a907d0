// kernels.h: the device-neutral kernel signatures. Raw pointers only; this layer knows
// nothing of Tensor or autograd. Every family has a CPU implementation in kernels/cpu and,
// in CUDA builds, a CUDA implementation in kernels/cuda with the same argument order.
//
// Layout conventions: all matrices are row-major; `ld*` is the distance in elements between
// consecutive rows of the matrix as stored (before the transpose flag is applied).
#pragma once
#include <cstddef>
#include <cstdint>

namespace gl::kernels {

// Activation applied in a GEMM epilogue after the optional bias.
enum class Activation : int { none = 0, relu = 1, tanh = 2, sigmoid = 3 };

// Epilogue of a GEMM: C = act(alpha * op(A) op(B) + beta * C + bias[col]).
// bias may be null (no bias); bias has N entries (one per output column).
struct Epilogue {
  const void* bias = nullptr;
  Activation act = Activation::none;
};

namespace cpu {

// Runtime-selected instruction set of the CPU kernels ("avx512", "avx2", "scalar").
const char* isa_name();
// Force a given ISA ("avx512", "avx2", "scalar" or "auto"); throws std::invalid_argument if the
// CPU cannot run it. Used by tests to cover every path the machine supports.
void set_isa(const char* name);

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, then the epilogue.
// op(A) = A if !trans_a, else A^T (A stored K x M with row stride lda).
// Threads: OpenMP, up to omp_get_max_threads().
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, Epilogue ep = {});
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
           const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
           int64_t ldc, Epilogue ep = {});

// Naive triple-loop references (the test oracle for the fast paths; also correct for any
// shape). Same contract as sgemm/dgemm.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc, Epilogue ep = {});
void dgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                     const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                     double* C, int64_t ldc, Epilogue ep = {});

}  // namespace cpu

#if defined(GRADLENS_HAVE_CUDA)
namespace cuda {
// Number of usable CUDA devices (0 when the driver or a GPU is missing; never throws).
int device_count();
}  // namespace cuda
#endif

}  // namespace gl::kernels
