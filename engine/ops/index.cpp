// index.cpp: concat, index_select and gather, with their scatter-add backwards.
#include "engine/ops.h"
#include "engine/ops/map.h"

namespace gl {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  GL_CHECK(!xs.empty(), "concat: no tensors given");
  const Tensor& first = xs[0];
  GL_CHECK(first.dim() > 0, "concat: zero-dim tensor {}", first.str());
  int64_t d = wrap_dim(dim, first.dim(), "concat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (const Tensor& x : xs) {
    GL_CHECK(x.dim() == first.dim() && x.dtype() == first.dtype() && x.device() == first.device(),
             "concat: tensor {} on {} does not match {} on {}", x.str(), x.device().str(),
             first.str(), first.device().str());
    for (int64_t i = 0; i < x.dim(); ++i)
      GL_CHECK(i == d || x.shape()[i] == first.shape()[i],
               "concat: shapes {} and {} differ outside dim {}", shape_str(x.shape()),
               shape_str(first.shape()), d);
    out_shape[d] += x.shape()[d];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> starts;
  int64_t pos = 0;
  for (const Tensor& x : xs) {
    starts.push_back(pos);
    out.detach().narrow(d, pos, x.shape()[d]).copy_(x);
    pos += x.shape()[d];
  }
  if (needs_grad(xs)) {
    std::vector<int64_t> lens;
    for (const Tensor& x : xs) lens.push_back(x.shape()[d]);
    attach_grad_fn(out, "concat", xs, [d, starts, lens](const Tensor& g) -> std::vector<Tensor> {
      std::vector<Tensor> r;
      for (std::size_t i = 0; i < starts.size(); ++i) r.push_back(g.narrow(d, starts[i], lens[i]));
      return r;
    });
  }
  return out;
}

namespace {
// out[..., index[k], ...] += src[..., k, ...] along dim.
Tensor index_add_zero(const Shape& shape, DType dt, int64_t d, const Tensor& index,
                      const Tensor& src) {
  Tensor out = Tensor::zeros(shape, dt);
  Tensor ic = index.contiguous();
  const int64_t* ip = ic.data<int64_t>();
  for (int64_t k = 0; k < ic.numel(); ++k) {
    Tensor dst = out.select(d, ip[k]);
    Tensor upd = add(dst, src.select(d, k));
    dst.copy_(upd);
  }
  return out;
}
#if defined(GRADLENS_HAVE_CUDA)
// An i64 index for a kernel on x's device. A host index is range-checked by the caller and
// moved; a device index is used as is (the kernels guard every read, see engine/cuda/kernels.h).
Tensor index_on_device(const Tensor& x, const Tensor& index, const char* op) {
  if (index.device() == x.device()) return index.contiguous();
  GL_CHECK(index.device().is_cpu(), "{}: input {} on {} but index {} on {}", op, x.str(),
           x.device().str(), index.str(), index.device().str());
  return index.contiguous().to(x.device());
}
#endif
}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  GL_CHECK(x.dim() > 0, "index_select: tensor {} has no dims", x.str());
  int64_t d = wrap_dim(dim, x.dim(), "index_select");
  GL_CHECK(index.dtype() == DType::i64 && index.dim() == 1,
           "index_select: index must be i64 [K], got {}", index.str());
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) {
    if (index.device().is_cpu()) {
      Tensor ic = index.contiguous();
      const int64_t* ip = ic.data<int64_t>();
      for (int64_t k = 0; k < ic.numel(); ++k)
        GL_CHECK(ip[k] >= 0 && ip[k] < x.shape()[d],
                 "index_select: index {} out of range for dim {} of {}", ip[k], d, x.str());
    }
    Tensor idx = index_on_device(x, index, "index_select");
    Shape out_shape = x.shape();
    out_shape[d] = idx.numel();
    Tensor out = cuda_ops::index_gather(x, d, idx, /*per_coord=*/true, out_shape);
    if (needs_grad({&x})) {
      Shape s = x.shape();
      attach_grad_fn(out, "index_select", {x}, [s, d, idx](const Tensor& g) -> std::vector<Tensor> {
        return {cuda_ops::index_scatter_add(g, d, idx, true, s)};
      });
    }
    return out;
  }
#endif
  Tensor ic = index.contiguous();
  const int64_t* ip = ic.data<int64_t>();
  Shape out_shape = x.shape();
  out_shape[d] = ic.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  for (int64_t k = 0; k < ic.numel(); ++k) {
    GL_CHECK(ip[k] >= 0 && ip[k] < x.shape()[d],
             "index_select: index {} out of range for dim {} of {}", ip[k], d, x.str());
    out.detach().select(d, k).copy_(x.detach().select(d, ip[k]));
  }
  if (needs_grad({&x})) {
    Shape s = x.shape();
    DType dt = x.dtype();
    attach_grad_fn(out, "index_select", {x}, [s, dt, d, ic](const Tensor& g) -> std::vector<Tensor> {
      return {index_add_zero(s, dt, d, ic, g)};
    });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) cuda_ops::check_device_float(x, "gather");
  else
#endif
  detail::check_float_cpu(x, "gather");
  GL_CHECK(index.dtype() == DType::i64 && index.dim() == x.dim(),
           "gather: index {} must be i64 with the same number of dims as {}", index.str(),
           x.str());
  int64_t d = wrap_dim(dim, x.dim(), "gather");
  for (int64_t i = 0; i < x.dim(); ++i)
    GL_CHECK(i == d || index.shape()[i] <= x.shape()[i],
             "gather: index {} larger than input {} outside dim {}", index.str(), x.str(), d);
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) {
    if (index.device().is_cpu()) {
      Tensor ic = index.contiguous();
      const int64_t* ip = ic.data<int64_t>();
      for (int64_t k = 0; k < ic.numel(); ++k)
        GL_CHECK(ip[k] >= 0 && ip[k] < x.shape()[d],
                 "gather: index {} out of range for dim {} of {}", ip[k], d, x.str());
    }
    Tensor idx = index_on_device(x, index, "gather");
    Tensor out = cuda_ops::index_gather(x, d, idx, /*per_coord=*/false, index.shape());
    if (needs_grad({&x})) {
      Shape s = x.shape();
      attach_grad_fn(out, "gather", {x}, [s, d, idx](const Tensor& g) -> std::vector<Tensor> {
        return {cuda_ops::index_scatter_add(g, d, idx, false, s)};
      });
    }
    return out;
  }
#endif
  Tensor out = Tensor::empty(index.shape(), x.dtype());
  Tensor ic = index.contiguous();
  const int64_t* ip = ic.data<int64_t>();
  int64_t n = ic.numel();
  Shape idx_strides = contiguous_strides(index.shape());
  // Flat positions into x for every index element, computed once and reused by backward.
  auto pos = std::make_shared<std::vector<int64_t>>(static_cast<std::size_t>(n));
  Shape xs = contiguous_strides(x.shape());
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t rem = flat, p = 0;
    for (int64_t i = 0; i < x.dim(); ++i) {
      int64_t c = rem / idx_strides[i];
      rem %= idx_strides[i];
      if (i == d) {
        c = ip[flat];
        GL_CHECK(c >= 0 && c < x.shape()[d], "gather: index {} out of range for dim {} of {}", c,
                 d, x.str());
      }
      p += c * xs[i];
    }
    (*pos)[flat] = p;
  }
  Tensor xc = x.detach().contiguous();
  detail::dispatch_float(x.dtype(), "gather", [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(xc.raw_data());
    T* o = static_cast<T*>(out.raw_data());
    for (int64_t i = 0; i < n; ++i) o[i] = src[(*pos)[i]];
    return 0;
  });
  if (needs_grad({&x})) {
    Shape s = x.shape();
    DType dt = x.dtype();
    attach_grad_fn(out, "gather", {x}, [s, dt, pos, n](const Tensor& g) -> std::vector<Tensor> {
      Tensor r = Tensor::zeros(s, dt);
      Tensor gc = g.contiguous();
      detail::dispatch_float(dt, "gather_backward", [&](auto tag) {
        using T = decltype(tag);
        T* rp = static_cast<T*>(r.raw_data());
        const T* gp = static_cast<const T*>(gc.raw_data());
        for (int64_t i = 0; i < n; ++i) rp[(*pos)[i]] += gp[i];
        return 0;
      });
      return {r};
    });
  }
  return out;
}

}  // namespace gl
