// gemm_avx2.cpp: AVX2 + FMA micro-kernels of the packed GEMM: 6x16 for f32 and 6x8 for f64
// (12 ymm accumulators, 2 B vectors, 1 broadcast). Only these functions carry the avx2/fma
// target attribute; the rest of the project stays baseline x86-64. Chosen at run time only
// when the CPU reports avx2 and fma (see gemm.cpp).
//
// Blocking for Zen 3 (L1d 32 KiB, L2 512 KiB per core, L3 32 MiB): f32 kc = 384 keeps the
// 384 x 16 B micro-panel (24 KiB) in L1 and the 144 x 384 A block (216 KiB) in L2 (kc = 256
// measured ~10-20% slower at K = 784 and 1024: more passes over C); f64 uses kc = 256 with
// mc = 72 for the same footprints. The kc x nc block of B lives in L3.
#include <immintrin.h>

#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu/gemm_pack.h"

namespace gl::kernels::cpu::detail {
namespace {

// The micro-kernels start on a cache line, so their inner loops sit the same way in every
// build (placed 16 bytes off, the 14-row kernel ran 12% slower on M = 128, N = 10, K = 128).
#define GL_UK_TARGET __attribute__((target("avx2,fma"), aligned(64)))
#define GL_VEC static inline __attribute__((target("avx2,fma"), always_inline))

struct Avx2F32 {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  GL_VEC V zero() { return _mm256_setzero_ps(); }
  GL_VEC V set1(T x) { return _mm256_set1_ps(x); }
  GL_VEC V load(const T* p) { return _mm256_load_ps(p); }
  GL_VEC V loadu(const T* p) { return _mm256_loadu_ps(p); }
  GL_VEC void store(T* p, V x) { _mm256_store_ps(p, x); }
  GL_VEC void storeu(T* p, V x) { _mm256_storeu_ps(p, x); }
  GL_VEC V bcast(const T* p) { return _mm256_broadcast_ss(p); }
  GL_VEC V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  GL_VEC V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  GL_VEC V add(V a, V b) { return _mm256_add_ps(a, b); }
  // fn::Relu's bits: 0 where x <= 0 (-0 too), x elsewhere (NaN propagates).
  GL_VEC V relu(V x) { return _mm256_and_ps(x, _mm256_cmp_ps(x, zero(), _CMP_NLE_UQ)); }
};

struct Avx2F64 {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  GL_VEC V zero() { return _mm256_setzero_pd(); }
  GL_VEC V set1(T x) { return _mm256_set1_pd(x); }
  GL_VEC V load(const T* p) { return _mm256_load_pd(p); }
  GL_VEC V loadu(const T* p) { return _mm256_loadu_pd(p); }
  GL_VEC void store(T* p, V x) { _mm256_store_pd(p, x); }
  GL_VEC void storeu(T* p, V x) { _mm256_storeu_pd(p, x); }
  GL_VEC V bcast(const T* p) { return _mm256_broadcast_sd(p); }
  GL_VEC V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  GL_VEC V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  GL_VEC V add(V a, V b) { return _mm256_add_pd(a, b); }
  GL_VEC V relu(V x) { return _mm256_and_pd(x, _mm256_cmp_pd(x, zero(), _CMP_NLE_UQ)); }
};

#include "kernels/cpu/gemm_pack_avx.inc"
#include "kernels/cpu/gemm_ukernel.inc"

#undef GL_VEC
#undef GL_UK_TARGET

}  // namespace

const KernelSet<float>& avx2_sgemm_kernel() {
  static const KernelSet<float> k{"avx2",
                                  6,
                                  16,
                                  144,
                                  384,
                                  4080,
                                  &ukernel<Avx2F32, 6, 2>,
                                  &ukernel_direct_a<Avx2F32, 6, 2>,
                                  &pack_a_generic<float, 6>,
                                  &pack_b_f32<16>,
                                  direct_a_edges<Avx2F32, 2>(std::make_index_sequence<5>{})};
  return k;
}
const KernelSet<double>& avx2_dgemm_kernel() {
  static const KernelSet<double> k{"avx2",
                                   6,
                                   8,
                                   72,
                                   256,
                                   4080,
                                   &ukernel<Avx2F64, 6, 2>,
                                   &ukernel_direct_a<Avx2F64, 6, 2>,
                                   &pack_a_generic<double, 6>,
                                   &pack_b_generic<double, 8>};
  return k;
}

}  // namespace gl::kernels::cpu::detail
