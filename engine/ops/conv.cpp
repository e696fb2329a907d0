// conv.cpp: conv2d, max_pool2d, avg_pool2d and adaptive_avg_pool2d on NCHW tensors, forward
// and backward side by side. Inputs of any strides are made contiguous once; the kernels
// (kernels/cpu/conv.h, and kernels/cuda/conv.h for f32 CUDA tensors) work on contiguous NCHW
// arrays. Backward is first order only.
#include "kernels/cpu/conv.h"

#include <memory>

#include "engine/ops.h"
#include "engine/ops/map.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "kernels/cuda/conv.h"
#include "kernels/cuda/runtime.h"
#endif

namespace gl {

namespace {
namespace kc = kernels::cpu;

std::string input_str(const Tensor& x) {
  return x.defined() ? x.str() : "undefined";
}

// A 4-D float tensor: f32 or f64 on the CPU, f32 on a CUDA device.
void check_nchw(const Tensor& x, const char* op) {
  GL_CHECK(x.defined() && x.dim() == 4, "{}: input {} must be 4-D [N, C, H, W]", op, input_str(x));
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x))
    cuda_ops::check_device_float(x, op, /*f32_only=*/true);
  else
#endif
    detail::check_float_cpu(x, op);
  GL_CHECK(x.numel() > 0, "{}: input {} is empty", op, x.str());
}

void check_same_device(const Tensor& x, const Tensor& t, const char* op, const char* what) {
  GL_CHECK(t.device() == x.device(), "{}: input {} is on {} but {} {} is on {}", op, x.str(),
           x.device().str(), what, t.str(), t.device().str());
}

// A call into the CUDA kernels (f32) with `dev`, the device of its tensors, current for the
// call; compiled in CUDA builds only (elsewhere no tensor is on a device and the branch is
// never taken).
#if defined(GRADLENS_HAVE_CUDA)
#define GL_CUDA_ON(dev, ...)                            \
  do {                                                  \
    const auto gl_scope_ = cuda_ops::device_scope(dev); \
    __VA_ARGS__;                                        \
  } while (0)
#else
#define GL_CUDA_ON(dev, ...) throw Error("a CUDA tensor in a build without CUDA")
#endif

void check_pair(std::array<int64_t, 2> v, int64_t min, const char* op, const char* what) {
  GL_CHECK(v[0] >= min && v[1] >= min, "{}: {} ({}, {}) must be >= {}", op, what, v[0], v[1], min);
}

// a * b + c for a kernel or padded extent, throwing naming op and what when it passes int64_t.
int64_t extent(int64_t a, int64_t b, int64_t c, const char* op, const char* what) {
  int64_t r = 0;
  GL_CHECK(!__builtin_mul_overflow(a, b, &r) && !__builtin_add_overflow(r, c, &r),
           "{}: the {} {} * {} + {} passes 64 bits", op, what, a, b, c);
  return r;
}

template <class F>
void with_float(const Tensor& x, const char* op, F&& f) {
  detail::dispatch_float(x.dtype(), op, [&](auto tag) {
    f(tag);
    return 0;
  });
}

template <class T>
const T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mut(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}
}  // namespace

// ---------------------------------------------------------------- conv2d
Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b, const Conv2dParams& p) {
  check_nchw(x_in, "conv2d");
  GL_CHECK(w_in.defined() && w_in.dim() == 4,
           "conv2d: weight {} must be 4-D [out_channels, in_channels / groups, kH, kW]",
           input_str(w_in));
  detail::check_same_dtype(x_in, w_in, "conv2d");
  check_same_device(x_in, w_in, "conv2d", "weight");
  check_pair(p.stride, 1, "conv2d", "stride");
  check_pair(p.padding, 0, "conv2d", "padding");
  check_pair(p.dilation, 1, "conv2d", "dilation");
  const int64_t groups = p.groups;
  GL_CHECK(groups >= 1, "conv2d: groups {} must be >= 1", groups);
  kc::ConvGeometry g;
  g.n = x_in.size(0), g.c = x_in.size(1), g.h = x_in.size(2), g.w = x_in.size(3);
  g.oc = w_in.size(0), g.kh = w_in.size(2), g.kw = w_in.size(3), g.groups = groups;
  GL_CHECK(g.c % groups == 0, "conv2d: input channels {} are not divisible by groups {}", g.c,
           groups);
  GL_CHECK(g.oc % groups == 0 && g.oc > 0,
           "conv2d: output channels {} (weight {}) are not divisible by groups {}", g.oc,
           w_in.str(), groups);
  GL_CHECK(w_in.size(1) * groups == g.c,
           "conv2d: input {} has {} channels but weight {} with groups {} expects {}", x_in.str(),
           g.c, w_in.str(), groups, w_in.size(1) * groups);
  GL_CHECK(g.kh > 0 && g.kw > 0, "conv2d: weight {} has an empty kernel", w_in.str());
  g.stride_h = p.stride[0], g.stride_w = p.stride[1];
  g.pad_h = p.padding[0], g.pad_w = p.padding[1];
  g.dil_h = p.dilation[0], g.dil_w = p.dilation[1];
  const int64_t ekh = extent(g.dil_h, g.kh - 1, 1, "conv2d", "dilated kernel height");
  const int64_t ekw = extent(g.dil_w, g.kw - 1, 1, "conv2d", "dilated kernel width");
  const int64_t ph = extent(g.pad_h, 2, g.h, "conv2d", "padded input height");
  const int64_t pw = extent(g.pad_w, 2, g.w, "conv2d", "padded input width");
  GL_CHECK(ekh <= ph && ekw <= pw,
           "conv2d: kernel {}x{} (dilated {}x{}) is larger than the padded input {}x{} (input "
           "{}, padding {})",
           g.kh, g.kw, ekh, ekw, ph, pw, x_in.str(), g.pad_h);
  if (b.defined()) {
    detail::check_same_dtype(x_in, b, "conv2d");
    check_same_device(x_in, b, "conv2d", "bias");
    GL_CHECK(b.dim() == 1 && b.size(0) == g.oc, "conv2d: bias {} must be [{}]", b.str(), g.oc);
  }
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor bc = b.defined() ? b.contiguous() : Tensor();
  Tensor out = Tensor::empty({g.n, g.oc, g.out_h(), g.out_w()}, x.dtype(), x.device());
  const bool cuda = detail::on_cuda(x);
  if (cuda)
    GL_CUDA_ON(x.device(), kernels::cuda::conv2d_forward(g, ptr<float>(x), ptr<float>(w),
                                                         ptr<float>(bc), mut<float>(out)));
  else
    with_float(x, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      kc::conv2d_forward(g, ptr<T>(x), ptr<T>(w), ptr<T>(bc), mut<T>(out));
    });
  if (needs_grad({&x_in, &w_in, &b})) {
    Tensor sx = x.detach(), sw = w.detach();
    bool need_x = x_in.requires_grad(), need_w = w_in.requires_grad();
    bool has_bias = b.defined(), need_b = has_bias && b.requires_grad();
    std::vector<Tensor> inputs{x_in, w_in};
    if (has_bias) inputs.push_back(b);
    attach_grad_fn(out, "conv2d", inputs,
                   [g, sx, sw, need_x, need_w, has_bias, need_b,
                    cuda](const Tensor& grad) -> std::vector<Tensor> {
                     Tensor gy = grad.contiguous();
                     const Device dev = sx.device();
                     Tensor gx = need_x ? Tensor::empty(sx.shape(), sx.dtype(), dev) : Tensor();
                     Tensor gw = need_w ? Tensor::empty(sw.shape(), sw.dtype(), dev) : Tensor();
                     Tensor gb = need_b ? Tensor::empty({g.oc}, sx.dtype(), dev) : Tensor();
                     if (cuda)
                       GL_CUDA_ON(dev, kernels::cuda::conv2d_backward(
                                           g, ptr<float>(sx), ptr<float>(sw), ptr<float>(gy),
                                           mut<float>(gx), mut<float>(gw), mut<float>(gb)));
                     else
                       with_float(sx, "conv2d", [&](auto tag) {
                         using T = decltype(tag);
                         kc::conv2d_backward(g, ptr<T>(sx), ptr<T>(sw), ptr<T>(gy), mut<T>(gx),
                                             mut<T>(gw), mut<T>(gb));
                       });
                     std::vector<Tensor> r{gx, gw};
                     if (has_bias) r.push_back(gb);
                     return r;
                   },
                   {sx.shape(), sw.shape()});
  }
  return out;
}

// ---------------------------------------------------------------- pooling
namespace {
// max_pool2d's argmax (i32 per output): host memory, or device memory for CUDA tensors.
struct Argmax {
  Argmax(std::size_t n, Device dev) : cuda(dev.is_cuda()) {
    if (cuda)
      GL_CUDA_ON(dev, device = kernels::cuda::DeviceBuffer<int32_t>(n));
    else
      host.resize(n);
  }
  int32_t* data() {
#if defined(GRADLENS_HAVE_CUDA)
    if (cuda) return device.get();
#endif
    return host.data();
  }
  bool cuda;
  std::vector<int32_t> host;
#if defined(GRADLENS_HAVE_CUDA)
  kernels::cuda::DeviceBuffer<int32_t> device;
#endif
};

kc::PoolGeometry pool_geometry(const Tensor& x, std::array<int64_t, 2> kernel,
                               std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                               const char* op) {
  check_nchw(x, op);
  check_pair(kernel, 1, op, "kernel");
  if (stride[0] == 0 && stride[1] == 0) stride = kernel;
  check_pair(stride, 1, op, "stride");
  check_pair(padding, 0, op, "padding");
  GL_CHECK(padding[0] * 2 <= kernel[0] && padding[1] * 2 <= kernel[1],
           "{}: padding ({}, {}) must be at most half the kernel ({}, {})", op, padding[0],
           padding[1], kernel[0], kernel[1]);
  kc::PoolGeometry g;
  g.planes = x.size(0) * x.size(1), g.h = x.size(2), g.w = x.size(3);
  g.kh = kernel[0], g.kw = kernel[1], g.stride_h = stride[0], g.stride_w = stride[1];
  g.pad_h = padding[0], g.pad_w = padding[1];
  const int64_t ph = extent(g.pad_h, 2, g.h, op, "padded input height");
  const int64_t pw = extent(g.pad_w, 2, g.w, op, "padded input width");
  GL_CHECK(g.kh <= ph && g.kw <= pw,
           "{}: kernel {}x{} is larger than the padded input {}x{} (input {})", op, g.kh, g.kw, ph,
           pw, x.str());
  return g;
}
}  // namespace

Tensor max_pool2d(const Tensor& x_in, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding) {
  kc::PoolGeometry g = pool_geometry(x_in, kernel, stride, padding, "max_pool2d");
  Tensor x = x_in.contiguous();
  Shape in_shape = x.shape();
  Tensor out = Tensor::empty({x.size(0), x.size(1), g.out_h(), g.out_w()}, x.dtype(), x.device());
  // Each output's argmax in its input plane, kept where the tensors are (an i32 array on the
  // host, or in device memory).
  auto argmax = std::make_shared<Argmax>(std::size_t(out.numel()), x.device());
  if (argmax->cuda)
    GL_CUDA_ON(x.device(), kernels::cuda::max_pool2d_forward(g, ptr<float>(x), mut<float>(out),
                                                             argmax->data()));
  else
    with_float(x, "max_pool2d", [&](auto tag) {
      using T = decltype(tag);
      kc::max_pool2d_forward(g, ptr<T>(x), mut<T>(out), argmax->data());
    });
  if (needs_grad({&x_in})) {
    DType dt = x.dtype();
    const Device dev = x.device();
    attach_grad_fn(out, "max_pool2d", {x_in},
                   [g, argmax, in_shape, dt, dev](const Tensor& grad) -> std::vector<Tensor> {
                     Tensor gy = grad.contiguous();
                     Tensor gx = Tensor::empty(in_shape, dt, dev);
                     if (argmax->cuda)
                       GL_CUDA_ON(dev, kernels::cuda::max_pool2d_backward(
                                           g, ptr<float>(gy), argmax->data(), mut<float>(gx)));
                     else
                       with_float(gy, "max_pool2d", [&](auto tag) {
                         using T = decltype(tag);
                         kc::max_pool2d_backward(g, ptr<T>(gy), argmax->data(), mut<T>(gx));
                       });
                     return {gx};
                   },
                   {out.shape()});
  }
  return out;
}

Tensor avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding) {
  kc::PoolGeometry g = pool_geometry(x_in, kernel, stride, padding, "avg_pool2d");
  Tensor x = x_in.contiguous();
  Shape in_shape = x.shape();
  Tensor out = Tensor::empty({x.size(0), x.size(1), g.out_h(), g.out_w()}, x.dtype(), x.device());
  if (detail::on_cuda(x))
    GL_CUDA_ON(x.device(), kernels::cuda::avg_pool2d_forward(g, ptr<float>(x), mut<float>(out)));
  else
    with_float(x, "avg_pool2d", [&](auto tag) {
      using T = decltype(tag);
      kc::avg_pool2d_forward(g, ptr<T>(x), mut<T>(out));
    });
  if (needs_grad({&x_in})) {
    DType dt = x.dtype();
    const Device dev = x.device();
    attach_grad_fn(
        out, "avg_pool2d", {x_in},
        [g, in_shape, dt, dev](const Tensor& grad) -> std::vector<Tensor> {
          Tensor gy = grad.contiguous();
          Tensor gx = Tensor::empty(in_shape, dt, dev);
          if (detail::on_cuda(gx))
            GL_CUDA_ON(dev, kernels::cuda::avg_pool2d_backward(g, ptr<float>(gy), mut<float>(gx)));
          else
            with_float(gy, "avg_pool2d", [&](auto tag) {
              using T = decltype(tag);
              kc::avg_pool2d_backward(g, ptr<T>(gy), mut<T>(gx));
            });
          return {gx};
        });
  }
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> output_size) {
  check_nchw(x_in, "adaptive_avg_pool2d");
  check_pair(output_size, 1, "adaptive_avg_pool2d", "output size");
  Tensor x = x_in.contiguous();
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = output_size[0], ow = output_size[1];
  Shape in_shape = x.shape();
  Tensor out = Tensor::empty({x.size(0), x.size(1), oh, ow}, x.dtype(), x.device());
  if (detail::on_cuda(x))
    GL_CUDA_ON(x.device(), kernels::cuda::adaptive_avg_pool2d_forward(
                               planes, h, w, oh, ow, ptr<float>(x), mut<float>(out)));
  else
    with_float(x, "adaptive_avg_pool2d", [&](auto tag) {
      using T = decltype(tag);
      kc::adaptive_avg_pool2d_forward(planes, h, w, oh, ow, ptr<T>(x), mut<T>(out));
    });
  if (needs_grad({&x_in})) {
    DType dt = x.dtype();
    const Device dev = x.device();
    attach_grad_fn(
        out, "adaptive_avg_pool2d", {x_in},
        [planes, h, w, oh, ow, in_shape, dt, dev](const Tensor& grad) -> std::vector<Tensor> {
          Tensor gy = grad.contiguous();
          Tensor gx = Tensor::empty(in_shape, dt, dev);
          if (detail::on_cuda(gx))
            GL_CUDA_ON(dev, kernels::cuda::adaptive_avg_pool2d_backward(
                                planes, h, w, oh, ow, ptr<float>(gy), mut<float>(gx)));
          else
            with_float(gy, "adaptive_avg_pool2d", [&](auto tag) {
              using T = decltype(tag);
              kc::adaptive_avg_pool2d_backward(planes, h, w, oh, ow, ptr<T>(gy), mut<T>(gx));
            });
          return {gx};
        });
  }
  return out;
}

}  // namespace gl
