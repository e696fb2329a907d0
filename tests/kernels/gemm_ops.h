// gemm_ops.h: what the GEMM tests share: the ISAs this CPU can run, and the f32/f64 entry
// points (fast, reference, batched) behind one template.
#pragma once
#include <stdexcept>
#include <string>
#include <type_traits>
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
struct Ops {
  static constexpr bool kF32 = std::is_same_v<T, float>;
  static constexpr double kTolPerK = kF32 ? 2e-6 : 1e-13;
  static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, Epilogue ep) {
    if constexpr (kF32)
      sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
    else
      dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
  }
  static void ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, Epilogue ep) {
    if constexpr (kF32)
      sgemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
    else
      dgemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
  }
  static void batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* const* A,
                      int64_t lda, const T* const* B, int64_t ldb, T beta, T* const* C, int64_t ldc,
                      const T* const* bias, Activation act, int64_t count) {
    if constexpr (kF32)
      sgemm_batched(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act, count);
    else
      dgemm_batched(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act, count);
  }
};

}  // namespace gl::kernels::cpu::gemm_test
