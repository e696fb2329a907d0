// conv_tiles.h: the convolution weight gradient's tiled reduction (kernels/cuda/conv.cu), written
// once for the device and the host. The kernel runs these functions per thread; the CPU tests
// run the same functions over every block and thread in turn (conv_dw_tiled_emulate) and
// compare with the f64 reference, so the tiling, the split ranges and the gathers are checked
// in every build, GPU or not. No CUDA headers.
//
// Per group, dW[o, k] (o < ocg, k < K = cg * kh * kw, the weight's own [oc, cg, kh, kw] order)
// is the GEMM  sum over q < NP = n * oh * ow  of  dY[q, o] * col[q, k], col[q, k] the input
// value tap k of output pixel q reads (zero in the padding). A block computes one 64 x 64 tile
// of dW over one split of consecutive pixels, in slices of 16 pixels staged in shared memory
// (A: dY, B: gathered inputs), each of its 256 threads a 4 x 4 register tile. With one split
// the block writes dW; with several, each split writes its partial tile to a workspace
// [split][oc][K] and a second pass adds the splits in order: no atomics, the same bits on
// every run.
#pragma once
#include <cstdint>

#include "kernels/cpu/conv.h"
#include "kernels/functors.h"  // GL_HD

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

inline constexpr int kDwTileM = 64, kDwTileN = 64, kDwSlice = 16, kDwThreads = 256;
static_assert(kDwThreads * 4 == kDwSlice * kDwTileM && kDwTileM == kDwTileN,
              "each thread stages 4 columns of one slice row of A and of B");
// Shared tiles are [slice][tile + 1]: the staging writes go down a column (16 consecutive
// pixels per thread group), and the odd row length puts those 16 in 16 different banks.
inline constexpr int kDwTilePad = kDwTileN + 1;

// Pixels per split: at least 512 (a split must amortize its partial tile's store and sum), and
// at most 256 splits, a multiple of the slice. A function of the geometry alone.
GL_HD int64_t conv_dw_split_pixels(int64_t NP) {
  int64_t chunk = (NP + 255) / 256;
  if (chunk < 512) chunk = 512;
  return (chunk + kDwSlice - 1) / kDwSlice * kDwSlice;
}

GL_HD int64_t conv_dw_splits(int64_t NP, int64_t chunk) {
  return NP <= 0 ? 1 : (NP + chunk - 1) / chunk;
}

// a / b and a % b for 0 <= a, 0 < b: in 32 bits when both fit (a GPU divides 64-bit integers in
// software, many times slower), else in 64.
GL_HD void divmod_nonneg(int64_t a, int64_t b, int64_t& q, int64_t& r) {
  if (((a | b) >> 31) == 0) {
    const uint32_t q32 = uint32_t(a) / uint32_t(b);
    q = int64_t(q32);
    r = int64_t(uint32_t(a) - q32 * uint32_t(b));
  } else {
    q = a / b;
    r = a - q * b;
  }
}

// What thread `tid` of a block stages, fixed for the block: one row kk of each slice (the
// pixel q + kk) and the columns col0 + 16 r, r < 4, of the A tile (output channels m0 + col)
// and of the B tile (taps n0 + col). Staged this way, the 16 consecutive threads of a column
// read 16 consecutive pixels (coalesced), and the index arithmetic of the taps is done once.
struct ConvDwThreadPlan {
  int kk, col0;
  int64_t dy_plane[4];     // offset of dY[0, group * ocg + m, 0], or -1 past the group's channels
  int64_t x_plane[4];      // offset of x[0, group * cg + ci, 0, 0], or -1 past K
  int64_t dih[4], diw[4];  // ki * dh - ph and kj * dw - pw of the tap
};

GL_HD ConvDwThreadPlan conv_dw_thread_plan(const ConvDims& g, int64_t group, int64_t m0, int64_t n0,
                                           int tid) {
  ConvDwThreadPlan t{};
  t.kk = tid % kDwSlice;
  t.col0 = tid / kDwSlice;
  for (int r = 0; r < 4; ++r) {
    const int64_t col = t.col0 + kDwSlice * r;
    const int64_t m = m0 + col, k = n0 + col;
    t.dy_plane[r] = m < g.ocg ? (group * g.ocg + m) * g.P : -1;
    t.x_plane[r] = -1;
    t.dih[r] = t.diw[r] = 0;
    if (k < g.K) {
      int64_t ci, tap, ki, kj;
      divmod_nonneg(k, g.kh * g.kw, ci, tap);
      divmod_nonneg(tap, g.kw, ki, kj);
      t.x_plane[r] = (group * g.cg + ci) * g.h * g.w;
      t.dih[r] = ki * g.dh - g.ph;
      t.diw[r] = kj * g.dw - g.pw;
    }
  }
  return t;
}

// The thread's share of one slice: pixel q + kk (nothing past q_end) of its 4 output channels
// into A and its 4 taps into B, zero where there is nothing (past an end, or in the padding).
GL_HD void conv_dw_stage(const ConvDims& g, const ConvDwThreadPlan& t, int64_t q, int64_t q_end,
                         const float* x, const float* dy, float (*As)[kDwTilePad],
                         float (*Bs)[kDwTilePad]) {
  const int64_t qq = q + t.kk;
  const bool in = qq < q_end;
  int64_t img = 0, p = 0, oy = 0, ox = 0;
  if (in) {
    divmod_nonneg(qq, g.P, img, p);
    divmod_nonneg(p, g.ow, oy, ox);
  }
  const int64_t dy_image = img * g.oc * g.P, x_image = img * g.c * g.h * g.w;
  for (int r = 0; r < 4; ++r) {
    const int col = t.col0 + kDwSlice * r;
    As[t.kk][col] = (in && t.dy_plane[r] >= 0) ? dy[dy_image + t.dy_plane[r] + p] : 0.0f;
    float v = 0.0f;
    if (in && t.x_plane[r] >= 0) {
      const int64_t ih = oy * g.sh + t.dih[r], iw = ox * g.sw + t.diw[r];
      if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) v = x[x_image + t.x_plane[r] + ih * g.w + iw];
    }
    Bs[t.kk][col] = v;
  }
}

// The register tile of thread `tid`: rows tm..tm+3 (output channels), columns tn..tn+3 (taps).
GL_HD int conv_dw_tm(int tid) {
  return (tid / 16) * 4;
}
GL_HD int conv_dw_tn(int tid) {
  return (tid % 16) * 4;
}

// acc += the staged slice's products for thread `tid`, pixel after pixel.
GL_HD void conv_dw_accumulate(const float (*As)[kDwTilePad], const float (*Bs)[kDwTilePad], int tid,
                              float (*acc)[4]) {
  const int tm = conv_dw_tm(tid), tn = conv_dw_tn(tid);
  for (int kk = 0; kk < kDwSlice; ++kk) {
    float a[4], b[4];
    for (int i = 0; i < 4; ++i) a[i] = As[kk][tm + i];
    for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tn + j];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
  }
}

// Writes thread `tid`'s tile: into out + split * oc * K (the workspace; dW itself with one
// split), element (group * ocg + m) * K + k.
GL_HD void conv_dw_store(const ConvDims& g, int64_t group, int64_t m0, int64_t n0, int64_t split,
                         int tid, const float (*acc)[4], float* out) {
  const int tm = conv_dw_tm(tid), tn = conv_dw_tn(tid);
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

// The second pass: dW[e] = the splits' partial sums of element e, added in split order.
GL_HD float conv_dw_sum_splits(const float* workspace, int64_t splits, int64_t total, int64_t e) {
  float s = 0.0f;
  for (int64_t z = 0; z < splits; ++z) s += workspace[z * total + e];
  return s;
}

}  // namespace gl::kernels::cuda
