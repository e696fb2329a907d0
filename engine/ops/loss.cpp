// loss.cpp: softmax, log_softmax, fused cross-entropy, nll_loss, mse_loss.
#include <cmath>
#include <limits>
#include <utility>

#include "engine/ops.h"
#include "engine/ops/map.h"

namespace gl {

namespace {
// Row-wise (log-)softmax of a contiguous [rows, n] block, max-subtracted for stability.
template <class T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t n, bool log_form) {
  auto row = [&](int64_t r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) m = xr[i] > m ? xr[i] : m;
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(double(xr[i] - m));
    if (log_form) {
      T lse = T(std::log(s)) + m;
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] - lse;
    } else {
      for (int64_t i = 0; i < n; ++i) yr[i] = T(std::exp(double(xr[i] - m)) / s);
    }
  };
  loops::parallel_for(rows, rows * n, row);
}

// Applies softmax_rows along `dim` of x, returning a tensor of x's shape.
Tensor softmax_along(const Tensor& x, int64_t dim, bool log_form, const char* op) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x))
    cuda_ops::check_device_float(x, op);
  else
#endif
    detail::check_float_cpu(x, op);
  GL_CHECK(x.dim() > 0, "{}: tensor {} has no dims", op, x.str());
  int64_t d = wrap_dim(dim, x.dim(), op);
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) perm.push_back(i);
  perm.push_back(d);
  std::vector<int64_t> inv(perm.size());
  for (std::size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = int64_t(i);
  Tensor xl = x.detach().permute(perm).contiguous();
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) return cuda_ops::softmax_rows(xl, log_form).permute(inv).contiguous();
#endif
  Tensor yl = Tensor::empty(xl.shape(), x.dtype());
  int64_t n = x.shape()[d];
  int64_t rows = n == 0 ? 0 : xl.numel() / n;
  detail::dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    softmax_rows<T>(static_cast<const T*>(xl.raw_data()), static_cast<T*>(yl.raw_data()), rows, n,
                    log_form);
    return 0;
  });
  return yl.permute(inv).contiguous();
}

void check_label_shapes(const Tensor& scores, const Tensor& labels, const char* op) {
  GL_CHECK(scores.dim() == 2, "{}: expected [N, C] scores, got {}", op, scores.str());
  GL_CHECK(labels.defined() && labels.dtype() == DType::i64 && labels.dim() == 1,
           "{}: labels must be i64 [N], got {}", op, labels.str());
  GL_CHECK(labels.shape()[0] == scores.shape()[0], "{}: {} labels for {} rows of scores {}", op,
           labels.shape()[0], scores.shape()[0], scores.str());
  GL_CHECK(scores.shape()[0] > 0, "{}: empty batch", op);
}

void check_labels(const Tensor& scores, const Tensor& labels, const char* op) {
  check_label_shapes(scores, labels, op);
  Tensor lc = labels.contiguous();
  const int64_t* l = lc.data<int64_t>();
  int64_t C = scores.shape()[1];
  for (int64_t i = 0; i < lc.numel(); ++i)
    GL_CHECK(l[i] >= 0 && l[i] < C, "{}: label {} at row {} outside [0, {})", op, l[i], i, C);
}
#if defined(GRADLENS_HAVE_CUDA)
// Labels for a CUDA loss: range-checked on the host when they live there, then moved to the
// scores' device. Labels already on the device are not read back (no synchronization inside
// a training step); a bad one there makes the loss NaN (softmax_xent.h).
Tensor device_labels(const Tensor& scores, const Tensor& labels, const char* op) {
  check_label_shapes(scores, labels, op);
  if (labels.device().is_cpu()) {
    check_labels(scores, labels, op);
    return labels.contiguous().to(scores.device());
  }
  GL_CHECK(labels.device() == scores.device(), "{}: scores {} on {} but labels {} on {}", op,
           scores.str(), scores.device().str(), labels.str(), labels.device().str());
  return labels.contiguous();
}

Tensor cross_entropy_cuda(const Tensor& logits, const Tensor& labels) {
  cuda_ops::check_device_float(logits, "cross_entropy");
  Tensor lab = device_labels(logits, labels, "cross_entropy");
  Tensor xc = logits.detach().contiguous();
  Tensor out = cuda_ops::xent_forward(xc, lab);
  if (needs_grad({&logits})) {
    attach_grad_fn(out, "cross_entropy", {logits},
                   [xc, lab](const Tensor& g) -> std::vector<Tensor> {
                     // The kernel's gradient for an upstream 1, scaled by g on the device (no
                     // g.item()).
                     return {mul(cuda_ops::xent_backward(xc, lab), g)};
                   },
                   {xc.shape()});
  }
  return out;
}
#endif
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  Tensor out = softmax_along(x, dim, false, "softmax");
  if (needs_grad({&x})) {
    Tensor y = out.detach();
    attach_grad_fn(out, "softmax", {x},
                   [y, dim](const Tensor& g) -> std::vector<Tensor> {
                     // dx = y * (g - sum(g * y))
                     return {mul(y, sub(g, sum(mul(g, y), {dim}, true)))};
                   },
                   {x.shape()});
  }
  return out;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  Tensor out = softmax_along(x, dim, true, "log_softmax");
  if (needs_grad({&x})) {
    Tensor y = out.detach();
    attach_grad_fn(out, "log_softmax", {x},
                   [y, dim](const Tensor& g) -> std::vector<Tensor> {
                     // dx = g - softmax * sum(g)
                     return {sub(g, mul(exp(y), sum(g, {dim}, true)))};
                   },
                   {x.shape()});
  }
  return out;
}

namespace {
// The CPU cross-entropy: the mean loss, and the softmax probabilities backward starts from.
struct XentCpu {
  Tensor loss, probs, labels;
  int64_t N, C;
};

XentCpu xent_forward_cpu(const Tensor& logits, const Tensor& labels) {
  detail::check_float_cpu(logits, "cross_entropy");
  check_labels(logits, labels, "cross_entropy");
  int64_t N = logits.shape()[0], C = logits.shape()[1];
  Tensor xc = logits.detach().contiguous();
  Tensor probs = Tensor::empty({N, C}, logits.dtype());
  Tensor lc = labels.contiguous();
  const int64_t* l = lc.data<int64_t>();
  double total = 0;
  detail::dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(xc.raw_data());
    T* p = static_cast<T*>(probs.raw_data());
    softmax_rows<T>(x, p, N, C, /*log_form=*/true);  // p holds log-probabilities here
    for (int64_t r = 0; r < N; ++r) total -= double(p[r * C + l[r]]);
    for (int64_t i = 0; i < N * C; ++i) p[i] = T(std::exp(double(p[i])));
    return 0;
  });
  return {Tensor::scalar(total / double(N), logits.dtype()), probs, lc, N, C};
}

// d loss / d logits = (softmax - onehot) * g / N, computed in place in `d` (the probabilities).
Tensor xent_backward_cpu(Tensor d, const Tensor& lc, int64_t N, int64_t C, double g) {
  const int64_t* lp = lc.data<int64_t>();
  double scale = g / double(N);
  detail::dispatch_float(d.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    T* dp = static_cast<T*>(d.raw_data());
    for (int64_t r = 0; r < N; ++r) dp[r * C + lp[r]] -= T(1);
    for (int64_t i = 0; i < N * C; ++i) dp[i] *= T(scale);
    return 0;
  });
  return d;
}
}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(logits)) return cross_entropy_cuda(logits, labels);
#endif
  XentCpu x = xent_forward_cpu(logits, labels);
  if (needs_grad({&logits})) {
    attach_grad_fn(
        x.loss, "cross_entropy", {logits},
        [probs = x.probs, lc = x.labels, N = x.N, C = x.C](const Tensor& g) -> std::vector<Tensor> {
          return {xent_backward_cpu(probs.clone(), lc, N, C, g.item())};
        },
        {x.probs.shape()});
  }
  return x.loss;
}

std::pair<Tensor, Tensor> cross_entropy_and_grad(const Tensor& logits, const Tensor& labels) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(logits)) {
    // The kernels cross_entropy and its backward run; the tape's gradient is this one times an
    // upstream 1, which changes no bit.
    cuda_ops::check_device_float(logits, "cross_entropy");
    Tensor lab = device_labels(logits, labels, "cross_entropy");
    Tensor xc = logits.detach().contiguous();
    return {cuda_ops::xent_forward(xc, lab), cuda_ops::xent_backward(xc, lab)};
  }
#endif
  XentCpu x = xent_forward_cpu(logits, labels);
  return {x.loss, xent_backward_cpu(x.probs, x.labels, x.N, x.C, 1.0)};
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> cross_entropy_and_grad_batched(
    const std::vector<Tensor>& logits, const Tensor& labels) {
#if defined(GRADLENS_HAVE_CUDA)
  if (logits.size() > 1 && cuda_ops::uniform_matrix_batch(logits)) {
    Tensor lab = device_labels(logits[0], labels, "cross_entropy");
    std::vector<Tensor> detached;
    detached.reserve(logits.size());
    for (const Tensor& t : logits) detached.push_back(t.detach());
    return cuda_ops::xent_batched(detached, lab);
  }
#endif
  std::pair<std::vector<Tensor>, std::vector<Tensor>> out;
  for (const Tensor& t : logits) {
    auto [loss, grad] = cross_entropy_and_grad(t, labels);
    out.first.push_back(std::move(loss));
    out.second.push_back(std::move(grad));
  }
  return out;
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& labels) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(log_probs)) {  // -mean(log_probs[r, labels[r]]) by composition
    cuda_ops::check_device_float(log_probs, "nll_loss");
    Tensor lab = device_labels(log_probs, labels, "nll_loss");
    return neg(mean(gather(log_probs, 1, lab.unsqueeze(1))));
  }
#endif
  detail::check_float_cpu(log_probs, "nll_loss");
  check_labels(log_probs, labels, "nll_loss");
  int64_t N = log_probs.shape()[0];
  Tensor lc = labels.contiguous();
  const int64_t* l = lc.data<int64_t>();
  double total = 0;
  for (int64_t r = 0; r < N; ++r) total -= log_probs.at({r, l[r]});
  Tensor out = Tensor::scalar(total / double(N), log_probs.dtype());
  if (needs_grad({&log_probs})) {
    Shape s = log_probs.shape();
    DType dt = log_probs.dtype();
    attach_grad_fn(out, "nll_loss", {log_probs},
                   [s, dt, lc, N](const Tensor& g) -> std::vector<Tensor> {
                     Tensor d = Tensor::zeros(s, dt);
                     const int64_t* lp = lc.data<int64_t>();
                     double v = -g.item() / double(N);
                     for (int64_t r = 0; r < N; ++r) d.set_at({r, lp[r]}, v);
                     return {d};
                   });
  }
  return out;
}

Tensor mse_loss(const Tensor& a, const Tensor& b) {
  GL_CHECK(a.shape() == b.shape(), "mse_loss: shapes {} and {} differ", shape_str(a.shape()),
           shape_str(b.shape()));
  Tensor d = sub(a, b);
  return mean(mul(d, d));
}

}  // namespace gl
