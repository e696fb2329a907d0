// optim_stats.cpp: the optimization-statistics passes of optim_stats.h. The AVX2 versions
// keep the counts in int32 lanes (a comparison mask is -1, subtracted per vector) and flush
// them to int64 every call; differences and squares are widened to double four lanes at a time,
// so each component contributes exactly what the scalar loop adds. The AVX-512 versions take
// comparisons as mask registers, look the sign flip, minimum and maximum of a component up in a
// 32-entry table (indexed by its code and the sign of its gradient) and accumulate squares with
// fused multiply-adds (a float squared is exact in double, so the sums of squares of the moving
// averages equal the AVX2 ones up to summation order). The file is compiled with
// -ffp-contract=off (CMakeLists.txt): the moving averages must round like the scalar loop, two
// products then their sum, on every path.
#include "kernels/cpu/optim_stats.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace gl::kernels::cpu {
namespace {

enum class Isa : int { scalar, avx2, avx512 };

Isa best_isa() {
  static const Isa best = __builtin_cpu_supports("avx512f") ? Isa::avx512
                          : __builtin_cpu_supports("avx2")  ? Isa::avx2
                                                            : Isa::scalar;
  return best;
}
std::atomic<int> g_forced_isa{-1};  // -1: the best

Isa isa() {
  const int forced = g_forced_isa.load(std::memory_order_relaxed);
  return forced < 0 ? best_isa() : Isa(forced);
}
bool use_avx2() {  // v1: AVX2 also when AVX-512 is selected
  return isa() != Isa::scalar;
}

// v1's components per chunk: chunk sums are added in order, whatever the thread count.
constexpr int64_t kChunk = int64_t(1) << 14;
// Below this many components a whole-array pass runs on one thread.
constexpr int64_t kParallelMin = int64_t(1) << 16;

// The moving averages of one component: two roundings, then the sum (as the AVX2 code).
inline void ema_step(float keep, float fresh, float g, float w, float& eg, float& ew, double& eg_sq,
                     double& ew_sq) {
  const float ma = keep * eg, mb = fresh * g;
  const float e1 = ma + mb;
  const float wa = keep * ew, wb = fresh * w;
  const float e2 = wa + wb;
  eg = e1;
  ew = e2;
  eg_sq += double(e1) * double(e1);
  ew_sq += double(e2) * double(e2);
}

// Whole arrays as blocks of `block` components, block sums added in order whatever the thread
// count: block_pass(lo, len) returns the sums of one block.
template <class Sums, class BlockPass>
Sums blocked(int64_t n, int64_t block, BlockPass&& block_pass) {
  const int64_t blocks = (n + block - 1) / block;
  Sums total;
  if (n < kParallelMin || omp_get_max_threads() == 1) {
    for (int64_t c = 0; c < blocks; ++c)
      total += block_pass(c * block, std::min(block, n - c * block));
    return total;
  }
  std::vector<Sums> part(static_cast<std::size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < blocks; ++c)
    part[std::size_t(c)] = block_pass(c * block, std::min(block, n - c * block));
  for (const auto& s : part) total += s;
  return total;
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
    ema_step(a, b, gi, wi, eg[i], ew[i], s.ema_grad_sq, s.ema_weight_sq);
    pg[i] = gi;
    pw[i] = wi;
  }
}

#define GL_AVX2 __attribute__((target("avx2")))

// Clears the upper halves of the vector registers before the scalar tail. GCC leaves them
// dirty when the AVX2 function ends in a tail call to the (SSE-encoded) scalar loop, and then
// the caller's SSE code, the optimizer's step above all, ran several times slower (measured:
// 0.2 ms more per training step of the 784-128-128-10 MLP).
GL_AVX2 inline void leave_avx() {
  _mm256_zeroupper();
}
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

// The moving averages of 8 components (no FMA: the products round, then the sum).
GL_AVX2 inline void avx2_ema(__m256 a, __m256 b, __m256 gi, __m256 wi, float* eg, float* ew,
                             __m256d& e1s, __m256d& e2s) {
  const __m256 e1 = _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(eg)), _mm256_mul_ps(b, gi));
  const __m256 e2 = _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(ew)), _mm256_mul_ps(b, wi));
  _mm256_storeu_ps(eg, e1);
  _mm256_storeu_ps(ew, e2);
  const __m256d e1lo = lo_pd(e1), e1hi = hi_pd(e1), e2lo = lo_pd(e2), e2hi = hi_pd(e2);
  e1s = _mm256_add_pd(e1s, _mm256_add_pd(_mm256_mul_pd(e1lo, e1lo), _mm256_mul_pd(e1hi, e1hi)));
  e2s = _mm256_add_pd(e2s, _mm256_add_pd(_mm256_mul_pd(e2lo, e2lo), _mm256_mul_pd(e2hi, e2hi)));
}

// Adds (w - pw)^2 in double to wd, and to zd where the lane of `zero_grad` is set.
GL_AVX2 inline void avx2_weight_diff(__m256 wi, __m256 wp, __m256 zero_grad, __m256d& wd,
                                     __m256d& zd) {
  const __m256d dlo = _mm256_sub_pd(lo_pd(wi), lo_pd(wp)),
                dhi = _mm256_sub_pd(hi_pd(wi), hi_pd(wp));
  const __m256d d2lo = _mm256_mul_pd(dlo, dlo), d2hi = _mm256_mul_pd(dhi, dhi);
  wd = _mm256_add_pd(wd, _mm256_add_pd(d2lo, d2hi));
  zd = _mm256_add_pd(zd, _mm256_add_pd(_mm256_and_pd(lo_mask(zero_grad), d2lo),
                                       _mm256_and_pd(hi_mask(zero_grad), d2hi)));
}

GL_AVX2 inline __m256i count(__m256i c, __m256 mask) {
  return _mm256_sub_epi32(c, _mm256_castps_si256(mask));  // a set lane is -1
}

// Adds the lanes of the record counts and of the moving averages' squares to s.
GL_AVX2 inline void add_record_lanes(OptimRecordSums& s, __m256i zero, __m256i retained,
                                     __m256i flip, __m256i min, __m256i max, __m256d eg_sq,
                                     __m256d ew_sq) {
  s.zero += hsum_epi32(zero);
  s.retained += hsum_epi32(retained);
  s.sign_flip += hsum_epi32(flip);
  s.local_min += hsum_epi32(min);
  s.local_max += hsum_epi32(max);
  s.ema_grad_sq += hsum_pd(eg_sq);
  s.ema_weight_sq += hsum_pd(ew_sq);
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
    c_zero = count(c_zero, m_zero);
    c_sp = count(c_sp, m_sp);
    c_ret = count(c_ret, m_ret);
    c_flip = count(c_flip, m_flip);
    c_min = count(c_min, _mm256_and_ps(m_flip, up));
    c_max = count(c_max, _mm256_and_ps(m_flip, down));
    // Weight differences in double, as the scalar loop forms them.
    avx2_weight_diff(wi, wp, _mm256_cmp_ps(agp, zt, _CMP_LT_OQ), wd, zd);
    avx2_ema(a, b, gi, wi, eg + i, ew + i, e1s, e2s);
    _mm256_storeu_ps(pg + i, gi);
    _mm256_storeu_ps(pw + i, wi);
  }
  add_record_lanes(s, c_zero, c_ret, c_flip, c_min, c_max, e1s, e2s);
  s.small_prev += hsum_epi32(c_sp);
  s.weight_diff_sq += hsum_pd(wd);
  s.zero_grad_weight_change_sq += hsum_pd(zd);
  leave_avx();
  scalar_pass(g + i, w + i, pg + i, pw + i, eg + i, ew + i, n - i, p, s);
}

// ---------------------------------------------------------------- v2
void scalar_record(const float* g, const float* w, const uint8_t* code, float* eg, float* ew,
                   int64_t n, const OptimStepParams& p, OptimRecordSums& s) {
  const float zt = p.zero_threshold, st = p.small_threshold;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const unsigned c = code[i];
    const float ag = std::fabs(gi);
    s.zero += ag < zt;
    s.retained += (c & kCodeGradSmall) && ag < st;
    const bool pos = gi > 0.0f, neg = gi < 0.0f;
    const bool flip = (pos && (c & kCodeGradNegative)) || (neg && (c & kCodeGradPositive));
    s.sign_flip += flip;
    // With a flip, g > pg exactly when g > 0.
    const bool up = ((c & kCodeWeightUp) && pos) || ((c & kCodeWeightDown) && neg);
    const bool down = ((c & kCodeWeightUp) && neg) || ((c & kCodeWeightDown) && pos);
    s.local_min += flip && up;
    s.local_max += flip && down;
    ema_step(p.ema_keep, p.ema_new, gi, w[i], eg[i], ew[i], s.ema_grad_sq, s.ema_weight_sq);
  }
}

void scalar_update(const float* g, const float* wb, const float* wa, uint8_t* code, int64_t n,
                   const OptimStepParams& p, OptimUpdateSums& s) {
  const float zt = p.zero_threshold, st = p.small_threshold;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], ag = std::fabs(gi), before = wb[i], after = wa[i];
    code[i] = uint8_t((gi > 0.0f ? kCodeGradPositive : 0) | (gi < 0.0f ? kCodeGradNegative : 0) |
                      (after > before ? kCodeWeightUp : 0) |
                      (after < before ? kCodeWeightDown : 0) | (ag < st ? kCodeGradSmall : 0));
    s.small_prev += ag < st;
    const double dw = double(after) - double(before);
    s.weight_diff_sq += dw * dw;
    if (ag < zt) s.zero_grad_weight_change_sq += dw * dw;
  }
}

// The lanes of `code` (one per int32) whose `bit` is set, as a float mask.
GL_AVX2 inline __m256 has_bit(__m256i code, int bit) {
  const __m256i b = _mm256_set1_epi32(bit);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, b), b));
}
// Lane bits of a mask: `bit` where set, 0 elsewhere.
GL_AVX2 inline __m256i bit_of(__m256 mask, int bit) {
  return _mm256_and_si256(_mm256_castps_si256(mask), _mm256_set1_epi32(bit));
}

GL_AVX2 void avx2_record(const float* g, const float* w, const uint8_t* code, float* eg, float* ew,
                         int64_t n, const OptimStepParams& p, OptimRecordSums& s) {
  const __m256 zt = _mm256_set1_ps(p.zero_threshold), st = _mm256_set1_ps(p.small_threshold);
  const __m256 a = _mm256_set1_ps(p.ema_keep), b = _mm256_set1_ps(p.ema_new);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256d e1s = _mm256_setzero_pd(), e2s = e1s;
  __m256i c_zero = _mm256_setzero_si256(), c_ret = c_zero, c_flip = c_zero, c_min = c_zero,
          c_max = c_zero;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i), wi = _mm256_loadu_ps(w + i);
    const __m256i c =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(code + i)));
    const __m256 ag = _mm256_and_ps(gi, abs_mask);
    const __m256 m_zero = _mm256_cmp_ps(ag, zt, _CMP_LT_OQ);
    const __m256 m_ret =
        _mm256_and_ps(has_bit(c, kCodeGradSmall), _mm256_cmp_ps(ag, st, _CMP_LT_OQ));
    const __m256 g_pos = _mm256_cmp_ps(gi, zero, _CMP_GT_OQ),
                 g_neg = _mm256_cmp_ps(gi, zero, _CMP_LT_OQ);
    const __m256 m_flip = _mm256_or_ps(_mm256_and_ps(g_pos, has_bit(c, kCodeGradNegative)),
                                       _mm256_and_ps(g_neg, has_bit(c, kCodeGradPositive)));
    const __m256 w_up = has_bit(c, kCodeWeightUp), w_dn = has_bit(c, kCodeWeightDown);
    const __m256 up = _mm256_or_ps(_mm256_and_ps(w_up, g_pos), _mm256_and_ps(w_dn, g_neg));
    const __m256 down = _mm256_or_ps(_mm256_and_ps(w_up, g_neg), _mm256_and_ps(w_dn, g_pos));
    c_zero = count(c_zero, m_zero);
    c_ret = count(c_ret, m_ret);
    c_flip = count(c_flip, m_flip);
    c_min = count(c_min, _mm256_and_ps(m_flip, up));
    c_max = count(c_max, _mm256_and_ps(m_flip, down));
    avx2_ema(a, b, gi, wi, eg + i, ew + i, e1s, e2s);
  }
  add_record_lanes(s, c_zero, c_ret, c_flip, c_min, c_max, e1s, e2s);
  leave_avx();
  scalar_record(g + i, w + i, code + i, eg + i, ew + i, n - i, p, s);
}

GL_AVX2 void avx2_update(const float* g, const float* wb, const float* wa, uint8_t* code, int64_t n,
                         const OptimStepParams& p, OptimUpdateSums& s) {
  const __m256 zt = _mm256_set1_ps(p.zero_threshold), st = _mm256_set1_ps(p.small_threshold);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  // Byte 0 of each int32 lane to the low 4 bytes of its 128-bit half.
  const __m256i gather =
      _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                       -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256d wd = _mm256_setzero_pd(), zd = wd;
  __m256i c_sp = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 before = _mm256_loadu_ps(wb + i), after = _mm256_loadu_ps(wa + i);
    const __m256 ag = _mm256_and_ps(gi, abs_mask);
    const __m256 m_sp = _mm256_cmp_ps(ag, st, _CMP_LT_OQ);
    c_sp = count(c_sp, m_sp);
    const __m256i c = _mm256_or_si256(
        _mm256_or_si256(bit_of(_mm256_cmp_ps(gi, zero, _CMP_GT_OQ), kCodeGradPositive),
                        bit_of(_mm256_cmp_ps(gi, zero, _CMP_LT_OQ), kCodeGradNegative)),
        _mm256_or_si256(
            bit_of(m_sp, kCodeGradSmall),
            _mm256_or_si256(bit_of(_mm256_cmp_ps(after, before, _CMP_GT_OQ), kCodeWeightUp),
                            bit_of(_mm256_cmp_ps(after, before, _CMP_LT_OQ), kCodeWeightDown))));
    const __m256i bytes = _mm256_shuffle_epi8(c, gather);
    _mm_storel_epi64(
        reinterpret_cast<__m128i*>(code + i),
        _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1)));
    avx2_weight_diff(after, before, _mm256_cmp_ps(ag, zt, _CMP_LT_OQ), wd, zd);
  }
  s.small_prev += hsum_epi32(c_sp);
  s.weight_diff_sq += hsum_pd(wd);
  s.zero_grad_weight_change_sq += hsum_pd(zd);
  leave_avx();
  scalar_update(g + i, wb + i, wa + i, code + i, n - i, p, s);
}

// ---------------------------------------------------------------- v2, AVX-512

#define GL_AVX512 __attribute__((target("avx512f")))

// Flip, minimum and maximum counts of a component packed as flip | min << 10 | max << 20 (a lane
// counts at most kSpan / 16 = 512 < 1024 components between flushes), indexed by the low four
// bits of its code (the signs of g_{t-1} and of w_t - w_{t-1}) plus 16 when g_t is negative.
// Lanes with g_t = 0 or NaN are left out by a mask.
constexpr int64_t kSpan = 8192;
constexpr std::array<int32_t, 32> make_flip_table() {
  std::array<int32_t, 32> t{};
  for (int idx = 0; idx < 32; ++idx) {
    const bool g_neg = (idx & 16) != 0;
    const bool flip = (idx & (g_neg ? kCodeGradPositive : kCodeGradNegative)) != 0;
    // With a flip, g_t > g_{t-1} exactly when g_t > 0.
    const bool min = flip && (idx & (g_neg ? kCodeWeightDown : kCodeWeightUp)) != 0;
    const bool max = flip && (idx & (g_neg ? kCodeWeightUp : kCodeWeightDown)) != 0;
    t[std::size_t(idx)] = int32_t(flip) | int32_t(min) << 10 | int32_t(max) << 20;
  }
  return t;
}
constexpr std::array<int32_t, 32> kFlipTable = make_flip_table();

// (The maskz forms with a full mask: the plain ones trip GCC 12's -Wmaybe-uninitialized inside
// its own header.)
constexpr __mmask16 kAll16 = 0xffff;
constexpr __mmask8 kAll8 = 0xff;
GL_AVX512 inline __m512d lo_pd(__m512 v) {
  return _mm512_maskz_cvtps_pd(
      kAll8, _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(kAll8, _mm512_castps_pd(v), 0)));
}
GL_AVX512 inline __m512d hi_pd(__m512 v) {
  return _mm512_maskz_cvtps_pd(
      kAll8, _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(kAll8, _mm512_castps_pd(v), 1)));
}
GL_AVX512 inline int64_t hsum_epi32(__m512i v) {
  alignas(64) int32_t x[16];
  _mm512_store_si512(x, v);
  int64_t s = 0;
  for (int32_t c : x) s += c;
  return s;
}
GL_AVX512 inline double hsum_pd(__m512d v) {
  alignas(64) double x[8];
  _mm512_store_pd(x, v);
  return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}
GL_AVX512 inline __m512i count(__m512i c, __mmask16 k) {
  return _mm512_mask_sub_epi32(c, k, c, _mm512_set1_epi32(-1));
}
// acc + x^2 over the 16 float lanes of x, in double (the squares are exact).
GL_AVX512 inline __m512d add_squares(__m512d acc, __m512 x) {
  const __m512d lo = lo_pd(x), hi = hi_pd(x);
  return _mm512_fmadd_pd(hi, hi, _mm512_fmadd_pd(lo, lo, acc));
}

GL_AVX512 void avx512_record(const float* g, const float* w, const uint8_t* code, float* eg,
                             float* ew, int64_t n, const OptimStepParams& p, OptimRecordSums& s) {
  const __m512 zt = _mm512_set1_ps(p.zero_threshold), st = _mm512_set1_ps(p.small_threshold);
  const __m512 a = _mm512_set1_ps(p.ema_keep), b = _mm512_set1_ps(p.ema_new);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i small_bit = _mm512_set1_epi32(kCodeGradSmall), bit4 = _mm512_set1_epi32(16);
  const __m512i table_pos = _mm512_loadu_si512(kFlipTable.data()),
                table_neg = _mm512_loadu_si512(kFlipTable.data() + 16);
  __m512d e1s = _mm512_setzero_pd(), e2s = e1s;
  int64_t i = 0;
  while (i + 16 <= n) {
    __m512i c_zero = _mm512_setzero_si512(), c_ret = c_zero, c_flips = c_zero;
    for (const int64_t end = std::min(n, i + kSpan); i + 16 <= end; i += 16) {
      const __m512 gi = _mm512_loadu_ps(g + i), wi = _mm512_loadu_ps(w + i);
      const __m512i c = _mm512_maskz_cvtepu8_epi32(
          kAll16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(code + i)));
      const __m512 ag = _mm512_abs_ps(gi);
      c_zero = count(c_zero, _mm512_cmp_ps_mask(ag, zt, _CMP_LT_OQ));
      c_ret = count(
          c_ret, _mm512_mask_test_epi32_mask(_mm512_cmp_ps_mask(ag, st, _CMP_LT_OQ), c, small_bit));
      // Bits 0-3 from the code, bit 4 the sign of g (0xD8: C ? B : A).
      const __m512i idx = _mm512_ternarylogic_epi32(
          c, _mm512_maskz_srli_epi32(kAll16, _mm512_castps_si512(gi), 27), bit4, 0xD8);
      c_flips = _mm512_mask_add_epi32(c_flips, _mm512_cmp_ps_mask(ag, zero, _CMP_GT_OQ), c_flips,
                                      _mm512_permutex2var_epi32(table_pos, idx, table_neg));
      const __m512 e1 =
          _mm512_add_ps(_mm512_mul_ps(a, _mm512_loadu_ps(eg + i)), _mm512_mul_ps(b, gi));
      const __m512 e2 =
          _mm512_add_ps(_mm512_mul_ps(a, _mm512_loadu_ps(ew + i)), _mm512_mul_ps(b, wi));
      _mm512_storeu_ps(eg + i, e1);
      _mm512_storeu_ps(ew + i, e2);
      e1s = add_squares(e1s, e1);
      e2s = add_squares(e2s, e2);
    }
    const __m512i field = _mm512_set1_epi32(1023);
    s.zero += hsum_epi32(c_zero);
    s.retained += hsum_epi32(c_ret);
    s.sign_flip += hsum_epi32(_mm512_and_si512(c_flips, field));
    s.local_min +=
        hsum_epi32(_mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, c_flips, 10), field));
    s.local_max += hsum_epi32(_mm512_maskz_srli_epi32(kAll16, c_flips, 20));
  }
  s.ema_grad_sq += hsum_pd(e1s);
  s.ema_weight_sq += hsum_pd(e2s);
  _mm256_zeroupper();  // before the SSE-encoded scalar tail (see leave_avx)
  scalar_record(g + i, w + i, code + i, eg + i, ew + i, n - i, p, s);
}

GL_AVX512 void avx512_update(const float* g, const float* wb, const float* wa, uint8_t* code,
                             int64_t n, const OptimStepParams& p, OptimUpdateSums& s) {
  const __m512 zt = _mm512_set1_ps(p.zero_threshold), st = _mm512_set1_ps(p.small_threshold);
  const __m512 zero = _mm512_setzero_ps();
  __m512d wd = _mm512_setzero_pd(), zd = wd;
  __m512i c_sp = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 gi = _mm512_loadu_ps(g + i);
    const __m512 before = _mm512_loadu_ps(wb + i), after = _mm512_loadu_ps(wa + i);
    const __m512 ag = _mm512_abs_ps(gi);
    const __mmask16 k_sp = _mm512_cmp_ps_mask(ag, st, _CMP_LT_OQ);
    c_sp = count(c_sp, k_sp);
    __m512i c = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(gi, zero, _CMP_GT_OQ),
                                       _mm512_set1_epi32(kCodeGradPositive));
    c = _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(gi, zero, _CMP_LT_OQ), c,
                             _mm512_set1_epi32(kCodeGradNegative));
    c = _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(after, before, _CMP_GT_OQ), c,
                             _mm512_set1_epi32(kCodeWeightUp));
    c = _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(after, before, _CMP_LT_OQ), c,
                             _mm512_set1_epi32(kCodeWeightDown));
    c = _mm512_mask_or_epi32(c, k_sp, c, _mm512_set1_epi32(kCodeGradSmall));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(code + i), _mm512_maskz_cvtepi32_epi8(kAll16, c));
    // Weight differences in double, as the scalar loop forms them.
    const __mmask16 k_zg = _mm512_cmp_ps_mask(ag, zt, _CMP_LT_OQ);
    const __m512d dlo = _mm512_sub_pd(lo_pd(after), lo_pd(before)),
                  dhi = _mm512_sub_pd(hi_pd(after), hi_pd(before));
    wd = _mm512_fmadd_pd(dhi, dhi, _mm512_fmadd_pd(dlo, dlo, wd));
    zd = _mm512_mask3_fmadd_pd(dlo, dlo, zd, __mmask8(k_zg));
    zd = _mm512_mask3_fmadd_pd(dhi, dhi, zd, __mmask8(k_zg >> 8));
  }
  s.small_prev += hsum_epi32(c_sp);
  s.weight_diff_sq += hsum_pd(wd);
  s.zero_grad_weight_change_sq += hsum_pd(zd);
  _mm256_zeroupper();
  scalar_update(g + i, wb + i, wa + i, code + i, n - i, p, s);
}

}  // namespace

const char* optim_stats_isa() {
  switch (isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

void optim_stats_force_isa(const std::string& name) {
  if (name == "auto") {
    g_forced_isa.store(-1);
    return;
  }
  Isa want;
  if (name == "avx512")
    want = Isa::avx512;
  else if (name == "avx2")
    want = Isa::avx2;
  else if (name == "scalar")
    want = Isa::scalar;
  else
    throw std::invalid_argument("optim_stats_force_isa: unknown path '" + name +
                                "' (avx512, avx2, scalar, auto)");
  if (int(want) > int(best_isa()))
    throw std::invalid_argument("optim_stats_force_isa: this CPU cannot run the '" + name +
                                "' path");
  g_forced_isa.store(int(want));
}

OptimRecordSums& OptimRecordSums::operator+=(const OptimRecordSums& o) {
  zero += o.zero;
  retained += o.retained;
  sign_flip += o.sign_flip;
  local_min += o.local_min;
  local_max += o.local_max;
  ema_grad_sq += o.ema_grad_sq;
  ema_weight_sq += o.ema_weight_sq;
  return *this;
}

OptimUpdateSums& OptimUpdateSums::operator+=(const OptimUpdateSums& o) {
  small_prev += o.small_prev;
  weight_diff_sq += o.weight_diff_sq;
  zero_grad_weight_change_sq += o.zero_grad_weight_change_sq;
  return *this;
}

OptimStepSums& OptimStepSums::operator+=(const OptimStepSums& o) {
  OptimRecordSums::operator+=(o);
  OptimUpdateSums::operator+=(o);
  return *this;
}

OptimStepSums optim_step_stats(const float* g, const float* w, float* pg, float* pw, float* eg,
                               float* ew, int64_t n, const OptimStepParams& p) {
  const bool avx2 = use_avx2();
  return blocked<OptimStepSums>(n, kChunk, [&](int64_t lo, int64_t len) {
    OptimStepSums s;
    (avx2 ? avx2_pass : scalar_pass)(g + lo, w + lo, pg + lo, pw + lo, eg + lo, ew + lo, len, p, s);
    return s;
  });
}

OptimRecordSums optim_record_block(const float* g, const float* w, const uint8_t* code, float* eg,
                                   float* ew, int64_t n, const OptimStepParams& p) {
  OptimRecordSums s;
  const Isa i = isa();
  (i == Isa::avx512 ? avx512_record
   : i == Isa::avx2 ? avx2_record
                    : scalar_record)(g, w, code, eg, ew, n, p, s);
  return s;
}

OptimUpdateSums optim_update_block(const float* g, const float* w_before, const float* w_after,
                                   uint8_t* code, int64_t n, const OptimStepParams& p) {
  OptimUpdateSums s;
  const Isa i = isa();
  (i == Isa::avx512 ? avx512_update
   : i == Isa::avx2 ? avx2_update
                    : scalar_update)(g, w_before, w_after, code, n, p, s);
  return s;
}

OptimRecordSums optim_record_pass(const float* g, const float* w, const uint8_t* code, float* eg,
                                  float* ew, int64_t n, const OptimStepParams& p) {
  return blocked<OptimRecordSums>(n, kOptimBlock, [&](int64_t lo, int64_t len) {
    return optim_record_block(g + lo, w + lo, code + lo, eg + lo, ew + lo, len, p);
  });
}

OptimUpdateSums optim_update_pass(const float* g, const float* w_before, const float* w_after,
                                  uint8_t* code, int64_t n, const OptimStepParams& p) {
  return blocked<OptimUpdateSums>(n, kOptimBlock, [&](int64_t lo, int64_t len) {
    return optim_update_block(g + lo, w_before + lo, w_after + lo, code + lo, len, p);
  });
}

}  // namespace gl::kernels::cpu
