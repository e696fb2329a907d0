// gemm_reference.cpp: naive triple loops, the oracle for the packed GEMM. Accumulates in
// double for float inputs so it is more accurate than the kernels it checks.
#include <cmath>

#include "kernels/kernels.h"

namespace gl::kernels::cpu {
namespace {
template <class T>
T apply_act(T v, Activation act) {
  switch (act) {
    case Activation::none:
      return v;
    case Activation::relu:
      return v <= T(0) ? T(0) : v;  // NaN propagates
    case Activation::tanh:
      return std::tanh(v);
    case Activation::sigmoid:
      return T(1) / (T(1) + std::exp(-v));
  }
  return v;
}
template <class T>
void gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc, Epilogue ep) {
  const T* bias = static_cast<const T*>(ep.bias);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      double v = double(alpha) * acc;
      if (beta != T(0)) v += double(beta) * double(C[i * ldc + j]);
      if (bias) v += double(bias[j]);
      C[i * ldc + j] = apply_act(T(v), ep.act);
    }
  }
}
}  // namespace

void sgemm_reference(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                     Epilogue ep) {
  gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}
void dgemm_reference(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                     double* C, int64_t ldc, Epilogue ep) {
  gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}
}  // namespace gl::kernels::cpu
