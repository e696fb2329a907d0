// vecmath.cpp: AVX2+FMA exp/tanh/sigmoid. exp: Cephes expf (range reduction by ln 2, degree-5
// polynomial, exponent by integer add), max error about 2 ulp on [-87, 88]. tanh: Cephes tanhf,
// a degree-9 odd polynomial for |x| < 0.625 and 1 - 2/(exp(2|x|) + 1) beyond. sigmoid:
// 1 / (1 + exp(-x)) with the exponent clamped so it never overflows.
#include "kernels/cpu/vecmath.h"

#include <immintrin.h>

#include <atomic>

#include "kernels/cpu/cpu_features.h"
#include "kernels/functors.h"

namespace gl::kernels::cpu {

namespace {
std::atomic<bool> g_force_scalar{false};

#define GL_AVX2 __attribute__((target("avx2,fma")))

GL_AVX2 inline __m256 exp_ps(__m256 x_in) {
  const __m256 hi = _mm256_set1_ps(88.7228391f), lo = _mm256_set1_ps(-88.3762626647949f);
  __m256 x = _mm256_min_ps(_mm256_max_ps(x_in, lo), hi);
  // n = round(x / ln2); r = x - n ln2 (ln2 split in two for accuracy)
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n: n in [-127, 128]; split into two factors so n = 128 and n = -127 stay finite/normal.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i half = _mm256_srai_epi32(ni, 1);
  __m256i rest = _mm256_sub_epi32(ni, half);
  __m256 s1 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  __m256 s2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, _mm256_set1_epi32(127)), 23));
  __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  // Past the float range: exp overflows to +inf and underflows to 0 (denormal results are
  // flushed), as the functors' expf does at the extremes.
  res = _mm256_blendv_ps(res, _mm256_set1_ps(__builtin_inff()),
                         _mm256_cmp_ps(x_in, _mm256_set1_ps(88.7228391f), _CMP_GT_OQ));
  res = _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x_in, lo, _CMP_LT_OQ));
  return _mm256_blendv_ps(res, x_in, _mm256_cmp_ps(x_in, x_in, _CMP_UNORD_Q));
}

GL_AVX2 inline __m256 tanh_ps(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  __m256 ax = _mm256_andnot_ps(sign_mask, x);
  // Large branch: 1 - 2 / (exp(2|x|) + 1), saturating to 1 for |x| > 9.
  __m256 e = exp_ps(_mm256_mul_ps(_mm256_min_ps(ax, _mm256_set1_ps(9.0f)), _mm256_set1_ps(2.0f)));
  __m256 large =
      _mm256_sub_ps(_mm256_set1_ps(1.0f),
                    _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
  large = _mm256_or_ps(large, _mm256_and_ps(x, sign_mask));
  // Small branch: odd polynomial.
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  __m256 use_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  __m256 r = _mm256_blendv_ps(large, small, use_small);
  // NaN in, NaN out.
  __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_blendv_ps(r, x, isnan);
}

GL_AVX2 inline __m256 sigmoid_ps(__m256 x) {
  __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x));
  __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_blendv_ps(r, x, isnan);
}

// One AVX2 loop per function; the tail goes through a zero-padded buffer.
#define GL_DEFINE_AVX2_MAP(name, expr)                     \
  GL_AVX2 void name(const float* x, float* y, int64_t n) { \
    int64_t i = 0;                                         \
    for (; i + 8 <= n; i += 8) {                           \
      __m256 v = _mm256_loadu_ps(x + i);                   \
      _mm256_storeu_ps(y + i, expr);                       \
    }                                                      \
    if (i < n) {                                           \
      alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0}; \
      for (int64_t k = i; k < n; ++k) buf[k - i] = x[k];   \
      __m256 v = _mm256_load_ps(buf);                      \
      _mm256_store_ps(buf, expr);                          \
      for (int64_t k = i; k < n; ++k) y[k] = buf[k - i];   \
    }                                                      \
  }

GL_DEFINE_AVX2_MAP(exp_avx2, exp_ps(v))
GL_DEFINE_AVX2_MAP(tanh_avx2, tanh_ps(v))
GL_DEFINE_AVX2_MAP(sigmoid_avx2, sigmoid_ps(v))
GL_DEFINE_AVX2_MAP(silu_avx2, _mm256_mul_ps(v, sigmoid_ps(v)))

bool use_avx2() {
  return !g_force_scalar.load(std::memory_order_relaxed) && cpu_has_avx2_fma();
}

template <class F>
void scalar_map(const float* x, float* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}
}  // namespace

bool vecmath_uses_avx2() {
  return use_avx2();
}
void vecmath_force_scalar(bool on) {
  g_force_scalar.store(on);
}

void exp_f32(const float* x, float* y, int64_t n) {
  if (use_avx2()) return exp_avx2(x, y, n);
  scalar_map(x, y, n, fn::Exp{});
}
void tanh_f32(const float* x, float* y, int64_t n) {
  if (use_avx2()) return tanh_avx2(x, y, n);
  scalar_map(x, y, n, fn::Tanh{});
}
void sigmoid_f32(const float* x, float* y, int64_t n) {
  if (use_avx2()) return sigmoid_avx2(x, y, n);
  scalar_map(x, y, n, fn::Sigmoid{});
}
void silu_f32(const float* x, float* y, int64_t n) {
  if (use_avx2()) return silu_avx2(x, y, n);
  scalar_map(x, y, n, fn::Silu{});
}
}  // namespace gl::kernels::cpu
