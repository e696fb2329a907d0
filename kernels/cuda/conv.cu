// conv.cu: implicit-GEMM 2-D convolution forward (kernels/cuda/conv.h).
//
// GEMM view per group g: M = oc / groups output channels, N = n * oh * ow output pixels,
// K = c / groups * kh * kw taps. A 64x64 output tile per block of 256 threads, each thread
// computing a 4x4 register tile; K advances in slices of 16. The A slice (weights, row-major
// [M, K]) is copied as is; the B slice is gathered from x at (n, ci, oh*s - p + ki*d,
// ow*s - p + kj*d), zero outside the image, so no im2col matrix is ever written. Shared
// tiles are stored K-major so the inner product loop reads them without bank conflicts.
// Bias is added in the epilogue; the output is written straight to NCHW.
// speed: not yet measured on a GPU (compile-verified with nvcc for sm_90).
#include "kernels/cuda/conv.h"
#include "kernels/cuda/runtime.h"

namespace gl::kernels::cuda {
namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kThreads = 256;

struct DevGeometry {
  int64_t n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow;
  int64_t cg, ocg, K, P, NP;
};

__global__ void __launch_bounds__(kThreads)
    conv2d_implicit_gemm(DevGeometry g, const float* __restrict__ x,
                         const float* __restrict__ weight, const float* __restrict__ bias,
                         float* __restrict__ out) {
  __shared__ float As[kTileK][kTileM];
  __shared__ float Bs[kTileK][kTileN];
  const int group = blockIdx.z;
  const int64_t m0 = int64_t(blockIdx.y) * kTileM;  // output channel within the group
  const int64_t n0 = int64_t(blockIdx.x) * kTileN;  // output pixel over the batch
  const int tid = threadIdx.x;
  const int tm = (tid / 16) * 4, tn = (tid % 16) * 4;
  const float* wg = weight + int64_t(group) * g.ocg * g.K;
  float acc[4][4] = {};

  for (int64_t k0 = 0; k0 < g.K; k0 += kTileK) {
    // A: 64 x 16 weights, 4 per thread.
    for (int i = tid; i < kTileM * kTileK; i += kThreads) {
      const int mm = i / kTileK, kk = i % kTileK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < g.ocg && k < g.K) ? wg[m * g.K + k] : 0.0f;
    }
    // B: 16 x 64 gathered input values, 4 per thread.
    for (int i = tid; i < kTileK * kTileN; i += kThreads) {
      const int kk = i / kTileN, nn = i % kTileN;
      const int64_t k = k0 + kk, col = n0 + nn;
      float v = 0.0f;
      if (k < g.K && col < g.NP) {
        const int64_t ci = k / (g.kh * g.kw), ki = k / g.kw % g.kh, kj = k % g.kw;
        const int64_t img = col / g.P, p = col % g.P;
        const int64_t ih = (p / g.ow) * g.sh - g.ph + ki * g.dh;
        const int64_t iw = (p % g.ow) * g.sw - g.pw + kj * g.dw;
        if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
          v = x[((img * g.c + int64_t(group) * g.cg + ci) * g.h + ih) * g.w + iw];
      }
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][tm + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tn + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  // Epilogue: bias, then NCHW stores (consecutive threads write consecutive pixels).
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + tm + i;
    if (m >= g.ocg) continue;
    const int64_t oc = int64_t(group) * g.ocg + m;
    const float b = bias ? bias[oc] : 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = n0 + tn + j;
      if (col >= g.NP) continue;
      const int64_t img = col / g.P, p = col % g.P;
      out[(img * g.oc + oc) * g.P + p] = acc[i][j] + b;
    }
  }
}

}  // namespace

void conv2d_forward(const ConvGeometry& cg, const float* x, const float* weight, const float* bias,
                    float* out, cudaStream_t stream) {
  DevGeometry g{cg.n,        cg.c,        cg.h,     cg.w,     cg.oc,    cg.kh,    cg.kw,
                cg.stride_h, cg.stride_w, cg.pad_h, cg.pad_w, cg.dil_h, cg.dil_w, cg.groups,
                cg.out_h(),  cg.out_w(),  0,        0,        0,        0,        0};
  g.cg = g.c / g.groups;
  g.ocg = g.oc / g.groups;
  g.K = g.cg * g.kh * g.kw;
  g.P = g.oh * g.ow;
  g.NP = g.n * g.P;
  if (g.NP == 0 || g.oc == 0) return;
  dim3 grid(unsigned((g.NP + kTileN - 1) / kTileN), unsigned((g.ocg + kTileM - 1) / kTileM),
            unsigned(g.groups));
  conv2d_implicit_gemm<<<grid, kThreads, 0, stream>>>(g, x, weight, bias, out);
  GL_CUDA_CHECK_LAUNCH();
}

}  // namespace gl::kernels::cuda
