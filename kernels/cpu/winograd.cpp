// winograd.cpp: Winograd F(2x2, 3x3) convolution (kernels/cpu/winograd.h).
//
// Lavin & Gray's minimal filtering algorithm: a 2x2 block of outputs of a 3x3 correlation is
//   Y = A^T [ (G g G^T) . (B^T d B) ] A
// for the 4x4 input tile d and the filter g, with 16 multiplies instead of 36. Summed over the
// input channels, the elementwise products become 16 independent GEMMs (one per transformed
// position xi): M_xi[tiles, out] = V_xi[tiles, in] @ U_xi[in, out], which run on our packed
// GEMM. The same 4x4 domain serves all three passes of training:
// - forward: d = input tile, g = filter, in = C, out = OC.
// - input gradient: a forward pass over dY padded by 2 - pad with the filters flipped and
//   transposed (in = OC, out = C).
// - weight gradient: the transposed algorithm F(3x3, 2x2). From the trilinear form
//   sum_i u_i y_i = sum_xi (A u)_xi (G g)_xi (B^T d)_xi, the 3x3 correlation of a 4x4 input tile
//   d with a 2x2 output-gradient tile u is dW_tile = G^T [ (A u A^T) . (B^T d B) ] G, so
//   S_xi[OC, C] = Z_xi^T @ V_xi (a TN GEMM summing over tiles) and dW = G^T S G at the end.
//
// Work is cut into chunks of about kChunkTiles tiles (whole images, or bands of tile rows of a
// large image) so that a chunk's transformed input, products and output stay in L2. For each
// chunk a thread copies the input band into a zero-padded HWC buffer (channels contiguous), so
// the transforms run as plain loops over channels that the compiler vectorizes; outputs go
// through an HWC band buffer back into NCHW. The chunking depends only on the geometry, and
// the weight gradient sums per fixed group of chunks, added in order: no result depends on the
// thread count.
#include "kernels/cpu/winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/scratch.h"
#include "kernels/kernels.h"

namespace gl::kernels::cpu {
namespace {

// Floats of transformed input plus products per chunk: 16 * tiles * (in + out).
constexpr int64_t kChunkFloats = 160 * 1024;
// Partial sums of the weight gradient (at most this many, summed in order).
constexpr int64_t kWeightGroups = 8;

struct Band {
  int64_t n, r0, r1;  // image, tile rows [r0, r1)
};

// One pass over tiles of [n, in, h, w] giving [n, out, oh, ow] (or, for the weight gradient,
// consuming both).
struct Plan {
  int64_t n, in, h, w, out, oh, ow, pad_h, pad_w;
  int64_t th() const { return (oh + 1) / 2; }
  int64_t tw() const { return (ow + 1) / 2; }
  // Chunks of bands; each chunk holds at most max(tiles budget, one tile row) tiles.
  std::vector<std::vector<Band>> chunks() const {
    const int64_t per_image = th() * tw();
    const int64_t budget = std::max<int64_t>(tw(), kChunkFloats / (16 * (in + out)));
    std::vector<std::vector<Band>> cs;
    if (per_image <= budget) {
      const int64_t images = std::max<int64_t>(1, budget / per_image);
      for (int64_t i = 0; i < n; i += images) {
        std::vector<Band> c;
        for (int64_t k = i; k < std::min(n, i + images); ++k) c.push_back({k, 0, th()});
        cs.push_back(std::move(c));
      }
    } else {
      const int64_t rows = std::max<int64_t>(1, budget / tw());
      for (int64_t k = 0; k < n; ++k)
        for (int64_t r = 0; r < th(); r += rows) cs.push_back({{k, r, std::min(th(), r + rows)}});
    }
    return cs;
  }
};

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

// The tile transforms, as loops over channels (the vectorized dimension). Each is compiled for
// AVX-512 and for the baseline below and picked at run time.
#define GL_TILE_LOOP static inline __attribute__((always_inline))

// v[xi * vs + c] = (B^T d B)[xi] for the 4x4 tile d[(i * rs) + j * ch + c].
GL_TILE_LOOP void input_tile(const float* __restrict b, int64_t rs, int64_t ch, float* __restrict v,
                             int64_t vs) {
#pragma omp simd
  for (int64_t c = 0; c < ch; ++c) {
    float t[4][4];
    for (int j = 0; j < 4; ++j) {
      const float d0 = b[0 * rs + j * ch + c], d1 = b[1 * rs + j * ch + c],
                  d2 = b[2 * rs + j * ch + c], d3 = b[3 * rs + j * ch + c];
      t[0][j] = d0 - d2;
      t[1][j] = d1 + d2;
      t[2][j] = d2 - d1;
      t[3][j] = d1 - d3;
    }
    for (int i = 0; i < 4; ++i) {
      v[(4 * i + 0) * vs + c] = t[i][0] - t[i][2];
      v[(4 * i + 1) * vs + c] = t[i][1] + t[i][2];
      v[(4 * i + 2) * vs + c] = t[i][2] - t[i][1];
      v[(4 * i + 3) * vs + c] = t[i][1] - t[i][3];
    }
  }
}

// The 2x2 outputs A^T m A (+ bias) of the tile m[xi * ms + c], written at o[i * rs + j * ch + c].
GL_TILE_LOOP void output_tile(const float* __restrict m, int64_t ms, const float* __restrict bias,
                              int64_t ch, float* __restrict o, int64_t rs) {
#pragma omp simd
  for (int64_t c = 0; c < ch; ++c) {
    float t[2][4];
    for (int j = 0; j < 4; ++j) {
      const float a0 = m[(0 + j) * ms + c], a1 = m[(4 + j) * ms + c], a2 = m[(8 + j) * ms + c],
                  a3 = m[(12 + j) * ms + c];
      t[0][j] = a0 + a1 + a2;
      t[1][j] = a1 - a2 - a3;
    }
    for (int i = 0; i < 2; ++i) {
      o[i * rs + c] = t[i][0] + t[i][1] + t[i][2] + bias[c];
      o[i * rs + ch + c] = t[i][1] - t[i][2] - t[i][3] + bias[c];
    }
  }
}

// z[xi * zs + c] = (A u A^T)[xi] for the 2x2 output-gradient tile u[i * rs + j * ch + c]; the
// tile's sum is added to sum[c] (the bias gradient).
GL_TILE_LOOP void grad_tile(const float* __restrict u, int64_t rs, int64_t ch, float* __restrict z,
                            int64_t zs, float* __restrict sum) {
#pragma omp simd
  for (int64_t c = 0; c < ch; ++c) {
    const float u00 = u[c], u01 = u[ch + c], u10 = u[rs + c], u11 = u[rs + ch + c];
    sum[c] += (u00 + u01) + (u10 + u11);
    const float r[4][2] = {
        {u00, u01}, {u00 + u10, u01 + u11}, {u00 - u10, u01 - u11}, {-u10, -u11}};
    for (int i = 0; i < 4; ++i) {
      z[(4 * i + 0) * zs + c] = r[i][0];
      z[(4 * i + 1) * zs + c] = r[i][0] + r[i][1];
      z[(4 * i + 2) * zs + c] = r[i][0] - r[i][1];
      z[(4 * i + 3) * zs + c] = -r[i][1];
    }
  }
}

// Input transform of one band: buf is its zero-padded HWC copy with rows 2 * (r1 - r0) + 2 and
// cols 2 * tw + 2; tile k of the band goes to row t0 + k of v.
GL_TILE_LOOP void input_band_body(const float* buf, int64_t rows, int64_t tw, int64_t ch, float* v,
                                  int64_t t0, int64_t tiles) {
  const int64_t cols = 2 * tw + 2, rs = cols * ch;
  for (int64_t ty = 0; ty < rows; ++ty)
    for (int64_t tx = 0; tx < tw; ++tx)
      input_tile(buf + (2 * ty) * rs + 2 * tx * ch, rs, ch, v + (t0 + ty * tw + tx) * ch,
                 tiles * ch);
}
GL_TILE_LOOP void output_band_body(const float* m, int64_t t0, int64_t tiles, const float* bias,
                                   int64_t rows, int64_t tw, int64_t ch, float* obuf) {
  const int64_t rs = 2 * tw * ch;
  for (int64_t ty = 0; ty < rows; ++ty)
    for (int64_t tx = 0; tx < tw; ++tx)
      output_tile(m + (t0 + ty * tw + tx) * ch, tiles * ch, bias, ch,
                  obuf + 2 * ty * rs + 2 * tx * ch, rs);
}
GL_TILE_LOOP void grad_band_body(const float* ubuf, int64_t rows, int64_t tw, int64_t ch, float* z,
                                 int64_t t0, int64_t tiles, float* sum) {
  const int64_t rs = 2 * tw * ch;
  for (int64_t ty = 0; ty < rows; ++ty)
    for (int64_t tx = 0; tx < tw; ++tx)
      grad_tile(ubuf + 2 * ty * rs + 2 * tx * ch, rs, ch, z + (t0 + ty * tw + tx) * ch, tiles * ch,
                sum);
}

// name(params): name##_body compiled for AVX-512 and for the baseline, picked at run time.
#define GL_WINO_DISPATCH(name, params, args)                \
  GL_AVX512_KERNEL void name##_avx512 params {              \
    name##_body args;                                       \
  }                                                         \
  void name##_base params {                                 \
    name##_body args;                                       \
  }                                                         \
  void name params {                                        \
    (cpu_runs_avx512() ? name##_avx512 : name##_base) args; \
  }

GL_WINO_DISPATCH(input_band,
                 (const float* buf, int64_t rows, int64_t tw, int64_t ch, float* v, int64_t t0,
                  int64_t tiles),
                 (buf, rows, tw, ch, v, t0, tiles))
GL_WINO_DISPATCH(output_band,
                 (const float* m, int64_t t0, int64_t tiles, const float* bias, int64_t rows,
                  int64_t tw, int64_t ch, float* obuf),
                 (m, t0, tiles, bias, rows, tw, ch, obuf))
GL_WINO_DISPATCH(grad_band,
                 (const float* ubuf, int64_t rows, int64_t tw, int64_t ch, float* z, int64_t t0,
                  int64_t tiles, float* sum),
                 (ubuf, rows, tw, ch, z, t0, tiles, sum))

// u = G g G^T of a 3x3 filter (row-major, flipped in both axes when `flip`).
void filter_tile(const float* g, bool flip, float u[16]) {
  float f[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) f[i][j] = flip ? g[(2 - i) * 3 + (2 - j)] : g[i * 3 + j];
  float t[4][3];  // G f
  for (int j = 0; j < 3; ++j) {
    t[0][j] = f[0][j];
    t[1][j] = 0.5f * (f[0][j] + f[1][j] + f[2][j]);
    t[2][j] = 0.5f * (f[0][j] - f[1][j] + f[2][j]);
    t[3][j] = f[2][j];
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = t[i][0];
    u[4 * i + 1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
    u[4 * i + 2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
    u[4 * i + 3] = t[i][2];
  }
}

// U[xi][in][out] for the forward pass (in = C, out = OC) or, with `for_input_grad`, the flipped
// transposed filters of the input gradient (in = OC, out = C).
std::vector<float> transform_filters(int64_t oc, int64_t c, const float* w, bool for_input_grad) {
  std::vector<float> U(std::size_t(16 * oc * c));
  const int64_t in = for_input_grad ? oc : c, out = for_input_grad ? c : oc;
  // Rows outer, columns inner: each of the 16 planes is written in order.
#pragma omp parallel for schedule(static) if (oc * c >= 512)
  for (int64_t row = 0; row < in; ++row)
    for (int64_t col = 0; col < out; ++col) {
      const int64_t o = for_input_grad ? row : col, i = for_input_grad ? col : row;
      float u[16];
      filter_tile(w + (o * c + i) * 9, for_input_grad, u);
      for (int xi = 0; xi < 16; ++xi) U[std::size_t((xi * in + row) * out + col)] = u[xi];
    }
  return U;
}

// A chunk's buffers (per thread, reused): the padded HWC input band, the transformed input
// v [16][tiles][in], the products (or transformed output gradients) m [16][tiles][out], the
// HWC output (or output-gradient) band.
struct ChunkScratch {
  int64_t tiles;
  float *buf, *v, *m, *obuf;
};
ChunkScratch chunk_scratch(const Plan& p, const std::vector<Band>& chunk) {
  const int64_t tw = p.tw(), tiles = chunk_tiles(chunk, tw);
  const int64_t band_rows = std::min(p.th(), chunk[0].r1 - chunk[0].r0);
  return {tiles, thread_scratch<float>(0, std::size_t((2 * band_rows + 2) * (2 * tw + 2) * p.in)),
          thread_scratch<float>(1, std::size_t(16 * tiles * p.in)),
          thread_scratch<float>(2, std::size_t(16 * tiles * p.out)),
          thread_scratch<float>(3, std::size_t(2 * band_rows * 2 * tw * p.out))};
}
// Rows t0 .. of cs.v: the transformed input tiles of band bd.
void transform_input(const Plan& p, const float* x, const Band& bd, const ChunkScratch& cs,
                     int64_t t0) {
  const int64_t rows = bd.r1 - bd.r0, tw = p.tw();
  fill_hwc(x + bd.n * p.in * p.h * p.w, p.in, p.h, p.w, 2 * bd.r0 - p.pad_h, 2 * rows + 2, -p.pad_w,
           2 * tw + 2, cs.buf);
  input_band(cs.buf, rows, tw, p.in, cs.v, t0, cs.tiles);
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

// Memory a chunk's thread touches after its 16 GEMMs (the next chunk's input, this chunk's
// output), handed to them a sixteenth at a time (prefetch_during_next_gemm) so it comes into
// L2 while they compute: the transposes into and out of the channels-last buffers otherwise
// stall on it, their rows being too short and too many for the hardware prefetchers.
class GemmSideFetch {
 public:
  void add(Span s) {
    if (s.bytes <= 0) return;
    if (!spans_.empty() && spans_.back().base + spans_.back().bytes == s.base)
      spans_.back().bytes += s.bytes;
    else
      spans_.push_back(s);
    total_ += s.bytes;
  }
  // Hints part `i` of `parts` for the next GEMM call (nothing when the whole is too large to
  // stay in L2 beside the chunk's buffers).
  void hint(int64_t i, int64_t parts) const {
    if (total_ > kMaxBytes) return;
    int64_t lo = total_ * i / parts, hi = total_ * (i + 1) / parts, at = 0;
    for (const Span& s : spans_) {
      const int64_t a = std::max(lo, at), b = std::min(hi, at + s.bytes);
      if (a < b) prefetch_during_next_gemm(s.base + (a - at), 1, b - a, b - a);
      at += s.bytes;
    }
  }

 private:
  static constexpr int64_t kMaxBytes = 384 * 1024;
  std::vector<Span> spans_;
  int64_t total_ = 0;
};

// Runs f(k, next) for chunks k in [0, nc): on `parallel`, each thread a contiguous block, so
// next (the thread's following chunk, or -1) is known.
template <class F>
void for_chunks(int64_t nc, bool parallel, F f) {
#pragma omp parallel if (parallel)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t k0 = nc * t / nt, k1 = nc * (t + 1) / nt;
    for (int64_t k = k0; k < k1; ++k) f(k, k + 1 < k1 ? k + 1 : -1);
  }
}

// [n, in, h, w] -> [n, out, oh, ow] with the transformed filters U and an optional bias.
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
      transform_input(p, x, bd, cs, t0);
      t0 += (bd.r1 - bd.r0) * tw;
    }
    GemmSideFetch side;
    if (next >= 0)
      for (const Band& bd : chunks[std::size_t(next)])
        side.add(band_span(x, p.in, p.h, p.w, bd.n, 2 * bd.r0 - p.pad_h, 2 * bd.r1 + 2 - p.pad_h));
    for (const Band& bd : chunk)
      side.add(band_span(y, p.out, p.oh, p.ow, bd.n, 2 * bd.r0, 2 * bd.r1));
    for (int64_t xi = 0; xi < 16; ++xi) {
      side.hint(xi, 16);
      sgemm(false, false, tiles, p.out, p.in, 1.0f, v + xi * tiles * p.in, p.in,
            U + xi * p.in * p.out, p.out, 0.0f, m + xi * tiles * p.out, p.out);
    }
    t0 = 0;
    for (const Band& bd : chunk) {
      const int64_t rows = bd.r1 - bd.r0;
      output_band(m, t0, tiles, b, rows, tw, p.out, obuf);
      t0 += rows * tw;
      // HWC band -> NCHW rows [2 r0, min(oh, 2 r1)).
      const int64_t y0 = 2 * bd.r0, y1 = std::min(p.oh, 2 * bd.r1), bw = 2 * tw;
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

// dW[oc][c][3][3] = sum over tiles of G^T [(A dY A^T) . (B^T x B)] G, and (when db is not null)
// the bias gradient from the same reads of dY: per chunk in f32, the chunks' sums in f64.
void weight_pass(const Plan& p, const float* x, const float* dy, float* dw, float* db) {
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
  const int64_t s_size = 16 * p.in * p.out;
  // Written by each group's first chunk (beta 0), accumulated by the others.
  const std::unique_ptr<float[]> S(new float[std::size_t(groups * s_size)]);
  std::vector<double> DB(std::size_t(groups * p.out), 0.0);
  const bool parallel = groups > 1 && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t gi = 0; gi < groups; ++gi) {
    float* s = S.get() + gi * s_size;
    std::vector<float> sum(std::size_t(p.out));
    for (int64_t k = gi * per; k < std::min(nc, (gi + 1) * per); ++k) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      const auto& chunk = chunks[std::size_t(k)];
      const ChunkScratch cs = chunk_scratch(p, chunk);
      const int64_t tiles = cs.tiles;
      float *v = cs.v, *z = cs.m;
      int64_t t0 = 0;
      for (const Band& bd : chunk) {
        const int64_t rows = bd.r1 - bd.r0;
        transform_input(p, x, bd, cs, t0);
        fill_hwc(dy + bd.n * p.out * p.oh * p.ow, p.out, p.oh, p.ow, 2 * bd.r0, 2 * rows, 0, 2 * tw,
                 cs.obuf);
        grad_band(cs.obuf, rows, tw, p.out, z, t0, tiles, sum.data());
        t0 += rows * tw;
      }
      GemmSideFetch side;
      if (k + 1 < std::min(nc, (gi + 1) * per))
        for (const Band& bd : chunks[std::size_t(k + 1)]) {
          side.add(
              band_span(x, p.in, p.h, p.w, bd.n, 2 * bd.r0 - p.pad_h, 2 * bd.r1 + 2 - p.pad_h));
          side.add(band_span(dy, p.out, p.oh, p.ow, bd.n, 2 * bd.r0, 2 * bd.r1));
        }
      for (int64_t xi = 0; xi < 16; ++xi) {
        side.hint(xi, 16);
        sgemm(true, false, p.out, p.in, tiles, 1.0f, z + xi * tiles * p.out, p.out,
              v + xi * tiles * p.in, p.in, k == gi * per ? 0.0f : 1.0f, s + xi * p.out * p.in,
              p.in);
      }
      for (int64_t o = 0; o < p.out; ++o)
        DB[std::size_t(gi * p.out + o)] += double(sum[std::size_t(o)]);
    }
  }
  if (db)
    for (int64_t o = 0; o < p.out; ++o) {
      double t = 0;
      for (int64_t gi = 0; gi < groups; ++gi) t += DB[std::size_t(gi * p.out + o)];
      db[o] = float(t);
    }
    // The groups' sums, added in group order, then dW = G^T S G per (oc, c).
#pragma omp parallel for schedule(static) if (s_size >= 8192)
  for (int64_t i = 0; i < s_size; ++i)
    for (int64_t gi = 1; gi < groups; ++gi) S[std::size_t(i)] += S[std::size_t(gi * s_size + i)];
#pragma omp parallel for schedule(static) if (p.out * p.in >= 512)
  for (int64_t o = 0; o < p.out; ++o)
    for (int64_t c = 0; c < p.in; ++c) {
      float sv[4][4];
      for (int xi = 0; xi < 16; ++xi)
        sv[xi / 4][xi % 4] = S[std::size_t((xi * p.out + o) * p.in + c)];
      float t[3][4];  // G^T s
      for (int j = 0; j < 4; ++j) {
        t[0][j] = sv[0][j] + 0.5f * (sv[1][j] + sv[2][j]);
        t[1][j] = 0.5f * (sv[1][j] - sv[2][j]);
        t[2][j] = 0.5f * (sv[1][j] + sv[2][j]) + sv[3][j];
      }
      float* d = dw + (o * p.in + c) * 9;
      for (int i = 0; i < 3; ++i) {
        d[i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        d[i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
        d[i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
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

void winograd_conv2d_forward(const ConvGeometry& g, const float* x, const float* w,
                             const float* bias, float* out) {
  const std::vector<float> U = transform_filters(g.oc, g.c, w, false);
  forward_pass({g.n, g.c, g.h, g.w, g.oc, g.out_h(), g.out_w(), g.pad_h, g.pad_w}, x, U.data(),
               bias, out);
}

void winograd_conv2d_backward(const ConvGeometry& g, const float* x, const float* w,
                              const float* dy, float* dx, float* dw, float* db) {
  const int64_t oh = g.out_h(), ow = g.out_w(), P = oh * ow;
  if (dw)
    weight_pass({g.n, g.c, g.h, g.w, g.oc, oh, ow, g.pad_h, g.pad_w}, x, dy, dw, db);
  else if (db)
    conv2d_bias_grad(g.n, g.oc, P, dy, db);
  if (dx) {
    const std::vector<float> U = transform_filters(g.oc, g.c, w, true);
    // A forward pass over dY padded by 2 - pad gives back the input's size.
    forward_pass({g.n, g.oc, oh, ow, g.c, g.h, g.w, 2 - g.pad_h, 2 - g.pad_w}, dy, U.data(),
                 nullptr, dx);
  }
}

}  // namespace gl::kernels::cpu
