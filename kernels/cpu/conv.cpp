// conv.cpp: convolution and pooling on NCHW arrays (kernels/cpu/conv.h).
//
// By default (ConvAlgo::automatic) f32 convolutions take the fastest lowering measured for
// their shape: Winograd F(m x m, 3x3), m = 2, 3 or 4 (winograd.cpp) for 3x3 stride-1 layers with
// at least 16 channels on both sides, the direct AVX-512 kernels (conv_direct.cpp) for layers
// with at most 4 input channels; everything else, and all f64 work (gradcheck), lowers to
// im2col:
//
// Convolution lowers to our packed GEMM through im2col, in one of two ways (ConvAlgo):
// - per_image (default): threads take whole images. For image n, col[K = c/groups * kh * kw][P]
//   (P = oh * ow) is built in the thread's scratch (288 x 196 floats = 225 KB for the default
//   CNN's second conv: it stays in L2) and out_n[oc/groups, P] = W[g] @ col[g] is written
//   straight into NCHW. Backward: dW accumulates dY_n @ col_n^T (NT GEMM) into one of 16
//   fixed partial sums (added in order afterwards, so the result does not depend on the thread
//   count), dcol = W^T @ dY_n (TN GEMM) and col2im scatters it into dx_n. GEMMs called inside
//   the parallel loop run on their thread (the GEMM never forks inside a parallel region).
// - batched: col[K][N * P] for a chunk of images (<= 32 MB of f32) and one GEMM per group over
//   all of it, threads inside the GEMM; Y is then scattered into NCHW with the bias.
// Measured side by side at the default CNN's shapes (bench/bench_conv --algo, batch 64, 1 and
// 2 threads, on the shared 2-core machine): per_image was 1.2-1.4x faster than batched with
// 1 thread (conv 32->64 on 14x14, fwd+bwd 58 vs 73 ms) and 2-4x with 2 threads, where the
// batched path's 14 MB im2col matrix and the GEMM's barriers suffered most from the load.
// Against PyTorch 1.13's mkldnn conv at that shape (bench/compare_cnn_cpu.py, process CPU
// time per call on the loaded machine): forward 7.9 vs 4.6-5.0 ms, forward+backward 22.2-22.5
// vs 14.6-16.5 ms, i.e. 0.6-0.75x. Our forward runs at about 58 GFLOP/s (462 MFLOP), mkldnn's
// direct convolution near 95: it skips im2col's extra pass and the GEMM's packing by reading
// channel-blocked data in place. Computing
// out_n^T [P, oc] = col^T W^T instead (full 14 x 32 micro-tiles at P = 196, bias in the GEMM
// epilogue, then a transpose) measured the same 7.0 ms, so the simpler orientation stayed.
// Winograd (2.25x to 4x fewer multiplies) now serves those 3x3 stride-1 layers.
// Scratch buffers are per thread and reused across calls, so a training step does not fault in
// fresh pages for its im2col matrices.
#include "kernels/cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/pool_avx512.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/winograd.h"
#include "kernels/kernels.h"

namespace gl::kernels::cpu {
namespace {

// Below this many elements of work a loop runs on the calling thread.
constexpr int64_t kParallelMin = 1 << 15;

int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
int64_t ceil_div(int64_t a, int64_t b) {
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

// Outputs o in [lo, hi) whose input position o * stride - pad + offset lies in [0, size).
struct Range {
  int64_t lo, hi;
};
Range valid_outputs(int64_t size, int64_t out, int64_t stride, int64_t pad, int64_t offset) {
  // Clamped to [0, out]: with padding wider than the input a tap can miss every output (lo past
  // out), and callers fill [0, lo) of an output row.
  int64_t lo = std::clamp<int64_t>(ceil_div(pad - offset, stride), 0, out);
  int64_t hi = std::min<int64_t>(out, floor_div(size - 1 + pad - offset, stride) + 1);
  return {lo, std::max(lo, hi)};
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// Elements of im2col matrix per call: large batches (evaluation) run in chunks of images so
// the scratch stays near 32 MB of f32.
constexpr int64_t kColBudget = int64_t(8) << 20;

struct Dims {
  int64_t oh, ow, P, NP, cg, ocg, K;
  explicit Dims(const ConvGeometry& g)
      : oh(g.out_h()),
        ow(g.out_w()),
        P(oh * ow),
        NP(g.n * oh * ow),
        cg(g.c / g.groups),
        ocg(g.oc / g.groups),
        K(g.c / g.groups * g.kh * g.kw) {}
};

// col[(ch * kh + ki) * kw + kj][n * P + p] for every input channel ch (groups are consecutive
// channel blocks, so row g * K + r of the full matrix is group g's row r).
template <class T>
void im2col(const ConvGeometry& g, const Dims& d, const T* x, T* col, bool parallel) {
  const int64_t rows = g.c * g.kh * g.kw;
#pragma omp parallel for collapse(2) schedule(static) if (parallel && rows * d.NP > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < g.n; ++n) {
      const int64_t ch = r / (g.kh * g.kw), ki = r / g.kw % g.kh, kj = r % g.kw;
      const T* plane = x + (n * g.c + ch) * g.h * g.w;
      T* dst = col + r * d.NP + n * d.P;
      const Range rows_ok = valid_outputs(g.h, d.oh, g.stride_h, g.pad_h, ki * g.dil_h);
      const Range cols_ok = valid_outputs(g.w, d.ow, g.stride_w, g.pad_w, kj * g.dil_w);
      for (int64_t oh = 0; oh < d.oh; ++oh) {
        T* o = dst + oh * d.ow;
        if (oh < rows_ok.lo || oh >= rows_ok.hi) {
          std::fill(o, o + d.ow, T(0));
          continue;
        }
        const T* src = plane + (oh * g.stride_h - g.pad_h + ki * g.dil_h) * g.w;
        std::fill(o, o + cols_ok.lo, T(0));
        const int64_t base = kj * g.dil_w - g.pad_w;
        if (g.stride_w == 1) {
          std::memcpy(o + cols_ok.lo, src + cols_ok.lo + base,
                      std::size_t(cols_ok.hi - cols_ok.lo) * sizeof(T));
        } else {
          for (int64_t ow = cols_ok.lo; ow < cols_ok.hi; ++ow) o[ow] = src[ow * g.stride_w + base];
        }
        std::fill(o + cols_ok.hi, o + d.ow, T(0));
      }
    }
  }
}

// dx = the adjoint of im2col applied to dcol; each (image, channel) plane is one task.
template <class T>
void col2im(const ConvGeometry& g, const Dims& d, const T* dcol, T* dx, bool parallel) {
#pragma omp parallel for collapse(2) \
    schedule(static) if (parallel && g.c * g.kh * g.kw * d.NP > kParallelMin)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t ch = 0; ch < g.c; ++ch) {
      T* plane = dx + (n * g.c + ch) * g.h * g.w;
      std::fill(plane, plane + g.h * g.w, T(0));
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        const Range rows_ok = valid_outputs(g.h, d.oh, g.stride_h, g.pad_h, ki * g.dil_h);
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const Range cols_ok = valid_outputs(g.w, d.ow, g.stride_w, g.pad_w, kj * g.dil_w);
          const T* src = dcol + ((ch * g.kh + ki) * g.kw + kj) * d.NP + n * d.P;
          const int64_t base = kj * g.dil_w - g.pad_w;
          for (int64_t oh = rows_ok.lo; oh < rows_ok.hi; ++oh) {
            T* row = plane + (oh * g.stride_h - g.pad_h + ki * g.dil_h) * g.w;
            const T* s = src + oh * d.ow;
            for (int64_t ow = cols_ok.lo; ow < cols_ok.hi; ++ow)
              row[ow * g.stride_w + base] += s[ow];
          }
        }
      }
    }
  }
}

// The batched path: im2col of a chunk of images into one [K, chunk * P] matrix and one GEMM
// per group over all of it (full panels for the packed GEMM, threads inside the GEMM).
// Runs f(sub-geometry, first image) over chunks whose im2col fits the budget.
template <class F>
void for_each_chunk(const ConvGeometry& g, F&& f) {
  const Dims d(g);
  const int64_t per_image = std::max<int64_t>(g.groups * d.K * d.P, g.oc * d.P);
  const int64_t chunk = std::max<int64_t>(1, kColBudget / std::max<int64_t>(per_image, 1));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    ConvGeometry sub = g;
    sub.n = std::min(chunk, g.n - n0);
    f(sub, n0);
  }
}

template <class T>
void forward_batched(const ConvGeometry& full, const T* x_all, const T* w, const T* bias,
                     T* out_all) {
  for_each_chunk(full, [&](const ConvGeometry& g, int64_t n0) {
    const Dims d(g);
    const T* x = x_all + n0 * g.c * g.h * g.w;
    T* out = out_all + n0 * g.oc * d.P;
    T* col = thread_scratch<T>(0, std::size_t(g.groups * d.K * d.NP));
    T* y = thread_scratch<T>(1, std::size_t(g.oc * d.NP));
    im2col(g, d, x, col, true);
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm(false, false, d.ocg, d.NP, d.K, w + gi * d.ocg * d.K, d.K, col + gi * d.K * d.NP, d.NP,
           T(0), y + gi * d.ocg * d.NP, d.NP);
#pragma omp parallel for collapse(2) schedule(static) if (g.oc * d.NP > kParallelMin)
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t o = 0; o < g.oc; ++o) {
        const T* src = y + o * d.NP + n * d.P;
        T* dst = out + (n * g.oc + o) * d.P;
        const T b = bias ? bias[o] : T(0);
        for (int64_t p = 0; p < d.P; ++p) dst[p] = src[p] + b;
      }
    }
  });
}

// The per-image path: threads take whole images; each image's im2col (a few hundred KB) stays
// in the thread's cache and its GEMMs write NCHW directly (out_n [oc, P] = W @ col_n), with no
// scatter. The GEMMs run single-threaded inside the parallel loop.
template <class T>
void forward_per_image(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* out) {
  ConvGeometry one = g;
  one.n = 1;
  const Dims d(one);
  const int64_t in_image = g.c * g.h * g.w, out_image = g.oc * d.P;
  const bool parallel = g.n > 1 && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t n = 0; n < g.n; ++n) {
    T* col = thread_scratch<T>(0, std::size_t(g.groups * d.K * d.P));
    im2col(one, d, x + n * in_image, col, !parallel);
    T* o = out + n * out_image;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm(false, false, d.ocg, d.P, d.K, w + gi * d.ocg * d.K, d.K, col + gi * d.K * d.P, d.P,
           T(0), o + gi * d.ocg * d.P, d.P);
    if (bias)
      for (int64_t c = 0; c < g.oc; ++c)
        for (int64_t p = 0; p < d.P; ++p) o[c * d.P + p] += bias[c];
  }
}

template <class T>
void backward_per_image(const ConvGeometry& g, const T* x, const T* w, const T* grad_out, T* grad_x,
                        T* grad_w, T* grad_b) {
  ConvGeometry one = g;
  one.n = 1;
  const Dims d(one);
  const int64_t in_image = g.c * g.h * g.w, out_image = g.oc * d.P, wsize = g.oc * d.K;
  if (g.n == 0) {  // no images: zero gradients of the weights and bias
    if (grad_w) std::fill(grad_w, grad_w + wsize, T(0));
    if (grad_b) std::fill(grad_b, grad_b + g.oc, T(0));
    return;
  }
  // Images are split into a fixed number of chunks, each with its own partial dW and db summed
  // in chunk order afterwards: the result does not depend on the thread count.
  // Every chunk holds at least one image (17 images in 16 chunks of 2 would leave 7 chunks
  // empty, their partial sums never written).
  const int64_t per = (g.n + 15) / 16, chunks = (g.n + per - 1) / per;
  T* partial_w = grad_w ? thread_scratch<T>(1, std::size_t(chunks * wsize)) : nullptr;
  std::vector<double> partial_b(grad_b ? std::size_t(chunks * g.oc) : 0, 0.0);
  const bool parallel = chunks > 1 && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t n = c * per; n < std::min(g.n, (c + 1) * per); ++n) {
      const T* dy = grad_out + n * out_image;
      if (grad_b)
        for (int64_t o = 0; o < g.oc; ++o) {
          double s = 0;
          for (int64_t p = 0; p < d.P; ++p) s += double(dy[o * d.P + p]);
          partial_b[std::size_t(c * g.oc + o)] += s;
        }
      if (grad_w) {
        T* col = thread_scratch<T>(0, std::size_t(g.groups * d.K * d.P));
        im2col(one, d, x + n * in_image, col, !parallel);
        for (int64_t gi = 0; gi < g.groups; ++gi)
          gemm(false, true, d.ocg, d.K, d.P, dy + gi * d.ocg * d.P, d.P, col + gi * d.K * d.P, d.P,
               n == c * per ? T(0) : T(1), partial_w + c * wsize + gi * d.ocg * d.K, d.K);
      }
      if (grad_x) {
        T* dcol = thread_scratch<T>(2, std::size_t(g.groups * d.K * d.P));
        for (int64_t gi = 0; gi < g.groups; ++gi)
          gemm(true, false, d.K, d.P, d.ocg, w + gi * d.ocg * d.K, d.K, dy + gi * d.ocg * d.P, d.P,
               T(0), dcol + gi * d.K * d.P, d.P);
        col2im(one, d, dcol, grad_x + n * in_image, !parallel);
      }
    }
  }
  if (grad_w) {
    std::copy(partial_w, partial_w + wsize, grad_w);
    for (int64_t c = 1; c < chunks; ++c)
      for (int64_t i = 0; i < wsize; ++i) grad_w[i] += partial_w[c * wsize + i];
  }
  if (grad_b)
    for (int64_t o = 0; o < g.oc; ++o) {
      double s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += partial_b[std::size_t(c * g.oc + o)];
      grad_b[o] = T(s);
    }
}

template <class T>
void backward_batched(const ConvGeometry& full, const T* x_all, const T* w, const T* grad_out_all,
                      T* grad_x_all, T* grad_w, T* grad_b) {
  if (grad_b) std::fill(grad_b, grad_b + full.oc, T(0));
  for_each_chunk(full, [&](const ConvGeometry& g, int64_t n0) {
    const Dims d(g);
    const T* x = x_all + n0 * g.c * g.h * g.w;
    const T* grad_out = grad_out_all + n0 * g.oc * d.P;
    T* dy = thread_scratch<T>(1, std::size_t(g.oc * d.NP));
#pragma omp parallel for collapse(2) schedule(static) if (g.oc * d.NP > kParallelMin)
    for (int64_t o = 0; o < g.oc; ++o) {
      for (int64_t n = 0; n < g.n; ++n) {
        const T* src = grad_out + (n * g.oc + o) * d.P;
        std::copy(src, src + d.P, dy + o * d.NP + n * d.P);
      }
    }
    if (grad_b) {
      for (int64_t o = 0; o < g.oc; ++o) {
        double s = 0;
        const T* row = dy + o * d.NP;
        for (int64_t i = 0; i < d.NP; ++i) s += double(row[i]);
        grad_b[o] += T(s);
      }
    }
    if (grad_w) {
      T* col = thread_scratch<T>(0, std::size_t(g.groups * d.K * d.NP));
      im2col(g, d, x, col, true);
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm(false, true, d.ocg, d.K, d.NP, dy + gi * d.ocg * d.NP, d.NP, col + gi * d.K * d.NP,
             d.NP, n0 == 0 ? T(0) : T(1), grad_w + gi * d.ocg * d.K, d.K);
    }
    if (grad_x_all) {
      T* dcol = thread_scratch<T>(2, std::size_t(g.groups * d.K * d.NP));
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm(true, false, d.K, d.NP, d.ocg, w + gi * d.ocg * d.K, d.K, dy + gi * d.ocg * d.NP, d.NP,
             T(0), dcol + gi * d.K * d.NP, d.NP);
      col2im(g, d, dcol, grad_x_all + n0 * g.c * g.h * g.w, true);
    }
  });
}

ConvAlgo g_algo = ConvAlgo::automatic;

// Winograd and the direct kernels serve f32 only (the f64 path is gradcheck's, where exactness
// matters more); these are asked for f32 geometries.
bool use_winograd(const ConvGeometry& g) {
  if (g_algo == ConvAlgo::winograd) return winograd_applies(g);
  return g_algo == ConvAlgo::automatic && winograd_preferred(g);
}
bool use_direct(const ConvGeometry& g) {
  return (g_algo == ConvAlgo::automatic || g_algo == ConvAlgo::direct) && direct_conv_preferred(g);
}

template <class T>
void forward_impl(const ConvGeometry& g, const T* x, const T* w, const T* b, T* out) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_winograd(g)) return winograd_conv2d_forward(g, x, w, b, out);
    if (use_direct(g)) return direct_conv2d_forward(g, x, w, b, out);
  }
  if (g_algo == ConvAlgo::batched)
    forward_batched(g, x, w, b, out);
  else
    forward_per_image(g, x, w, b, out);
}
template <class T>
void backward_impl(const ConvGeometry& g, const T* x, const T* w, const T* dy, T* dx, T* dw,
                   T* db) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_winograd(g)) return winograd_conv2d_backward(g, x, w, dy, dx, dw, db);
    if (use_direct(g)) {
      if (dw)
        direct_conv2d_weight_grad(g, x, dy, dw, db);
      else if (db)
        conv2d_bias_grad(g.n, g.oc, g.out_h() * g.out_w(), dy, db);
      if (dx)
        backward_per_image(g, x, w, dy, dx, static_cast<T*>(nullptr), static_cast<T*>(nullptr));
      return;
    }
  }
  if (g_algo == ConvAlgo::batched)
    backward_batched(g, x, w, dy, dx, dw, db);
  else
    backward_per_image(g, x, w, dy, dx, dw, db);
}

// ---------------------------------------------------------------- pooling
// Input positions [lo, hi) under pooling window i, clipped to the image.
Range window(int64_t i, int64_t stride, int64_t pad, int64_t k, int64_t size) {
  const int64_t start = i * stride - pad;
  return {std::max<int64_t>(0, start), std::min<int64_t>(size, start + k)};
}

bool is_2x2(const PoolGeometry& g) {
  return g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 &&
         g.pad_w == 0;
}

// The CNN's 2x2 stride-2 unpadded window, unrolled (same first-maximum and NaN rules).
template <class T>
void max_fwd_2x2(const PoolGeometry& g, const T* x, T* out, int32_t* argmax) {
  const int64_t oh = g.out_h(), ow = g.out_w();
#pragma omp parallel for schedule(static) if (g.planes * g.h * g.w > kParallelMin)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* in = x + pl * g.h * g.w;
    for (int64_t i = 0; i < oh; ++i) {
      const T* r0 = in + 2 * i * g.w;
      const T* r1 = r0 + g.w;
      T* o = out + (pl * oh + i) * ow;
      int32_t* a = argmax + (pl * oh + i) * ow;
      const int32_t base = int32_t(2 * i * g.w);
      // Pairwise selects (no branches): (r0 pair), (r1 pair), then the two winners; a later
      // value wins only when strictly greater, or NaN over a number, so the first maximum in
      // row-major order (or the first NaN) is kept, as in the generic loop.
      auto wins = [](T v, T best) { return v > best || (v != v && best == best); };
      for (int64_t j = 0; j < ow; ++j) {
        const T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
        const bool b01 = wins(v1, v0), b23 = wins(v3, v2);
        const T m01 = b01 ? v1 : v0, m23 = b23 ? v3 : v2;
        const int32_t k01 = b01 ? 1 : 0, k23 = b23 ? int32_t(g.w + 1) : int32_t(g.w);
        const bool lower = wins(m23, m01);
        o[j] = lower ? m23 : m01;
        a[j] = base + int32_t(2 * j) + (lower ? k23 : k01);
      }
    }
  }
}

// Calls f(input plane, output index, h0, h1, w0, w1) for every output of every plane, with the
// window's input rows [h0, h1) and columns [w0, w1) clipped to the image.
template <class T, class F>
void for_each_window(const PoolGeometry& g, const T* x, F&& f) {
  const int64_t oh = g.out_h(), ow = g.out_w();
#pragma omp parallel for schedule(static) if (g.planes * oh * ow * g.kh * g.kw > kParallelMin)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* in = x + pl * g.h * g.w;
    for (int64_t i = 0; i < oh; ++i) {
      const auto [h0, h1] = window(i, g.stride_h, g.pad_h, g.kh, g.h);
      for (int64_t j = 0; j < ow; ++j) {
        const auto [w0, w1] = window(j, g.stride_w, g.pad_w, g.kw, g.w);
        f(in, (pl * oh + i) * ow + j, h0, h1, w0, w1);
      }
    }
  }
}

template <class T>
void max_fwd(const PoolGeometry& g, const T* x, T* out, int32_t* argmax) {
  if (is_2x2(g)) {
    if constexpr (std::is_same_v<T, float>)
      if (cpu_runs_avx512()) return max_pool_2x2_forward_avx512(g.planes, g.h, g.w, x, out, argmax);
    return max_fwd_2x2(g, x, out, argmax);
  }
  for_each_window(
      g, x, [&](const T* in, int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
        T best = -std::numeric_limits<T>::infinity();
        int64_t at = h0 * g.w + w0;
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) {
            const T v = in[a * g.w + b];
            if (v > best || (v != v && best == best)) {  // the first NaN wins, as in PyTorch
              best = v;
              at = a * g.w + b;
            }
          }
        out[o] = best;
        argmax[o] = int32_t(at);
      });
}

template <class T>
void max_bwd(const PoolGeometry& g, const T* grad_out, const int32_t* argmax, T* grad_x) {
  if constexpr (std::is_same_v<T, float>)
    if (is_2x2(g) && cpu_runs_avx512())
      return max_pool_2x2_backward_avx512(g.planes, g.h, g.w, grad_out, argmax, grad_x);
  const int64_t per = g.out_h() * g.out_w();
#pragma omp parallel for schedule(static) if (g.planes * g.h * g.w > kParallelMin)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    T* dx = grad_x + pl * g.h * g.w;
    std::fill(dx, dx + g.h * g.w, T(0));
    for (int64_t o = 0; o < per; ++o) dx[argmax[pl * per + o]] += grad_out[pl * per + o];
  }
}

template <class T>
void avg_fwd(const PoolGeometry& g, const T* x, T* out) {
  const double inv = 1.0 / double(g.kh * g.kw);
  for_each_window(g, x,
                  [&](const T* in, int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
                    double s = 0;
                    for (int64_t a = h0; a < h1; ++a)
                      for (int64_t b = w0; b < w1; ++b) s += double(in[a * g.w + b]);
                    out[o] = T(s * inv);
                  });
}

template <class T>
void avg_bwd(const PoolGeometry& g, const T* grad_out, T* grad_x) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  const T inv = T(1.0 / double(g.kh * g.kw));
#pragma omp parallel for schedule(static) if (g.planes * oh * ow * g.kh * g.kw > kParallelMin)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    T* dx = grad_x + pl * g.h * g.w;
    std::fill(dx, dx + g.h * g.w, T(0));
    for (int64_t i = 0; i < oh; ++i) {
      const auto [h0, h1] = window(i, g.stride_h, g.pad_h, g.kh, g.h);
      for (int64_t j = 0; j < ow; ++j) {
        const auto [w0, w1] = window(j, g.stride_w, g.pad_w, g.kw, g.w);
        const T v = grad_out[(pl * oh + i) * ow + j] * inv;
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) dx[a * g.w + b] += v;
      }
    }
  }
}

int64_t bin_start(int64_t i, int64_t in, int64_t out) {
  return i * in / out;
}
int64_t bin_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

template <class T>
void adaptive_fwd(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow, const T* x,
                  T* out) {
#pragma omp parallel for schedule(static) if (planes * h * w > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* in = x + pl * h * w;
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t h0 = bin_start(i, h, oh), h1 = bin_end(i, h, oh);
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t w0 = bin_start(j, w, ow), w1 = bin_end(j, w, ow);
        double s = 0;
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) s += double(in[a * w + b]);
        out[(pl * oh + i) * ow + j] = T(s / double((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

template <class T>
void adaptive_bwd(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow, const T* grad_out,
                  T* grad_x) {
#pragma omp parallel for schedule(static) if (planes * h * w > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    T* dx = grad_x + pl * h * w;
    std::fill(dx, dx + h * w, T(0));
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t h0 = bin_start(i, h, oh), h1 = bin_end(i, h, oh);
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t w0 = bin_start(j, w, ow), w1 = bin_end(j, w, ow);
        const T v = T(double(grad_out[(pl * oh + i) * ow + j]) / double((h1 - h0) * (w1 - w0)));
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) dx[a * w + b] += v;
      }
    }
  }
}

}  // namespace

void set_conv_algo(ConvAlgo algo) {
  g_algo = algo;
}
ConvAlgo conv_algo() {
  return g_algo;
}

void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* out) {
  forward_impl(g, x, w, b, out);
}
void conv2d_forward(const ConvGeometry& g, const double* x, const double* w, const double* b,
                    double* out) {
  forward_impl(g, x, w, b, out);
}
void conv2d_backward(const ConvGeometry& g, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db) {
  backward_impl(g, x, w, dy, dx, dw, db);
}
void conv2d_backward(const ConvGeometry& g, const double* x, const double* w, const double* dy,
                     double* dx, double* dw, double* db) {
  backward_impl(g, x, w, dy, dx, dw, db);
}

void conv2d_bias_grad(int64_t n, int64_t oc, int64_t P, const float* dy, float* db) {
#pragma omp parallel for schedule(static) if (oc * n * P >= (1 << 16))
  for (int64_t o = 0; o < oc; ++o) {
    // Each plane is summed in 16 f32 lanes (a few hundred values each), the planes' sums in
    // f64, all in a fixed order: vectorizable and independent of the thread count.
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = dy + (i * oc + o) * P;
      float lanes[16] = {};
      int64_t p = 0;
      for (; p + 16 <= P; p += 16)
        for (int k = 0; k < 16; ++k) lanes[k] += row[p + k];
      for (; p < P; ++p) lanes[p % 16] += row[p];
      double plane = 0;
      for (float l : lanes) plane += double(l);
      s += plane;
    }
    db[o] = float(s);
  }
}

void conv2d_reference(const ConvGeometry& g, const double* x, const double* w, const double* b,
                      double* out) {
  const int64_t oh = g.out_h(), ow = g.out_w(), cg = g.c / g.groups, ocg = g.oc / g.groups;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.oc; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = b ? b[o] : 0.0;
          const int64_t grp = o / ocg;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ki = 0; ki < g.kh; ++ki)
              for (int64_t kj = 0; kj < g.kw; ++kj) {
                const int64_t ih = i * g.stride_h - g.pad_h + ki * g.dil_h;
                const int64_t iw = j * g.stride_w - g.pad_w + kj * g.dil_w;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                s += x[((n * g.c + grp * cg + ci) * g.h + ih) * g.w + iw] *
                     w[((o * cg + ci) * g.kh + ki) * g.kw + kj];
              }
          out[((n * g.oc + o) * oh + i) * ow + j] = s;
        }
}

void max_pool2d_forward(const PoolGeometry& g, const float* x, float* out, int32_t* am) {
  max_fwd(g, x, out, am);
}
void max_pool2d_forward(const PoolGeometry& g, const double* x, double* out, int32_t* am) {
  max_fwd(g, x, out, am);
}
void max_pool2d_backward(const PoolGeometry& g, const float* dy, const int32_t* am, float* dx) {
  max_bwd(g, dy, am, dx);
}
void max_pool2d_backward(const PoolGeometry& g, const double* dy, const int32_t* am, double* dx) {
  max_bwd(g, dy, am, dx);
}
void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* out) {
  avg_fwd(g, x, out);
}
void avg_pool2d_forward(const PoolGeometry& g, const double* x, double* out) {
  avg_fwd(g, x, out);
}
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx) {
  avg_bwd(g, dy, dx);
}
void avg_pool2d_backward(const PoolGeometry& g, const double* dy, double* dx) {
  avg_bwd(g, dy, dx);
}
void adaptive_avg_pool2d_forward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                 const float* x, float* out) {
  adaptive_fwd(planes, h, w, oh, ow, x, out);
}
void adaptive_avg_pool2d_forward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                 const double* x, double* out) {
  adaptive_fwd(planes, h, w, oh, ow, x, out);
}
void adaptive_avg_pool2d_backward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                  const float* dy, float* dx) {
  adaptive_bwd(planes, h, w, oh, ow, dy, dx);
}
void adaptive_avg_pool2d_backward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                  const double* dy, double* dx) {
  adaptive_bwd(planes, h, w, oh, ow, dy, dx);
}

}  // namespace gl::kernels::cpu
