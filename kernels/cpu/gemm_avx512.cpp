// gemm_avx512.cpp: AVX-512F micro-kernels of the packed GEMM: 14x32 for f32 and 14x16 for f64
// (28 zmm accumulators, 2 B vectors, 1 broadcast; 31 of the 32 registers). Only these
// functions carry the avx512f target attribute, and gemm.cpp selects them only when
// __builtin_cpu_supports("avx512f") holds. The GemmIsa tests (tests/kernels/test_gemm.cpp) run
// every ISA the CPU has against the reference.
//
// Blocking: kc = 256 keeps the 256 x 32 f32 B micro-panel (32 KiB) within the 48 KiB L1d of
// AVX-512 server cores; mc x kc of A (~140 KiB) stays in a 1-2 MiB L2.
#include <immintrin.h>

#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu/gemm_pack.h"

namespace gl::kernels::cpu::detail {
namespace {

// The micro-kernels start on a cache line, so their inner loops sit the same way in every
// build (placed 16 bytes off, the 14-row kernel ran 12% slower on M = 128, N = 10, K = 128).
#define GL_UK_TARGET __attribute__((target("avx512f"), aligned(64)))
#define GL_VEC static inline __attribute__((target("avx512f"), always_inline))

struct Avx512F32 {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  GL_VEC V zero() { return _mm512_setzero_ps(); }
  GL_VEC V set1(T x) { return _mm512_set1_ps(x); }
  GL_VEC V load(const T* p) { return _mm512_load_ps(p); }
  GL_VEC V loadu(const T* p) { return _mm512_loadu_ps(p); }
  GL_VEC void store(T* p, V x) { _mm512_store_ps(p, x); }
  GL_VEC void storeu(T* p, V x) { _mm512_storeu_ps(p, x); }
  GL_VEC V bcast(const T* p) { return _mm512_set1_ps(*p); }
  GL_VEC V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  GL_VEC V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  GL_VEC V add(V a, V b) { return _mm512_add_ps(a, b); }
  // fn::Relu's bits: 0 where x <= 0 (-0 too), x elsewhere (NaN propagates).
  GL_VEC V relu(V x) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_NLE_UQ), x); }
};

struct Avx512F64 {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  GL_VEC V zero() { return _mm512_setzero_pd(); }
  GL_VEC V set1(T x) { return _mm512_set1_pd(x); }
  GL_VEC V load(const T* p) { return _mm512_load_pd(p); }
  GL_VEC V loadu(const T* p) { return _mm512_loadu_pd(p); }
  GL_VEC void store(T* p, V x) { _mm512_store_pd(p, x); }
  GL_VEC void storeu(T* p, V x) { _mm512_storeu_pd(p, x); }
  GL_VEC V bcast(const T* p) { return _mm512_set1_pd(*p); }
  GL_VEC V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  GL_VEC V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  GL_VEC V add(V a, V b) { return _mm512_add_pd(a, b); }
  GL_VEC V relu(V x) { return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(x, zero(), _CMP_NLE_UQ), x); }
};

#include "kernels/cpu/gemm_pack_avx.inc"
#include "kernels/cpu/gemm_ukernel.inc"

#undef GL_VEC
#undef GL_UK_TARGET

}  // namespace

const KernelSet<float>& avx512_sgemm_kernel() {
  static const KernelSet<float> k{"avx512",
                                  14,
                                  32,
                                  140,
                                  256,
                                  4096,
                                  &ukernel<Avx512F32, 14, 2>,
                                  &ukernel_direct_a<Avx512F32, 14, 2>,
                                  &pack_a_generic<float, 14>,
                                  &pack_b_f32<32>,
                                  direct_a_edges<Avx512F32, 2>(std::make_index_sequence<13>{})};
  return k;
}
const KernelSet<double>& avx512_dgemm_kernel() {
  static const KernelSet<double> k{"avx512",
                                   14,
                                   16,
                                   112,
                                   256,
                                   4096,
                                   &ukernel<Avx512F64, 14, 2>,
                                   &ukernel_direct_a<Avx512F64, 14, 2>,
                                   &pack_a_generic<double, 14>,
                                   &pack_b_generic<double, 16>};
  return k;
}

}  // namespace gl::kernels::cpu::detail
