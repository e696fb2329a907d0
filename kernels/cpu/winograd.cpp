// winograd.cpp: Winograd F(2x2, 3x3) to F(5x5, 3x3) convolution
// (kernels/cpu/winograd.h).
//
// Lavin & Gray's minimal filtering algorithm: an m x m block of outputs of a 3x3 correlation is
//   Y = A^T [ (G g G^T) . (B^T d B) ] A
// for the a x a input tile d (a = m + 2) and the filter g: T = a^2 multiplies instead of 9 m^2
// (16 for 4 outputs with m = 2, 36 for 16 with m = 4). Summed over the input channels, the
// elementwise products become T independent GEMMs (one per transformed position xi):
// M_xi[tiles, out] = V_xi[tiles, in] @ U_xi[in, out], which run on our packed GEMM. The same
// a x a domain serves all three passes of training:
// - forward: d = input tile, g = filter, in = C, out = OC.
// - weight gradient: the transposed algorithm F(3x3, m x m). From the trilinear form
//   sum_i u_i y_i = sum_xi (A u)_xi (G g)_xi (B^T d)_xi, the 3x3 correlation of an a x a input
//   tile d with an m x m output-gradient tile u is dW_tile = G^T [ (A u A^T) . (B^T d B) ] G, so
//   S_xi[OC, C] = Z_xi^T @ V_xi (a TN GEMM summing over tiles) and dW = G^T S G at the end.
// - input gradient, with the weight gradient: the adjoint of the forward through the same tiles,
//   dX_tile = B [ Z_xi @ U_xi^T ] B^T added into the padded input (tiles overlap by 2), from the
//   Z = A dY A^T the weight gradient already made: dY is read and transformed once for both
//   (0.94 of the time of the two separate passes on the default CNN's second layer).
// - input gradient alone: a forward pass over dY padded by 2 - pad with the filters flipped and
//   transposed (in = OC, out = C).
//
// Work is cut into chunks of consecutive tile rows (across images) so that a chunk's
// transformed input, products and output stay in L2, sized to whole GEMM micro-tiles where
// possible. For each chunk a thread copies the input band into a zero-padded HWC buffer
// (channels contiguous), so the transforms run over channels a vector at a time
// (winograd_tiles.inc, built for AVX-512, AVX2 and plain floats); outputs go through an HWC
// band buffer back into NCHW. The chunking depends only on the geometry and the instruction
// set, and the weight gradient sums per fixed group of chunks, added in order: no result
// depends on the thread count.
#include "kernels/cpu/winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/scratch.h"
#include "kernels/kernels.h"

namespace gl::kernels::cpu {
namespace {

// Floats of transformed input plus products per chunk: T * tiles * (in + out).
constexpr int64_t kChunkFloats = 160 * 1024;
// Partial sums of the weight gradient (at most this many, summed in order).
constexpr int64_t kWeightGroups = 8;
// set_winograd_tile's choice (0: automatic).
std::atomic<int> g_tile{0};

struct Band {
  int64_t n, r0, r1;  // image, tile rows [r0, r1)
};

// One pass over tiles of [n, in, h, w] giving [n, out, oh, ow] (or, for the weight gradient,
// consuming both), in tiles of m x m outputs (F(m x m, 3 x 3)) of T = (m + 2)^2 products.
struct Plan {
  int64_t n, in, h, w, out, oh, ow, pad_h, pad_w, m;
  int64_t T() const { return (m + 2) * (m + 2); }
  int64_t th() const { return (oh + m - 1) / m; }
  int64_t tw() const { return (ow + m - 1) / m; }
  // Chunks of consecutive tile rows (image after image, cut into one band per image), each
  // about max(tiles budget, one tile row) tiles, and where possible a multiple of the GEMM's
  // tile rows (tiles are the rows of the forward's GEMMs): the nearest such count below the
  // budget, or up to a quarter above it (F(3x3) on 14x14: 70 tiles, not 65; 1.5-4% faster,
  // bench/results/cnn_cpu.md). Depends only on the geometry and the instruction set, never on
  // the thread count.
  std::vector<std::vector<Band>> chunks() const {
    const int64_t budget = std::max<int64_t>(tw(), kChunkFloats / (T() * (in + out)));
    int64_t rows = std::max<int64_t>(1, budget / tw());
    const int64_t mr = sgemm_tile_rows();
    for (int64_t d = 0; d < rows; ++d) {  // nearest first, below before above
      if ((rows - d) * tw() % mr == 0) {
        rows -= d;
        break;
      }
      if (4 * d <= rows && (rows + d) * tw() % mr == 0) {
        rows += d;
        break;
      }
    }
    std::vector<std::vector<Band>> cs;
    const int64_t total = n * th();
    for (int64_t g = 0; g < total; g += rows) {
      std::vector<Band> c;
      for (int64_t q = g; q < std::min(total, g + rows);) {
        const int64_t img = q / th(), r0 = q % th();
        const int64_t r1 = std::min(th(), r0 + (std::min(total, g + rows) - q));
        c.push_back({img, r0, r1});
        q += r1 - r0;
      }
      cs.push_back(std::move(c));
    }
    return cs;
  }
};

// Floats from one transformed position's [tiles][ch] plane to the next: 16 more than the plane,
// so that the T values of one tile, written or read together, do not all fall in one cache set
// (planes of a multiple of 4 KB would).
int64_t plane_stride(int64_t tiles, int64_t ch) {
  return tiles * ch + 16;
}

// Floats from one position's [in][out] plane of transformed filters (U) or weight-gradient sums
// (S) to the next: 16 more than the plane, for the same reason (a 32 x 64 plane is 8 KB, and the
// filter and weight transforms touch all T planes per vector).
int64_t filter_plane_stride(int64_t in, int64_t out) {
  return in * out + 16;
}

int64_t chunk_tiles(const std::vector<Band>& c, int64_t tw) {
  int64_t t = 0;
  for (const Band& b : c) t += (b.r1 - b.r0) * tw;
  return t;
}

// dst[j * dld + i] = src[i * sld + j] for i < rows, j < cols.
void transpose_base(const float* src, int64_t rows, int64_t cols, int64_t sld, float* dst,
                    int64_t dld) {
  constexpr int64_t B = 8;
  for (int64_t i0 = 0; i0 < rows; i0 += B)
    for (int64_t j0 = 0; j0 < cols; j0 += B)
      for (int64_t i = i0; i < std::min(rows, i0 + B); ++i)
        for (int64_t j = j0; j < std::min(cols, j0 + B); ++j) dst[j * dld + i] = src[i * sld + j];
}

// GCC 12 flags the intrinsics' internal undefined vectors as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The 16 rows r[0..15] of a 16x16 block, transposed in registers.
GL_AVX512_KERNEL static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4 i + k], 128-bit lane L: column 4 L + k of rows 4 i .. 4 i + 3.
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
    const __m512 b = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
    const __m512 c = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
    const __m512 d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
    r[k] = _mm512_shuffle_f32x4(a, c, 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(a, c, 0xDD);
    r[4 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
}

GL_AVX512_KERNEL void transpose_avx512(const float* src, int64_t rows, int64_t cols, int64_t sld,
                                       float* dst, int64_t dld) {
  for (int64_t i0 = 0; i0 < rows; i0 += 16)
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t ri = std::min<int64_t>(16, rows - i0), cj = std::min<int64_t>(16, cols - j0);
      const __mmask16 cm = first_lanes(cj), rm = first_lanes(ri);
      // Fully unrolled and branch-free (rows and columns past the edge get an empty mask), so
      // the 16 vectors stay in registers.
      __m512 r[16];
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k)
        r[k] = _mm512_maskz_loadu_ps(k < ri ? cm : __mmask16(0), src + (i0 + k) * sld + j0);
      transpose16(r);
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k)
        _mm512_mask_storeu_ps(dst + (j0 + k) * dld + i0, k < cj ? rm : __mmask16(0), r[k]);
    }
}
#pragma GCC diagnostic pop

void transpose(const float* src, int64_t rows, int64_t cols, int64_t sld, float* dst, int64_t dld) {
  (cpu_runs_avx512() ? transpose_avx512 : transpose_base)(src, rows, cols, sld, dst, dld);
}

// buf[(i * cols + j) * ch + c] = src[c][y0 + i][x0 + j], zero outside the plane. Each row in
// the plane is transposed straight into place.
void fill_hwc(const float* src, int64_t ch, int64_t h, int64_t w, int64_t y0, int64_t rows,
              int64_t x0, int64_t cols, float* buf) {
  const int64_t jlo = std::max<int64_t>(0, -x0), jhi = std::min(cols, w - x0);
  const int64_t ylo = std::max<int64_t>(0, y0), yhi = std::min(h, y0 + rows);
  if (jhi <= jlo || yhi <= ylo) {
    std::fill(buf, buf + rows * cols * ch, 0.0f);
    return;
  }
  // Zeros only where the plane does not reach: rows above and below, columns left and right.
  std::fill(buf, buf + (ylo - y0) * cols * ch, 0.0f);
  std::fill(buf + (yhi - y0) * cols * ch, buf + rows * cols * ch, 0.0f);
  for (int64_t y = ylo; y < yhi; ++y) {
    float* row = buf + (y - y0) * cols * ch;
    std::fill(row, row + jlo * ch, 0.0f);
    transpose(src + y * w + jlo + x0, ch, jhi - jlo, h * w, row + jlo * ch, ch);
    std::fill(row + jhi * ch, row + cols * ch, 0.0f);
  }
}

// The tile transforms: per tile size, the 1-D transforms (traits F2 to F5, on scalars or
// vectors); over channels, vectors of lanes (ScalarLanes, Avx2Lanes, Avx512Lanes); the loops over
// tiles in winograd_tiles.inc, built once per instruction set and picked at run time.
#define GL_TILE_FN inline __attribute__((always_inline))

// F(2x2, 3x3): 2x2 outputs from 4x4 inputs, 16 products. The 1-D transforms: in1d = B^T d,
// out1d = A^T t, grad1d = A u, filt1d = G g, wgt1d = G^T s (Lavin & Gray, points 0, 1, -1).
struct F2 {
  static constexpr int m = 2, a = 4, T = 16;
  template <class V>
  GL_TILE_FN static void in1d(const V* d, V* r) {
    r[0] = d[0] - d[2];
    r[1] = d[1] + d[2];
    r[2] = d[2] - d[1];
    r[3] = d[1] - d[3];
  }
  // adj1d = B m (the adjoint of in1d: the input gradient taken through the forward's tiles).
  template <class V>
  GL_TILE_FN static void adj1d(const V* m, V* r) {
    r[0] = m[0];
    r[1] = (m[1] - m[2]) + m[3];
    r[2] = (m[1] + m[2]) - m[0];
    r[3] = -m[3];
  }
  template <class V>
  GL_TILE_FN static void out1d(const V* t, V* o) {
    o[0] = t[0] + t[1] + t[2];
    o[1] = t[1] - t[2] - t[3];
  }
  template <class V>
  GL_TILE_FN static void grad1d(const V* u, V* z) {
    z[0] = u[0];
    z[1] = u[0] + u[1];
    z[2] = u[0] - u[1];
    z[3] = -u[1];
  }
  template <class V>
  GL_TILE_FN static void filt1d(const V* g, V* f) {
    f[0] = g[0];
    f[1] = 0.5f * (g[0] + g[1] + g[2]);
    f[2] = 0.5f * (g[0] - g[1] + g[2]);
    f[3] = g[2];
  }
  template <class V>
  GL_TILE_FN static void wgt1d(const V* s, V* w) {
    w[0] = s[0] + 0.5f * (s[1] + s[2]);
    w[1] = 0.5f * (s[1] - s[2]);
    w[2] = 0.5f * (s[1] + s[2]) + s[3];
  }
};

// F(3x3, 3x3): 3x3 outputs from 5x5 inputs, 25 products (points 0, 1, -1, 2 and infinity): 2.78
// per output against F(2x2)'s 4, with transforms scaling by at most 4.
struct F3 {
  static constexpr int m = 3, a = 5, T = 25;
  template <class V>
  GL_TILE_FN static void in1d(const V* d, V* r) {
    r[0] = 2.0f * (d[0] - d[2]) + (d[3] - d[1]);
    r[1] = (d[3] - d[2]) - 2.0f * d[1];
    r[2] = 2.0f * (d[1] - d[2]) + (d[3] - d[2]);
    r[3] = d[3] - d[1];
    r[4] = 2.0f * (d[1] - d[3]) + (d[4] - d[2]);
  }
  template <class V>
  GL_TILE_FN static void adj1d(const V* m, V* r) {
    r[0] = 2.0f * m[0];
    r[1] = 2.0f * ((m[2] + m[4]) - m[1]) - (m[0] + m[3]);
    r[2] = -((2.0f * m[0] + m[1]) + (3.0f * m[2] + m[4]));
    r[3] = ((m[0] + m[1]) + (m[2] + m[3])) - 2.0f * m[4];
    r[4] = m[4];
  }
  template <class V>
  GL_TILE_FN static void out1d(const V* t, V* o) {
    const V p12 = t[1] + t[2];
    o[0] = t[0] + p12 + t[3];
    o[1] = (t[1] - t[2]) + 2.0f * t[3];
    o[2] = p12 + 4.0f * t[3] + t[4];
  }
  template <class V>
  GL_TILE_FN static void grad1d(const V* u, V* z) {
    const V e = u[0] + u[2];
    z[0] = u[0];
    z[1] = e + u[1];
    z[2] = e - u[1];
    z[3] = u[0] + 2.0f * u[1] + 4.0f * u[2];
    z[4] = u[2];
  }
  template <class V>
  GL_TILE_FN static void filt1d(const V* g, V* f) {
    f[0] = 0.5f * g[0];
    f[1] = -0.5f * (g[0] + g[1] + g[2]);
    f[2] = (1.0f / 6) * (g[1] - g[0] - g[2]);
    f[3] = (1.0f / 6) * g[0] + (1.0f / 3) * g[1] + (2.0f / 3) * g[2];
    f[4] = g[2];
  }
  template <class V>
  GL_TILE_FN static void wgt1d(const V* s, V* w) {
    w[0] = 0.5f * (s[0] - s[1]) + (1.0f / 6) * (s[3] - s[2]);
    w[1] = -0.5f * s[1] + (1.0f / 6) * s[2] + (1.0f / 3) * s[3];
    w[2] = -0.5f * s[1] - (1.0f / 6) * s[2] + (2.0f / 3) * s[3] + s[4];
  }
};

// F(4x4, 3x3): 4x4 outputs from 6x6 inputs, 36 products (points 0, 1, -1, 2, -2): 4 times
// fewer multiplies than direct convolution against F(2x2)'s 2.25, at somewhat larger rounding
// errors (the transforms scale by up to 5 and 8).
struct F4 {
  static constexpr int m = 4, a = 6, T = 36;
  template <class V>
  GL_TILE_FN static void in1d(const V* d, V* r) {
    r[0] = (d[4] - 5.0f * d[2]) + 4.0f * d[0];
    r[1] = (d[3] + d[4]) - 4.0f * (d[1] + d[2]);
    r[2] = (d[4] - d[3]) + 4.0f * (d[1] - d[2]);
    r[3] = (d[4] - d[2]) + 2.0f * (d[3] - d[1]);
    r[4] = (d[4] - d[2]) - 2.0f * (d[3] - d[1]);
    r[5] = (d[5] - 5.0f * d[3]) + 4.0f * d[1];
  }
  template <class V>
  GL_TILE_FN static void adj1d(const V* m, V* r) {
    r[0] = 4.0f * m[0];
    r[1] = 4.0f * ((m[2] - m[1]) + m[5]) + 2.0f * (m[4] - m[3]);
    r[2] = -(5.0f * m[0] + 4.0f * (m[1] + m[2])) - (m[3] + m[4]);
    r[3] = ((m[1] - m[2]) + 2.0f * (m[3] - m[4])) - 5.0f * m[5];
    r[4] = (m[0] + m[1]) + (m[2] + (m[3] + m[4]));
    r[5] = m[5];
  }
  template <class V>
  GL_TILE_FN static void out1d(const V* t, V* o) {
    const V p12 = t[1] + t[2], m12 = t[1] - t[2], p34 = t[3] + t[4], m34 = t[3] - t[4];
    o[0] = t[0] + p12 + p34;
    o[1] = m12 + 2.0f * m34;
    o[2] = p12 + 4.0f * p34;
    o[3] = (m12 + 8.0f * m34) + t[5];
  }
  template <class V>
  GL_TILE_FN static void grad1d(const V* u, V* z) {
    const V e1 = u[0] + u[2], o1 = u[1] + u[3];
    const V e2 = u[0] + 4.0f * u[2], o2 = 2.0f * u[1] + 8.0f * u[3];
    z[0] = u[0];
    z[1] = e1 + o1;
    z[2] = e1 - o1;
    z[3] = e2 + o2;
    z[4] = e2 - o2;
    z[5] = u[3];
  }
  template <class V>
  GL_TILE_FN static void filt1d(const V* g, V* f) {
    f[0] = 0.25f * g[0];
    f[1] = (-1.0f / 6) * (g[0] + g[1] + g[2]);
    f[2] = (-1.0f / 6) * (g[0] - g[1] + g[2]);
    f[3] = (1.0f / 24) * g[0] + (1.0f / 12) * g[1] + (1.0f / 6) * g[2];
    f[4] = (1.0f / 24) * g[0] - (1.0f / 12) * g[1] + (1.0f / 6) * g[2];
    f[5] = g[2];
  }
  template <class V>
  GL_TILE_FN static void wgt1d(const V* s, V* w) {
    w[0] = 0.25f * s[0] - (1.0f / 6) * (s[1] + s[2]) + (1.0f / 24) * (s[3] + s[4]);
    w[1] = (1.0f / 6) * (s[2] - s[1]) + (1.0f / 12) * (s[3] - s[4]);
    w[2] = (1.0f / 6) * ((s[3] + s[4]) - (s[1] + s[2])) + s[5];
  }
};

// F(5x5, 3x3): 5x5 outputs from 7x7 inputs, 49 products (points 0, 1, -1, 2, -2, 1/2 and
// infinity): 1.96 per output. On 14 x 14 its 3 x 3 tiles need 441 products per image against
// F(3x3)'s 625 and F(4x4)'s 576. The rows of B^T for the points +-1 and +-2 are scaled by 2 (and
// G's by 1/2), which lets each pair share its even and odd parts. Rounding error about 1.6 times
// F(4x4)'s.
struct F5 {
  static constexpr int m = 5, a = 7, T = 49;
  template <class V>
  GL_TILE_FN static void in1d(const V* d, V* r) {
    // h(x, y, z) = 4 x - 5 y + z over every other input; p and q over four consecutive ones.
    const V h0 = (4.0f * d[0] - 5.0f * d[2]) + d[4], h1 = (4.0f * d[1] - 5.0f * d[3]) + d[5];
    const V h2 = (4.0f * d[2] - 5.0f * d[4]) + d[6];
    const V s1 = (4.0f * d[2] - 8.0f * d[3]) + (2.0f * d[5] - d[4]);
    const V o1 = (4.0f * d[1] - 8.0f * d[2]) + (2.0f * d[4] - d[3]);
    const V s2 = (d[2] - 2.0f * d[3]) + (2.0f * d[5] - d[4]);
    const V o2 = 2.0f * ((d[1] - 2.0f * d[2]) + (2.0f * d[4] - d[3]));
    r[0] = h1 - 0.5f * h0;
    r[1] = s1 + o1;
    r[2] = s1 - o1;
    r[3] = s2 + o2;
    r[4] = s2 - o2;
    r[5] = h1;
    r[6] = h2 - 0.5f * h1;
  }
  template <class V>
  GL_TILE_FN static void adj1d(const V* m, V* r) {
    r[0] = -2.0f * m[0];
    r[1] = 4.0f * ((m[0] + m[1]) + (m[5] - m[2])) + 2.0f * ((m[3] - m[4]) - m[6]);
    r[2] = (2.5f * m[0] - 4.0f * m[1]) + (12.0f * m[2] - 3.0f * m[3]) + (5.0f * m[4] + 4.0f * m[6]);
    r[3] =
        (-5.0f * m[0] - 9.0f * m[1]) + (-7.0f * m[2] - 4.0f * m[3]) + (2.5f * m[6] - 5.0f * m[5]);
    r[4] = (m[1] - 0.5f * m[0]) + (3.0f * (m[3] - m[2]) - 5.0f * (m[4] + m[6]));
    r[5] = (m[0] + m[5]) + (2.0f * ((m[1] + m[2]) + (m[3] + m[4])) - 0.5f * m[6]);
    r[6] = m[6];
  }
  template <class V>
  GL_TILE_FN static void out1d(const V* t, V* o) {
    const V p1 = t[1] + t[2], m1 = t[1] - t[2], p2 = t[3] + t[4], m2 = t[3] - t[4];
    o[0] = (t[0] + p1) + (p2 + t[5]);
    o[1] = (m1 + 2.0f * m2) + 0.5f * t[5];
    o[2] = (p1 + 4.0f * p2) + 0.25f * t[5];
    o[3] = (m1 + 8.0f * m2) + 0.125f * t[5];
    o[4] = (p1 + 16.0f * p2) + (0.0625f * t[5] + t[6]);
  }
  template <class V>
  GL_TILE_FN static void grad1d(const V* u, V* z) {
    const V e1 = (u[0] + u[2]) + u[4], o1 = u[1] + u[3];
    const V e2 = (u[0] + 4.0f * u[2]) + 16.0f * u[4], o2 = 2.0f * u[1] + 8.0f * u[3];
    z[0] = u[0];
    z[1] = e1 + o1;
    z[2] = e1 - o1;
    z[3] = e2 + o2;
    z[4] = e2 - o2;
    z[5] = (u[0] + 0.5f * u[1]) + (0.25f * u[2] + (0.125f * u[3] + 0.0625f * u[4]));
    z[6] = u[4];
  }
  template <class V>
  GL_TILE_FN static void filt1d(const V* g, V* f) {
    f[0] = -0.5f * g[0];
    f[1] = (-1.0f / 6) * (g[0] + g[1] + g[2]);
    f[2] = (1.0f / 18) * (g[0] - g[1] + g[2]);
    f[3] = (1.0f / 72) * (g[0] + 2.0f * g[1] + 4.0f * g[2]);
    f[4] = (-1.0f / 120) * (g[0] - 2.0f * g[1] + 4.0f * g[2]);
    f[5] = (8.0f / 45) * (4.0f * g[0] + 2.0f * g[1] + g[2]);
    f[6] = g[2];
  }
  template <class V>
  GL_TILE_FN static void wgt1d(const V* s, V* w) {
    w[0] = (-0.5f * s[0] - (1.0f / 6) * s[1]) + ((1.0f / 18) * s[2] + (1.0f / 72) * s[3]) +
           ((-1.0f / 120) * s[4] + (32.0f / 45) * s[5]);
    w[1] = ((-1.0f / 6) * s[1] - (1.0f / 18) * s[2]) + ((1.0f / 36) * s[3] + (1.0f / 60) * s[4]) +
           (16.0f / 45) * s[5];
    w[2] = ((-1.0f / 6) * s[1] + (1.0f / 18) * s[2]) + ((1.0f / 18) * s[3] - (1.0f / 30) * s[4]) +
           ((8.0f / 45) * s[5] + s[6]);
  }
};

// The tile transforms run over channels (the contiguous dimension of the channels-last buffers)
// a vector of lanes at a time. Lanes: V (float, __m256 or __m512; GCC's vector types take
// +, - and * with a float), load and store of the lanes from c on, and the step.
struct ScalarLanes {
  using V = float;
  static constexpr int64_t width = 1;
  int64_t c;
  GL_TILE_FN static ScalarLanes at(int64_t c, int64_t) { return {c}; }
  GL_TILE_FN V load(const float* p) const { return p[c]; }
  GL_TILE_FN void store(float* p, V v) const { p[c] = v; }
};
#define GL_AVX2_TILE __attribute__((target("avx2,fma"), always_inline)) inline
struct Avx2Lanes {
  using V = __m256;
  static constexpr int64_t width = 8;
  int64_t c;
  __m256i mask;
  GL_AVX2_TILE static Avx2Lanes at(int64_t c, int64_t ch) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return {c, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<int64_t>(ch - c, 8))), idx)};
  }
  GL_AVX2_TILE V load(const float* p) const { return _mm256_maskload_ps(p + c, mask); }
  GL_AVX2_TILE void store(float* p, V v) const { _mm256_maskstore_ps(p + c, mask, v); }
};
#define GL_AVX512_TILE GL_AVX512_KERNEL __attribute__((always_inline)) inline
struct Avx512Lanes {
  using V = __m512;
  static constexpr int64_t width = 16;
  int64_t c;
  __mmask16 mask;
  GL_AVX512_TILE static Avx512Lanes at(int64_t c, int64_t ch) { return {c, first_lanes(ch - c)}; }
  GL_AVX512_TILE V load(const float* p) const { return _mm512_maskz_loadu_ps(mask, p + c); }
  GL_AVX512_TILE void store(float* p, V v) const { _mm512_mask_storeu_ps(p + c, mask, v); }
};

// The tile transforms for each instruction set: ns::input_band<W> etc.
#define GL_WT_INLINE GL_AVX512_KERNEL __attribute__((always_inline)) inline
#define GL_WT_ENTRY GL_AVX512_KERNEL
namespace wt_avx512 {
using L = Avx512Lanes;
#include "kernels/cpu/winograd_tiles.inc"
}  // namespace wt_avx512
#undef GL_WT_INLINE
#undef GL_WT_ENTRY
#define GL_WT_INLINE __attribute__((target("avx2,fma"), always_inline)) inline
#define GL_WT_ENTRY __attribute__((target("avx2,fma")))
namespace wt_avx2 {
using L = Avx2Lanes;
#include "kernels/cpu/winograd_tiles.inc"
}  // namespace wt_avx2
#undef GL_WT_INLINE
#undef GL_WT_ENTRY
#define GL_WT_INLINE __attribute__((always_inline)) inline
#define GL_WT_ENTRY
namespace wt_base {
using L = ScalarLanes;
#include "kernels/cpu/winograd_tiles.inc"
}  // namespace wt_base
#undef GL_WT_INLINE
#undef GL_WT_ENTRY

// name<W>(params): the AVX-512, AVX2 or plain version, picked at run time.
#define GL_WINO_DISPATCH(name, params, args) \
  template <class W>                         \
  void name params {                         \
    if (cpu_runs_avx512())                   \
      wt_avx512::name<W> args;               \
    else if (cpu_runs_avx2())                \
      wt_avx2::name<W> args;                 \
    else                                     \
      wt_base::name<W> args;                 \
  }

GL_WINO_DISPATCH(input_band,
                 (const float* buf, int64_t rows, int64_t tw, int64_t ch, float* v, int64_t t0,
                  int64_t tiles),
                 (buf, rows, tw, ch, v, t0, tiles))
GL_WINO_DISPATCH(output_band,
                 (const float* m, int64_t t0, int64_t tiles, const float* bias, int64_t rows,
                  int64_t tw, int64_t ch, float* obuf),
                 (m, t0, tiles, bias, rows, tw, ch, obuf))
GL_WINO_DISPATCH(adjoint_band,
                 (const float* m, int64_t t0, int64_t tiles, int64_t rows, int64_t tw, int64_t ch,
                  float* dbuf),
                 (m, t0, tiles, rows, tw, ch, dbuf))
GL_WINO_DISPATCH(grad_band,
                 (const float* ubuf, int64_t rows, int64_t tw, int64_t ch, float* z, int64_t t0,
                  int64_t tiles, float* sum),
                 (ubuf, rows, tw, ch, z, t0, tiles, sum))
GL_WINO_DISPATCH(weight_row,
                 (const float* S, int64_t groups, int64_t s_size, int64_t ps, int64_t o, int64_t in,
                  int64_t out, float* dwt),
                 (S, groups, s_size, ps, o, in, out, dwt))
GL_WINO_DISPATCH(filter_row,
                 (const float* w, int64_t ks, int64_t rs, bool flip, int64_t row, int64_t out,
                  int64_t ps, float* U),
                 (w, ks, rs, flip, row, out, ps, U))

// The transformed filters U[xi][in][out] (G g G^T per filter) in one of three layouts:
// - forward: in = C, out = OC, the filters as they are;
// - input_grad: in = OC, out = C, the filters flipped (the input gradient as a forward pass over
//   dY);
// - adjoint: in = OC, out = C, the filters as they are (the forward's U with each of its T
//   matrices transposed, for the input gradient taken back through the forward's tiles).
enum class FilterLayout { forward, input_grad, adjoint };
template <class W>
std::unique_ptr<float[]> transform_filters(int64_t oc, int64_t c, const float* w,
                                           FilterLayout layout) {
  // Every element of each plane is written below (no zero fill: this runs every step; the pad
  // after each plane is never read).
  std::unique_ptr<float[]> U(new float[std::size_t(W::T * filter_plane_stride(oc, c))]);
  const bool oc_rows = layout != FilterLayout::forward;
  const int64_t in = oc_rows ? oc : c, out = oc_rows ? c : oc;
  // The taps with the columns of U contiguous: for the forward wt[(i * 9 + k) * oc + o], else
  // wt[k * oc * c + o * c + i].
  const std::unique_ptr<float[]> wt(new float[std::size_t(oc * c * 9)]);
  if (oc_rows)
    transpose(w, oc * c, 9, 9, wt.get(), oc * c);
  else
    transpose(w, oc, c * 9, c * 9, wt.get(), oc);
  const int64_t ks = oc_rows ? oc * c : oc, rs = oc_rows ? c : 9 * oc;
  const bool flip = layout == FilterLayout::input_grad;
#pragma omp parallel for schedule(static) if (oc * c >= 512)
  for (int64_t row = 0; row < in; ++row)
    filter_row<W>(wt.get(), ks, rs, flip, row, out, filter_plane_stride(in, out), U.get());
  return U;
}

// A chunk's buffers (per thread, reused): the padded HWC input band, the transformed input
// v [T][tiles][in], the products (or transformed output gradients) m [T][tiles][out], the
// HWC output (or output-gradient) band.
struct ChunkScratch {
  int64_t tiles;
  float *buf, *v, *m, *obuf;
};
ChunkScratch chunk_scratch(const Plan& p, const std::vector<Band>& chunk) {
  const int64_t tw = p.tw(), tiles = chunk_tiles(chunk, tw);
  int64_t band_rows = 0;
  for (const Band& b : chunk) band_rows = std::max(band_rows, b.r1 - b.r0);
  const int64_t m = p.m;
  return {tiles, thread_scratch<float>(0, std::size_t((m * band_rows + 2) * (m * tw + 2) * p.in)),
          thread_scratch<float>(1, std::size_t(p.T() * plane_stride(tiles, p.in))),
          thread_scratch<float>(2, std::size_t(p.T() * plane_stride(tiles, p.out))),
          thread_scratch<float>(3, std::size_t(m * band_rows * m * tw * p.out))};
}
// Rows t0 .. of cs.v: the transformed input tiles of band bd.
template <class W>
void transform_input(const Plan& p, const float* x, const Band& bd, const ChunkScratch& cs,
                     int64_t t0) {
  const int64_t rows = bd.r1 - bd.r0, tw = p.tw();
  fill_hwc(x + bd.n * p.in * p.h * p.w, p.in, p.h, p.w, W::m * bd.r0 - p.pad_h, W::m * rows + 2,
           -p.pad_w, W::m * tw + 2, cs.buf);
  input_band<W>(cs.buf, rows, tw, p.in, cs.v, t0, cs.tiles);
}

// Bytes of a [n, ch, h, w] tensor: rows [y0, y1) of every channel of image n, as one span
// (exact for whole images, which are contiguous; a band spans from its first to its last row).
struct Span {
  const char* base = nullptr;
  int64_t bytes = 0;
};
Span band_span(const float* t, int64_t ch, int64_t h, int64_t w, int64_t n, int64_t y0,
               int64_t y1) {
  y0 = std::max<int64_t>(0, y0);
  y1 = std::min(h, y1);
  if (y1 <= y0) return {};
  const float* first = t + (n * ch * h + y0) * w;
  const float* end = t + ((n * ch + ch - 1) * h + y1) * w;
  return {reinterpret_cast<const char*>(first), (end - first) * int64_t(sizeof(float))};
}

// Memory a chunk's thread touches after its T GEMMs (the next chunk's input, this chunk's
// output), handed to them a part at a time (prefetch_during_next_gemm) so it comes into
// L2 while they compute: the transposes into and out of the channels-last buffers otherwise
// stall on it, their rows being too short and too many for the hardware prefetchers.
class GemmSideFetch {
 public:
  void add(Span s) {
    if (s.bytes <= 0) return;
    total_ += s.bytes;
    if (n_ > 0 && spans_[n_ - 1].base + spans_[n_ - 1].bytes == s.base)
      spans_[n_ - 1].bytes += s.bytes;
    else if (n_ < kMaxSpans)
      spans_[n_++] = s;
    else
      total_ = kMaxBytes + 1;  // more pieces than kept: no hints at all
  }
  // Hints part `i` of `parts` for the next GEMM call (nothing when the whole is too large to
  // stay in L2 beside the chunk's buffers).
  void hint(int64_t i, int64_t parts) const {
    if (total_ > kMaxBytes) return;
    int64_t lo = total_ * i / parts, hi = total_ * (i + 1) / parts, at = 0;
    for (int k = 0; k < n_; ++k) {
      const Span& s = spans_[k];
      const int64_t a = std::max(lo, at), b = std::min(hi, at + s.bytes);
      if (a < b) prefetch_during_next_gemm(s.base + (a - at), 1, b - a, b - a);
      at += s.bytes;
    }
  }

 private:
  static constexpr int64_t kMaxBytes = 384 * 1024;
  // Whole images merge into one span; a chunk's partial bands add a few (fixed storage: this
  // is built for every chunk).
  static constexpr int kMaxSpans = 8;
  Span spans_[kMaxSpans];
  int n_ = 0;
  int64_t total_ = 0;
};

// Runs f(k, next) for chunks (or groups of chunks) k in [0, nc), handed out one at a time as
// threads free up (a thread held up by others on its core does not hold up the pass); each thread
// claims its next chunk before working on the current one, so next (or -1) is known for
// prefetching.
template <class F>
void for_chunks(int64_t nc, bool parallel, F f) {
  std::atomic<int64_t> counter{0};
#pragma omp parallel if (parallel)
  {
    int64_t k = counter.fetch_add(1, std::memory_order_relaxed);
    while (k < nc) {
      const int64_t next = counter.fetch_add(1, std::memory_order_relaxed);
      f(k, next < nc ? next : -1);
      k = next;
    }
  }
}

// [n, in, h, w] -> [n, out, oh, ow] with the transformed filters U and an optional bias.
template <class W>
void forward_pass(const Plan& p, const float* x, const float* U, const float* bias, float* y) {
  const int64_t tw = p.tw();
  const auto chunks = p.chunks();
  std::vector<float> zero_bias(std::size_t(p.out), 0.0f);
  const float* b = bias ? bias : zero_bias.data();
  const bool parallel = chunks.size() > 1 && omp_get_max_threads() > 1;
  for_chunks(int64_t(chunks.size()), parallel, [&](int64_t k, int64_t next) {
    const auto& chunk = chunks[std::size_t(k)];
    const ChunkScratch cs = chunk_scratch(p, chunk);
    const int64_t tiles = cs.tiles;
    float *v = cs.v, *m = cs.m, *obuf = cs.obuf;
    int64_t t0 = 0;
    for (const Band& bd : chunk) {
      transform_input<W>(p, x, bd, cs, t0);
      t0 += (bd.r1 - bd.r0) * tw;
    }
    GemmSideFetch side;
    if (next >= 0)
      for (const Band& bd : chunks[std::size_t(next)])
        side.add(
            band_span(x, p.in, p.h, p.w, bd.n, W::m * bd.r0 - p.pad_h, W::m * bd.r1 + 2 - p.pad_h));
    for (const Band& bd : chunk)
      side.add(band_span(y, p.out, p.oh, p.ow, bd.n, W::m * bd.r0, W::m * bd.r1));
    for (int64_t xi = 0; xi < W::T; ++xi) {
      side.hint(xi, W::T);
      sgemm(false, false, tiles, p.out, p.in, 1.0f, v + xi * plane_stride(tiles, p.in), p.in,
            U + xi * filter_plane_stride(p.in, p.out), p.out, 0.0f,
            m + xi * plane_stride(tiles, p.out), p.out);
    }
    t0 = 0;
    for (const Band& bd : chunk) {
      const int64_t rows = bd.r1 - bd.r0;
      output_band<W>(m, t0, tiles, b, rows, tw, p.out, obuf);
      t0 += rows * tw;
      // HWC band -> NCHW rows [m r0, min(oh, m r1)).
      const int64_t y0 = W::m * bd.r0, y1 = std::min(p.oh, W::m * bd.r1), bw = W::m * tw;
      float* dst = y + bd.n * p.out * p.oh * p.ow;
      if (bw == p.ow)  // the band's rows are contiguous in both layouts
        transpose(obuf, (y1 - y0) * p.ow, p.out, p.out, dst + y0 * p.ow, p.oh * p.ow);
      else
        for (int64_t yy = y0; yy < y1; ++yy)
          transpose(obuf + (yy - y0) * bw * p.out, p.ow, p.out, p.out, dst + yy * p.ow,
                    p.oh * p.ow);
    }
  });
}

// The input gradient taken back through the forward's tiles (the adjoint of the forward pass,
// sharing the weight pass's transformed output gradients Z = A dY A^T):
//   dX = sum over tiles of B [ Z_xi @ U_xi^T ] B^T,
// each tile's a x a result added at its place in the padded input (neighbouring tiles overlap
// by 2 rows and columns). A chunk's bands are its own; where a chunk starts or ends inside an
// image, the 2 rows it shares with the neighbouring chunk go to `edges` and are added in chunk
// order once every chunk is done.
class AdjointWriter {
 public:
  AdjointWriter(const Plan& p, int64_t nchunks, float* dx)
      : p_(p),
        row_floats_((p.m * p.tw() + 2) * p.in),  // one row of a band's padded HWC buffer
        dx_(dx),
        edges_(std::size_t(nchunks * 4 * row_floats_)) {}
  // Band bd (the chunk's first if `first`, last if `last`) from its HWC buffer dbuf.
  void write(const Band& bd, int64_t chunk, bool first, bool last, const float* dbuf) {
    const int64_t rows = p_.m * (bd.r1 - bd.r0) + 2;
    const bool shares_top = first && bd.r0 > 0, shares_bottom = last && bd.r1 < p_.th();
    const int64_t i0 = shares_top ? 2 : 0, i1 = shares_bottom ? rows - 2 : rows;
    for (int64_t i = i0; i < i1; ++i) put_row(bd.n, p_.m * bd.r0 + i, dbuf + i * row_floats_);
    if (shares_top) std::copy(dbuf, dbuf + 2 * row_floats_, edge(chunk, 0));
    if (shares_bottom)
      std::copy(dbuf + (rows - 2) * row_floats_, dbuf + rows * row_floats_, edge(chunk, 1));
  }
  // The shared rows: the earlier chunk's bottom plus the later chunk's top, in that order.
  void finish(const std::vector<std::vector<Band>>& chunks) {
    std::vector<float> sum(std::size_t(2 * row_floats_));
    for (std::size_t k = 1; k < chunks.size(); ++k) {
      const Band& bd = chunks[k].front();
      if (bd.r0 == 0) continue;
      const float *bot = edge(int64_t(k) - 1, 1), *top = edge(int64_t(k), 0);
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = bot[i] + top[i];
      for (int64_t i = 0; i < 2; ++i) put_row(bd.n, p_.m * bd.r0 + i, sum.data() + i * row_floats_);
    }
  }

 private:
  float* edge(int64_t chunk, int which) {
    return edges_.data() + (chunk * 2 + which) * 2 * row_floats_;
  }
  // HWC row `prow` of the padded input of image n into the NCHW gradient (cropped).
  void put_row(int64_t n, int64_t prow, const float* row) {
    const int64_t y = prow - p_.pad_h;
    if (y < 0 || y >= p_.h) return;
    transpose(row + p_.pad_w * p_.in, p_.w, p_.in, p_.in, dx_ + (n * p_.in * p_.h + y) * p_.w,
              p_.h * p_.w);
  }
  const Plan& p_;
  const int64_t row_floats_;
  float* dx_;
  std::vector<float> edges_;
};

// dW[oc][c][3][3] = sum over tiles of G^T [(A dY A^T) . (B^T x B)] G, and (when db is not null)
// the bias gradient from the same reads of dY: per chunk in f32, the chunks' sums in f64. With
// Ut (the adjoint layout of the filters) and dx, also the input gradient through the same tiles.
template <class W>
void weight_pass(const Plan& p, const float* x, const float* dy, float* dw, float* db,
                 const float* Ut = nullptr, float* dx = nullptr) {
  const int64_t tw = p.tw();
  const auto chunks = p.chunks();
  const int64_t nc = int64_t(chunks.size());
  if (nc == 0) {  // an empty batch
    std::fill(dw, dw + p.out * p.in * 9, 0.0f);
    if (db) std::fill(db, db + p.out, 0.0f);
    return;
  }
  // Groups of `per` consecutive chunks (every group has at least one).
  const int64_t per = (nc + kWeightGroups - 1) / kWeightGroups, groups = (nc + per - 1) / per;
  const int64_t s_size = W::T * filter_plane_stride(p.in, p.out);
  // Written by each group's first chunk (beta 0), accumulated by the others.
  const std::unique_ptr<float[]> S(new float[std::size_t(groups * s_size)]);
  std::vector<double> DB(std::size_t(groups * p.out), 0.0);
  std::unique_ptr<AdjointWriter> adjoint;
  if (dx) adjoint = std::make_unique<AdjointWriter>(p, nc, dx);
  const bool parallel = groups > 1 && omp_get_max_threads() > 1;
  for_chunks(groups, parallel, [&](int64_t gi, int64_t next_group) {
    float* s = S.get() + gi * s_size;
    std::vector<float> sum(std::size_t(p.out));
    const int64_t k_end = std::min(nc, (gi + 1) * per);
    for (int64_t k = gi * per; k < k_end; ++k) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      const auto& chunk = chunks[std::size_t(k)];
      const ChunkScratch cs = chunk_scratch(p, chunk);
      const int64_t tiles = cs.tiles;
      float *v = cs.v, *z = cs.m;
      int64_t t0 = 0;
      for (const Band& bd : chunk) {
        const int64_t rows = bd.r1 - bd.r0;
        transform_input<W>(p, x, bd, cs, t0);
        fill_hwc(dy + bd.n * p.out * p.oh * p.ow, p.out, p.oh, p.ow, W::m * bd.r0, W::m * rows, 0,
                 W::m * tw, cs.obuf);
        grad_band<W>(cs.obuf, rows, tw, p.out, z, t0, tiles, sum.data());
        t0 += rows * tw;
      }
      // The thread's next chunk: the next of this group, or the first of its next group.
      const int64_t next = k + 1 < k_end ? k + 1 : next_group >= 0 ? next_group * per : -1;
      GemmSideFetch side;
      if (next >= 0)
        for (const Band& bd : chunks[std::size_t(next)]) {
          side.add(band_span(x, p.in, p.h, p.w, bd.n, W::m * bd.r0 - p.pad_h,
                             W::m * bd.r1 + 2 - p.pad_h));
          side.add(band_span(dy, p.out, p.oh, p.ow, bd.n, W::m * bd.r0, W::m * bd.r1));
        }
      for (int64_t xi = 0; xi < W::T; ++xi) {
        side.hint(xi, W::T);
        sgemm(true, false, p.out, p.in, tiles, 1.0f, z + xi * plane_stride(tiles, p.out), p.out,
              v + xi * plane_stride(tiles, p.in), p.in, k == gi * per ? 0.0f : 1.0f,
              s + xi * filter_plane_stride(p.in, p.out), p.in);
      }
      for (int64_t o = 0; o < p.out; ++o)
        DB[std::size_t(gi * p.out + o)] += double(sum[std::size_t(o)]);
      if (!dx) continue;
      // The input gradient: Z_xi @ U_xi^T into v's space (v is spent), then each band's tiles
      // back through B into the zeroed HWC buffer of its padded rows. While those GEMMs run, the
      // rows of dX the bands write come in (the writes otherwise stall on them: fwd+bwd of the
      // default CNN's second layer 0.98 of the time without, median of 6 rounds).
      GemmSideFetch dx_rows;
      for (const Band& bd : chunk)
        dx_rows.add(band_span(dx, p.in, p.h, p.w, bd.n, W::m * bd.r0 - p.pad_h,
                              W::m * bd.r1 + 2 - p.pad_h));
      for (int64_t xi = 0; xi < W::T; ++xi) {
        dx_rows.hint(xi, W::T);
        sgemm(false, false, tiles, p.in, p.out, 1.0f, z + xi * plane_stride(tiles, p.out), p.out,
              Ut + xi * filter_plane_stride(p.in, p.out), p.in, 0.0f,
              v + xi * plane_stride(tiles, p.in), p.in);
      }
      t0 = 0;
      for (std::size_t b = 0; b < chunk.size(); ++b) {
        const Band& bd = chunk[b];
        const int64_t rows = bd.r1 - bd.r0;
        std::fill(cs.buf, cs.buf + (W::m * rows + 2) * (W::m * tw + 2) * p.in, 0.0f);
        adjoint_band<W>(v, t0, tiles, rows, tw, p.in, cs.buf);
        adjoint->write(bd, k, b == 0, b + 1 == chunk.size(), cs.buf);
        t0 += rows * tw;
      }
    }
  });
  if (dx) adjoint->finish(chunks);
  if (db)
    for (int64_t o = 0; o < p.out; ++o) {
      double t = 0;
      for (int64_t gi = 0; gi < groups; ++gi) t += DB[std::size_t(gi * p.out + o)];
      db[o] = float(t);
    }
  // The groups' sums, added in group order, and dW = G^T S G, tap-major, then transposed.
  const std::unique_ptr<float[]> dwt(new float[std::size_t(9 * p.out * p.in)]);
#pragma omp parallel for schedule(static) if (p.out * p.in >= 512)
  for (int64_t o = 0; o < p.out; ++o)
    weight_row<W>(S.get(), groups, s_size, filter_plane_stride(p.in, p.out), o, p.in, p.out,
                  dwt.get());
  transpose(dwt.get(), 9, p.out * p.in, p.out * p.in, dw, 9);
}

}  // namespace

bool winograd_applies(const ConvGeometry& g) {
  return g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 &&
         g.dil_w == 1 && g.groups == 1 && g.pad_h >= 0 && g.pad_h <= 2 && g.pad_w >= 0 &&
         g.pad_w <= 2 && g.out_h() >= 1 && g.out_w() >= 1;
}

bool winograd_preferred(const ConvGeometry& g) {
  // With few channels the 16 GEMMs are too thin to pay for the transforms: measured with
  // bench_conv (bench/results/conv_algos.md), 8 -> 16 channels on 28x28 ran 1.4-1.8x slower
  // than im2col and 16 -> 16 on 14x14 1.2-1.3x faster.
  return winograd_applies(g) && g.c >= 16 && g.oc >= 16;
}

int winograd_tile(const ConvGeometry& g) {
  const int forced = g_tile.load(std::memory_order_relaxed);
  if (forced != 0) return forced;
  // The fewest products weighted by what each costs beside its GEMM share: the transforms per
  // product grow with the tile (F(4x4)'s scale by up to 8, F(5x5)'s by up to 16), so F(2x2) 1,
  // F(3x3) 1.12, F(4x4) 1.25, F(5x5) 1.3. Where the output divides into 4x4 tiles F(4x4) needs
  // 0.5625 of F(2x2)'s products and was faster or equal on every shape measured
  // (bench/results/conv_algos.md). On 14 x 14 (784, 625, 576 and 441 products per image) F(5x5)
  // runs about 0.9 of F(3x3)'s time, which ran 0.967 of F(2x2)'s (F(4x4) 0.959); on 7 x 7 and
  // 28 x 28 F(4x4) stays ahead (bench/results/cnn_cpu.md).
  auto products = [&](int64_t m) {
    const int64_t a = m + 2;
    return (g.out_h() + m - 1) / m * ((g.out_w() + m - 1) / m) * a * a;
  };
  const double cost[4] = {double(products(2)), 1.12 * double(products(3)),
                          1.25 * double(products(4)), 1.3 * double(products(5))};
  int best = 0;  // ties go to the smaller tile
  for (int i = 1; i < 4; ++i)
    if (cost[i] < cost[best]) best = i;
  return best + 2;
}

void set_winograd_tile(int m) {
  if (m != 0 && (m < 2 || m > 5))
    throw std::invalid_argument(
        "set_winograd_tile: the tile must be 2, 3, 4, 5 or 0 (automatic), not " +
        std::to_string(m));
  g_tile.store(m, std::memory_order_relaxed);
}

namespace {
template <class W>
void forward_impl(const ConvGeometry& g, const float* x, const float* w, const float* bias,
                  float* out) {
  const std::unique_ptr<float[]> U = transform_filters<W>(g.oc, g.c, w, FilterLayout::forward);
  forward_pass<W>({g.n, g.c, g.h, g.w, g.oc, g.out_h(), g.out_w(), g.pad_h, g.pad_w, W::m}, x,
                  U.get(), bias, out);
}

template <class W>
void backward_impl(const ConvGeometry& g, const float* x, const float* w, const float* dy,
                   float* dx, float* dw, float* db) {
  const int64_t oh = g.out_h(), ow = g.out_w(), P = oh * ow;
  const Plan wp{g.n, g.c, g.h, g.w, g.oc, oh, ow, g.pad_h, g.pad_w, W::m};
  if (dw && dx) {  // one pass: dY read and transformed once for both
    const std::unique_ptr<float[]> Ut = transform_filters<W>(g.oc, g.c, w, FilterLayout::adjoint);
    weight_pass<W>(wp, x, dy, dw, db, Ut.get(), dx);
    return;
  }
  if (dw)
    weight_pass<W>(wp, x, dy, dw, db);
  else if (db)
    conv2d_bias_grad(g.n, g.oc, P, dy, db);
  if (dx) {
    const std::unique_ptr<float[]> U = transform_filters<W>(g.oc, g.c, w, FilterLayout::input_grad);
    // A forward pass over dY padded by 2 - pad gives back the input's size.
    forward_pass<W>({g.n, g.oc, oh, ow, g.c, g.h, g.w, 2 - g.pad_h, 2 - g.pad_w, W::m}, dy, U.get(),
                    nullptr, dx);
  }
}
}  // namespace

void winograd_conv2d_forward(const ConvGeometry& g, const float* x, const float* w,
                             const float* bias, float* out) {
  const int tile = winograd_tile(g);
  if (tile == 5)
    forward_impl<F5>(g, x, w, bias, out);
  else if (tile == 4)
    forward_impl<F4>(g, x, w, bias, out);
  else if (tile == 3)
    forward_impl<F3>(g, x, w, bias, out);
  else
    forward_impl<F2>(g, x, w, bias, out);
}

void winograd_conv2d_backward(const ConvGeometry& g, const float* x, const float* w,
                              const float* dy, float* dx, float* dw, float* db) {
  const int tile = winograd_tile(g);
  if (tile == 5)
    backward_impl<F5>(g, x, w, dy, dx, dw, db);
  else if (tile == 4)
    backward_impl<F4>(g, x, w, dy, dx, dw, db);
  else if (tile == 3)
    backward_impl<F3>(g, x, w, dy, dx, dw, db);
  else
    backward_impl<F2>(g, x, w, dy, dx, dw, db);
}

}  // namespace gl::kernels::cpu
