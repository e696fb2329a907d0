// elementwise.cu: y = f(x) and out = f(a, b) for every functor of kernels/functors.h, over
// contiguous arrays (grid-stride loop; float additionally a float4 path when all pointers are
// 16-byte aligned, with a scalar tail) and over N-d strided/broadcast layouts (up to 8 dims,
// the layout passed by value; each thread decomposes its linear index with layout_offsets()).
// The op enum is mapped to a functor once on the host, so each functor is one kernel.
// speed: not yet measured on a GPU.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/batch.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/runtime.h"
#include "kernels/functors.h"
#include "kernels/philox.h"

namespace gl::kernels::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t work) {
  return grid_stride_blocks(work, kThreads);
}

template <class T, class F>
__global__ void unary_kernel(F f, int64_t n, const T* x, T* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = f(x[i]);
}

// n4 float4 groups; the tail (n % 4 elements) is done by the scalar kernel on the host side.
template <class F>
__global__ void unary_kernel_f4(F f, int64_t n4, const float4* x, float4* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    float4 v = x[i];
    v.x = f(v.x);
    v.y = f(v.y);
    v.z = f(v.z);
    v.w = f(v.w);
    y[i] = v;
  }
}

template <class T, class F>
__global__ void binary_kernel(F f, int64_t n, const T* a, const T* b, T* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f(a[i], b[i]);
}

template <class F>
__global__ void binary_kernel_f4(F f, int64_t n4, const float4* a, const float4* b, float4* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 u = a[i];
    const float4 v = b[i];
    out[i] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
  }
}

template <class T, class F>
__global__ void unary_strided_kernel(F f, StridedLayout L, int64_t n, const T* x, T* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Offsets3 o = layout_offsets(L, i);
    y[o.o[0]] = f(x[o.o[1]]);
  }
}

template <class T, class F>
__global__ void binary_strided_kernel(F f, StridedLayout L, int64_t n, const T* a, const T* b,
                                      T* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Offsets3 o = layout_offsets(L, i);
    out[o.o[0]] = f(a[o.o[1]], b[o.o[2]]);
  }
}

// Up to kBatchMax arrays of one launch, by value: entry blockIdx.y.
constexpr int kBatchMax = 32;
struct ArrayBatch {
  const float* a[kBatchMax];
  const float* b[kBatchMax];
  float* out[kBatchMax];
};

// out = f(a) (kBinary false) or f(a, b) for entry blockIdx.y.
template <bool kBinary, class F>
__global__ void batched_kernel(F f, int64_t n, ArrayBatch t) {
  const float* a = t.a[blockIdx.y];
  const float* b = t.b[blockIdx.y];
  float* out = t.out[blockIdx.y];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (kBinary)
      out[i] = f(a[i], b[i]);
    else
      out[i] = f(a[i]);
  }
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- launchers, one per functor ----
template <class T, class F>
void launch_unary(F f, int64_t n, const T* x, T* y, cudaStream_t s) {
  if (n <= 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (aligned16(x) && aligned16(y) && n >= 4) {
      const int64_t n4 = n / 4;
      unary_kernel_f4<<<blocks_for(n4), kThreads, 0, s>>>(f, n4, reinterpret_cast<const float4*>(x),
                                                          reinterpret_cast<float4*>(y));
      GL_CUDA_CHECK_LAUNCH();
      const int64_t done = n4 * 4;
      if (done < n) {
        unary_kernel<T><<<1, kThreads, 0, s>>>(f, n - done, x + done, y + done);
        GL_CUDA_CHECK_LAUNCH();
      }
      return;
    }
  }
  unary_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(f, n, x, y);
  GL_CUDA_CHECK_LAUNCH();
}

template <class T, class F>
void launch_binary(F f, int64_t n, const T* a, const T* b, T* out, cudaStream_t s) {
  if (n <= 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (aligned16(a) && aligned16(b) && aligned16(out) && n >= 4) {
      const int64_t n4 = n / 4;
      binary_kernel_f4<<<blocks_for(n4), kThreads, 0, s>>>(
          f, n4, reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b),
          reinterpret_cast<float4*>(out));
      GL_CUDA_CHECK_LAUNCH();
      const int64_t done = n4 * 4;
      if (done < n) {
        binary_kernel<T><<<1, kThreads, 0, s>>>(f, n - done, a + done, b + done, out + done);
        GL_CUDA_CHECK_LAUNCH();
      }
      return;
    }
  }
  binary_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(f, n, a, b, out);
  GL_CUDA_CHECK_LAUNCH();
}

// Calls visit(functor) with the functor of `op`.
template <class V>
void visit_unary(UnaryOp op, OpParams p, V&& visit) {
  switch (op) {
    case UnaryOp::neg:
      return visit(fn::Neg{});
    case UnaryOp::exp:
      return visit(fn::Exp{});
    case UnaryOp::log:
      return visit(fn::Log{});
    case UnaryOp::sqrt:
      return visit(fn::Sqrt{});
    case UnaryOp::abs:
      return visit(fn::Abs{});
    case UnaryOp::relu:
      return visit(fn::Relu{});
    case UnaryOp::tanh:
      return visit(fn::Tanh{});
    case UnaryOp::sigmoid:
      return visit(fn::Sigmoid{});
    case UnaryOp::silu:
      return visit(fn::Silu{});
    case UnaryOp::gelu_erf:
      return visit(fn::GeluErf{});
    case UnaryOp::gelu_tanh:
      return visit(fn::GeluTanh{});
    case UnaryOp::pow_scalar:
      return visit(fn::PowScalar{p.a});
    case UnaryOp::leaky_relu:
      return visit(fn::LeakyRelu{p.a});
    case UnaryOp::clamp:
      return visit(fn::Clamp{p.a, p.b});
  }
  throw std::invalid_argument("cuda::unary: unknown op " + std::to_string(int(op)));
}

template <class V>
void visit_binary(BinaryOp op, OpParams p, V&& visit) {
  switch (op) {
    case BinaryOp::add:
      return visit(fn::Add{});
    case BinaryOp::sub:
      return visit(fn::Sub{});
    case BinaryOp::mul:
      return visit(fn::Mul{});
    case BinaryOp::div:
      return visit(fn::Div{});
    case BinaryOp::relu_back:
      return visit(fn::ReluBack{});
    case BinaryOp::leaky_relu_back:
      return visit(fn::LeakyReluBack{p.a});
    case BinaryOp::tanh_back_from_y:
      return visit(fn::TanhBackFromY{});
    case BinaryOp::sigmoid_back_from_y:
      return visit(fn::SigmoidBackFromY{});
    case BinaryOp::silu_back:
      return visit(fn::SiluBack{});
    case BinaryOp::gelu_erf_back:
      return visit(fn::GeluErfBack{});
    case BinaryOp::gelu_tanh_back:
      return visit(fn::GeluTanhBack{});
    case BinaryOp::clamp_back:
      return visit(fn::ClampBack{p.a, p.b});
  }
  throw std::invalid_argument("cuda::binary: unknown op " + std::to_string(int(op)));
}

void check_n(int64_t n, const char* op) {
  if (n < 0) throw std::invalid_argument(std::string(op) + ": negative size " + std::to_string(n));
}

}  // namespace

const char* op_name(UnaryOp op) {
  static const char* names[] = {"neg",       "exp",        "log",        "sqrt", "abs",
                                "relu",      "tanh",       "sigmoid",    "silu", "gelu_erf",
                                "gelu_tanh", "pow_scalar", "leaky_relu", "clamp"};
  const int i = int(op);
  return (i >= 0 && i < int(sizeof(names) / sizeof(names[0]))) ? names[i] : "?";
}
const char* op_name(BinaryOp op) {
  static const char* names[] = {"add",
                                "sub",
                                "mul",
                                "div",
                                "relu_back",
                                "leaky_relu_back",
                                "tanh_back_from_y",
                                "sigmoid_back_from_y",
                                "silu_back",
                                "gelu_erf_back",
                                "gelu_tanh_back",
                                "clamp_back"};
  const int i = int(op);
  return (i >= 0 && i < int(sizeof(names) / sizeof(names[0]))) ? names[i] : "?";
}

namespace {
// out[k] = f(a[k]) or (kBinary) f(a[k], b[k]) for k < count, kBatchMax entries per launch;
// every entry is checked before any launch.
template <bool kBinary, class F>
void launch_batched(const char* name, F f, int64_t n, const float* const* a, const float* const* b,
                    float* const* out, int64_t count, cudaStream_t stream) {
  check_n(n, name);
  check_batch(name, count);
  if (n == 0) return;
  if (kBinary)
    check_batch(name, count, a, b, out);
  else
    check_batch(name, count, a, out);
  stream = resolve_stream(stream);
  for_each_launch<kBatchMax>(count, [&](int64_t first, int entries) {
    ArrayBatch t{};
    for (int e = 0; e < entries; ++e) {
      t.a[e] = a[first + e];
      t.b[e] = kBinary ? b[first + e] : nullptr;
      t.out[e] = out[first + e];
    }
    batched_kernel<kBinary>
        <<<dim3(unsigned(blocks_for(n)), unsigned(entries)), kThreads, 0, stream>>>(f, n, t);
    GL_CUDA_CHECK_LAUNCH();
  });
}
}  // namespace

void unary_batched(UnaryOp op, OpParams p, int64_t n, const float* const* x, float* const* y,
                   int64_t count, cudaStream_t stream) {
  visit_unary(op, p, [&](auto f) {
    launch_batched<false>("cuda::unary_batched", f, n, x, nullptr, y, count, stream);
  });
}

void binary_batched(BinaryOp op, OpParams p, int64_t n, const float* const* a,
                    const float* const* b, float* const* out, int64_t count, cudaStream_t stream) {
  visit_binary(op, p, [&](auto f) {
    launch_batched<true>("cuda::binary_batched", f, n, a, b, out, count, stream);
  });
}

template <class T>
void unary(UnaryOp op, OpParams p, int64_t n, const T* x, T* y, cudaStream_t stream) {
  check_n(n, "cuda::unary");
  stream = resolve_stream(stream);
  visit_unary(op, p, [&](auto f) { launch_unary<T>(f, n, x, y, stream); });
}

template <class T>
void binary(BinaryOp op, OpParams p, int64_t n, const T* a, const T* b, T* out,
            cudaStream_t stream) {
  check_n(n, "cuda::binary");
  stream = resolve_stream(stream);
  visit_binary(op, p, [&](auto f) { launch_binary<T>(f, n, a, b, out, stream); });
}

template <class T>
void unary_strided(UnaryOp op, OpParams p, const StridedLayout& layout, const T* x, T* y,
                   cudaStream_t stream) {
  check_layout(layout, "cuda::unary_strided");
  const int64_t n = layout_numel(layout);
  if (n == 0) return;
  stream = resolve_stream(stream);
  visit_unary(op, p, [&](auto f) {
    unary_strided_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(f, layout, n, x, y);
    GL_CUDA_CHECK_LAUNCH();
  });
}

template <class T>
void binary_strided(BinaryOp op, OpParams p, const StridedLayout& layout, const T* a, const T* b,
                    T* out, cudaStream_t stream) {
  check_layout(layout, "cuda::binary_strided");
  const int64_t n = layout_numel(layout);
  if (n == 0) return;
  stream = resolve_stream(stream);
  visit_binary(op, p, [&](auto f) {
    binary_strided_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(f, layout, n, a, b, out);
    GL_CUDA_CHECK_LAUNCH();
  });
}

namespace {
__global__ void fill_uniform_kernel(float* y, int64_t n, uint64_t seed, uint64_t stream_id,
                                    uint64_t offset) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = rng::philox_uniform(seed, stream_id, offset + uint64_t(i));
}
}  // namespace

void fill_uniform(float* y, int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset,
                  cudaStream_t stream) {
  check_n(n, "cuda::fill_uniform");
  if (n == 0) return;
  fill_uniform_kernel<<<blocks_for(n), kThreads, 0, resolve_stream(stream)>>>(y, n, seed, stream_id,
                                                                              offset);
  GL_CUDA_CHECK_LAUNCH();
}

#define GL_INSTANTIATE(T)                                                                       \
  template void unary<T>(UnaryOp, OpParams, int64_t, const T*, T*, cudaStream_t);               \
  template void binary<T>(BinaryOp, OpParams, int64_t, const T*, const T*, T*, cudaStream_t);   \
  template void unary_strided<T>(UnaryOp, OpParams, const StridedLayout&, const T*, T*,         \
                                 cudaStream_t);                                                 \
  template void binary_strided<T>(BinaryOp, OpParams, const StridedLayout&, const T*, const T*, \
                                  T*, cudaStream_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::kernels::cuda
