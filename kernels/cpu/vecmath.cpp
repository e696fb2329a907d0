// vecmath.cpp: AVX2+FMA exp/tanh/sigmoid/silu/gelu. exp: Cephes expf (range reduction by ln 2,
// degree-5 polynomial, exponent by integer add), max error about 2 ulp on [-87, 88]. tanh: Cephes
// tanhf, a degree-9 odd polynomial for |x| < 0.625 and 1 - 2/(exp(2|x|) + 1) beyond. sigmoid: 1 /
// (1 + exp(-x)) with the exponent clamped so it never overflows.
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

// The standard normal CDF and PDF at x, for GELU (erf form): Phi(x) = erfc(-x / sqrt 2) / 2 and
// phi(x) = exp(-x^2 / 2) / sqrt(2 pi). With z = |x| / sqrt 2: erfc(z) = 1 - z P(z^2) below 1, and
// exp(-z^2) t Q(t) with t = 1 / z beyond (two fits, for z < 2 and z >= 2). The polynomials are
// least-squares fits with relative weights (erf(z) / z on [0, 1]; erfc(z) exp(z^2) z against
// t on [1/2, 1] and [1/10, 1/2]), within 1e-7 of the function. exp(-z^2) takes the rounding
// error of z^2 into account (z^2 = hi + lo, exp(-hi) (1 - lo)), which keeps the far tail of
// Phi within about 1e-6 relative; below x = -13 both underflow to 0.
GL_AVX2 inline __m256 poly_ps(__m256 x, const float* c, int n) {
  __m256 p = _mm256_set1_ps(c[n - 1]);
  for (int i = n - 2; i >= 0; --i) p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(c[i]));
  return p;
}

constexpr float kErfSmall[8] = {1.128379225730896f,      -0.37612637877464294f,
                                0.11283783614635468f,    -0.02686547487974167f,
                                0.005221138708293438f,   -0.0008485435973852873f,
                                0.00011274713324382901f, -9.689661965239793e-06f};
constexpr float kErfcMid[9] = {0.5622915625572205f,  0.0240901131182909f,    -0.4111543595790863f,
                               0.35834887623786926f, -0.019951142370700836f, -0.22062568366527557f,
                               0.20383042097091675f, -0.08272042870521545f,  0.01347424741834402f};
constexpr float kErfcTail[9] = {
    0.5641956925392151f,    -0.0002465721336193383f, -0.2779104709625244f,
    -0.039048902690410614f, 0.6398634314537048f,     -0.7030574083328247f,
    0.017771301791071892f,  0.4986279010772705f,     -0.28581923246383667f};

GL_AVX2 inline void normal_cdf_pdf_ps(__m256 x, __m256* cdf, __m256* pdf) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  // |x| capped at 14.15 (|z| = 10), where erfc and exp(-z^2) are already 0 in f32 (keeps inf
  // out of the squares). z^2 = x^2 / 2 from the exact square of |x| (hi + lo): a rounded z
  // would cost exp(-z^2) 2 z^2 ulp of relative accuracy in the tail.
  const __m256 ax = _mm256_min_ps(_mm256_andnot_ps(sign_mask, x), _mm256_set1_ps(14.15f));
  const __m256 az = _mm256_mul_ps(ax, _mm256_set1_ps(0.70710678118654752f));
  const __m256 x2 = _mm256_mul_ps(ax, ax);
  const __m256 z2 = _mm256_mul_ps(x2, _mm256_set1_ps(0.5f));
  const __m256 z2lo = _mm256_mul_ps(_mm256_fmsub_ps(ax, ax, x2), _mm256_set1_ps(0.5f));
  __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), z2));
  e = _mm256_fnmadd_ps(e, z2lo, e);
  const __m256 small = _mm256_fnmadd_ps(az, poly_ps(z2, kErfSmall, 8), one);
  const __m256 t = _mm256_div_ps(one, _mm256_max_ps(az, one));
  const __m256 mid = poly_ps(t, kErfcMid, 9), tail = poly_ps(t, kErfcTail, 9);
  const __m256 q = _mm256_blendv_ps(tail, mid, _mm256_cmp_ps(az, _mm256_set1_ps(2.0f), _CMP_LT_OQ));
  const __m256 large = _mm256_mul_ps(_mm256_mul_ps(e, t), q);
  const __m256 erfc = _mm256_blendv_ps(large, small, _mm256_cmp_ps(az, one, _CMP_LT_OQ));
  const __m256 half = _mm256_mul_ps(_mm256_set1_ps(0.5f), erfc);
  *cdf = _mm256_blendv_ps(half, _mm256_sub_ps(one, half),
                          _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
  *pdf = _mm256_mul_ps(e, _mm256_set1_ps(0.39894228040143267794f));
}

GL_AVX2 inline __m256 gelu_ps(__m256 x) {
  __m256 cdf, pdf;
  normal_cdf_pdf_ps(x, &cdf, &pdf);
  const __m256 r = _mm256_mul_ps(x, cdf);
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// d gelu / dx = Phi(x) + x phi(x), times the incoming gradient.
GL_AVX2 inline __m256 gelu_back_ps(__m256 g, __m256 x) {
  __m256 cdf, pdf;
  normal_cdf_pdf_ps(x, &cdf, &pdf);
  const __m256 d = _mm256_fmadd_ps(x, pdf, cdf);
  const __m256 r = _mm256_mul_ps(g, d);
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x), times the incoming gradient.
GL_AVX2 inline __m256 silu_back_ps(__m256 g, __m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f), s = sigmoid_ps(x);
  const __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one));
  return _mm256_mul_ps(g, d);
}

// GELU, tanh form: 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2 / pi).
GL_AVX2 inline __m256 gelu_tanh_u_ps(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  return _mm256_mul_ps(_mm256_set1_ps(0.79788456080286535588f),
                       _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
}
GL_AVX2 inline __m256 gelu_tanh_ps(__m256 x) {
  const __m256 t = tanh_ps(gelu_tanh_u_ps(x));
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x),
                       _mm256_add_ps(_mm256_set1_ps(1.0f), t));
}
// d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2), t = tanh(u).
GL_AVX2 inline __m256 gelu_tanh_back_ps(__m256 g, __m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
  const __m256 t = tanh_ps(gelu_tanh_u_ps(x));
  const __m256 du =
      _mm256_mul_ps(_mm256_set1_ps(0.79788456080286535588f),
                    _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), _mm256_mul_ps(x, x), one));
  const __m256 a = _mm256_mul_ps(half, _mm256_add_ps(one, t));
  const __m256 b =
      _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_mul_ps(_mm256_fnmadd_ps(t, t, one), du));
  return _mm256_mul_ps(g, _mm256_add_ps(a, b));
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
GL_DEFINE_AVX2_MAP(gelu_avx2, gelu_ps(v))

// One AVX2 loop per backward (y = back(g, x)); the tail goes through zero-padded buffers.
#define GL_DEFINE_AVX2_BACK(name, fn)                                                       \
  GL_AVX2 void name(const float* g, const float* x, float* y, int64_t n) {                  \
    int64_t i = 0;                                                                          \
    for (; i + 8 <= n; i += 8)                                                              \
      _mm256_storeu_ps(y + i, fn(_mm256_loadu_ps(g + i), _mm256_loadu_ps(x + i)));          \
    if (i < n) {                                                                            \
      alignas(32) float gb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, xb[8] = {0, 0, 0, 0, 0, 0, 0, 0}; \
      for (int64_t k = i; k < n; ++k) gb[k - i] = g[k], xb[k - i] = x[k];                   \
      _mm256_store_ps(gb, fn(_mm256_load_ps(gb), _mm256_load_ps(xb)));                      \
      for (int64_t k = i; k < n; ++k) y[k] = gb[k - i];                                     \
    }                                                                                       \
  }

GL_DEFINE_AVX2_BACK(gelu_backward_avx2, gelu_back_ps)
GL_DEFINE_AVX2_BACK(silu_backward_avx2, silu_back_ps)
GL_DEFINE_AVX2_BACK(gelu_tanh_backward_avx2, gelu_tanh_back_ps)
GL_DEFINE_AVX2_MAP(gelu_tanh_avx2, gelu_tanh_ps(v))

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
void gelu_f32(const float* x, float* y, int64_t n) {
  if (use_avx2()) return gelu_avx2(x, y, n);
  scalar_map(x, y, n, fn::GeluErf{});
}
void gelu_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  if (use_avx2()) return gelu_backward_avx2(g, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = fn::GeluErfBack{}(g[i], x[i]);
}
void silu_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  if (use_avx2()) return silu_backward_avx2(g, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = fn::SiluBack{}(g[i], x[i]);
}
void gelu_tanh_f32(const float* x, float* y, int64_t n) {
  if (use_avx2()) return gelu_tanh_avx2(x, y, n);
  scalar_map(x, y, n, fn::GeluTanh{});
}
void gelu_tanh_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  if (use_avx2()) return gelu_tanh_backward_avx2(g, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = fn::GeluTanhBack{}(g[i], x[i]);
}

void relu_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::Relu{}(x[i]);
}
void relu_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::ReluBack{}(g[i], x[i]);
}
void tanh_backward_from_y_f32(const float* g, const float* t, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::TanhBackFromY{}(g[i], t[i]);
}
void sigmoid_backward_from_y_f32(const float* g, const float* s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::SigmoidBackFromY{}(g[i], s[i]);
}
}  // namespace gl::kernels::cpu
