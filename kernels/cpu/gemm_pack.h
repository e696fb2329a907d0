// gemm_pack.h: the portable packing routines of the GEMM (layouts in gemm_internal.h). The
// non-transposing cases copy a contiguous MR or NR run per k, which the compiler turns into
// vector moves; the transposing cases (A as stored, B transposed) scatter with a stride of
// MR or NR here, and the AVX kernel sets replace them with in-register transposes
// (gemm_pack_avx.inc) for f32.
#pragma once
#include <algorithm>
#include <cstdint>

namespace gl::kernels::cpu::detail {

template <class T, int MR>
void pack_a_generic(bool ta, const T* A, int64_t lda, int64_t mc, int64_t kc, T* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
    const int64_t rows = std::min<int64_t>(MR, mc - i0);
    if (ta) {  // op(A)[i][k] = A[k][i]: each k reads `rows` contiguous values
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = A + k * lda + i0;
        T* d = dst + k * MR;
        if (rows == MR) {
          for (int r = 0; r < MR; ++r) d[r] = src[r];
        } else {
          for (int r = 0; r < MR; ++r) d[r] = r < rows ? src[r] : T(0);
        }
      }
    } else {  // op(A)[i][k] = A[i][k]: walk each source row contiguously
      for (int r = 0; r < MR; ++r) {
        T* d = dst + r;
        if (r < rows) {
          const T* src = A + (i0 + r) * lda;
          for (int64_t k = 0; k < kc; ++k) d[k * MR] = src[k];
        } else {
          for (int64_t k = 0; k < kc; ++k) d[k * MR] = T(0);
        }
      }
    }
  }
}

// One NR-column panel of op(B) = B (not transposed): a contiguous row segment per k.
template <class T, int NR>
void pack_b_panel_rows(const T* B, int64_t ldb, int64_t kc, int64_t cols, T* d) {
  for (int64_t k = 0; k < kc; ++k, B += ldb, d += NR) {
    if (cols == NR) {
      for (int c = 0; c < NR; ++c) d[c] = B[c];
    } else {
      for (int c = 0; c < NR; ++c) d[c] = c < cols ? B[c] : T(0);
    }
  }
}

// One NR-column panel of op(B) = B^T: column c of the panel is row c of B.
template <class T, int NR>
void pack_b_panel_trans_generic(const T* B, int64_t ldb, int64_t kc, int64_t cols, T* d) {
  for (int c = 0; c < NR; ++c) {
    if (c < cols) {
      const T* src = B + c * ldb;
      for (int64_t k = 0; k < kc; ++k) d[k * NR + c] = src[k];
    } else {
      for (int64_t k = 0; k < kc; ++k) d[k * NR + c] = T(0);
    }
  }
}

template <class T, int NR>
void pack_b_generic(bool tb, const T* B, int64_t ldb, int64_t kc, int64_t nc, int64_t p_begin,
                    int64_t p_end, T* dst) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    const int64_t j0 = p * NR, cols = std::min<int64_t>(NR, nc - j0);
    T* d = dst + p * NR * kc;
    if (tb)
      pack_b_panel_trans_generic<T, NR>(B + j0 * ldb, ldb, kc, cols, d);
    else
      pack_b_panel_rows<T, NR>(B + j0, ldb, kc, cols, d);
  }
}

}  // namespace gl::kernels::cpu::detail
