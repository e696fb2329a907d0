// layers.cpp: Linear, Conv2d, Activation, BatchNorm1d/2d, pooling, Dropout, Flatten and
// Sequential.
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

// ---------------------------------------------------------------- BatchNorm
BatchNorm::BatchNorm(const char* kind, int64_t num_features, double eps, double momentum,
                     bool affine, DType dtype)
    : features_(num_features), eps_(eps), momentum_(momentum), affine_(affine) {
  GL_CHECK(num_features > 0, "{}: num_features {} must be positive", kind, num_features);
  GL_CHECK(eps > 0, "{}: eps {} must be positive", kind, eps);
  GL_CHECK(momentum >= 0 && momentum <= 1, "{}: momentum {} outside [0, 1]", kind, momentum);
  GL_CHECK(is_floating(dtype), "{}: dtype {} is not floating point", kind, dtype_name(dtype));
  if (affine) {
    weight_ = &register_parameter("weight", Tensor::ones({features_}, dtype));
    bias_ = &register_parameter("bias", Tensor::zeros({features_}, dtype));
  }
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({features_}, dtype));
  running_var_ = &register_buffer("running_var", Tensor::ones({features_}, dtype));
  num_batches_tracked_ = &register_buffer("num_batches_tracked", Tensor::zeros({}, DType::i64));
}

std::string BatchNorm::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats=True", features_,
                     eps_, momentum_, py_bool(affine_));
}

void BatchNorm::reset_parameters() {
  if (affine_) {
    weight_->fill_(1.0);
    bias_->fill_(0.0);
  }
  running_mean_->fill_(0.0);
  running_var_->fill_(1.0);
  num_batches_tracked_->fill_(0.0);
}

Tensor BatchNorm::normalize(const Tensor& x, const char* layout) {
  GL_CHECK(x.defined() && x.dim() >= 2 && x.shape()[1] == features_,
           "{}({}): input {} must be {} with C = {}", kind(), features_,
           x.defined() ? x.str() : "undefined", layout, features_);
  GL_CHECK(x.dtype() == running_mean_->dtype(),
           "{}({}): input dtype {} differs from the module's {}", kind(), features_,
           dtype_name(x.dtype()), dtype_name(running_mean_->dtype()));
  GL_CHECK(!is_training() || x.numel() / features_ > 1,
           "{}({}): expected more than 1 value per channel when training, got input {}", kind(),
           features_, x.str());
  Tensor y = batch_norm(x, weight(), bias(), *running_mean_, *running_var_, is_training(),
                        momentum_, eps_);
  if (is_training()) num_batches_tracked_->data<int64_t>()[0] += 1;
  return y;
}

Tensor BatchNorm1d::forward_impl(const Tensor& x) {
  GL_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 3),
           "BatchNorm1d({}): input {} must be [N, {}] or [N, {}, L]", num_features(),
           x.defined() ? x.str() : "undefined", num_features(), num_features());
  return normalize(x, "[N, C] or [N, C, L]");
}

Tensor BatchNorm2d::forward_impl(const Tensor& x) {
  GL_CHECK(x.defined() && x.dim() == 4, "BatchNorm2d({}): input {} must be [N, {}, H, W]",
           num_features(), x.defined() ? x.str() : "undefined", num_features());
  return normalize(x, "[N, C, H, W]");
}

// ---------------------------------------------------------------- Conv2d
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, const Conv2dOptions& o, DType dtype)
    : in_(in_channels), out_(out_channels), opt_(o) {
  GL_CHECK(in_channels > 0 && out_channels > 0,
           "Conv2d: in_channels {} and out_channels {} must be positive", in_channels,
           out_channels);
  GL_CHECK(o.groups >= 1 && in_channels % o.groups == 0 && out_channels % o.groups == 0,
           "Conv2d({} -> {}): channels are not divisible by groups {}", in_channels, out_channels,
           o.groups);
  GL_CHECK(o.kernel[0] > 0 && o.kernel[1] > 0, "Conv2d: kernel ({}, {}) must be positive",
           o.kernel[0], o.kernel[1]);
  GL_CHECK(o.stride[0] > 0 && o.stride[1] > 0 && o.dilation[0] > 0 && o.dilation[1] > 0 &&
               o.padding[0] >= 0 && o.padding[1] >= 0,
           "Conv2d: stride ({}, {}), dilation ({}, {}) must be positive and padding ({}, {}) "
           "non-negative",
           o.stride[0], o.stride[1], o.dilation[0], o.dilation[1], o.padding[0], o.padding[1]);
  GL_CHECK(is_floating(dtype), "Conv2d: dtype {} is not floating point", dtype_name(dtype));
  weight_ = &register_parameter(
      "weight", Tensor::zeros({out_, in_ / o.groups, o.kernel[0], o.kernel[1]}, dtype));
  if (o.bias) bias_ = &register_parameter("bias", Tensor::zeros({out_}, dtype));
}

std::string Conv2d::extra_repr() const {
  std::string s = fmt::format("{}, {}, kernel_size=({}, {}), stride=({}, {})", in_, out_,
                              opt_.kernel[0], opt_.kernel[1], opt_.stride[0], opt_.stride[1]);
  if (opt_.padding[0] || opt_.padding[1])
    s += fmt::format(", padding=({}, {})", opt_.padding[0], opt_.padding[1]);
  if (opt_.dilation[0] != 1 || opt_.dilation[1] != 1)
    s += fmt::format(", dilation=({}, {})", opt_.dilation[0], opt_.dilation[1]);
  if (opt_.groups != 1) s += fmt::format(", groups={}", opt_.groups);
  if (!bias_) s += ", bias=False";
  return s;
}

void Conv2d::reset_parameters(Generator& gen) {
  double bound = 1.0 / std::sqrt(double(fan_in()));
  weight_->copy_(Tensor::rand(weight_->shape(), gen, weight_->dtype(), -bound, bound));
  if (bias_) bias_->copy_(Tensor::rand(bias_->shape(), gen, bias_->dtype(), -bound, bound));
}

std::array<int64_t, 2> conv2d_output_size(const Conv2dOptions& o, std::array<int64_t, 2> in,
                                          const std::string& layer) {
  std::array<int64_t, 2> span{}, padded{}, out{};
  for (int d = 0; d < 2; ++d)
    GL_CHECK(!__builtin_mul_overflow(o.dilation[d], o.kernel[d] - 1, &span[d]) &&
                 !__builtin_add_overflow(span[d], 1, &span[d]) &&
                 !__builtin_mul_overflow(o.padding[d], 2, &padded[d]) &&
                 !__builtin_add_overflow(in[d], padded[d], &padded[d]),
             "{}: kernel {}x{}, dilation {}x{} and padding {}x{} on a {}x{} input give sizes "
             "past 64 bits",
             layer, o.kernel[0], o.kernel[1], o.dilation[0], o.dilation[1], o.padding[0],
             o.padding[1], in[0], in[1]);
  for (int d = 0; d < 2; ++d) {
    GL_CHECK(span[d] <= padded[d], "{}: kernel {}x{} is larger than the padded input {}x{}", layer,
             o.kernel[0], o.kernel[1], padded[0], padded[1]);
    out[d] = (padded[d] - span[d]) / o.stride[d] + 1;
  }
  return out;
}

std::array<int64_t, 2> Conv2d::output_size(std::array<int64_t, 2> in) const {
  return conv2d_output_size(opt_, in, fmt::format("Conv2d({} -> {})", in_, out_));
}

Tensor Conv2d::forward_impl(const Tensor& x) {
  GL_CHECK(x.defined() && x.dim() == 4 && x.shape()[1] == in_,
           "Conv2d({} -> {}): input {} must be [N, {}, H, W]", in_, out_,
           x.defined() ? x.str() : "undefined", in_);
  return conv2d(x, *weight_, bias(), {opt_.stride, opt_.padding, opt_.dilation, opt_.groups});
}

// ---------------------------------------------------------------- pooling
Pool2d::Pool2d(Mode mode, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
               std::array<int64_t, 2> padding)
    : mode_(mode), kernel_(kernel), stride_(stride), padding_(padding) {
  if (stride_[0] == 0 && stride_[1] == 0) stride_ = kernel_;
  GL_CHECK(kernel_[0] > 0 && kernel_[1] > 0 && stride_[0] > 0 && stride_[1] > 0,
           "{}: kernel ({}, {}) and stride ({}, {}) must be positive", kind(), kernel_[0],
           kernel_[1], stride_[0], stride_[1]);
  GL_CHECK(padding_[0] >= 0 && padding_[1] >= 0 && 2 * padding_[0] <= kernel_[0] &&
               2 * padding_[1] <= kernel_[1],
           "{}: padding ({}, {}) must be in [0, kernel / 2]", kind(), padding_[0], padding_[1]);
}

std::string Pool2d::extra_repr() const {
  return fmt::format("kernel_size=({}, {}), stride=({}, {}), padding=({}, {})", kernel_[0],
                     kernel_[1], stride_[0], stride_[1], padding_[0], padding_[1]);
}

std::array<int64_t, 2> Pool2d::output_size(std::array<int64_t, 2> in) const {
  std::array<int64_t, 2> out{};
  for (int d = 0; d < 2; ++d) {
    GL_CHECK(kernel_[d] <= in[d] + 2 * padding_[d],
             "{}: kernel {}x{} is larger than the padded input {}x{}", kind(), kernel_[0],
             kernel_[1], in[0] + 2 * padding_[0], in[1] + 2 * padding_[1]);
    out[d] = (in[d] + 2 * padding_[d] - kernel_[d]) / stride_[d] + 1;
  }
  return out;
}

Tensor Pool2d::forward_impl(const Tensor& x) {
  return mode_ == Mode::max ? max_pool2d(x, kernel_, stride_, padding_)
                            : avg_pool2d(x, kernel_, stride_, padding_);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(std::array<int64_t, 2> output_size) : size_(output_size) {
  GL_CHECK(size_[0] > 0 && size_[1] > 0, "AdaptiveAvgPool2d: output size ({}, {}) must be positive",
           size_[0], size_[1]);
}

std::string AdaptiveAvgPool2d::extra_repr() const {
  return fmt::format("output_size=({}, {})", size_[0], size_[1]);
}

Tensor AdaptiveAvgPool2d::forward_impl(const Tensor& x) {
  return adaptive_avg_pool2d(x, size_);
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
