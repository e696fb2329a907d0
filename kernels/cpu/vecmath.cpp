// vecmath.cpp: AVX2+FMA and AVX-512 exp/tanh/sigmoid/silu/gelu (vecmath_impl.inc, one source for
// both ISAs, the same bits from each). exp: Cephes expf (range reduction by ln 2,
// degree-5 polynomial, exponent by integer add), max error about 2 ulp on [-87, 88]. tanh: Cephes
// tanhf, a degree-9 odd polynomial for |x| < 0.625 and 1 - 2/(exp(2|x|) + 1) beyond. sigmoid: 1 /
// (1 + exp(-x)) with the exponent clamped so it never overflows.
#include "kernels/cpu/vecmath.h"

#include <immintrin.h>

#include <atomic>

#include "kernels/cpu/cpu_features.h"
#include "kernels/functors.h"

// GCC 12 flags the AVX-512 intrinsics' internal undefined vectors as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace gl::kernels::cpu {

namespace {
std::atomic<bool> g_force_scalar{false};

// AVX2 + FMA: 8 lanes, masks are vectors.
namespace avx2 {
#define GL_VM __attribute__((target("avx2,fma")))
using V = __m256;
using VI = __m256i;
using VM = __m256;
constexpr int VW = 8;
#define V_add _mm256_add_ps
#define V_sub _mm256_sub_ps
#define V_mul _mm256_mul_ps
#define V_div _mm256_div_ps
#define V_min _mm256_min_ps
#define V_max _mm256_max_ps
#define V_fmadd _mm256_fmadd_ps
#define V_fmsub _mm256_fmsub_ps
#define V_fnmadd _mm256_fnmadd_ps
#define V_set1 _mm256_set1_ps
#define V_setzero _mm256_setzero_ps
#define V_load _mm256_load_ps
#define V_loadu _mm256_loadu_ps
#define V_store _mm256_store_ps
#define V_storeu _mm256_storeu_ps
#define V_and _mm256_and_ps
#define V_or _mm256_or_ps
#define V_andnot _mm256_andnot_ps
#define V_round _mm256_round_ps
#define V_cmp _mm256_cmp_ps
#define V_blendv _mm256_blendv_ps
#define VM_any(m) (_mm256_movemask_ps(m) != 0)
#define V_castsi _mm256_castsi256_ps
#define VI_cvtps _mm256_cvtps_epi32
#define VI_add _mm256_add_epi32
#define VI_sub _mm256_sub_epi32
#define VI_srai _mm256_srai_epi32
#define VI_slli _mm256_slli_epi32
#define VI_set1 _mm256_set1_epi32
#include "kernels/cpu/vecmath_impl.inc"
#include "kernels/cpu/vecmath_undef.inc"
}  // namespace avx2

// AVX-512F: 16 lanes, comparisons give mask registers; the bitwise operations go through the
// integer forms (the _ps ones need AVX-512DQ).
namespace avx512 {
#define GL_VM __attribute__((target("avx512f")))
using V = __m512;
using VI = __m512i;
using VM = __mmask16;
constexpr int VW = 16;
GL_VM inline V bits_and(V a, V b) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
GL_VM inline V bits_or(V a, V b) {
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
GL_VM inline V bits_andnot(V a, V b) {
  return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
#define V_add _mm512_add_ps
#define V_sub _mm512_sub_ps
#define V_mul _mm512_mul_ps
#define V_div _mm512_div_ps
#define V_min _mm512_min_ps
#define V_max _mm512_max_ps
#define V_fmadd _mm512_fmadd_ps
#define V_fmsub _mm512_fmsub_ps
#define V_fnmadd _mm512_fnmadd_ps
#define V_set1 _mm512_set1_ps
#define V_setzero _mm512_setzero_ps
#define V_load _mm512_load_ps
#define V_loadu _mm512_loadu_ps
#define V_store _mm512_store_ps
#define V_storeu _mm512_storeu_ps
#define V_and bits_and
#define V_or bits_or
#define V_andnot bits_andnot
#define V_round _mm512_roundscale_ps
#define V_cmp _mm512_cmp_ps_mask
#define V_blendv(a, b, m) _mm512_mask_blend_ps(m, a, b)
#define VM_any(m) ((m) != 0)
#define V_castsi _mm512_castsi512_ps
#define VI_cvtps _mm512_cvtps_epi32
#define VI_add _mm512_add_epi32
#define VI_sub _mm512_sub_epi32
#define VI_srai _mm512_srai_epi32
#define VI_slli _mm512_slli_epi32
#define VI_set1 _mm512_set1_epi32
#include "kernels/cpu/vecmath_impl.inc"
#include "kernels/cpu/vecmath_undef.inc"
}  // namespace avx512

enum class Isa { scalar, avx2, avx512 };
std::atomic<bool> g_force_avx2{false};

Isa isa() {
  if (g_force_scalar.load(std::memory_order_relaxed) || !cpu_has_avx2_fma()) return Isa::scalar;
  if (cpu_runs_avx512() && !g_force_avx2.load(std::memory_order_relaxed)) return Isa::avx512;
  return Isa::avx2;
}

template <class F>
void scalar_map(const float* x, float* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}
// y = f(g, x) elementwise (the backward functors).
template <class F>
void scalar_back(const float* g, const float* x, float* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = f(g[i], x[i]);
}
}  // namespace

// Returns from the calling function through the AVX-512 or AVX2 loop; falls through to the
// scalar path.
#define GL_VEC_DISPATCH(name, ...)            \
  switch (isa()) {                            \
    case Isa::avx512:                         \
      return avx512::name##_vec(__VA_ARGS__); \
    case Isa::avx2:                           \
      return avx2::name##_vec(__VA_ARGS__);   \
    case Isa::scalar:                         \
      break;                                  \
  }

bool vecmath_uses_avx2() {
  return isa() != Isa::scalar;
}
bool vecmath_uses_avx512() {
  return isa() == Isa::avx512;
}
void vecmath_force_avx2(bool on) {
  g_force_avx2.store(on);
}
void vecmath_force_scalar(bool on) {
  g_force_scalar.store(on);
}

void exp_f32(const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(exp, x, y, n);
  scalar_map(x, y, n, fn::Exp{});
}
void tanh_f32(const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(tanh, x, y, n);
  scalar_map(x, y, n, fn::Tanh{});
}
void sigmoid_f32(const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(sigmoid, x, y, n);
  scalar_map(x, y, n, fn::Sigmoid{});
}
void silu_f32(const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(silu, x, y, n);
  scalar_map(x, y, n, fn::Silu{});
}
void gelu_f32(const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(gelu, x, y, n);
  scalar_map(x, y, n, fn::GeluErf{});
}
void gelu_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(gelu_backward, g, x, y, n);
  scalar_back(g, x, y, n, fn::GeluErfBack{});
}
void gelu_and_derivative_f32(const float* x, float* y, float* d, int64_t n) {
  GL_VEC_DISPATCH(gelu_and_derivative, x, y, d, n);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = fn::GeluErf{}(x[i]);
    d[i] = fn::GeluErfBack{}(1.0f, x[i]);  // g * (Phi + x phi): 1 * that is that
  }
}
void gelu_tanh_and_derivative_f32(const float* x, float* y, float* d, int64_t n) {
  GL_VEC_DISPATCH(gelu_tanh_and_derivative, x, y, d, n);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = fn::GeluTanh{}(x[i]);
    d[i] = fn::GeluTanhBack{}(1.0f, x[i]);
  }
}
void silu_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(silu_backward, g, x, y, n);
  scalar_back(g, x, y, n, fn::SiluBack{});
}
void gelu_tanh_f32(const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(gelu_tanh, x, y, n);
  scalar_map(x, y, n, fn::GeluTanh{});
}
void gelu_tanh_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  GL_VEC_DISPATCH(gelu_tanh_backward, g, x, y, n);
  scalar_back(g, x, y, n, fn::GeluTanhBack{});
}

namespace {
template <class F>
void scalar_rows(float* c, int64_t ldc, int64_t m, int64_t n, F f) {
  for (int64_t i = 0; i < m; ++i) scalar_map(c + i * ldc, c + i * ldc, n, f);
}
void tanh_rows_scalar(float* c, int64_t ldc, int64_t m, int64_t n) {
  scalar_rows(c, ldc, m, n, fn::Tanh{});
}
void sigmoid_rows_scalar(float* c, int64_t ldc, int64_t m, int64_t n) {
  scalar_rows(c, ldc, m, n, fn::Sigmoid{});
}
}  // namespace

RowsMapF32 activation_rows_f32(Activation act) {
  const Isa i = isa();
  switch (act) {
    case Activation::tanh:
      return i == Isa::avx512 ? avx512::tanh_rows
             : i == Isa::avx2 ? avx2::tanh_rows
                              : tanh_rows_scalar;
    case Activation::sigmoid:
      return i == Isa::avx512 ? avx512::sigmoid_rows
             : i == Isa::avx2 ? avx2::sigmoid_rows
                              : sigmoid_rows_scalar;
    case Activation::none:
    case Activation::relu:
      break;
  }
  return nullptr;
}

}  // namespace gl::kernels::cpu
