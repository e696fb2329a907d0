// kernels.cu: the engine's small CUDA kernels (see kernels.h). Every kernel is a grid-stride
// loop over output elements with the same index decomposition as index_math.h, written for
// obviousness rather than speed: none of them is on a hot path of a training step except
// the loader gather (one row copy per sample) and the dropout mask.
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "kernels/functors.h"
#include "kernels/philox.h"

namespace gl::engine_cuda {
namespace kc = gl::kernels::cuda;
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  return kc::grid_stride_blocks(n, kThreads);
}

#define GL_GRID_LOOP(i, n)                                                  \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

template <class D, class S>
__global__ void copy_kernel(kc::StridedLayout L, int64_t n, D* dst, const S* src) {
  GL_GRID_LOOP(i, n) {
    const kc::Offsets3 o = kc::layout_offsets(L, i);
    dst[o.o[0]] = gl::fn::saturate_cast<D>(src[o.o[1]]);
  }
}

template <class T>
__global__ void fill_kernel(kc::StridedLayout L, int64_t n, T* dst, T v) {
  GL_GRID_LOOP(i, n) {
    dst[kc::layout_offsets(L, i).o[0]] = v;
  }
}

template <class F>
void with_type(ElemType t, F&& f) {
  switch (t) {
    case ElemType::f32:
      f(float{});
      return;
    case ElemType::f64:
      f(double{});
      return;
    case ElemType::i64:
      f(int64_t{});
      return;
    case ElemType::u8:
      f(uint8_t{});
      return;
  }
  throw std::invalid_argument("engine_cuda: unknown element type " + std::to_string(int(t)));
}

template <class T>
__device__ bool is_nan_(T v) {
  return v != v;
}

template <class T>
__global__ void argmax_kernel(const T* x, int64_t rows, int64_t n, int64_t* idx, T* values) {
  GL_GRID_LOOP(r, rows) {
    const T* row = x + r * n;
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (row[i] > row[best] || (is_nan_(row[i]) && !is_nan_(row[best]))) best = i;
    idx[r] = best;
    if (values) values[r] = row[best];
  }
}

template <class T>
__global__ void scatter_rows_kernel(const T* g, const int64_t* idx, int64_t rows, int64_t n,
                                    T* out) {
  GL_GRID_LOOP(r, rows) {
    const int64_t k = idx[r];
    if (k >= 0 && k < n) out[r * n + k] = g[r];
  }
}

// Source offset (elements) of output element `flat`, or -1 when its index is out of range.
__device__ int64_t gather_source(const GatherGeom& g, const int64_t* index, int64_t flat) {
  int64_t rem = flat, src = 0, xstride = 1;
  for (int d = g.ndim - 1; d >= 0; --d) {
    int64_t c = rem % g.oshape[d];
    rem /= g.oshape[d];
    if (d == g.dim) {
      c = g.per_coord ? index[c] : index[flat];
      if (c < 0 || c >= g.xshape[d]) return -1;
    }
    src += c * xstride;
    xstride *= g.xshape[d];
  }
  return src;
}

__device__ void set_bad(float& v) {
  v = __int_as_float(0x7fc00000);
}
__device__ void set_bad(double& v) {
  v = __longlong_as_double(0x7ff8000000000000ll);
}
__device__ void set_bad(int64_t& v) {
  v = 0;
}
__device__ void set_bad(uint8_t& v) {
  v = 0;
}

template <class T>
__global__ void gather_kernel(GatherGeom g, int64_t n, const T* x, const int64_t* index, T* out) {
  GL_GRID_LOOP(i, n) {
    const int64_t s = gather_source(g, index, i);
    if (s < 0)
      set_bad(out[i]);
    else
      out[i] = x[s];
  }
}

template <class T>
__global__ void scatter_add_kernel(GatherGeom g, int64_t n, const T* src, const int64_t* index,
                                   T* out) {
  GL_GRID_LOOP(i, n) {
    const int64_t s = gather_source(g, index, i);
    if (s >= 0) atomicAdd(out + s, src[i]);
  }
}

template <class T>
__global__ void dropout_kernel(T* mask, int64_t n, uint64_t seed, uint64_t offset, double p,
                               T scale) {
  GL_GRID_LOOP(i, n) {
    mask[i] = gl::philox::uniform_at(seed, offset, uint64_t(i)) < p ? T(0) : scale;
  }
}

__global__ void count_equal_kernel(const int64_t* a, const int64_t* b, int64_t n,
                                   unsigned long long* counter) {
  unsigned long long local = 0;
  GL_GRID_LOOP(i, n) {
    local += a[i] == b[i] ? 1ull : 0ull;
  }
  if (local) atomicAdd(counter, local);
}

int64_t geom_numel(const GatherGeom& g) {
  int64_t n = 1;
  for (int d = 0; d < g.ndim; ++d) n *= g.oshape[d];
  return n;
}

void check_geom(const GatherGeom& g) {
  if (g.ndim < 1 || g.ndim > kc::kMaxDims || g.dim < 0 || g.dim >= g.ndim)
    throw std::invalid_argument("index_gather: ndim " + std::to_string(g.ndim) + ", dim " +
                                std::to_string(g.dim) + " out of range");
}

}  // namespace

void strided_copy(const kc::StridedLayout& L, void* dst, ElemType dst_type, const void* src,
                  ElemType src_type, cudaStream_t stream) {
  kc::check_layout(L, "strided_copy");
  const int64_t n = kc::layout_numel(L);
  if (n == 0) return;
  stream = kc::resolve_stream(stream);
  with_type(dst_type, [&](auto dtag) {
    using D = decltype(dtag);
    with_type(src_type, [&](auto stag) {
      using S = decltype(stag);
      copy_kernel<D, S><<<blocks_for(n), kThreads, 0, stream>>>(L, n, static_cast<D*>(dst),
                                                                static_cast<const S*>(src));
      GL_CUDA_CHECK_LAUNCH();
    });
  });
}

void fill(const kc::StridedLayout& L, void* dst, ElemType type, double value, cudaStream_t stream) {
  kc::check_layout(L, "fill");
  const int64_t n = kc::layout_numel(L);
  if (n == 0) return;
  stream = kc::resolve_stream(stream);
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(L, n, static_cast<T*>(dst),
                                                           gl::fn::saturate_cast<T>(value));
    GL_CUDA_CHECK_LAUNCH();
  });
}

template <class T>
void argmax_rows(const T* x, int64_t rows, int64_t n, int64_t* idx, T* values,
                 cudaStream_t stream) {
  if (rows == 0) return;
  if (n <= 0) throw std::invalid_argument("argmax_rows: empty rows");
  argmax_kernel<T>
      <<<blocks_for(rows), kThreads, 0, kc::resolve_stream(stream)>>>(x, rows, n, idx, values);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void scatter_rows(const T* g, const int64_t* idx, int64_t rows, int64_t n, T* out,
                  cudaStream_t stream) {
  if (rows == 0) return;
  scatter_rows_kernel<T>
      <<<blocks_for(rows), kThreads, 0, kc::resolve_stream(stream)>>>(g, idx, rows, n, out);
  GL_CUDA_CHECK_LAUNCH();
}

void index_gather(const GatherGeom& g, const void* x, ElemType type, const int64_t* index,
                  void* out, cudaStream_t stream) {
  check_geom(g);
  const int64_t n = geom_numel(g);
  if (n == 0) return;
  stream = kc::resolve_stream(stream);
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    gather_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(g, n, static_cast<const T*>(x), index,
                                                             static_cast<T*>(out));
    GL_CUDA_CHECK_LAUNCH();
  });
}

void index_scatter_add(const GatherGeom& g, const void* src, ElemType type, const int64_t* index,
                       void* out, cudaStream_t stream) {
  check_geom(g);
  const int64_t n = geom_numel(g);
  if (n == 0) return;
  stream = kc::resolve_stream(stream);
  if (type == ElemType::f32) {
    scatter_add_kernel<float><<<blocks_for(n), kThreads, 0, stream>>>(
        g, n, static_cast<const float*>(src), index, static_cast<float*>(out));
  } else if (type == ElemType::f64) {
    scatter_add_kernel<double><<<blocks_for(n), kThreads, 0, stream>>>(
        g, n, static_cast<const double*>(src), index, static_cast<double*>(out));
  } else {
    throw std::invalid_argument("index_scatter_add: floating types only");
  }
  GL_CUDA_CHECK_LAUNCH();
}

template <class T>
void dropout_mask(T* mask, int64_t n, uint64_t seed, uint64_t offset, double p, double scale,
                  cudaStream_t stream) {
  if (n == 0) return;
  dropout_kernel<T><<<blocks_for(n), kThreads, 0, kc::resolve_stream(stream)>>>(
      mask, n, seed, offset, p, T(scale));
  GL_CUDA_CHECK_LAUNCH();
}

void count_equal(const int64_t* pred, const int64_t* labels, int64_t n, int64_t* counter,
                 cudaStream_t stream) {
  if (n == 0) return;
  count_equal_kernel<<<blocks_for(n), kThreads, 0, kc::resolve_stream(stream)>>>(
      pred, labels, n, reinterpret_cast<unsigned long long*>(counter));
  GL_CUDA_CHECK_LAUNCH();
}

template void argmax_rows<float>(const float*, int64_t, int64_t, int64_t*, float*, cudaStream_t);
template void argmax_rows<double>(const double*, int64_t, int64_t, int64_t*, double*, cudaStream_t);
template void scatter_rows<float>(const float*, const int64_t*, int64_t, int64_t, float*,
                                  cudaStream_t);
template void scatter_rows<double>(const double*, const int64_t*, int64_t, int64_t, double*,
                                   cudaStream_t);
template void dropout_mask<float>(float*, int64_t, uint64_t, uint64_t, double, double,
                                  cudaStream_t);
template void dropout_mask<double>(double*, int64_t, uint64_t, uint64_t, double, double,
                                   cudaStream_t);

}  // namespace gl::engine_cuda
