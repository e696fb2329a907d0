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
// The same as a number, cheap enough for every dispatch: 0 scalar, 1 avx2, 2 avx512.
int isa_level();
// Rows of the current f32 GEMM micro-kernel's tile: an sgemm whose M is a multiple of it runs
// no partial-row tiles (callers that choose M size their blocks with it).
int64_t sgemm_tile_rows();
// Force a given ISA ("avx512", "avx2", "scalar" or "auto"); throws std::invalid_argument if the
// CPU cannot run it. Used by tests to cover every path the machine supports.
void set_isa(const char* name);

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, then the epilogue.
// op(A) = A if !trans_a, else A^T (A stored K x M with row stride lda).
// Threads: OpenMP, up to omp_get_max_threads().
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           Epilogue ep = {});
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
           const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
           int64_t ldc, Epilogue ep = {});

// `count` independent GEMMs of one shape and layout (a pointer-array batch, as
// cublasSgemmBatched): C[i] = act(alpha * op(A[i]) op(B[i]) + beta * C[i] + bias[i][col]).
// bias may be null (no bias), or bias[i] null for some entries. Every C[i] is bit for bit what
// sgemm/dgemm compute for the same arguments, at any thread count: the threads take (entry,
// row chunk of whole micro-panels) pairs, each computed with the k-order of a lone call.
void sgemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                   float beta, float* const* C, int64_t ldc, const float* const* bias,
                   Activation act, int64_t count);
void dgemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                   const double* const* A, int64_t lda, const double* const* B, int64_t ldb,
                   double beta, double* const* C, int64_t ldc, const double* const* bias,
                   Activation act, int64_t count);

// A hint for the next sgemm/dgemm/sgemm_batched/dgemm_batched call on this thread: `rows` rows
// of `row_bytes` bytes, `stride_bytes` apart from `base` (contiguous ones only: stride_bytes ==
// row_bytes, or one row), that the caller reads after it. When that call runs on one thread its
// micro-kernel brings them into L2, a cache line every few k steps, so the fetches overlap the
// arithmetic. Up to 4 regions; the call consumes them. Results never depend on it.
void prefetch_during_next_gemm(const void* base, int64_t rows, int64_t row_bytes,
                               int64_t stride_bytes);

// Naive triple-loop references (the test oracle for the fast paths; also correct for any
// shape). Same contract as sgemm/dgemm.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, Epilogue ep = {});
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
