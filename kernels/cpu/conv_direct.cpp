// conv_direct.cpp: direct AVX-512 convolution for layers with few input channels
// (kernels/cpu/conv_direct.h).
//
// The first layer of a CNN (C = 1 for MNIST, 3 for CIFAR) gives im2col a K of 9 or 27, which is
// too short for the GEMM, and Winograd's 16 GEMMs would have K = C. Here the input is copied
// once into a zero-padded buffer (rows padded to whole vectors) and every output row is a sum
// of C * kh * kw shifted input rows times broadcast weights, 16 outputs per vector:
// - forward: per (image, block of 8 output channels), row after row, 16 accumulators (8
//   channels x 2 x-vectors) share the shifted input rows, the weights laid out so each
//   broadcast sits at a fixed offset; the input channel count is a template parameter, so the
//   accumulators never leave the registers. Threads take (image, block) pairs.
// - weight gradient: images in fixed chunks of 4; within a chunk, image by image and its
//   output planes in memory order (dY streams through once, the next planes fetched one pass
//   ahead), vector accumulators per pair of output channels and tap sum dY[n, oc, y, x] *
//   x_pad[n, c, y + ky, x + kx]; the bias gradient is summed in the same pass. Each chunk's
//   sums are reduced, and the chunks added in order: no dependence on the thread count.
//   "Same" convolutions (pad = (k - 1) / 2) take each output plane flat, whole vectors across
//   row ends, against the tap-shifted input planes built once per image (flat_weight_grad:
//   its backward 2.6x faster than the row kernel on the default CNN's first layer); other paddings
//   go row by row, two output rows at a time (they share kh - 1 input rows).
// Shifted input rows come from aligned loads and lane shifts (valignd), not from loads that
// straddle cache lines; the padded buffer is 64-byte aligned with rows of whole vectors.
// The input gradient of such a layer is rarely wanted (the layer sees the data); when it is,
// conv.cpp computes it through im2col.
#include "kernels/cpu/conv_direct.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/scratch.h"

// GCC 12 flags the intrinsics' internal undefined vectors as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace gl::kernels::cpu {
namespace {

struct Padded {
  int64_t hp, ws;     // padded rows, row stride (a whole number of vectors, with slack)
  const float* data;  // in the calling thread's scratch slot kPaddedSlot
};
constexpr int kPaddedSlot = 5;

// x_pad[n][c][hp][ws] with the image at (pad_h, pad_w) and zeros around it. The kernels read
// whole aligned vectors from a column x0 below the output width, up to x0 + 47 (less than ws +
// 32, as ws >= w + 2 pad + k + 16): the 64 floats of slack after the last row keep those reads
// inside the buffer.
Padded pad_input(const ConvGeometry& g, const float* x) {
  Padded p;
  p.hp = g.h + 2 * g.pad_h;
  p.ws = (g.w + 2 * g.pad_w + g.kw + 16 + 15) / 16 * 16;
  // 64-byte aligned (rows are whole vectors, so every row starts on a cache line).
  const std::size_t floats = std::size_t(g.n * g.c * p.hp * p.ws + 64);
  float* raw = thread_scratch<float>(kPaddedSlot, floats + 16);
  float* d =
      reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(raw) + 63) & ~std::uintptr_t(63));
  p.data = d;
  const int64_t planes = g.n * g.c, plane = p.hp * p.ws;
  std::fill(d + planes * plane, d + floats, 0.0f);
#pragma omp parallel for schedule(static) if (g.n * g.c * g.h * g.w >= (1 << 15))
  for (int64_t nc = 0; nc < planes; ++nc) {
    std::fill(d + nc * plane, d + (nc + 1) * plane, 0.0f);
    for (int64_t y = 0; y < g.h; ++y)
      std::memcpy(d + (nc * p.hp + y + g.pad_h) * p.ws + g.pad_w, x + (nc * g.h + y) * g.w,
                  std::size_t(g.w) * sizeof(float));
  }
  return p;
}

constexpr int64_t kOcBlock = 8;

// in[kx .. kx + 15] from the aligned vectors in[0 .. 15] and in[16 .. 31] (kx < 16): one
// lane shift instead of a load that straddles two cache lines.
GL_AVX512_KERNEL inline __m512 shifted(__m512 cur, __m512 nxt, int kx) {
  const __m512i c = _mm512_castps_si512(cur), x = _mm512_castps_si512(nxt);
  switch (kx) {
    case 1:
      return _mm512_castsi512_ps(_mm512_alignr_epi32(x, c, 1));
    case 2:
      return _mm512_castsi512_ps(_mm512_alignr_epi32(x, c, 2));
    case 3:
      return _mm512_castsi512_ps(_mm512_alignr_epi32(x, c, 3));
    case 4:
      return _mm512_castsi512_ps(_mm512_alignr_epi32(x, c, 4));
    default:
      return cur;
  }
}

// Output channels [o0, o0 + kOcBlock) of image n, every row, from the block's weights laid out
// [c][ky][kx][kOcBlock] (zeros past the last channel) and its bias [kOcBlock]; K = kh = kw. Per
// row and 32 columns (C input channels, a compile-time count so the accumulators stay in
// registers), 16 accumulators (8 channels x 2 vectors) take C * K * K shifted input rows
// times broadcast weights. The block's 8 output planes are written row after row: 8 sequential
// streams.
template <int K, int C>
GL_AVX512_KERNEL void forward_block(const ConvGeometry& g, const Padded& xp, const float* wt,
                                    const float* bias, int64_t n, int64_t o0, float* out) {
  const int64_t oh = g.out_h(), ow = g.out_w(), ws = xp.ws;
  const int64_t live = std::min(kOcBlock, g.oc - o0);
  for (int64_t y = 0; y < oh; ++y)
    for (int64_t x0 = 0; x0 < ow; x0 += 32) {
      __m512 acc[kOcBlock][2];
      for (int j = 0; j < kOcBlock; ++j) acc[j][0] = acc[j][1] = _mm512_set1_ps(bias[j]);
      const float* wc = wt;
      for (int c = 0; c < C; ++c, wc += K * K * kOcBlock) {
        const float* plane = xp.data + ((n * C + c) * xp.hp + y) * ws + x0;
        for (int ky = 0; ky < K; ++ky) {
          const float* row = plane + ky * ws;  // aligned: x0 is a multiple of 32
          const __m512 l0 = _mm512_load_ps(row), l1 = _mm512_load_ps(row + 16),
                       l2 = _mm512_load_ps(row + 32);
          for (int kx = 0; kx < K; ++kx) {
            const __m512 v0 = shifted(l0, l1, kx), v1 = shifted(l1, l2, kx);
            const float* wk = wc + (ky * K + kx) * kOcBlock;
            for (int j = 0; j < kOcBlock; ++j) {
              const __m512 wv = _mm512_set1_ps(wk[j]);
              acc[j][0] = _mm512_fmadd_ps(wv, v0, acc[j][0]);
              acc[j][1] = _mm512_fmadd_ps(wv, v1, acc[j][1]);
            }
          }
        }
      }
      const __mmask16 m0 = first_lanes(ow - x0), m1 = first_lanes(ow - x0 - 16);
      for (int j = 0; j < live; ++j) {
        float* o = out + ((n * g.oc + o0 + j) * oh + y) * ow + x0;
        _mm512_mask_storeu_ps(o, m0, acc[j][0]);
        if (ow - x0 > 16) _mm512_mask_storeu_ps(o + 16, m1, acc[j][1]);
      }
    }
}

template <int K>
GL_AVX512_KERNEL void forward_avx512(const ConvGeometry& g, const float* x, const float* w,
                                     const float* bias, float* out) {
  const Padded xp = pad_input(g, x);
  const int64_t taps = g.c * K * K;
  const int64_t blocks = (g.oc + kOcBlock - 1) / kOcBlock;
  // Weights per block as [c][ky][kx][kOcBlock]: one broadcast per channel of the block at a
  // fixed offset from the tap.
  std::vector<float> wt(std::size_t(blocks * taps * kOcBlock), 0.0f),
      bp(std::size_t(blocks * kOcBlock), 0.0f);
  for (int64_t o = 0; o < g.oc; ++o)
    for (int64_t t = 0; t < taps; ++t)
      wt[std::size_t(((o / kOcBlock) * taps + t) * kOcBlock + o % kOcBlock)] = w[o * taps + t];
  if (bias) std::copy(bias, bias + g.oc, bp.begin());
#pragma omp parallel for schedule(static) \
    collapse(2) if (g.n * blocks > 1 && g.n * g.oc * g.out_h() * g.out_w() >= (1 << 15))
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < blocks; ++o) {
      const float* wo = wt.data() + o * taps * kOcBlock;
      const float* bo = bp.data() + o * kOcBlock;
      switch (g.c) {
        case 1:
          forward_block<K, 1>(g, xp, wo, bo, n, o * kOcBlock, out);
          break;
        case 2:
          forward_block<K, 2>(g, xp, wo, bo, n, o * kOcBlock, out);
          break;
        case 3:
          forward_block<K, 3>(g, xp, wo, bo, n, o * kOcBlock, out);
          break;
        default:
          forward_block<K, 4>(g, xp, wo, bo, n, o * kOcBlock, out);
          break;
      }
    }
}

// The weight gradient sums, over a fixed chunk of images, dY[n, oc, y, x] * x_pad[n, c, y + ky,
// x + kx] into one vector accumulator per (oc, c, ky, kx); the chunks' sums are reduced and
// added in chunk order, so the result never depends on the thread count.
constexpr int64_t kImageChunk = 4;

// dw [oc][per_oc] and db (when not null) = the chunks' partial sums, added in chunk order.
void add_chunk_sums(int64_t oc, int64_t per_oc, int64_t chunks, const std::vector<float>& pdw,
                    const std::vector<double>& pdb, float* dw, float* db) {
  for (int64_t i = 0; i < oc * per_oc; ++i) {
    float s = 0.0f;
    for (int64_t ch = 0; ch < chunks; ++ch) s += pdw[std::size_t(ch * oc * per_oc + i)];
    dw[i] = s;
  }
  if (db)
    for (int64_t o = 0; o < oc; ++o) {
      double s = 0.0;
      for (int64_t ch = 0; ch < chunks; ++ch) s += pdb[std::size_t(ch * oc + o)];
      db[o] = float(s);
    }
}

// ROWS (1 or 2) output rows from y at one x-vector: dY rows da / db (plane a, plane b; `two`),
// the input rows from y + ky0 at `in` (aligned). Input row i serves output row y + r with kernel
// row i - r, so two output rows read R + 1 input rows instead of 2 R.
template <int K, int R, int ROWS>
GL_AVX512_KERNEL inline __attribute__((always_inline)) void weight_grad_rows(
    const float* in, int64_t ws, const float* da, const float* db, int64_t ow, __mmask16 m,
    bool two, __m512 (&acc)[2][R * K], __m512& sum_a, __m512& sum_b) {
  __m512 a[ROWS], b[ROWS];
  for (int r = 0; r < ROWS; ++r) {
    a[r] = _mm512_maskz_loadu_ps(m, da + r * ow);
    b[r] = two ? _mm512_maskz_loadu_ps(m, db + r * ow) : _mm512_setzero_ps();
    sum_a = _mm512_add_ps(sum_a, a[r]);
    sum_b = _mm512_add_ps(sum_b, b[r]);
  }
  for (int i = 0; i < R + ROWS - 1; ++i) {
    const __m512 cur = _mm512_load_ps(in + i * ws), nxt = _mm512_load_ps(in + i * ws + 16);
    for (int kx = 0; kx < K; ++kx) {
      const __m512 v = shifted(cur, nxt, kx);
      for (int r = 0; r < ROWS; ++r) {
        const int kr = i - r;
        if (kr < 0 || kr >= R) continue;
        acc[0][kr * K + kx] = _mm512_fmadd_ps(a[r], v, acc[0][kr * K + kx]);
        acc[1][kr * K + kx] = _mm512_fmadd_ps(b[r], v, acc[1][kr * K + kx]);
      }
    }
  }
}

// One image's contribution for output channels o0 and o0 + 1 (`two`), input channel c and
// kernel rows [ky0, ky0 + R): 2 * R * K accumulators, loaded from and stored back to `acc`
// (laid out [2][R * K] vectors), two output rows at a time. With db2, the pass also adds the
// two planes' sums (in f32 per plane) to db2[0] and db2[1]. `next` is the first of the two
// planes the following call reads: each row fetches the same row there, one plane pass ahead.
template <int K, int R>
GL_AVX512_KERNEL void weight_grad_image(const ConvGeometry& g, const Padded& xp, const float* dy,
                                        int64_t n, int64_t o0, bool two, int64_t c, int64_t ky0,
                                        float* acc_mem, double* db2, const float* next) {
  const int64_t oh = g.out_h(), ow = g.out_w(), plane = oh * ow, ws = xp.ws;
  __m512 acc[2][R * K];
  for (int j = 0; j < 2; ++j)
    for (int t = 0; t < R * K; ++t) acc[j][t] = _mm512_loadu_ps(acc_mem + (j * R * K + t) * 16);
  __m512 sum_a = _mm512_setzero_ps(), sum_b = _mm512_setzero_ps();
  const float* d0 = dy + (n * g.oc + o0) * plane;
  const float* d1 = two ? d0 + plane : d0;
  const float* in0 = xp.data + ((n * g.c + c) * xp.hp + ky0) * ws;
  auto fetch = [&](int64_t y) {
    if (!next || y >= oh) return;
    const char* p = reinterpret_cast<const char*>(next + y * ow);
    _mm_prefetch(p, _MM_HINT_T0);
    _mm_prefetch(p + 64, _MM_HINT_T0);
    _mm_prefetch(p + plane * 4, _MM_HINT_T0);
    _mm_prefetch(p + plane * 4 + 64, _MM_HINT_T0);
  };
  int64_t y = 0;
  for (; y + 2 <= oh; y += 2) {
    fetch(y);
    fetch(y + 1);
    for (int64_t x0 = 0; x0 < ow; x0 += 16)
      weight_grad_rows<K, R, 2>(in0 + y * ws + x0, ws, d0 + y * ow + x0, d1 + y * ow + x0, ow,
                                first_lanes(ow - x0), two, acc, sum_a, sum_b);
  }
  if (y < oh) {
    fetch(y);
    for (int64_t x0 = 0; x0 < ow; x0 += 16)
      weight_grad_rows<K, R, 1>(in0 + y * ws + x0, ws, d0 + y * ow + x0, d1 + y * ow + x0, ow,
                                first_lanes(ow - x0), two, acc, sum_a, sum_b);
  }
  for (int j = 0; j < 2; ++j)
    for (int t = 0; t < R * K; ++t) _mm512_storeu_ps(acc_mem + (j * R * K + t) * 16, acc[j][t]);
  if (db2) {
    db2[0] += double(_mm512_reduce_add_ps(sum_a));
    db2[1] += double(_mm512_reduce_add_ps(sum_b));
  }
}

template <int K, int R>
GL_AVX512_KERNEL void weight_grad_avx512(const ConvGeometry& g, const float* x, const float* dy,
                                         float* dw, float* db) {
  static_assert(K % R == 0, "row blocks must tile the kernel");
  const Padded xp = pad_input(g, x);
  const int64_t oh = g.out_h(), ow = g.out_w(), pairs = (g.oc + 1) / 2;
  const int64_t per_oc = g.c * K * K, chunks = (g.n + kImageChunk - 1) / kImageChunk;
  // Per chunk: the vector accumulators [pair][c][ky0 block][2][R * K] (16 floats each), then
  // the reduced sums dw [oc][c * K * K] and db [oc] (f64).
  const int64_t blocks_per_pair = g.c * (K / R), block_floats = 2 * R * K * 16;
  std::vector<float> partial_dw(std::size_t(chunks * g.oc * per_oc));
  std::vector<double> partial_db(std::size_t(chunks * g.oc));
#pragma omp parallel if (chunks > 1)
  {
    const std::size_t acc_floats = std::size_t(pairs * blocks_per_pair * block_floats);
    float* acc = thread_scratch<float>(0, acc_floats);
#pragma omp for schedule(dynamic)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      std::fill(acc, acc + acc_floats, 0.0f);
      double* pdb = partial_db.data() + ch * g.oc;  // zero: each chunk runs once
      const int64_t n_end = std::min(g.n, (ch + 1) * kImageChunk);
      // Image by image, its output planes in memory order: dY streams through once.
      for (int64_t n = ch * kImageChunk; n < n_end; ++n)
        for (int64_t pr = 0; pr < pairs; ++pr) {
          const bool two = 2 * pr + 1 < g.oc;
          const float* next = pr + 1 < pairs  ? dy + (n * g.oc + 2 * pr + 2) * oh * ow
                              : n + 1 < n_end ? dy + (n + 1) * g.oc * oh * ow
                                              : nullptr;
          double sums[2] = {0.0, 0.0};
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t ky0 = 0; ky0 < K; ky0 += R)
              weight_grad_image<K, R>(g, xp, dy, n, 2 * pr, two, c, ky0,
                                      acc + ((pr * g.c + c) * (K / R) + ky0 / R) * block_floats,
                                      db && c == 0 && ky0 == 0 ? sums : nullptr,
                                      c == 0 && ky0 == 0 ? next : nullptr);
          pdb[2 * pr] += sums[0];
          if (two) pdb[2 * pr + 1] += sums[1];
        }
      float* pdw = partial_dw.data() + ch * g.oc * per_oc;
      for (int64_t pr = 0; pr < pairs; ++pr)
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t ky0 = 0; ky0 < K; ky0 += R) {
            const float* a = acc + ((pr * g.c + c) * (K / R) + ky0 / R) * block_floats;
            for (int64_t j = 0; j < (2 * pr + 1 < g.oc ? 2 : 1); ++j)
              for (int64_t t = 0; t < R * K; ++t)
                pdw[(2 * pr + j) * per_oc + (c * K + ky0) * K + t] =
                    _mm512_reduce_add_ps(_mm512_loadu_ps(a + (j * R * K + t) * 16));
          }
    }
  }
  add_chunk_sums(g.oc, per_oc, chunks, partial_dw, partial_db, dw, db);
}

// "Same" convolutions (pad = (K - 1) / 2 both ways, so the output plane has the input's size)
// take the weight gradient over each image's output plane flat: P = h * w values, whole vectors
// but for the last, none lost at the ends of rows (a 28-wide row is 1.75 vectors). For a group of
// up to 9 taps t = (c, ky, kx) the shifted planes col[t][p] = x[c][y + ky - pad][x + kx - pad]
// (zero outside the image) are built once per image, with masked loads from a vertically
// zero-padded copy of the plane; then per pair of output channels 2 G vector accumulators take
// dY[n, oc, p] * col[t][p] over the plane, 2 G FMAs for G + 2 aligned loads. Images in the same
// fixed chunks, chunk sums reduced and added in order as above.
constexpr int kFlatGroup = 9;  // taps per group: 2 * 9 accumulators + 2 dY + 1 col registers

bool flat_weight_grad_applies(const ConvGeometry& g) {
  return g.kh == g.kw && g.pad_h == (g.kh - 1) / 2 && g.pad_w == (g.kw - 1) / 2 && g.kh % 2 == 1;
}

// One image's contribution for output channels a and b (for an odd last channel the caller
// passes a's plane twice and keeps only a's sums) and the G taps of col (planes of pstride
// floats, zero past P): the accumulators acc_mem[2][G] (vectors) are loaded and stored back;
// sums (when not null) gets the two planes' sums added. `ahead` is what the next call reads (its
// two planes), fetched one plane pass ahead: streams of a few KB are too short for the hardware
// prefetchers.
template <int G>
GL_AVX512_KERNEL void flat_pair(const float* col, int64_t pstride, int64_t P, const float* da,
                                const float* db, const float* ahead, float* acc_mem, double* sums) {
  __m512 aa[G], ab[G];
#pragma GCC unroll 9
  for (int t = 0; t < G; ++t) {
    aa[t] = _mm512_loadu_ps(acc_mem + t * 16);
    ab[t] = _mm512_loadu_ps(acc_mem + (G + t) * 16);
  }
  __m512 sa = _mm512_setzero_ps(), sb = _mm512_setzero_ps();
  const int64_t full = P / 16 * 16;
  for (int64_t p = 0; p < P; p += 16) {
    const __mmask16 m = p < full ? __mmask16(0xFFFF) : first_lanes(P - p);
    if (ahead) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + p), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + P + p), _MM_HINT_T0);
    }
    const __m512 a = _mm512_maskz_loadu_ps(m, da + p), b = _mm512_maskz_loadu_ps(m, db + p);
    sa = _mm512_add_ps(sa, a);
    sb = _mm512_add_ps(sb, b);
#pragma GCC unroll 9
    for (int t = 0; t < G; ++t) {
      __m512 v = _mm512_load_ps(col + t * pstride + p);
      // Loaded once into a register for both products: folded into each FMA as a memory
      // operand (as GCC does), the loop issues 2G + 2 vector loads to its 2G FMAs, and the
      // loads, not the FMAs, set its pace.
      asm("" : "+v"(v));
      aa[t] = _mm512_fmadd_ps(a, v, aa[t]);
      ab[t] = _mm512_fmadd_ps(b, v, ab[t]);
    }
  }
#pragma GCC unroll 9
  for (int t = 0; t < G; ++t) {
    _mm512_storeu_ps(acc_mem + t * 16, aa[t]);
    _mm512_storeu_ps(acc_mem + (G + t) * 16, ab[t]);
  }
  if (sums) {
    sums[0] += double(_mm512_reduce_add_ps(sa));
    sums[1] += double(_mm512_reduce_add_ps(sb));
  }
}

GL_AVX512_KERNEL void flat_pair_any(int G, const float* col, int64_t pstride, int64_t P,
                                    const float* da, const float* db, const float* ahead,
                                    float* acc_mem, double* sums) {
  switch (G) {
#define GL_FLAT_CASE(n) \
  case n:               \
    return flat_pair<n>(col, pstride, P, da, db, ahead, acc_mem, sums);
    GL_FLAT_CASE(1)
    GL_FLAT_CASE(2)
    GL_FLAT_CASE(3)
    GL_FLAT_CASE(4)
    GL_FLAT_CASE(5)
    GL_FLAT_CASE(6)
    GL_FLAT_CASE(7)
    GL_FLAT_CASE(8)
    default:
      return flat_pair<9>(col, pstride, P, da, db, ahead, acc_mem, sums);
#undef GL_FLAT_CASE
  }
}

GL_AVX512_KERNEL void flat_weight_grad(const ConvGeometry& g, const float* x, const float* dy,
                                       float* dw, float* db) {
  const int64_t K = g.kh, pad = g.pad_h, h = g.h, w = g.w, P = h * w;
  const int64_t taps = g.c * K * K, groups = (taps + kFlatGroup - 1) / kFlatGroup;
  const int64_t pairs = (g.oc + 1) / 2, chunks = (g.n + kImageChunk - 1) / kImageChunk;
  const int64_t pv = (P + 15) / 16, pstride = pv * 16 + 16;  // planes off 4 KB multiples
  // The padded copy of one plane: `front` zeros (pad rows and pad columns), the plane, as many
  // zeros after and a vector of slack, so every masked load stays inside.
  const int64_t front = pad * w + pad, fsize = front + P + front + 16;
  // Lane masks per (kx, vector): columns whose x + kx - pad falls inside the row (and p < P).
  std::vector<__mmask16> masks(std::size_t(K * pv));
  for (int64_t kx = 0; kx < K; ++kx)
    for (int64_t v = 0; v < pv; ++v) {
      unsigned m = 0;
      for (int64_t l = 0; l < 16; ++l) {
        const int64_t p = v * 16 + l, xs = p % w + kx - pad;
        if (p < P && xs >= 0 && xs < w) m |= 1u << l;
      }
      masks[std::size_t(kx * pv + v)] = __mmask16(m);
    }
  // Per chunk: the accumulators [pair][group][2][kFlatGroup] (vectors), then the reduced sums.
  const int64_t block_floats = 2 * kFlatGroup * 16;
  std::vector<float> partial_dw(std::size_t(chunks * g.oc * taps));
  std::vector<double> partial_db(std::size_t(chunks * g.oc));
#pragma omp parallel if (chunks > 1)
  {
    const std::size_t acc_floats = std::size_t(pairs * groups * block_floats);
    float* acc = thread_scratch<float>(0, acc_floats);
    // Aligned: the hot loop's col loads are whole cache lines.
    float* col_raw = thread_scratch<float>(1, std::size_t(kFlatGroup * pstride + 16));
    float* col = reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(col_raw) + 63) &
                                          ~std::uintptr_t(63));
    float* fpad = thread_scratch<float>(2, std::size_t(g.c * fsize));
    std::fill(fpad, fpad + g.c * fsize, 0.0f);  // the borders stay zero
#pragma omp for schedule(dynamic)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      std::fill(acc, acc + acc_floats, 0.0f);
      double* pdb = partial_db.data() + ch * g.oc;  // zero: each chunk runs once
      const int64_t n_end = std::min(g.n, (ch + 1) * kImageChunk);
      for (int64_t n = ch * kImageChunk; n < n_end; ++n) {
        for (int64_t c = 0; c < g.c; ++c)
          std::memcpy(fpad + c * fsize + front, x + (n * g.c + c) * P,
                      std::size_t(P) * sizeof(float));
        const float* dyn = dy + n * g.oc * P;
        for (int64_t gr = 0; gr < groups; ++gr) {
          const int64_t t0 = gr * kFlatGroup, G = std::min<int64_t>(kFlatGroup, taps - t0);
          for (int64_t t = 0; t < G; ++t) {
            const int64_t tap = t0 + t, c = tap / (K * K), ky = tap % (K * K) / K, kx = tap % K;
            const float* src = fpad + c * fsize + front + (ky - pad) * w + (kx - pad);
            const __mmask16* mk = masks.data() + kx * pv;
            float* dst = col + t * pstride;
            for (int64_t v = 0; v < pv; ++v)
              _mm512_store_ps(dst + v * 16, _mm512_maskz_loadu_ps(mk[v], src + v * 16));
          }
          for (int64_t pr = 0; pr < pairs; ++pr) {
            const bool two = 2 * pr + 1 < g.oc;
            const float* da = dyn + 2 * pr * P;
            double sums[2] = {0.0, 0.0};
            // The next pair's planes (the next image's first after the last pair): with one
            // tap group they follow in memory.
            const float* ahead =
                groups == 1 && (2 * pr + 2 < g.oc || n + 1 < n_end) ? da + 2 * P : nullptr;
            flat_pair_any(int(G), col, pstride, P, da, two ? da + P : da, ahead,
                          acc + (pr * groups + gr) * block_floats, db && gr == 0 ? sums : nullptr);
            if (db && gr == 0) {
              pdb[2 * pr] += sums[0];
              if (two) pdb[2 * pr + 1] += sums[1];
            }
          }
        }
      }
      float* pdw = partial_dw.data() + ch * g.oc * taps;
      for (int64_t pr = 0; pr < pairs; ++pr)
        for (int64_t gr = 0; gr < groups; ++gr) {
          const int64_t t0 = gr * kFlatGroup, G = std::min<int64_t>(kFlatGroup, taps - t0);
          const float* a = acc + (pr * groups + gr) * block_floats;
          for (int64_t j = 0; j < (2 * pr + 1 < g.oc ? 2 : 1); ++j)
            for (int64_t t = 0; t < G; ++t)
              pdw[(2 * pr + j) * taps + t0 + t] =
                  _mm512_reduce_add_ps(_mm512_loadu_ps(a + (j * G + t) * 16));
        }
    }
  }
  add_chunk_sums(g.oc, taps, chunks, partial_dw, partial_db, dw, db);
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
  if (flat_weight_grad_applies(g)) return flat_weight_grad(g, x, dy, dw, db);
  if (g.kh == 3)
    weight_grad_avx512<3, 3>(g, x, dy, dw, db);
  else
    weight_grad_avx512<5, 1>(g, x, dy, dw, db);
}

}  // namespace gl::kernels::cpu
