// conv.cu: 2-D convolution on the GPU (kernels/cuda/conv.h).
//
// The forward and the input and weight gradients are tiled GEMMs whose per-thread work lives in
// conv_tiles.h (the CPU tests run those same functions block by block on the host): per group,
// the forward Y = W @ col, the input gradient dX = W^T @ dYcol, the weight gradient
// dW = dY @ col^T split along the pixels with the partial tiles added in split order; col and
// dYcol are gathered from x and dY while the tiles are staged in shared memory (no im2col
// matrix), the bias added in the forward's store, outputs written straight to NCHW. The bias
// gradient and pooling are gathers, one thread (for the bias gradient, one block) per element
// written, summing in a fixed order; the index arithmetic they share with the CPU tests is in
// index_math.h.
// speed and results: not yet measured on a GPU (compile-verified with nvcc for sm_90).
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_tiles.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/runtime.h"

namespace gl::kernels::cuda {
namespace {

using DevGeometry = ConvDims;

// The slice loop of every tiled kernel: for each slice start in [begin, end), every thread stages
// its share (stage(start)), a barrier, every thread accumulates, a barrier; as the host
// emulation of the CPU tests runs it (run_block_on_host).
template <class Stage>
__device__ void accumulate_slices(int64_t begin, int64_t end, Stage&& stage, const ConvTile* As,
                                  const ConvTile* Bs, float (*acc)[4]) {
  for (int64_t s = begin; s < end; s += kConvSlice) {
    stage(s);
    __syncthreads();
    conv_tile_accumulate(As, Bs, int(threadIdx.x), acc);
    __syncthreads();
  }
}

// The forward (kInputGrad false: rows = output channels, pixels = output pixels, reduced over
// the taps) and the input gradient (true: rows = input channels, pixels = input pixels, reduced
// over (output channel, tap) pairs), conv_tiles.h: pixel tiles on x, row tiles on y, groups on z,
// each chunk of y and z launched apart (mtile0, group0: the chunk's first). src is x or dY;
// bias (forward only) may be null.
template <bool kInputGrad>
__global__ void __launch_bounds__(kConvThreads)
    conv2d_pixel_tiled(DevGeometry g, int64_t group0, int64_t mtile0,
                       const float* __restrict__ weight, const float* __restrict__ src,
                       const float* __restrict__ bias, float* __restrict__ out) {
  __shared__ __align__(16) ConvTile As[kConvSlice];
  __shared__ __align__(16) ConvTile Bs[kConvSlice];
  const int64_t group = group0 + blockIdx.z;
  const int64_t m0 = (mtile0 + blockIdx.y) * kConvTile;
  const int64_t n0 = int64_t(blockIdx.x) * kConvTile;
  const int tid = int(threadIdx.x);
  float acc[4][4] = {};
  if constexpr (kInputGrad) {
    const ConvPixelPlan plan = conv_dx_thread_plan(g, group, n0, tid, weight);
    accumulate_slices(
        0, g.ocg * g.kh * g.kw, [&](int64_t j0) { conv_dx_stage(g, plan, m0, j0, src, As, Bs); },
        As, Bs, acc);
    conv_dx_store(g, group, m0, n0, tid, acc, out);
  } else {
    const ConvPixelPlan plan = conv_fwd_thread_plan(g, group, n0, tid, weight);
    accumulate_slices(
        0, g.K, [&](int64_t k0) { conv_fwd_stage(g, plan, m0, k0, src, As, Bs); }, As, Bs, acc);
    conv_fwd_store(g, group, m0, n0, tid, acc, bias, out);
  }
}

// Launches a tiled kernel(g, group0, mtile0, args...) over blocks_x blocks on x, the 64-row tiles
// of `rows` on y and the groups on z, y and z in launches of at most 65535 each (a depthwise
// convolution of any channel count runs). blocks_x is checked by the caller.
template <class... P, class... A>
void launch_tiled(void (*kernel)(DevGeometry, int64_t, int64_t, P...), const DevGeometry& g,
                  int64_t rows, int64_t blocks_x, cudaStream_t stream, A... args) {
  for_each_grid_chunk(g.groups, [&](int64_t group0, int64_t groups) {
    for_each_grid_chunk((rows + kConvTile - 1) / kConvTile, [&](int64_t mtile0, int64_t mtiles) {
      const dim3 grid{unsigned(blocks_x), unsigned(mtiles), unsigned(groups)};
      kernel<<<grid, kConvThreads, 0, stream>>>(g, group0, mtile0, args...);
      GL_CUDA_CHECK_LAUNCH();
    });
  });
}

constexpr int kGatherThreads = 256;

// Element e of `total`, grid-stride.
#define GL_GATHER_LOOP(e, total)                                                \
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < (total); \
       e += int64_t(gridDim.x) * blockDim.x)

int gather_blocks(int64_t work) {
  return grid_stride_blocks(work, kGatherThreads);
}

// One grid-stride gather kernel over `total` elements (nothing to launch when empty).
template <class... P, class... A>
void launch_gather(void (*kernel)(P...), int64_t total, cudaStream_t stream, A... args) {
  if (total <= 0) return;
  kernel<<<gather_blocks(total), kGatherThreads, 0, resolve_stream(stream)>>>(args...);
  GL_CUDA_CHECK_LAUNCH();
}

// Block-wide sum of one value per thread (kGatherThreads threads), in a fixed tree order.
__device__ float block_sum(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kGatherThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}

// The weight gradient as a tiled GEMM over the pixels (conv_tiles.h): block (tile of taps, split)
// on x, the output-channel tile on y, the group on z, each chunk of y and z launched apart.
__global__ void __launch_bounds__(kConvThreads)
    conv2d_dw_tiled(DevGeometry g, int64_t group0, int64_t mtile0, int64_t ntiles, int64_t chunk,
                    const float* __restrict__ x, const float* __restrict__ dy,
                    float* __restrict__ out) {
  __shared__ __align__(16) ConvTile As[kConvSlice];
  __shared__ __align__(16) ConvTile Bs[kConvSlice];
  const int64_t group = group0 + blockIdx.z;
  const int64_t m0 = (mtile0 + blockIdx.y) * kConvTile;
  const int64_t split = int64_t(blockIdx.x) / ntiles;
  const int64_t n0 = (int64_t(blockIdx.x) % ntiles) * kConvTile;
  const int64_t q_begin = split * chunk;
  const int64_t q_end = q_begin + chunk < g.NP ? q_begin + chunk : g.NP;
  const int tid = int(threadIdx.x);
  const ConvDwThreadPlan plan = conv_dw_thread_plan(g, group, m0, n0, tid);
  float acc[4][4] = {};
  accumulate_slices(
      q_begin, q_end, [&](int64_t q) { conv_dw_stage(g, plan, group, q, q_end, x, dy, As, Bs); },
      As, Bs, acc);
  conv_dw_store(g, group, m0, n0, split, tid, acc, out);
}

__global__ void conv2d_dw_sum_splits(const float* __restrict__ workspace, int64_t splits,
                                     int64_t total, float* __restrict__ dw) {
  GL_GATHER_LOOP(e, total) dw[e] = conv_dw_sum_splits(workspace, splits, total, e);
}

// One block per output channel: the sum of dy over images and pixels.
__global__ void __launch_bounds__(kGatherThreads)
    conv2d_db_reduce(DevGeometry g, const float* __restrict__ dy, float* __restrict__ db) {
  __shared__ float part[kGatherThreads];
  for (int64_t o = blockIdx.x; o < g.oc; o += gridDim.x) {
    float acc = 0.0f;
    for (int64_t q = threadIdx.x; q < g.NP; q += kGatherThreads)
      acc += dy[((q / g.P) * g.oc + o) * g.P + q % g.P];
    const float total = block_sum(acc, part);
    if (threadIdx.x == 0) db[o] = total;
  }
}

struct DevPool {
  int64_t planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
};
DevPool dev_pool(const PoolGeometry& g) {
  return {g.planes,   g.h,     g.w,     g.kh,      g.kw,     g.stride_h,
          g.stride_w, g.pad_h, g.pad_w, g.out_h(), g.out_w()};
}

// The window of output (i, j) clipped to the plane, as the CPU's window().
__device__ void pool_window(const DevPool& g, int64_t i, int64_t j, int64_t& h0, int64_t& h1,
                            int64_t& w0, int64_t& w1) {
  const int64_t ys = i * g.sh - g.ph, xs = j * g.sw - g.pw;
  h0 = ys < 0 ? 0 : ys;
  h1 = ys + g.kh < g.h ? ys + g.kh : g.h;
  w0 = xs < 0 ? 0 : xs;
  w1 = xs + g.kw < g.w ? xs + g.kw : g.w;
}

__global__ void max_pool_fwd(DevPool g, const float* __restrict__ x, float* __restrict__ out,
                             int32_t* __restrict__ argmax) {
  const int64_t total = g.planes * g.oh * g.ow;
  GL_GATHER_LOOP(e, total) {
    const int64_t j = e % g.ow, i = e / g.ow % g.oh, pl = e / (g.ow * g.oh);
    int64_t h0, h1, w0, w1;
    pool_window(g, i, j, h0, h1, w0, w1);
    const float* in = x + pl * g.h * g.w;
    float best = -INFINITY;
    int64_t at = h0 * g.w + w0;
    for (int64_t a = h0; a < h1; ++a)
      for (int64_t b = w0; b < w1; ++b) {
        const float v = in[a * g.w + b];
        if (v > best || (v != v && best == best)) {  // the first NaN wins, as on the CPU
          best = v;
          at = a * g.w + b;
        }
      }
    out[e] = best;
    argmax[e] = int32_t(at);
  }
}

// dx at (a, b): the outputs whose window holds it and whose argmax it is, in output order.
__global__ void max_pool_bwd(DevPool g, const float* __restrict__ dy,
                             const int32_t* __restrict__ argmax, float* __restrict__ dx) {
  const int64_t total = g.planes * g.h * g.w;
  GL_GATHER_LOOP(e, total) {
    const int64_t b = e % g.w, a = e / g.w % g.h, pl = e / (g.w * g.h);
    const IndexRange ri = pool_windows(a, g.sh, g.ph, g.kh, g.oh);
    const IndexRange rj = pool_windows(b, g.sw, g.pw, g.kw, g.ow);
    const int32_t self = int32_t(a * g.w + b);
    float acc = 0.0f;
    for (int64_t i = ri.lo; i < ri.hi; ++i)
      for (int64_t j = rj.lo; j < rj.hi; ++j) {
        const int64_t o = (pl * g.oh + i) * g.ow + j;
        if (argmax[o] == self) acc += dy[o];
      }
    dx[e] = acc;
  }
}

__global__ void avg_pool_fwd(DevPool g, const float* __restrict__ x, float* __restrict__ out) {
  const int64_t total = g.planes * g.oh * g.ow;
  const double inv = 1.0 / double(g.kh * g.kw);
  GL_GATHER_LOOP(e, total) {
    const int64_t j = e % g.ow, i = e / g.ow % g.oh, pl = e / (g.ow * g.oh);
    int64_t h0, h1, w0, w1;
    pool_window(g, i, j, h0, h1, w0, w1);
    const float* in = x + pl * g.h * g.w;
    double s = 0;
    for (int64_t a = h0; a < h1; ++a)
      for (int64_t b = w0; b < w1; ++b) s += double(in[a * g.w + b]);
    out[e] = float(s * inv);
  }
}

__global__ void avg_pool_bwd(DevPool g, const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = g.planes * g.h * g.w;
  const float inv = float(1.0 / double(g.kh * g.kw));
  GL_GATHER_LOOP(e, total) {
    const int64_t b = e % g.w, a = e / g.w % g.h, pl = e / (g.w * g.h);
    const IndexRange ri = pool_windows(a, g.sh, g.ph, g.kh, g.oh);
    const IndexRange rj = pool_windows(b, g.sw, g.pw, g.kw, g.ow);
    float acc = 0.0f;
    for (int64_t i = ri.lo; i < ri.hi; ++i)
      for (int64_t j = rj.lo; j < rj.hi; ++j) acc += dy[(pl * g.oh + i) * g.ow + j] * inv;
    dx[e] = acc;
  }
}

__global__ void adaptive_fwd(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                             const float* __restrict__ x, float* __restrict__ out) {
  const int64_t total = planes * oh * ow;
  GL_GATHER_LOOP(e, total) {
    const int64_t j = e % ow, i = e / ow % oh, pl = e / (ow * oh);
    const int64_t h0 = adaptive_bin_start(i, h, oh), h1 = adaptive_bin_end(i, h, oh);
    const int64_t w0 = adaptive_bin_start(j, w, ow), w1 = adaptive_bin_end(j, w, ow);
    const float* in = x + pl * h * w;
    double s = 0;
    for (int64_t a = h0; a < h1; ++a)
      for (int64_t b = w0; b < w1; ++b) s += double(in[a * w + b]);
    out[e] = float(s / double((h1 - h0) * (w1 - w0)));
  }
}

__global__ void adaptive_bwd(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                             const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = planes * h * w;
  GL_GATHER_LOOP(e, total) {
    const int64_t b = e % w, a = e / w % h, pl = e / (w * h);
    const IndexRange ri = adaptive_bins(a, h, oh), rj = adaptive_bins(b, w, ow);
    float acc = 0.0f;
    for (int64_t i = ri.lo; i < ri.hi; ++i) {
      const int64_t rows = adaptive_bin_end(i, h, oh) - adaptive_bin_start(i, h, oh);
      for (int64_t j = rj.lo; j < rj.hi; ++j) {
        const int64_t cols = adaptive_bin_end(j, w, ow) - adaptive_bin_start(j, w, ow);
        acc += float(double(dy[(pl * oh + i) * ow + j]) / double(rows * cols));
      }
    }
    dx[e] = acc;
  }
}

#undef GL_GATHER_LOOP

}  // namespace

void conv2d_forward(const ConvGeometry& cg, const float* x, const float* weight, const float* bias,
                    float* out, cudaStream_t stream) {
  const DevGeometry g = conv_dims(cg);
  if (g.NP == 0 || g.oc == 0) return;
  const int64_t pixel_tiles = (g.NP + kConvTile - 1) / kConvTile;
  if (pixel_tiles > kMaxGridX)
    throw std::invalid_argument("cuda::conv2d_forward: " + std::to_string(g.NP) +
                                " output pixels (n * out_h * out_w) need " +
                                std::to_string(pixel_tiles) + " tiles of " +
                                std::to_string(kConvTile) + ", more than a grid's 2^31 - 1 blocks");
  stream = resolve_stream(stream);  // nullptr: the device's stream, as every other kernel uses
  launch_tiled(conv2d_pixel_tiled<false>, g, g.ocg, pixel_tiles, stream, weight, x, bias, out);
}

void conv2d_backward(const ConvGeometry& cg, const float* x, const float* weight, const float* dy,
                     float* dx, float* dw, float* db, cudaStream_t stream) {
  const DevGeometry g = conv_dims(cg);
  stream = resolve_stream(stream);
  if (dx && g.n * g.c * g.h * g.w > 0) {
    const int64_t pixel_tiles = (conv_dx_pixels(g) + kConvTile - 1) / kConvTile;
    if (pixel_tiles > kMaxGridX)
      throw std::invalid_argument("cuda::conv2d_backward: " + std::to_string(conv_dx_pixels(g)) +
                                  " input pixels (n * h * w) need more than a grid's 2^31 - 1 "
                                  "blocks of " +
                                  std::to_string(kConvTile));
    launch_tiled(conv2d_pixel_tiled<true>, g, g.cg, pixel_tiles, stream, weight, dy,
                 static_cast<const float*>(nullptr), dx);
  }
  if (dw && g.oc * g.K > 0) {
    if (g.NP == 0) {
      memset_device(dw, 0, size_t(g.oc * g.K) * sizeof(float), stream);
    } else {
      const int64_t ntiles = (g.K + kConvTile - 1) / kConvTile, total = g.oc * g.K;
      const int64_t chunk = conv_dw_run_pixels(g);
      const int64_t splits = conv_dw_splits(g.NP, chunk);
      if (ntiles * splits > kMaxGridX)
        throw std::invalid_argument("cuda::conv2d_backward: " + std::to_string(g.K) +
                                    " taps per output channel need more than a grid's 2^31 - 1 "
                                    "blocks");
      DeviceBuffer<float> workspace(splits > 1 ? size_t(splits * total) : 0, stream);
      float* partial = splits > 1 ? workspace.get() : dw;
      launch_tiled(conv2d_dw_tiled, g, g.ocg, ntiles * splits, stream, ntiles, chunk, x, dy,
                   partial);
      if (splits > 1)
        launch_gather(conv2d_dw_sum_splits, total, stream, partial, splits, total, dw);
    }
  }
  if (db && g.oc > 0) {
    const int64_t blocks = g.oc < 65535 ? g.oc : 65535;
    conv2d_db_reduce<<<unsigned(blocks), kGatherThreads, 0, stream>>>(g, dy, db);
    GL_CUDA_CHECK_LAUNCH();
  }
}

void max_pool2d_forward(const PoolGeometry& pg, const float* x, float* out, int32_t* argmax,
                        cudaStream_t stream) {
  const DevPool g = dev_pool(pg);
  launch_gather(max_pool_fwd, g.planes * g.oh * g.ow, stream, g, x, out, argmax);
}
void max_pool2d_backward(const PoolGeometry& pg, const float* dy, const int32_t* argmax, float* dx,
                         cudaStream_t stream) {
  const DevPool g = dev_pool(pg);
  launch_gather(max_pool_bwd, g.planes * g.h * g.w, stream, g, dy, argmax, dx);
}
void avg_pool2d_forward(const PoolGeometry& pg, const float* x, float* out, cudaStream_t stream) {
  const DevPool g = dev_pool(pg);
  launch_gather(avg_pool_fwd, g.planes * g.oh * g.ow, stream, g, x, out);
}
void avg_pool2d_backward(const PoolGeometry& pg, const float* dy, float* dx, cudaStream_t stream) {
  const DevPool g = dev_pool(pg);
  launch_gather(avg_pool_bwd, g.planes * g.h * g.w, stream, g, dy, dx);
}
void adaptive_avg_pool2d_forward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                 const float* x, float* out, cudaStream_t stream) {
  launch_gather(adaptive_fwd, planes * oh * ow, stream, planes, h, w, oh, ow, x, out);
}
void adaptive_avg_pool2d_backward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                  const float* dy, float* dx, cudaStream_t stream) {
  launch_gather(adaptive_bwd, planes * h * w, stream, planes, h, w, oh, ow, dy, dx);
}

}  // namespace gl::kernels::cuda
