// conv_direct.cpp: direct AVX-512 convolution for layers with few input channels
// (kernels/cpu/conv_direct.h).
//
// The first layer of a CNN (C = 1 for MNIST, 3 for CIFAR) gives im2col a K of 9 or 27, which is
// too short for the GEMM, and Winograd's 16 GEMMs would have K = C. Here the input is copied
// once into a zero-padded buffer (rows padded to whole vectors) and every output row is a sum
// of C * kh * kw shifted input rows times broadcast weights, 16 outputs per vector:
// - forward: per (image, output row, two x-vectors), four output channels at a time share the
//   shifted input loads; threads take images.
// - weight gradient: per pair of output channels, 2 * kh * kw vector accumulators in registers
//   sum dY[n, oc, y, x] * x_pad[n, c, y + ky, x + kx] over all images, rows and x-vectors, then
//   reduce; the bias gradient is summed in the same pass over dY. Threads take channel pairs,
//   so every sum runs in one fixed order (no dependence on the thread count).
// The input gradient of such a layer is rarely wanted (the layer sees the data); when it is,
// conv.cpp computes it through im2col.
#include "kernels/cpu/conv_direct.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/cpu_features.h"

// GCC 12 flags the intrinsics' internal undefined vectors as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace gl::kernels::cpu {
namespace {

struct Padded {
  int64_t hp, ws;  // padded rows, row stride (a whole number of vectors, with slack)
  std::vector<float> data;
};

// x_pad[n][c][hp][ws] with the image at (pad_h, pad_w) and zeros around it.
Padded pad_input(const ConvGeometry& g, const float* x) {
  Padded p;
  p.hp = g.h + 2 * g.pad_h;
  p.ws = (g.w + 2 * g.pad_w + g.kw + 16 + 15) / 16 * 16;
  p.data.assign(std::size_t(g.n * g.c * p.hp * p.ws), 0.0f);
  float* d = p.data.data();
#pragma omp parallel for schedule(static) if (g.n * g.c * g.h * g.w >= (1 << 15))
  for (int64_t nc = 0; nc < g.n * g.c; ++nc)
    for (int64_t y = 0; y < g.h; ++y)
      std::memcpy(d + (nc * p.hp + y + g.pad_h) * p.ws + g.pad_w, x + (nc * g.h + y) * g.w,
                  std::size_t(g.w) * sizeof(float));
  return p;
}

constexpr int64_t kOcBlock = 4;

// One output row y of image n for output channels [o0, o0 + kOcBlock) (weights and bias padded
// to whole blocks), x in [x0, x0 + 32); K = kh = kw.
template <int K>
GL_AVX512_KERNEL void forward_row(const ConvGeometry& g, const Padded& xp, const float* w,
                                  const float* bias, int64_t n, int64_t y, int64_t o0, int64_t x0,
                                  float* out) {
  const int64_t oh = g.out_h(), ow = g.out_w(), taps = g.c * K * K;
  __m512 acc[kOcBlock][2];
  for (int j = 0; j < kOcBlock; ++j) acc[j][0] = acc[j][1] = _mm512_set1_ps(bias[o0 + j]);
  for (int64_t c = 0; c < g.c; ++c) {
    const float* wc = w + o0 * taps + c * K * K;
    for (int ky = 0; ky < K; ++ky) {
      const float* row = xp.data.data() + ((n * g.c + c) * xp.hp + y + ky) * xp.ws + x0;
      for (int kx = 0; kx < K; ++kx) {
        const __m512 v0 = _mm512_loadu_ps(row + kx), v1 = _mm512_loadu_ps(row + kx + 16);
        for (int j = 0; j < kOcBlock; ++j) {
          const __m512 wv = _mm512_set1_ps(wc[j * taps + ky * K + kx]);
          acc[j][0] = _mm512_fmadd_ps(wv, v0, acc[j][0]);
          acc[j][1] = _mm512_fmadd_ps(wv, v1, acc[j][1]);
        }
      }
    }
  }
  const __mmask16 m0 = first_lanes(ow - x0), m1 = first_lanes(ow - x0 - 16);
  for (int j = 0; j < kOcBlock; ++j) {
    if (o0 + j >= g.oc) break;
    float* o = out + ((n * g.oc + o0 + j) * oh + y) * ow + x0;
    _mm512_mask_storeu_ps(o, m0, acc[j][0]);
    if (ow - x0 > 16) _mm512_mask_storeu_ps(o + 16, m1, acc[j][1]);
  }
}

template <int K>
GL_AVX512_KERNEL void forward_avx512(const ConvGeometry& g, const float* x, const float* w,
                                     const float* bias, float* out) {
  const Padded xp = pad_input(g, x);
  const int64_t oh = g.out_h(), ow = g.out_w(), taps = g.c * K * K;
  const int64_t blocks = (g.oc + kOcBlock - 1) / kOcBlock;
  std::vector<float> wp(std::size_t(blocks * kOcBlock * taps), 0.0f),
      bp(std::size_t(blocks * kOcBlock), 0.0f);
  std::copy(w, w + g.oc * taps, wp.begin());
  if (bias) std::copy(bias, bias + g.oc, bp.begin());
#pragma omp parallel for schedule(static) if (g.n > 1 && g.n * g.oc * oh * ow >= (1 << 15))
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t y = 0; y < oh; ++y) {
      // The rows written next lie in oc different planes: claim their lines two rows ahead.
      if (y + 2 < oh)
        for (int64_t o = 0; o < g.oc; ++o)
          for (int64_t off = 0; off < ow; off += 16)
            _mm_prefetch(
                reinterpret_cast<const char*>(out + ((n * g.oc + o) * oh + y + 2) * ow + off),
                _MM_HINT_ET0);
      for (int64_t x0 = 0; x0 < ow; x0 += 32)
        for (int64_t o = 0; o < blocks; ++o)
          forward_row<K>(g, xp, wp.data(), bp.data(), n, y, o * kOcBlock, x0, out);
    }
}

// dW for output channels o0 and o0 + 1 (`two`), input channel c and kernel rows
// [ky0, ky0 + R): 2 * R * K accumulators summed over every image, output row and x-vector.
// With db, the same pass also sums dY for the bias (per row in f32, rows in f64).
template <int K, int R>
GL_AVX512_KERNEL void weight_grad_block(const ConvGeometry& g, const Padded& xp, const float* dy,
                                        int64_t o0, bool two, int64_t c, int64_t ky0, float* dw,
                                        float* db) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  __m512 acc[2][R * K];
  for (auto& a : acc)
    for (auto& v : a) v = _mm512_setzero_ps();
  __m512d bsum[2][2] = {{_mm512_setzero_pd(), _mm512_setzero_pd()},
                        {_mm512_setzero_pd(), _mm512_setzero_pd()}};
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t y = 0; y < oh; ++y) {
      const float* d0 = dy + ((n * g.oc + o0) * oh + y) * ow;
      const float* d1 = d0 + oh * ow;
      const float* in = xp.data.data() + ((n * g.c + c) * xp.hp + y + ky0) * xp.ws;
      // dY rows are short and the planes of one channel pair lie a batch stride apart: fetch
      // two rows ahead (into the next image at the end of a plane).
      {
        const int64_t ahead = y + 2 < oh    ? ((n * g.oc + o0) * oh + y + 2) * ow
                              : n + 1 < g.n ? (((n + 1) * g.oc + o0) * oh + y + 2 - oh) * ow
                                            : -1;
        if (ahead >= 0)
          for (int64_t off = 0; off < ow; off += 16) {
            _mm_prefetch(reinterpret_cast<const char*>(dy + ahead + off), _MM_HINT_T0);
            if (two)
              _mm_prefetch(reinterpret_cast<const char*>(dy + ahead + oh * ow + off), _MM_HINT_T0);
          }
      }
      __m512 row_a = _mm512_setzero_ps(), row_b = _mm512_setzero_ps();
      for (int64_t x0 = 0; x0 < ow; x0 += 16) {
        const __mmask16 m = first_lanes(ow - x0);
        const __m512 a = _mm512_maskz_loadu_ps(m, d0 + x0);
        const __m512 b = two ? _mm512_maskz_loadu_ps(m, d1 + x0) : _mm512_setzero_ps();
        row_a = _mm512_add_ps(row_a, a);
        row_b = _mm512_add_ps(row_b, b);
        for (int r = 0; r < R; ++r)
          for (int kx = 0; kx < K; ++kx) {
            const __m512 v = _mm512_loadu_ps(in + r * xp.ws + x0 + kx);
            acc[0][r * K + kx] = _mm512_fmadd_ps(a, v, acc[0][r * K + kx]);
            acc[1][r * K + kx] = _mm512_fmadd_ps(b, v, acc[1][r * K + kx]);
          }
      }
      if (db) {
        bsum[0][0] = _mm512_add_pd(bsum[0][0], _mm512_cvtps_pd(_mm512_castps512_ps256(row_a)));
        bsum[0][1] = _mm512_add_pd(bsum[0][1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(row_a, 1)));
        bsum[1][0] = _mm512_add_pd(bsum[1][0], _mm512_cvtps_pd(_mm512_castps512_ps256(row_b)));
        bsum[1][1] = _mm512_add_pd(bsum[1][1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(row_b, 1)));
      }
    }
  const int64_t per_oc = g.c * K * K;
  for (int j = 0; j < (two ? 2 : 1); ++j) {
    for (int t = 0; t < R * K; ++t)
      dw[(o0 + j) * per_oc + (c * K + ky0) * K + t] = _mm512_reduce_add_ps(acc[j][t]);
    if (db) db[o0 + j] = float(_mm512_reduce_add_pd(_mm512_add_pd(bsum[j][0], bsum[j][1])));
  }
}

template <int K, int R>
void weight_grad_avx512(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                        float* db) {
  static_assert(K % R == 0, "row blocks must tile the kernel");
  const Padded xp = pad_input(g, x);
  const int64_t pairs = (g.oc + 1) / 2;
#pragma omp parallel for schedule(dynamic) collapse(3) if (pairs > 1)
  for (int64_t pr = 0; pr < pairs; ++pr)
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t ky0 = 0; ky0 < K; ky0 += R)
        weight_grad_block<K, R>(g, xp, dy, 2 * pr, 2 * pr + 1 < g.oc, c, ky0, dw,
                                c == 0 && ky0 == 0 ? db : nullptr);
}

}  // namespace

bool direct_conv_preferred(const ConvGeometry& g) {
  return cpu_runs_avx512() && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 && g.dil_w == 1 &&
         g.groups == 1 && g.c <= 4 && g.kh == g.kw && (g.kh == 3 || g.kh == 5) && g.out_h() >= 1 &&
         g.out_w() >= 1;
}

void direct_conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias,
                           float* out) {
  if (g.kh == 3)
    forward_avx512<3>(g, x, w, bias, out);
  else
    forward_avx512<5>(g, x, w, bias, out);
}

void direct_conv2d_weight_grad(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                               float* db) {
  if (g.kh == 3)
    weight_grad_avx512<3, 3>(g, x, dy, dw, db);
  else
    weight_grad_avx512<5, 1>(g, x, dy, dw, db);
}

}  // namespace gl::kernels::cpu
