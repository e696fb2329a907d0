// gemm_ops.h: what the GEMM tests share: the ISAs this CPU can run, and the f32/f64 entry
// points (fast, reference, batched) behind one template.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace gl::kernels::cpu::gemm_test {

inline std::vector<std::string> runnable_isas() {
  std::vector<std::string> out;
  for (const char* name : {"scalar", "avx2", "avx512"}) {
    try {
      set_isa(name);
      out.push_back(name);
    } catch (const std::invalid_argument&) {
    }
  }
  set_isa("auto");
  return out;
}

template <class T>
struct Ops;
template <>
struct Ops<float> {
  static constexpr double kTolPerK = 2e-6;
  static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                   Epilogue ep) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
  }
  static void ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                  Epilogue ep) {
    sgemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
  }
  static void batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                      float beta, float* const* C, int64_t ldc, const float* const* bias,
                      Activation act, int64_t count) {
    sgemm_batched(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act, count);
  }
};
template <>
struct Ops<double> {
  static constexpr double kTolPerK = 1e-13;
  static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                   int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc,
                   Epilogue ep) {
    dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
  }
  static void ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc,
                  Epilogue ep) {
    dgemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
  }
  static void batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                      const double* const* A, int64_t lda, const double* const* B, int64_t ldb,
                      double beta, double* const* C, int64_t ldc, const double* const* bias,
                      Activation act, int64_t count) {
    dgemm_batched(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act, count);
  }
};

}  // namespace gl::kernels::cpu::gemm_test
