// Temporary: forwards to the reference until the packed kernels land.
#include "kernels/kernels.h"
namespace gl::kernels::cpu {
const char* isa_name() { return "scalar"; }
void set_isa(const char*) {}
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           Epilogue ep) {
  sgemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}
void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
           int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc,
           Epilogue ep) {
  dgemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}
}  // namespace gl::kernels::cpu
