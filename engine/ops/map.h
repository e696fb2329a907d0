// map.h: the CPU loops that apply a functor from kernels/functors.h elementwise, with NumPy
// broadcasting and any strides. The CUDA backend instantiates the same functors.
#pragma once
#include "engine/ops/loops.h"
#include "engine/tensor.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "engine/cuda/ops_cuda.h"
#endif

namespace gl::detail {

void check_float_cpu(const Tensor& x, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
// True for a CUDA tensor (always false in builds without CUDA, where none can exist).
inline bool on_cuda(const Tensor& x) { return x.defined() && x.device().is_cuda(); }

template <class F>
auto dispatch_float(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: throw Error(fmt::format("{}: dtype {} not supported (f32 or f64)", op, dtype_name(d)));
  }
}

template <class Fn>
Tensor unary_map(const Tensor& x, Fn fn, const char* op) {
#if defined(GRADLENS_HAVE_CUDA)
  if (x.defined() && x.device().is_cuda()) return cuda_ops::unary_map(x, fn, op);
#endif
  check_float_cpu(x, op);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.raw_data());
    const T* p = static_cast<const T*>(x.raw_data());
    loops::for_each_row<2>(out.shape(), {out.strides(), x.strides()},
                           [&](auto off, int64_t n, auto st) {
                             T* op_ = o + off[0];
                             const T* xp = p + off[1];
                             if (st[1] == 1) {
                               for (int64_t i = 0; i < n; ++i) op_[i] = fn(xp[i]);
                             } else {
                               for (int64_t i = 0; i < n; ++i) op_[i] = fn(xp[i * st[1]]);
                             }
                           });
    return 0;
  });
  return out;
}

template <class Fn>
Tensor binary_map(const Tensor& a, const Tensor& b, Fn fn, const char* op) {
#if defined(GRADLENS_HAVE_CUDA)
  if ((a.defined() && a.device().is_cuda()) || (b.defined() && b.device().is_cuda()))
    return cuda_ops::binary_map(a, b, fn, op);
#endif
  check_float_cpu(a, op);
  check_float_cpu(b, op);
  check_same_dtype(a, b, op);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  Shape sa = loops::broadcast_strides(a.shape(), a.strides(), shape);
  Shape sb = loops::broadcast_strides(b.shape(), b.strides(), shape);
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    loops::for_each_row<3>(shape, {out.strides(), sa, sb}, [&](auto off, int64_t n, auto st) {
      T* op_ = o + off[0];
      const T* ap = pa + off[1];
      const T* bp = pb + off[2];
      if (st[1] == 1 && st[2] == 1) {
        for (int64_t i = 0; i < n; ++i) op_[i] = fn(ap[i], bp[i]);
      } else if (st[1] == 1 && st[2] == 0) {
        const T bv = *bp;
        for (int64_t i = 0; i < n; ++i) op_[i] = fn(ap[i], bv);
      } else if (st[1] == 0 && st[2] == 1) {
        const T av = *ap;
        for (int64_t i = 0; i < n; ++i) op_[i] = fn(av, bp[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) op_[i] = fn(ap[i * st[1]], bp[i * st[2]]);
      }
    });
    return 0;
  });
  return out;
}

}  // namespace gl::detail
