// reduce.cpp: sum, mean and max over dims (keepdim), argmax.
#include <algorithm>
#include <cmath>

#include "engine/ops.h"
#include "engine/ops/map.h"

namespace gl {

namespace {
std::vector<bool> reduced_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(static_cast<std::size_t>(x.dim()), false);
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    GL_CHECK(!mask[w], "{}: dim {} repeated", op, d);
    mask[w] = true;
  }
  return mask;
}

Shape reduced_shape(const Tensor& x, const std::vector<bool>& mask, bool keepdim) {
  Shape s;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (!mask[i])
      s.push_back(x.shape()[i]);
    else if (keepdim)
      s.push_back(1);
  }
  return s;
}

// Sums x over the masked dims into a tensor of the keepdim shape, accumulating in double.
// a[j] += p[i * cols + j] over the rows in order (vectorized across the columns, so every
// column's sum is the same sequence of f64 additions on every ISA).
__attribute__((target_clones("avx512f", "avx2", "default"))) void column_sums_f32(
    const float* __restrict p, int64_t rows, int64_t cols, double* __restrict a) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) a[j] += double(p[i * cols + j]);
}

Tensor sum_forward(const Tensor& x, const std::vector<bool>& mask) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) return cuda_ops::sum_keepdim(x, mask);
#endif
  detail::check_float_cpu(x, "sum");
  Shape keep = reduced_shape(x, mask, true);
  Tensor acc = Tensor::zeros(keep, DType::f64);
  if (x.dtype() == DType::f32 && x.dim() == 2 && mask[0] && !mask[1] && x.is_contiguous()) {
    // Column sums of a contiguous matrix (bias gradients): the general loop below adds each
    // column's rows in the same order, so this plain loop gives the same bits, faster.
    column_sums_f32(x.data<float>(), x.shape()[0], x.shape()[1], acc.data<double>());
    return acc.to(x.dtype());
  }
  Shape acc_strides = contiguous_strides(keep);
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (mask[i]) acc_strides[i] = 0;
  double* a = acc.data<double>();
  detail::dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(x.raw_data());
    loops::for_each_row<2>(
        x.shape(), {acc_strides, x.strides()},
        [&](auto off, int64_t n, auto st) {
          double* ap = a + off[0];
          const T* xp = p + off[1];
          if (st[0] == 0) {
            double s = 0;
            for (int64_t i = 0; i < n; ++i) s += double(xp[i * st[1]]);
            *ap += s;
          } else {
            for (int64_t i = 0; i < n; ++i) ap[i * st[0]] += double(xp[i * st[1]]);
          }
        },
        /*parallel=*/false);
    return 0;
  });
  return acc.to(x.dtype());
}
}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<bool> mask = reduced_mask(x, dims, "sum");
  Tensor out = sum_forward(x, mask).reshape(reduced_shape(x, mask, keepdim));
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    Shape keep = reduced_shape(x, mask, true);
    attach_grad_fn(out, "sum", {x}, [in_shape, keep](const Tensor& g) -> std::vector<Tensor> {
      return {g.reshape(keep).expand(in_shape)};
    });
  }
  return out;
}

Tensor sum(const Tensor& x) {
  std::vector<int64_t> all(static_cast<std::size_t>(x.dim()));
  for (int64_t i = 0; i < x.dim(); ++i) all[i] = i;
  return sum(x, all, false);
}

std::vector<Tensor> column_sums_batched(const std::vector<Tensor>& x) {
#if defined(GRADLENS_HAVE_CUDA)
  if (x.size() > 1 && cuda_ops::uniform_matrix_batch(x) &&
      std::none_of(x.begin(), x.end(), [](const Tensor& t) { return needs_grad({&t}); }))
    return cuda_ops::column_sums_batched(x);
#endif
  std::vector<Tensor> out;
  out.reserve(x.size());
  for (const Tensor& t : x) out.push_back(sum(t, {0}));
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<bool> mask = reduced_mask(x, dims, "mean");
  int64_t count = 1;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (mask[i]) count *= x.shape()[i];
  GL_CHECK(count > 0, "mean: reducing {} over an empty dim", x.str());
  return mul(sum(x, dims, keepdim), 1.0 / double(count));
}

Tensor mean(const Tensor& x) {
  GL_CHECK(x.numel() > 0, "mean: empty tensor {}", x.str());
  return mul(sum(x), 1.0 / double(x.numel()));
}

namespace {
// Moves `dim` last and returns a contiguous [rows, n] view plus the permutation used.
Tensor dim_last(const Tensor& x, int64_t d, std::vector<int64_t>& perm) {
  perm.clear();
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) perm.push_back(i);
  perm.push_back(d);
  return x.detach().permute(perm).contiguous();
}

// Index of the largest entry of each row of a contiguous [rows, n] block (the first on ties;
// a NaN wins so it propagates).
std::vector<int64_t> row_argmax(const Tensor& xl, int64_t rows, int64_t n, const char* op) {
  std::vector<int64_t> idx(static_cast<std::size_t>(rows));
  detail::dispatch_float(xl.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(xl.raw_data());
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * n;
      int64_t best = 0;
      for (int64_t i = 1; i < n; ++i)
        if (row[i] > row[best] || (std::isnan(double(row[i])) && !std::isnan(double(row[best]))))
          best = i;
      idx[r] = best;
    }
    return 0;
  });
  return idx;
}
}  // namespace

#if defined(GRADLENS_HAVE_CUDA)
namespace {
// max/argmax on a CUDA tensor: the same dim-last layout as the CPU, one row argmax kernel.
Tensor max_cuda(const Tensor& x, int64_t dim, bool keepdim, bool want_values) {
  const char* op = want_values ? "max" : "argmax";
  cuda_ops::check_device_float(x, op);
  GL_CHECK(x.dim() > 0, "{}: tensor {} has no dims", op, x.str());
  int64_t d = wrap_dim(dim, x.dim(), op);
  int64_t n = x.shape()[d];
  GL_CHECK(n > 0, "{}: dim {} of {} is empty", op, d, x.str());
  std::vector<int64_t> perm;
  Tensor xl = dim_last(x, d, perm);
  int64_t rows = xl.numel() / n;
  Shape keep = x.shape();
  keep[d] = 1;
  Tensor vals, idx;
  cuda_ops::max_rows(xl, rows, n, want_values ? &vals : nullptr, idx);
  Tensor out = (want_values ? vals : idx).reshape(keep);
  Tensor result = keepdim ? out : out.squeeze(d);
  if (want_values && needs_grad({&x})) {
    DType dt = x.dtype();
    Shape lshape = xl.shape();
    attach_grad_fn(result, "max", {x},
                   [=](const Tensor& g) -> std::vector<Tensor> {
                     Tensor gl_ = cuda_ops::scatter_rows(g.contiguous().to(dt), idx, lshape);
                     std::vector<int64_t> inv(perm.size());
                     for (std::size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = int64_t(i);
                     return {gl_.permute(inv)};
                   },
                   {x.shape()});
  }
  return result;
}
}  // namespace
#endif

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) return max_cuda(x, dim, keepdim, true);
#endif
  detail::check_float_cpu(x, "max");
  GL_CHECK(x.dim() > 0, "max: tensor {} has no dims", x.str());
  int64_t d = wrap_dim(dim, x.dim(), "max");
  int64_t n = x.shape()[d];
  GL_CHECK(n > 0, "max: dim {} of {} is empty", d, x.str());
  std::vector<int64_t> perm;
  Tensor xl = dim_last(x, d, perm);
  int64_t rows = xl.numel() / n;
  Shape keep = x.shape();
  keep[d] = 1;
  Tensor out = Tensor::empty(keep, x.dtype());
  auto idx = std::make_shared<std::vector<int64_t>>(row_argmax(xl, rows, n, "max"));
  // out (keepdim) has the same row order as xl since only a size-1 dim moved.
  detail::dispatch_float(x.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(xl.raw_data());
    T* o = static_cast<T*>(out.raw_data());
    for (int64_t r = 0; r < rows; ++r) o[r] = p[r * n + (*idx)[r]];
    return 0;
  });
  Tensor result = keepdim ? out : out.squeeze(d);
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    DType dt = x.dtype();
    Shape lshape = xl.shape();
    attach_grad_fn(result, "max", {x},
                   [=](const Tensor& g) -> std::vector<Tensor> {
                     Tensor gl_ = Tensor::zeros(lshape, dt);
                     Tensor gc = g.contiguous().to(dt);
                     detail::dispatch_float(dt, "max_backward", [&](auto tag) {
                       using T = decltype(tag);
                       T* gp = static_cast<T*>(gl_.raw_data());
                       const T* gv = static_cast<const T*>(gc.raw_data());
                       for (int64_t r = 0; r < rows; ++r) gp[r * n + (*idx)[r]] = gv[r];
                       return 0;
                     });
                     std::vector<int64_t> inv(perm.size());
                     for (std::size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = int64_t(i);
                     return {gl_.permute(inv)};
                   },
                   {x.shape()});
  }
  return result;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) return max_cuda(x, dim, keepdim, false);
#endif
  detail::check_float_cpu(x, "argmax");
  GL_CHECK(x.dim() > 0, "argmax: tensor {} has no dims", x.str());
  int64_t d = wrap_dim(dim, x.dim(), "argmax");
  int64_t n = x.shape()[d];
  GL_CHECK(n > 0, "argmax: dim {} of {} is empty", d, x.str());
  std::vector<int64_t> perm;
  Tensor xl = dim_last(x, d, perm);
  int64_t rows = xl.numel() / n;
  Shape keep = x.shape();
  keep[d] = 1;
  Tensor out = Tensor::empty(keep, DType::i64);
  std::vector<int64_t> idx = row_argmax(xl, rows, n, "argmax");
  std::copy(idx.begin(), idx.end(), out.data<int64_t>());
  return keepdim ? out : out.squeeze(d);
}

}  // namespace gl
