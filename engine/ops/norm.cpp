// norm.cpp: batch normalization over the channel dim 1 of [N, C], [N, C, L] or [N, C, H, W],
// composed of differentiable ops (mean, mul, pow), so its backward is theirs, on the CPU and on
// CUDA alike (the running buffers live on the input's device). Training
// normalizes with the batch mean and biased variance and moves the running estimates by
// r = (1 - momentum) r + momentum * stat (unbiased variance), PyTorch's rule; evaluation
// normalizes with the running estimates in one scale-and-shift pass.
#include "engine/ops.h"
#include "engine/ops/map.h"

namespace gl {

namespace {
// r = (1 - m) r + m * s * scale for the [C] running buffer r and the batch statistic s
// (keepdim-shaped). On the CPU in double on the raw data; on a device with its elementwise ops
// (f32, no host synchronization).
template <class T>
void blend_into(const Tensor& running, const Tensor& stat, double m, double scale) {
  if (detail::on_cuda(running)) {
    NoGrad no_grad;
    running.copy_(add(mul(running, 1.0 - m), mul(stat.reshape({running.numel()}), m * scale)));
    return;
  }
  T* r = running.data<T>();
  Tensor s = stat.contiguous();
  const T* sp = s.data<T>();
  int64_t n = running.numel();
  for (int64_t i = 0; i < n; ++i) r[i] = T((1.0 - m) * double(r[i]) + m * scale * double(sp[i]));
}

void check_channel_vector(const Tensor& t, int64_t c, const Tensor& x, const char* what) {
  if (!t.defined()) return;
  GL_CHECK(t.dim() == 1 && t.size(0) == c, "batch_norm: {} {} must be [{}] for input {}", what,
           t.str(), c, x.str());
  detail::check_same_dtype(x, t, "batch_norm");
}
}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  double momentum, double eps) {
  GL_CHECK(x.defined() && x.dim() >= 2 && x.dim() <= 4,
           "batch_norm: input {} must be [N, C], [N, C, L] or [N, C, H, W]",
           x.defined() ? x.str() : "undefined");
  const int64_t c = x.size(1);
  check_channel_vector(weight, c, x, "weight");
  check_channel_vector(bias, c, x, "bias");
  check_channel_vector(running_mean, c, x, "running_mean");
  check_channel_vector(running_var, c, x, "running_var");
  GL_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm: give both running_mean and running_var or neither");
  GL_CHECK(weight.defined() == bias.defined(), "batch_norm: give both weight and bias or neither");
  GL_CHECK(eps > 0, "batch_norm: eps {} must be positive", eps);
  std::vector<int64_t> dims{0};
  Shape channel_shape{c};  // broadcasts against x
  for (int64_t d = 2; d < x.dim(); ++d) {
    dims.push_back(d);
    channel_shape.push_back(1);
  }
  auto per_channel = [&](const Tensor& t) { return t.reshape(channel_shape); };
  const int64_t count = x.numel() / std::max<int64_t>(c, 1);

  if (training || !running_mean.defined()) {
    GL_CHECK(count > 1,
             "batch_norm: expected more than 1 value per channel when training, got input {}",
             x.str());
    Tensor mu = mean(x, dims, /*keepdim=*/true);
    Tensor xc = x - mu;
    Tensor var = mean(xc * xc, dims, /*keepdim=*/true);  // biased: normalizes the batch
    Tensor y = xc * pow(var + eps, -0.5);
    if (training && running_mean.defined()) {
      NoGrad no_grad;
      double unbias = double(count) / double(count - 1);
      detail::dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
        using T = decltype(tag);
        blend_into<T>(running_mean, mu.detach(), momentum, 1.0);
        blend_into<T>(running_var, var.detach(), momentum, unbias);
        return 0;
      });
    }
    if (weight.defined()) y = y * per_channel(weight) + per_channel(bias);
    return y;
  }
  // Evaluation: one scale and shift per channel, then a single pass over x.
  Tensor scale, shift;
  {
    NoGrad no_grad;
    scale = pow(running_var + eps, -0.5);
    shift = neg(running_mean * scale);
  }
  if (weight.defined()) return x * per_channel(scale * weight) + per_channel(shift * weight + bias);
  return x * per_channel(scale) + per_channel(shift);
}

}  // namespace gl
