// cauchy.cpp: the t-SNE repulsion kernel of cauchy.h. One target at a time against all
// sources, 8 sources per AVX2 step with 8-lane f32 accumulators (the division is the
// bottleneck: about 10 flops and one vdivps per 8 interactions); lanes are summed in f64 at the
// end. The scalar path follows the same formula one source at a time.
#include "kernels/cpu/cauchy.h"

#include <immintrin.h>

#include <atomic>

#include "kernels/cpu/cpu_features.h"

namespace gl::kernels::cpu {

namespace {
std::atomic<bool> g_force_scalar{false};

bool use_avx2() {
  return !g_force_scalar.load(std::memory_order_relaxed) && cpu_has_avx2_fma();
}

#define GL_AVX2 __attribute__((target("avx2,fma")))

GL_AVX2 double hsum(__m256 v) {
  alignas(32) float b[8];
  _mm256_store_ps(b, v);
  double s = 0;
  for (float f : b) s += f;
  return s;
}

// One step of 8 sources against the broadcast target (px, py).
GL_AVX2 inline void step8(__m256 px, __m256 py, __m256 x, __m256 y, __m256 c, __m256& az,
                          __m256& ax, __m256& ay) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 dx = _mm256_sub_ps(px, x), dy = _mm256_sub_ps(py, y);
  const __m256 d2 = _mm256_fmadd_ps(dx, dx, _mm256_fmadd_ps(dy, dy, one));
  const __m256 w = _mm256_div_ps(one, d2);
  const __m256 cw = _mm256_mul_ps(c, w);
  const __m256 cww = _mm256_mul_ps(cw, w);
  az = _mm256_add_ps(az, cw);
  ax = _mm256_fmadd_ps(cww, dx, ax);
  ay = _mm256_fmadd_ps(cww, dy, ay);
}

GL_AVX2 void repulsion_avx2(const float* tx, const float* ty, int64_t nt, const float* sx,
                            const float* sy, const float* sc, int64_t ns, double* z, double* fx,
                            double* fy) {
  const int64_t full = ns / 8 * 8;
  // The ragged tail padded with weight-0 sources at the origin: they add exact zeros.
  alignas(32) float tail_x[8] = {}, tail_y[8] = {}, tail_c[8] = {};
  for (int64_t e = full; e < ns; ++e) {
    tail_x[e - full] = sx[e];
    tail_y[e - full] = sy[e];
    tail_c[e - full] = sc[e];
  }
  for (int64_t i = 0; i < nt; ++i) {
    const __m256 px = _mm256_set1_ps(tx[i]), py = _mm256_set1_ps(ty[i]);
    __m256 az = _mm256_setzero_ps(), ax = _mm256_setzero_ps(), ay = _mm256_setzero_ps();
    for (int64_t e = 0; e < full; e += 8)
      step8(px, py, _mm256_loadu_ps(sx + e), _mm256_loadu_ps(sy + e), _mm256_loadu_ps(sc + e), az,
            ax, ay);
    if (full < ns)
      step8(px, py, _mm256_load_ps(tail_x), _mm256_load_ps(tail_y), _mm256_load_ps(tail_c), az, ax,
            ay);
    z[i] = hsum(az);
    fx[i] = hsum(ax);
    fy[i] = hsum(ay);
  }
}

GL_AVX2 void attraction_avx2(const float* y, const int64_t* row_ptr, const int32_t* col,
                             const float* val, int64_t row_begin, int64_t row_end, double* f) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
  const double* pairs = reinterpret_cast<const double*>(y);
  // The masked form with explicit zeros: GCC 12 flags the plain gather's undefined source.
  const __m256d zero = _mm256_setzero_pd(), all = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
  for (int64_t i = row_begin; i < row_end; ++i) {
    const float yx = y[2 * i], yy = y[2 * i + 1];
    const __m256 px = _mm256_set1_ps(yx), py = _mm256_set1_ps(yy);
    __m256 ax = _mm256_setzero_ps(), ay = _mm256_setzero_ps();
    int64_t t = row_ptr[i];
    const int64_t end = row_ptr[i + 1];
    for (; t + 8 <= end; t += 8) {
      // Each (x, y) pair is gathered as one 64-bit element: two 4-wide gathers, then
      // deinterleaved into lane order 0 1 4 5 2 3 6 7 (val is permuted to match).
      const __m256i j = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + t));
      const __m256 lo = _mm256_castpd_ps(
          _mm256_mask_i32gather_pd(zero, pairs, _mm256_castsi256_si128(j), all, 8));
      const __m256 hi = _mm256_castpd_ps(
          _mm256_mask_i32gather_pd(zero, pairs, _mm256_extracti128_si256(j, 1), all, 8));
      const __m256 dx = _mm256_sub_ps(px, _mm256_shuffle_ps(lo, hi, 0x88));
      const __m256 dy = _mm256_sub_ps(py, _mm256_shuffle_ps(lo, hi, 0xDD));
      const __m256 d2 = _mm256_fmadd_ps(dx, dx, _mm256_fmadd_ps(dy, dy, one));
      const __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(val + t), order);
      const __m256 m = _mm256_div_ps(v, d2);
      ax = _mm256_fmadd_ps(m, dx, ax);
      ay = _mm256_fmadd_ps(m, dy, ay);
    }
    float tx = 0, ty = 0;
    for (; t < end; ++t) {
      const int64_t j = col[t];
      const float dx = yx - y[2 * j], dy = yy - y[2 * j + 1];
      const float m = val[t] / (1.0f + dx * dx + dy * dy);
      tx += m * dx;
      ty += m * dy;
    }
    f[2 * i] = hsum(ax) + tx;
    f[2 * i + 1] = hsum(ay) + ty;
  }
}

void attraction_scalar(const float* y, const int64_t* row_ptr, const int32_t* col, const float* val,
                       int64_t row_begin, int64_t row_end, double* f) {
  for (int64_t i = row_begin; i < row_end; ++i) {
    float ax = 0, ay = 0;
    for (int64_t t = row_ptr[i]; t < row_ptr[i + 1]; ++t) {
      const int64_t j = col[t];
      const float dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
      const float m = val[t] / (1.0f + dx * dx + dy * dy);
      ax += m * dx;
      ay += m * dy;
    }
    f[2 * i] = ax;
    f[2 * i + 1] = ay;
  }
}

void repulsion_scalar(const float* tx, const float* ty, int64_t nt, const float* sx,
                      const float* sy, const float* sc, int64_t ns, double* z, double* fx,
                      double* fy) {
  for (int64_t i = 0; i < nt; ++i) {
    float az = 0, ax = 0, ay = 0;
    for (int64_t e = 0; e < ns; ++e) {
      const float dx = tx[i] - sx[e], dy = ty[i] - sy[e];
      const float w = 1.0f / (1.0f + dx * dx + dy * dy);
      const float cw = sc[e] * w;
      az += cw;
      ax += cw * w * dx;
      ay += cw * w * dy;
    }
    z[i] = az;
    fx[i] = ax;
    fy[i] = ay;
  }
}
}  // namespace

void cauchy_attraction_f32(const float* y, const int64_t* row_ptr, const int32_t* col,
                           const float* val, int64_t row_begin, int64_t row_end, double* f) {
  if (use_avx2()) return attraction_avx2(y, row_ptr, col, val, row_begin, row_end, f);
  attraction_scalar(y, row_ptr, col, val, row_begin, row_end, f);
}

bool cauchy_uses_avx2() {
  return use_avx2();
}
void cauchy_force_scalar(bool on) {
  g_force_scalar.store(on);
}

void cauchy_repulsion_f32(const float* tx, const float* ty, int64_t nt, const float* sx,
                          const float* sy, const float* sc, int64_t ns, double* z, double* fx,
                          double* fy) {
  if (use_avx2()) return repulsion_avx2(tx, ty, nt, sx, sy, sc, ns, z, fx, fy);
  repulsion_scalar(tx, ty, nt, sx, sy, sc, ns, z, fx, fy);
}

}  // namespace gl::kernels::cpu
