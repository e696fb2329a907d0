// layers.cpp: Linear, Activation, BatchNorm1d, Dropout, Flatten and Sequential.
#include "models/layers.h"

#include <cmath>

namespace gl::models {

namespace {
const char* py_bool(bool b) {
  return b ? "True" : "False";
}
}  // namespace

// ---------------------------------------------------------------- Linear
Linear::Linear(int64_t in_features, int64_t out_features, bool bias, DType dtype)
    : in_(in_features), out_(out_features) {
  GL_CHECK(in_features > 0 && out_features > 0,
           "Linear: in_features {} and out_features {} must be positive", in_features,
           out_features);
  GL_CHECK(is_floating(dtype), "Linear: dtype {} is not floating point", dtype_name(dtype));
  weight_ = &register_parameter("weight", Tensor::zeros({out_, in_}, dtype));
  if (bias) bias_ = &register_parameter("bias", Tensor::zeros({out_}, dtype));
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_, out_, py_bool(bias_));
}

void Linear::reset_parameters(Generator& gen) {
  double bound = 1.0 / std::sqrt(double(in_));
  weight_->copy_(Tensor::rand(weight_->shape(), gen, weight_->dtype(), -bound, bound));
  if (bias_) bias_->copy_(Tensor::rand(bias_->shape(), gen, bias_->dtype(), -bound, bound));
}

Tensor Linear::forward_impl(const Tensor& x) {
  GL_CHECK(x.defined() && x.dim() >= 1 && x.shape().back() == in_,
           "Linear({} -> {}): input {} must have {} features in its last dim", in_, out_,
           x.defined() ? x.str() : "undefined", in_);
  const Tensor& b = bias_ ? *bias_ : none_;
  if (x.dim() == 2) return linear(x, *weight_, b);
  // [*, in] -> [rows, in] -> [*, out], as nn.Linear accepts any leading dims.
  Shape out_shape = x.shape();
  out_shape.back() = out_;
  Tensor y = linear(x.reshape({-1, in_}), *weight_, b);
  return y.reshape(out_shape);
}

// ---------------------------------------------------------------- Activation
Activation::Activation(ActivationKind act, double leaky_slope) : act_(act), slope_(leaky_slope) {
  GL_CHECK(std::isfinite(leaky_slope), "Activation: leaky slope {} is not finite", leaky_slope);
}

std::string Activation::kind() const {
  switch (act_) {
    case ActivationKind::identity:
      return "Identity";
    case ActivationKind::relu:
      return "ReLU";
    case ActivationKind::leaky_relu:
      return "LeakyReLU";
    case ActivationKind::tanh:
      return "Tanh";
    case ActivationKind::sigmoid:
      return "Sigmoid";
    case ActivationKind::gelu:
    case ActivationKind::gelu_tanh:
      return "GELU";
    case ActivationKind::silu:
      return "SiLU";
  }
  return "Activation";
}

std::string Activation::extra_repr() const {
  if (act_ == ActivationKind::leaky_relu) return fmt::format("negative_slope={}", slope_);
  if (act_ == ActivationKind::gelu_tanh) return "approximate='tanh'";
  return "";
}

Tensor Activation::forward_impl(const Tensor& x) {
  return activate(x, act_, slope_);
}

// ---------------------------------------------------------------- BatchNorm1d
BatchNorm1d::BatchNorm1d(int64_t num_features, double eps, double momentum, bool affine,
                         DType dtype)
    : features_(num_features), eps_(eps), momentum_(momentum), affine_(affine) {
  GL_CHECK(num_features > 0, "BatchNorm1d: num_features {} must be positive", num_features);
  GL_CHECK(eps > 0, "BatchNorm1d: eps {} must be positive", eps);
  GL_CHECK(momentum >= 0 && momentum <= 1, "BatchNorm1d: momentum {} outside [0, 1]", momentum);
  GL_CHECK(is_floating(dtype), "BatchNorm1d: dtype {} is not floating point", dtype_name(dtype));
  if (affine) {
    weight_ = &register_parameter("weight", Tensor::ones({features_}, dtype));
    bias_ = &register_parameter("bias", Tensor::zeros({features_}, dtype));
  }
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({features_}, dtype));
  running_var_ = &register_buffer("running_var", Tensor::ones({features_}, dtype));
  num_batches_tracked_ = &register_buffer("num_batches_tracked", Tensor::zeros({}, DType::i64));
}

std::string BatchNorm1d::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats=True", features_,
                     eps_, momentum_, py_bool(affine_));
}

void BatchNorm1d::reset_parameters() {
  if (affine_) {
    weight_->fill_(1.0);
    bias_->fill_(0.0);
  }
  running_mean_->fill_(0.0);
  running_var_->fill_(1.0);
  num_batches_tracked_->fill_(0.0);
}

namespace {
// r = (1 - m) r + m * s * scale, on the raw data of contiguous [C] buffers.
template <class T>
void blend_into(const Tensor& running, const Tensor& stat, double m, double scale) {
  T* r = running.data<T>();
  Tensor s = stat.contiguous();
  const T* sp = s.data<T>();
  int64_t n = running.numel();
  for (int64_t i = 0; i < n; ++i) r[i] = T((1.0 - m) * double(r[i]) + m * scale * double(sp[i]));
}
}  // namespace

Tensor BatchNorm1d::forward_impl(const Tensor& x) {
  GL_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 3) && x.shape()[1] == features_,
           "BatchNorm1d({}): input {} must be [N, {}] or [N, {}, L]", features_,
           x.defined() ? x.str() : "undefined", features_, features_);
  GL_CHECK(x.dtype() == running_mean_->dtype(),
           "BatchNorm1d({}): input dtype {} differs from the module's {}", features_,
           dtype_name(x.dtype()), dtype_name(running_mean_->dtype()));
  bool three_d = x.dim() == 3;
  std::vector<int64_t> dims = three_d ? std::vector<int64_t>{0, 2} : std::vector<int64_t>{0};
  // Per-channel tensors broadcast against x as [C] (2-D) or [C, 1] (3-D).
  auto per_channel = [&](const Tensor& t) { return three_d ? t.reshape({features_, 1}) : t; };
  int64_t count = x.shape()[0] * (three_d ? x.shape()[2] : 1);

  Tensor y;
  if (is_training()) {
    GL_CHECK(count > 1,
             "BatchNorm1d({}): expected more than 1 value per channel when training, got input {}",
             features_, x.str());
    Tensor mu = mean(x, dims, /*keepdim=*/true);
    Tensor xc = x - mu;
    Tensor var = mean(xc * xc, dims, /*keepdim=*/true);  // biased: normalizes the batch
    y = xc * pow(var + eps_, -0.5);
    {
      NoGrad no_grad;
      double unbias = double(count) / double(count - 1);
      if (x.dtype() == DType::f32) {
        blend_into<float>(*running_mean_, mu.detach(), momentum_, 1.0);
        blend_into<float>(*running_var_, var.detach(), momentum_, unbias);
      } else {
        blend_into<double>(*running_mean_, mu.detach(), momentum_, 1.0);
        blend_into<double>(*running_var_, var.detach(), momentum_, unbias);
      }
      num_batches_tracked_->data<int64_t>()[0] += 1;
    }
    if (affine_) y = y * per_channel(*weight_) + per_channel(*bias_);
    return y;
  }
  // Eval: one scale and shift per channel, then a single pass over x.
  Tensor scale, shift;
  {
    NoGrad no_grad;
    scale = pow(*running_var_ + eps_, -0.5);
    shift = neg(*running_mean_ * scale);
  }
  if (affine_) {
    Tensor s = scale * *weight_;
    return x * per_channel(s) + per_channel(shift * *weight_ + *bias_);
  }
  return x * per_channel(scale) + per_channel(shift);
}

// ---------------------------------------------------------------- Dropout
Dropout::Dropout(double p) : p_(p) {
  GL_CHECK(p >= 0.0 && p < 1.0, "Dropout: probability {} outside [0, 1)", p);
}

std::string Dropout::extra_repr() const {
  return fmt::format("p={}, inplace=False", p_);
}

Tensor Dropout::forward_impl(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  GL_CHECK(gen_ != nullptr,
           "Dropout(p={}): no generator set; call set_generator or set_dropout_generator", p_);
  return dropout(x, p_, *gen_, true);
}

void set_dropout_generator(Module& root, Generator* gen) {
  for (auto& [name, m] : root.named_modules())
    if (auto* d = dynamic_cast<Dropout*>(m)) d->set_generator(gen);
}

// ---------------------------------------------------------------- Flatten
std::string Flatten::extra_repr() const {
  return fmt::format("start_dim={}, end_dim={}", start_, end_);
}

Tensor Flatten::forward_impl(const Tensor& x) {
  return x.flatten(start_, end_);
}

// ---------------------------------------------------------------- Sequential
void Sequential::append(std::unique_ptr<Module> m) {
  Module* raw = m.get();
  add_child(std::to_string(layers_.size()), std::move(m));
  layers_.push_back(raw);
}

Module& Sequential::operator[](std::size_t i) const {
  GL_CHECK(i < layers_.size(), "Sequential: index {} out of range for {} layers", i,
           layers_.size());
  return *layers_[i];
}

Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor h = x;
  for (Module* layer : layers_) h = layer->forward(h);
  return h;
}

}  // namespace gl::models
