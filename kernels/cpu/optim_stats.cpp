// optim_stats.cpp: the fused optimization-statistics pass of optim_stats.h. The AVX2 version
// keeps the six counts in int32 lanes (a comparison mask is -1, subtracted per vector) and
// flushes them to int64 every block; differences and squares are widened to double four lanes
// at a time, so each component contributes exactly what the scalar loop adds. The AVX2 code is
// compiled without FMA: the moving averages must round like the scalar loop.
#include "kernels/cpu/optim_stats.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace gl::kernels::cpu {
namespace {

std::atomic<bool> g_force_scalar{false};

bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
}
bool use_avx2() {
  return !g_force_scalar.load(std::memory_order_relaxed) && cpu_has_avx2();
}

// Components per chunk: chunk sums are added in order, whatever the thread count.
constexpr int64_t kChunk = int64_t(1) << 14;
// Below this many components the pass runs on one thread.
constexpr int64_t kParallelMin = int64_t(1) << 16;

void add_sums(OptimStepSums& a, const OptimStepSums& b) {
  a.zero += b.zero;
  a.small_prev += b.small_prev;
  a.retained += b.retained;
  a.sign_flip += b.sign_flip;
  a.local_min += b.local_min;
  a.local_max += b.local_max;
  a.weight_diff_sq += b.weight_diff_sq;
  a.zero_grad_weight_change_sq += b.zero_grad_weight_change_sq;
  a.ema_grad_sq += b.ema_grad_sq;
  a.ema_weight_sq += b.ema_weight_sq;
}

// The reference loop; also the tail of the AVX2 version.
void scalar_pass(const float* g, const float* w, float* pg, float* pw, float* eg, float* ew,
                 int64_t n, const OptimStepParams& p, OptimStepSums& s) {
  const float zt = p.zero_threshold, st = p.small_threshold, a = p.ema_keep, b = p.ema_new;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], wi = w[i], gp = pg[i], wp = pw[i];
    const float ag = std::fabs(gi), agp = std::fabs(gp);
    const bool sp = agp < st;
    s.zero += ag < zt;
    s.small_prev += sp;
    s.retained += sp && ag < st;
    const bool flip = (gi > 0.0f && gp < 0.0f) || (gi < 0.0f && gp > 0.0f);
    s.sign_flip += flip;
    const bool up = (wi > wp && gi > gp) || (wi < wp && gi < gp);
    const bool down = (wi > wp && gi < gp) || (wi < wp && gi > gp);
    s.local_min += flip && up;
    s.local_max += flip && down;
    const double dw = double(wi) - double(wp);
    s.weight_diff_sq += dw * dw;
    if (agp < zt) s.zero_grad_weight_change_sq += dw * dw;
    const float ma = a * eg[i], mb = b * gi;  // two roundings, then the sum: as the AVX2 code
    const float e1 = ma + mb;
    const float wa = a * ew[i], wb = b * wi;
    const float e2 = wa + wb;
    eg[i] = e1;
    ew[i] = e2;
    s.ema_grad_sq += double(e1) * double(e1);
    s.ema_weight_sq += double(e2) * double(e2);
    pg[i] = gi;
    pw[i] = wi;
  }
}

#define GL_AVX2 __attribute__((target("avx2")))

GL_AVX2 inline __m256d lo_pd(__m256 v) {
  return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}
GL_AVX2 inline __m256d hi_pd(__m256 v) {
  return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
// A float lane mask widened to the matching double lanes.
GL_AVX2 inline __m256d lo_mask(__m256 m) {
  return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(_mm256_castps_si256(m))));
}
GL_AVX2 inline __m256d hi_mask(__m256 m) {
  return _mm256_castsi256_pd(
      _mm256_cvtepi32_epi64(_mm256_extracti128_si256(_mm256_castps_si256(m), 1)));
}
GL_AVX2 inline int64_t hsum_epi32(__m256i v) {
  alignas(32) int32_t x[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(x), v);
  int64_t s = 0;
  for (int32_t c : x) s += c;
  return s;
}
GL_AVX2 inline double hsum_pd(__m256d v) {
  alignas(32) double x[4];
  _mm256_store_pd(x, v);
  return (x[0] + x[1]) + (x[2] + x[3]);
}

GL_AVX2 void avx2_pass(const float* g, const float* w, float* pg, float* pw, float* eg, float* ew,
                       int64_t n, const OptimStepParams& p, OptimStepSums& s) {
  const __m256 zt = _mm256_set1_ps(p.zero_threshold), st = _mm256_set1_ps(p.small_threshold);
  const __m256 a = _mm256_set1_ps(p.ema_keep), b = _mm256_set1_ps(p.ema_new);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256d wd = _mm256_setzero_pd(), zd = wd, e1s = wd, e2s = wd;
  int64_t i = 0;
  // int32 lanes count at most kChunk / 8 per call; a chunk is the most a call receives.
  __m256i c_zero = _mm256_setzero_si256(), c_sp = c_zero, c_ret = c_zero, c_flip = c_zero,
          c_min = c_zero, c_max = c_zero;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i), wi = _mm256_loadu_ps(w + i);
    const __m256 gp = _mm256_loadu_ps(pg + i), wp = _mm256_loadu_ps(pw + i);
    const __m256 ag = _mm256_and_ps(gi, abs_mask), agp = _mm256_and_ps(gp, abs_mask);
    const __m256 m_zero = _mm256_cmp_ps(ag, zt, _CMP_LT_OQ);
    const __m256 m_sp = _mm256_cmp_ps(agp, st, _CMP_LT_OQ);
    const __m256 m_ret = _mm256_and_ps(m_sp, _mm256_cmp_ps(ag, st, _CMP_LT_OQ));
    const __m256 g_pos = _mm256_cmp_ps(gi, zero, _CMP_GT_OQ),
                 g_neg = _mm256_cmp_ps(gi, zero, _CMP_LT_OQ);
    const __m256 p_pos = _mm256_cmp_ps(gp, zero, _CMP_GT_OQ),
                 p_neg = _mm256_cmp_ps(gp, zero, _CMP_LT_OQ);
    const __m256 m_flip = _mm256_or_ps(_mm256_and_ps(g_pos, p_neg), _mm256_and_ps(g_neg, p_pos));
    const __m256 w_up = _mm256_cmp_ps(wi, wp, _CMP_GT_OQ), w_dn = _mm256_cmp_ps(wi, wp, _CMP_LT_OQ);
    const __m256 g_up = _mm256_cmp_ps(gi, gp, _CMP_GT_OQ), g_dn = _mm256_cmp_ps(gi, gp, _CMP_LT_OQ);
    const __m256 up = _mm256_or_ps(_mm256_and_ps(w_up, g_up), _mm256_and_ps(w_dn, g_dn));
    const __m256 down = _mm256_or_ps(_mm256_and_ps(w_up, g_dn), _mm256_and_ps(w_dn, g_up));
    c_zero = _mm256_sub_epi32(c_zero, _mm256_castps_si256(m_zero));
    c_sp = _mm256_sub_epi32(c_sp, _mm256_castps_si256(m_sp));
    c_ret = _mm256_sub_epi32(c_ret, _mm256_castps_si256(m_ret));
    c_flip = _mm256_sub_epi32(c_flip, _mm256_castps_si256(m_flip));
    c_min = _mm256_sub_epi32(c_min, _mm256_castps_si256(_mm256_and_ps(m_flip, up)));
    c_max = _mm256_sub_epi32(c_max, _mm256_castps_si256(_mm256_and_ps(m_flip, down)));
    // Weight differences in double, as the scalar loop forms them.
    const __m256d dlo = _mm256_sub_pd(lo_pd(wi), lo_pd(wp)),
                  dhi = _mm256_sub_pd(hi_pd(wi), hi_pd(wp));
    const __m256d d2lo = _mm256_mul_pd(dlo, dlo), d2hi = _mm256_mul_pd(dhi, dhi);
    wd = _mm256_add_pd(wd, _mm256_add_pd(d2lo, d2hi));
    const __m256 m_zg = _mm256_cmp_ps(agp, zt, _CMP_LT_OQ);
    zd = _mm256_add_pd(
        zd, _mm256_add_pd(_mm256_and_pd(lo_mask(m_zg), d2lo), _mm256_and_pd(hi_mask(m_zg), d2hi)));
    const __m256 e1 =
        _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(eg + i)), _mm256_mul_ps(b, gi));
    const __m256 e2 =
        _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(ew + i)), _mm256_mul_ps(b, wi));
    _mm256_storeu_ps(eg + i, e1);
    _mm256_storeu_ps(ew + i, e2);
    const __m256d e1lo = lo_pd(e1), e1hi = hi_pd(e1), e2lo = lo_pd(e2), e2hi = hi_pd(e2);
    e1s = _mm256_add_pd(e1s, _mm256_add_pd(_mm256_mul_pd(e1lo, e1lo), _mm256_mul_pd(e1hi, e1hi)));
    e2s = _mm256_add_pd(e2s, _mm256_add_pd(_mm256_mul_pd(e2lo, e2lo), _mm256_mul_pd(e2hi, e2hi)));
    _mm256_storeu_ps(pg + i, gi);
    _mm256_storeu_ps(pw + i, wi);
  }
  s.zero += hsum_epi32(c_zero);
  s.small_prev += hsum_epi32(c_sp);
  s.retained += hsum_epi32(c_ret);
  s.sign_flip += hsum_epi32(c_flip);
  s.local_min += hsum_epi32(c_min);
  s.local_max += hsum_epi32(c_max);
  s.weight_diff_sq += hsum_pd(wd);
  s.zero_grad_weight_change_sq += hsum_pd(zd);
  s.ema_grad_sq += hsum_pd(e1s);
  s.ema_weight_sq += hsum_pd(e2s);
  scalar_pass(g + i, w + i, pg + i, pw + i, eg + i, ew + i, n - i, p, s);
}

OptimStepSums chunk_pass(const float* g, const float* w, float* pg, float* pw, float* eg, float* ew,
                         int64_t n, const OptimStepParams& p, bool avx2) {
  OptimStepSums s;
  if (avx2)
    avx2_pass(g, w, pg, pw, eg, ew, n, p, s);
  else
    scalar_pass(g, w, pg, pw, eg, ew, n, p, s);
  return s;
}

}  // namespace

bool optim_stats_uses_avx2() {
  return use_avx2();
}
void optim_stats_force_scalar(bool on) {
  g_force_scalar.store(on);
}

OptimStepSums optim_step_stats(const float* g, const float* w, float* pg, float* pw, float* eg,
                               float* ew, int64_t n, const OptimStepParams& p) {
  const bool avx2 = use_avx2();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  OptimStepSums total;
  if (n < kParallelMin || omp_get_max_threads() == 1) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t lo = c * kChunk, len = std::min(kChunk, n - lo);
      add_sums(total, chunk_pass(g + lo, w + lo, pg + lo, pw + lo, eg + lo, ew + lo, len, p, avx2));
    }
    return total;
  }
  std::vector<OptimStepSums> part(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * kChunk, len = std::min(kChunk, n - lo);
    part[std::size_t(c)] =
        chunk_pass(g + lo, w + lo, pg + lo, pw + lo, eg + lo, ew + lo, len, p, avx2);
  }
  for (const auto& s : part) add_sums(total, s);
  return total;
}

}  // namespace gl::kernels::cpu
