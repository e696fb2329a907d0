// conv_tiles.h: the tiled convolution kernels' per-thread work (kernels/cuda/conv.cu), written
// once for the device and the host. The kernels run these functions per thread; the CPU tests
// run the same functions over every block and thread in turn and compare with the f64
// reference, so the tiling, the gathers, the split ranges and the stores are checked in every
// build, GPU or not. No CUDA headers.
//
// Both kernels are GEMMs over 64 x 64 output tiles per block of 256 threads, each thread a 4 x 4
// register tile (rows tm..tm+3, columns tn..tn+3), the reduction advancing in slices of 16
// staged in shared memory as A [slice][rows] and B [slice][columns]:
// - forward, per group: Y[o, q] = sum over k < K = cg * kh * kw of W[o, k] * col[k, q], for
//   output channels o < ocg and output pixels q < NP = n * oh * ow, col[k, q] the input value
//   tap k of pixel q reads (zero in the padding): A = the weights, B = the gathered inputs. No
//   im2col matrix is written.
// - input gradient, per group: dX = W^T @ dYcol over (output channel, tap) pairs, dYcol gathered
//   from dY (zero where no output pixel's tap reads the input pixel).
// - weight gradient, per group: dW[o, k] = sum over q < NP of dY[o, q] * col[k, q]: A = dY,
//   B = the gathered inputs, the pixels split into runs; with one run the block writes dW, with
//   several each run writes its partial tile to a workspace [run][oc][K] and a second pass adds
//   the runs in order. No atomics: the same bits on every run.
#pragma once
#include <cstdint>

#include "kernels/cpu/conv.h"
#include "kernels/cuda/index_math.h"  // divmod_nonneg, conv_tap_source
#include "kernels/functors.h"         // GL_HD

namespace gl::kernels::cuda {

struct ConvDims {
  int64_t n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow;
  int64_t cg, ocg, K, P, NP;  // channels per group (in, out), taps per output, pixels
};

inline ConvDims conv_dims(const cpu::ConvGeometry& cg) {
  ConvDims g{cg.n,        cg.c,        cg.h,     cg.w,     cg.oc,    cg.kh,    cg.kw,
             cg.stride_h, cg.stride_w, cg.pad_h, cg.pad_w, cg.dil_h, cg.dil_w, cg.groups,
             cg.out_h(),  cg.out_w(),  0,        0,        0,        0,        0};
  g.cg = g.c / g.groups;
  g.ocg = g.oc / g.groups;
  g.K = g.cg * g.kh * g.kw;
  g.P = g.oh * g.ow;
  g.NP = g.n * g.P;
  return g;
}

inline constexpr int kConvTile = 64, kConvSlice = 16, kConvThreads = 256;
static_assert(kConvThreads * 4 == kConvSlice * kConvTile,
              "each thread stages 4 values of A and 4 of B per slice");
// Shared tiles are [slice][tile + 4]: rows stay 16-byte aligned, so the accumulation reads
// 4 floats at a time, and the padding spreads the staging writes (which go down a column) over
// the banks.
inline constexpr int kConvTilePad = kConvTile + 4;
// Loops the device compiler unrolls (the host build compiles them as they are).
#if defined(__CUDA_ARCH__)
#define GL_CONV_UNROLL _Pragma("unroll")
#else
#define GL_CONV_UNROLL
#endif
using ConvTile = float[kConvTilePad];

// Tap k (< K) of the group's taps: channel ci, row ki, column kj, as the offsets it adds.
struct ConvTap {
  int64_t plane;     // ci * h * w
  int64_t dih, diw;  // ki * dh - ph, kj * dw - pw
};

GL_HD ConvTap conv_tap(const ConvDims& g, int64_t k) {
  int64_t ci, tap, ki, kj;
  divmod_nonneg(k, g.kh * g.kw, ci, tap);
  divmod_nonneg(tap, g.kw, ki, kj);
  return {ci * g.h * g.w, ki * g.dh - g.ph, kj * g.dw - g.pw};
}

// Where the tap reads for the output pixel at (oy, ox): the offset from the image's first
// channel of the group, or -1 in the padding.
GL_HD int64_t conv_tap_read(const ConvDims& g, const ConvTap& t, int64_t oy, int64_t ox) {
  const int64_t ih = oy * g.sh + t.dih, iw = ox * g.sw + t.diw;
  if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) return -1;
  return t.plane + ih * g.w + iw;
}

// The thread's register tile.
GL_HD int conv_tile_tm(int tid) {
  return (tid / 16) * 4;
}
GL_HD int conv_tile_tn(int tid) {
  return (tid % 16) * 4;
}

// acc += the staged slice's products for thread `tid`, slice row after slice row.
GL_HD void conv_tile_accumulate(const ConvTile* As, const ConvTile* Bs, int tid, float (*acc)[4]) {
  const int tm = conv_tile_tm(tid), tn = conv_tile_tn(tid);
  GL_CONV_UNROLL
  for (int kk = 0; kk < kConvSlice; ++kk) {
    float a[4], b[4];
    GL_CONV_UNROLL
    for (int i = 0; i < 4; ++i) a[i] = As[kk][tm + i];
    GL_CONV_UNROLL
    for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tn + j];
    GL_CONV_UNROLL
    for (int i = 0; i < 4; ++i) {
      GL_CONV_UNROLL
      for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// ---- forward and input gradient ----

// What thread `tid` of a forward or input-gradient block (group, rows m0.., pixels n0..) stages,
// fixed for the block. A: slice row tid % 16, columns tid / 16 + 16 r (consecutive threads read
// consecutive entries of one weight row). B: column tid % 64 (its pixel: an output pixel in the
// forward, an input pixel in the input gradient), slice rows tid / 64 + 4 r (consecutive
// threads gather consecutive pixels).
struct ConvPixelPlan {
  int a_row, a_col0, b_col, b_row0;
  bool pixel_in;         // the pixel exists
  int64_t y, x;          // its position in its image
  int64_t base;          // offset of the group's first channel of that image in the tensor B reads
  const float* w_group;  // W[group * ocg, 0, 0, 0]
};

// The plan for pixels of `pixels` in images of rows x cols, B read from a tensor of `channels`
// planes of `plane` values per image, whose group starts at channel `channel0`.
GL_HD ConvPixelPlan conv_pixel_plan(const ConvDims& g, int64_t group, int64_t n0, int tid,
                                    const float* weight, int64_t pixels, int64_t rows, int64_t cols,
                                    int64_t channels, int64_t channel0, int64_t plane) {
  ConvPixelPlan t{};
  t.a_row = tid % kConvSlice;
  t.a_col0 = tid / kConvSlice;
  t.b_col = tid % kConvTile;
  t.b_row0 = tid / kConvTile;
  const int64_t q = n0 + t.b_col;
  t.pixel_in = q < pixels;
  int64_t img = 0, p = 0;
  if (t.pixel_in) {
    divmod_nonneg(q, rows * cols, img, p);
    divmod_nonneg(p, cols, t.y, t.x);
  }
  t.base = (img * channels + channel0) * plane;
  t.w_group = weight + group * g.ocg * g.K;
  return t;
}

// acc (+ bias[channel], bias may be null) into an NCHW tensor of `channels` channels of
// `plane` pixels: tile row m0 + tm + i (< rows) is channel channel0 + that row, tile column
// n0 + tn + j (< pixels) is the pixel.
GL_HD void conv_store_nchw(int64_t rows, int64_t pixels, int64_t plane, int64_t channels,
                           int64_t channel0, int64_t m0, int64_t n0, int tid, const float (*acc)[4],
                           const float* bias, float* out) {
  const int tm = conv_tile_tm(tid), tn = conv_tile_tn(tid);
  for (int j = 0; j < 4; ++j) {
    const int64_t q = n0 + tn + j;
    if (q >= pixels) continue;
    int64_t img, p;
    divmod_nonneg(q, plane, img, p);
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + tm + i;
      if (m >= rows) continue;
      const int64_t ch = channel0 + m;
      out[(img * channels + ch) * plane + p] = acc[i][j] + (bias ? bias[ch] : 0.0f);
    }
  }
}

// Forward, per group: rows = output channels, pixels = output pixels, the reduction over taps.
GL_HD ConvPixelPlan conv_fwd_thread_plan(const ConvDims& g, int64_t group, int64_t n0, int tid,
                                         const float* weight) {
  return conv_pixel_plan(g, group, n0, tid, weight, g.NP, g.oh, g.ow, g.c, group * g.cg, g.h * g.w);
}

// The thread's share of the slice of taps [k0, k0 + 16): 4 weights into A, 4 gathered inputs
// into B; zero past the ends and in the padding.
GL_HD void conv_fwd_stage(const ConvDims& g, const ConvPixelPlan& t, int64_t m0, int64_t k0,
                          const float* x, ConvTile* As, ConvTile* Bs) {
  for (int r = 0; r < 4; ++r) {
    const int col = t.a_col0 + kConvSlice * r;
    const int64_t m = m0 + col, k = k0 + t.a_row;
    As[t.a_row][col] = (m < g.ocg && k < g.K) ? t.w_group[m * g.K + k] : 0.0f;
  }
  for (int r = 0; r < 4; ++r) {
    const int row = t.b_row0 + 4 * r;
    const int64_t k = k0 + row;
    float v = 0.0f;
    if (t.pixel_in && k < g.K) {
      const int64_t at = conv_tap_read(g, conv_tap(g, k), t.y, t.x);
      if (at >= 0) v = x[t.base + at];
    }
    Bs[row][t.b_col] = v;
  }
}

// out[img, group * ocg + m, p] = acc + bias for the thread's tile (bias may be null).
GL_HD void conv_fwd_store(const ConvDims& g, int64_t group, int64_t m0, int64_t n0, int tid,
                          const float (*acc)[4], const float* bias, float* out) {
  conv_store_nchw(g.ocg, g.NP, g.P, g.oc, group * g.ocg, m0, n0, tid, acc, bias, out);
}

// Input gradient, per group: dX[ci, q'] = sum over j < ocg * kh * kw (j = o * kh * kw + tap) of
// W[o, ci, tap] * dY[o, the output pixel whose tap reads q'], for input channels ci < cg and
// input pixels q' < n * h * w (zero where no output pixel's tap reads q'): A = the weights read
// transposed, B = dY gathered.
GL_HD int64_t conv_dx_pixels(const ConvDims& g) {
  return g.n * g.h * g.w;
}

GL_HD ConvPixelPlan conv_dx_thread_plan(const ConvDims& g, int64_t group, int64_t n0, int tid,
                                        const float* weight) {
  return conv_pixel_plan(g, group, n0, tid, weight, conv_dx_pixels(g), g.h, g.w, g.oc,
                         group * g.ocg, g.P);
}

// The thread's share of the slice [j0, j0 + 16) of (output channel, tap) pairs: 4 weights into A
// (input channels m0 + col), 4 gathered output gradients into B; zero past the ends and where
// no output pixel's tap reads the input pixel.
GL_HD void conv_dx_stage(const ConvDims& g, const ConvPixelPlan& t, int64_t m0, int64_t j0,
                         const float* dy, ConvTile* As, ConvTile* Bs) {
  const int64_t taps = g.kh * g.kw, J = g.ocg * taps;
  {
    const int64_t j = j0 + t.a_row;
    int64_t o = 0, tap = 0;
    if (j < J) divmod_nonneg(j, taps, o, tap);
    for (int r = 0; r < 4; ++r) {
      const int col = t.a_col0 + kConvSlice * r;
      const int64_t ci = m0 + col;
      As[t.a_row][col] = (j < J && ci < g.cg) ? t.w_group[(o * g.cg + ci) * taps + tap] : 0.0f;
    }
  }
  for (int r = 0; r < 4; ++r) {
    const int row = t.b_row0 + 4 * r;
    const int64_t j = j0 + row;
    float v = 0.0f;
    if (t.pixel_in && j < J) {
      int64_t o, tap, ki, kj;
      divmod_nonneg(j, taps, o, tap);
      divmod_nonneg(tap, g.kw, ki, kj);
      const int64_t oy = conv_tap_source(t.y, ki, g.sh, g.ph, g.dh, g.oh);
      const int64_t ox = oy < 0 ? -1 : conv_tap_source(t.x, kj, g.sw, g.pw, g.dw, g.ow);
      if (ox >= 0) v = dy[t.base + o * g.P + oy * g.ow + ox];
    }
    Bs[row][t.b_col] = v;
  }
}

// dx[img, group * cg + ci, ih, iw] = acc for the thread's tile.
GL_HD void conv_dx_store(const ConvDims& g, int64_t group, int64_t m0, int64_t n0, int tid,
                         const float (*acc)[4], float* dx) {
  conv_store_nchw(g.cg, conv_dx_pixels(g), g.h * g.w, g.c, group * g.cg, m0, n0, tid, acc, nullptr,
                  dx);
}

// ---- weight gradient ----

// Pixels per run of the weight gradient's reduction, a function of the geometry alone: enough runs
// that the grid has about 1024 blocks with `tiles` blocks per run (tap tiles x channel tiles x
// groups), but runs of at least about 512 pixels, and a workspace (runs x weight_numel floats) of
// at most 64 MiB. A multiple of the slice.
inline constexpr int64_t kDwTargetBlocks = 1024, kDwMinRun = 512,
                         kDwMaxWorkspace = int64_t(1) << 24;
GL_HD int64_t conv_dw_split_pixels(int64_t NP, int64_t tiles, int64_t weight_numel) {
  if (NP <= 0) return kConvSlice;
  int64_t splits = (kDwTargetBlocks + tiles - 1) / (tiles > 0 ? tiles : 1);
  const int64_t by_pixels = (NP + kDwMinRun - 1) / kDwMinRun;
  if (splits > by_pixels) splits = by_pixels;
  if (weight_numel > 0 && splits > kDwMaxWorkspace / weight_numel)
    splits = kDwMaxWorkspace / weight_numel;
  if (splits < 1) splits = 1;
  const int64_t chunk = (NP + splits - 1) / splits;
  return (chunk + kConvSlice - 1) / kConvSlice * kConvSlice;
}

// The run length conv2d_backward uses for g: its grid has (tap tiles x channel tiles x groups)
// blocks per run, and the workspace holds one weight gradient per run.
GL_HD int64_t conv_dw_run_pixels(const ConvDims& g) {
  const int64_t tiles =
      ((g.K + kConvTile - 1) / kConvTile) * ((g.ocg + kConvTile - 1) / kConvTile) * g.groups;
  return conv_dw_split_pixels(g.NP, tiles, g.oc * g.K);
}

GL_HD int64_t conv_dw_splits(int64_t NP, int64_t chunk) {
  return NP <= 0 ? 1 : (NP + chunk - 1) / chunk;
}

// What thread `tid` of the block at (group, channels m0.., taps n0..) stages, fixed for the
// block: slice row tid % 16 (the pixel q + row) and columns tid / 16 + 16 r of A (output
// channels) and of B (taps); the 16 consecutive threads of a column read 16 consecutive pixels.
struct ConvDwThreadPlan {
  int row, col0;
  int64_t dy_plane[4];  // offset of dY[0, group * ocg + m, 0], or -1 past the group's channels
  bool tap_in[4];       // the tap n0 + col exists (< K)
  ConvTap tap[4];
};

GL_HD ConvDwThreadPlan conv_dw_thread_plan(const ConvDims& g, int64_t group, int64_t m0, int64_t n0,
                                           int tid) {
  ConvDwThreadPlan t{};
  t.row = tid % kConvSlice;
  t.col0 = tid / kConvSlice;
  for (int r = 0; r < 4; ++r) {
    const int64_t col = t.col0 + kConvSlice * r;
    const int64_t m = m0 + col, k = n0 + col;
    t.dy_plane[r] = m < g.ocg ? (group * g.ocg + m) * g.P : -1;
    t.tap_in[r] = k < g.K;
    t.tap[r] = t.tap_in[r] ? conv_tap(g, k) : ConvTap{0, 0, 0};
  }
  return t;
}

// The thread's share of one slice: pixel q + row (nothing at or past q_end) for its 4 output
// channels into A and its 4 taps into B; zero past the ends and in the padding.
GL_HD void conv_dw_stage(const ConvDims& g, const ConvDwThreadPlan& t, int64_t group, int64_t q,
                         int64_t q_end, const float* x, const float* dy, ConvTile* As,
                         ConvTile* Bs) {
  const int64_t qq = q + t.row;
  const bool in = qq < q_end;
  int64_t img = 0, p = 0, oy = 0, ox = 0;
  if (in) {
    divmod_nonneg(qq, g.P, img, p);
    divmod_nonneg(p, g.ow, oy, ox);
  }
  const int64_t dy_image = img * g.oc * g.P, x_base = (img * g.c + group * g.cg) * g.h * g.w;
  for (int r = 0; r < 4; ++r) {
    const int col = t.col0 + kConvSlice * r;
    As[t.row][col] = (in && t.dy_plane[r] >= 0) ? dy[dy_image + t.dy_plane[r] + p] : 0.0f;
    float v = 0.0f;
    if (in && t.tap_in[r]) {
      const int64_t at = conv_tap_read(g, t.tap[r], oy, ox);
      if (at >= 0) v = x[x_base + at];
    }
    Bs[t.row][col] = v;
  }
}

// Writes thread `tid`'s tile: into out + split * oc * K (the workspace; dW itself with one
// run), element (group * ocg + m) * K + k.
GL_HD void conv_dw_store(const ConvDims& g, int64_t group, int64_t m0, int64_t n0, int64_t split,
                         int tid, const float (*acc)[4], float* out) {
  const int tm = conv_tile_tm(tid), tn = conv_tile_tn(tid);
  float* base = out + split * g.oc * g.K;
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + tm + i;
    if (m >= g.ocg) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t k = n0 + tn + j;
      if (k < g.K) base[(group * g.ocg + m) * g.K + k] = acc[i][j];
    }
  }
}

// The second pass: dW[e] = the runs' partial sums of element e, added in run order.
GL_HD float conv_dw_sum_splits(const float* workspace, int64_t splits, int64_t total, int64_t e) {
  float s = 0.0f;
  for (int64_t z = 0; z < splits; ++z) s += workspace[z * total + e];
  return s;
}

}  // namespace gl::kernels::cuda
