// pool_avx512.cpp: 2x2 stride-2 max pooling in AVX-512 (kernels/cpu/pool_avx512.h).
// Forward: per output row, 16 outputs at a time; the 32 inputs of each of the window's two rows
// are split into even and odd columns, and the four candidates are compared pairwise as in the
// scalar path: a later value wins only when strictly greater, or NaN over a number, so the first
// maximum in row-major order (or the first NaN) is kept. Backward: windows do not overlap, so
// each input receives its output's gradient or zero; the even and odd columns are built with
// masks and interleaved back into the two input rows.
#include "kernels/cpu/pool_avx512.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/avx512_util.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace gl::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

// v wins over best: strictly greater, or NaN over a number.
GL_AVX512_KERNEL __mmask16 wins(__m512 v, __m512 best) {
  const __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
  const __mmask16 nan_v = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __mmask16 num_best = _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
  return gt | (nan_v & num_best);
}

GL_AVX512_KERNEL void forward(int64_t planes, int64_t h, int64_t w, const float* x, float* out,
                              int32_t* argmax) {
  const int64_t oh = h / 2, ow = w / 2;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i col2 = even;  // 2 j for lanes j = 0 .. 15
#pragma omp parallel for schedule(static) if (planes * h * w > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* in = x + pl * h * w;
    for (int64_t i = 0; i < oh; ++i) {
      const float* r0 = in + 2 * i * w;
      const float* r1 = r0 + w;
      float* o = out + (pl * oh + i) * ow;
      int32_t* a = argmax + (pl * oh + i) * ow;
      for (int64_t j0 = 0; j0 < ow; j0 += 16) {
        const int64_t n = std::min<int64_t>(16, ow - j0);
        const __mmask16 lo = first_lanes(2 * n), hi = first_lanes(2 * n - 16), m = first_lanes(n);
        const __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * j0);
        const __m512 a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * j0 + 16);
        const __m512 b0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * j0);
        const __m512 b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * j0 + 16);
        const __m512 v0 = _mm512_permutex2var_ps(a0, even, a1);
        const __m512 v1 = _mm512_permutex2var_ps(a0, odd, a1);
        const __m512 v2 = _mm512_permutex2var_ps(b0, even, b1);
        const __m512 v3 = _mm512_permutex2var_ps(b0, odd, b1);
        const __mmask16 b01 = wins(v1, v0), b23 = wins(v3, v2);
        const __m512 m01 = _mm512_mask_blend_ps(b01, v0, v1);
        const __m512 m23 = _mm512_mask_blend_ps(b23, v2, v3);
        const __m512i k01 = _mm512_maskz_mov_epi32(b01, _mm512_set1_epi32(1));
        const __m512i k23 = _mm512_mask_blend_epi32(b23, _mm512_set1_epi32(int32_t(w)),
                                                    _mm512_set1_epi32(int32_t(w + 1)));
        const __mmask16 lower = wins(m23, m01);
        const __m512 best = _mm512_mask_blend_ps(lower, m01, m23);
        const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * i * w + 2 * j0)), col2);
        const __m512i at = _mm512_add_epi32(base, _mm512_mask_blend_epi32(lower, k01, k23));
        _mm512_mask_storeu_ps(o + j0, m, best);
        _mm512_mask_storeu_epi32(a + j0, m, at);
      }
    }
  }
}

GL_AVX512_KERNEL void backward(int64_t planes, int64_t h, int64_t w, const float* grad_out,
                               const int32_t* argmax, float* grad_x) {
  const int64_t oh = h / 2, ow = w / 2;
  // Interleave even (first operand) and odd (second) columns: lanes 0..15 and 16..31.
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i col2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const bool ragged = (h % 2) != 0 || (w % 2) != 0;  // inputs outside every window stay zero
#pragma omp parallel for schedule(static) if (planes * h * w > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dx = grad_x + pl * h * w;
    if (ragged) std::memset(dx, 0, std::size_t(h * w) * sizeof(float));
    for (int64_t i = 0; i < oh; ++i) {
      const float* g = grad_out + (pl * oh + i) * ow;
      const int32_t* a = argmax + (pl * oh + i) * ow;
      float* r0 = dx + 2 * i * w;
      float* r1 = r0 + w;
      for (int64_t j0 = 0; j0 < ow; j0 += 16) {
        const int64_t n = std::min<int64_t>(16, ow - j0);
        const __mmask16 m = first_lanes(n), lo = first_lanes(2 * n), hi = first_lanes(2 * n - 16);
        const __m512 gv = _mm512_maskz_loadu_ps(m, g + j0);
        const __m512i k = _mm512_sub_epi32(
            _mm512_maskz_loadu_epi32(m, a + j0),
            _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * i * w + 2 * j0)), col2));
        const __m512 e0 =
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_setzero_si512()), gv);
        const __m512 o0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(1)), gv);
        const __m512 e1 =
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(int32_t(w))), gv);
        const __m512 o1 =
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(int32_t(w + 1))), gv);
        _mm512_mask_storeu_ps(r0 + 2 * j0, lo, _mm512_permutex2var_ps(e0, lo_idx, o0));
        _mm512_mask_storeu_ps(r0 + 2 * j0 + 16, hi, _mm512_permutex2var_ps(e0, hi_idx, o0));
        _mm512_mask_storeu_ps(r1 + 2 * j0, lo, _mm512_permutex2var_ps(e1, lo_idx, o1));
        _mm512_mask_storeu_ps(r1 + 2 * j0 + 16, hi, _mm512_permutex2var_ps(e1, hi_idx, o1));
      }
    }
  }
}

}  // namespace

void max_pool_2x2_forward_avx512(int64_t planes, int64_t h, int64_t w, const float* x, float* out,
                                 int32_t* argmax) {
  forward(planes, h, w, x, out, argmax);
}

void max_pool_2x2_backward_avx512(int64_t planes, int64_t h, int64_t w, const float* grad_out,
                                  const int32_t* argmax, float* grad_x) {
  backward(planes, h, w, grad_out, argmax, grad_x);
}

}  // namespace gl::kernels::cpu
