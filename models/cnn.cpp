// cnn.cpp: validation and construction of CNNs in PyTorch's nn.Sequential layout.
#include "models/cnn.h"

#include <algorithm>
#include <cmath>

namespace gl::models {

namespace {
Conv2dOptions conv_options(const CnnConfig& c) {
  Conv2dOptions o;
  o.kernel = {c.kernel, c.kernel};
  o.padding = {c.effective_padding(), c.effective_padding()};
  o.bias = hidden_layer_bias(c.batchnorm, c.bias_before_batchnorm);
  return o;
}
}  // namespace

void CnnConfig::validate() const {
  GL_CHECK(in_channels > 0 && height > 0 && width > 0, "CNN: input {}x{}x{} must be positive",
           in_channels, height, width);
  GL_CHECK(!channels.empty(), "CNN: no conv stages; give at least one channel count");
  for (std::size_t i = 0; i < channels.size(); ++i)
    GL_CHECK(channels[i] > 0, "CNN: conv stage {} has {} channels; counts must be positive", i,
             channels[i]);
  for (std::size_t i = 0; i < fc.size(); ++i)
    GL_CHECK(fc[i] > 0, "CNN: fc layer {} has width {}; widths must be positive", i, fc[i]);
  GL_CHECK(kernel >= 1, "CNN: kernel {} must be positive", kernel);
  // Beyond the image a kernel sees only padding (and its weights would be allocated for
  // feature_shape's trial layers).
  GL_CHECK(kernel <= std::max(height, width), "CNN: kernel {} is larger than the {}x{} input",
           kernel, height, width);
  GL_CHECK(padding >= -1, "CNN: padding {} must be >= 0 (or -1 for kernel / 2)", padding);
  GL_CHECK(pool >= 0, "CNN: pool {} must be >= 0", pool);
  GL_CHECK(num_classes >= 2, "CNN: num_classes {} must be at least 2", num_classes);
  GL_CHECK(dropout >= 0.0 && dropout < 1.0, "CNN: dropout {} outside [0, 1)", dropout);
  GL_CHECK(std::isfinite(leaky_slope), "CNN: leaky_slope {} is not finite", leaky_slope);
  const auto f = feature_shape();
  int64_t flat = 0;
  GL_CHECK(!__builtin_mul_overflow(f[0], f[1], &flat) && !__builtin_mul_overflow(flat, f[2], &flat),
           "CNN: the flattened features {}x{}x{} number more than fit in 64 bits", f[0], f[1],
           f[2]);
}

std::array<int64_t, 3> CnnConfig::feature_shape() const {
  std::array<int64_t, 2> hw{height, width};
  Conv2dOptions o = conv_options(*this);
  int64_t prev = in_channels;
  for (std::size_t i = 0; i < channels.size(); ++i) {
    try {
      hw = conv2d_output_size(o, hw, fmt::format("Conv2d({} -> {})", prev, channels[i]));
      if (pool > 0) hw = MaxPool2d({pool, pool}).output_size(hw);
    } catch (const Error& e) {
      throw Error(fmt::format("CNN: input {}x{}x{} is too small for conv stage {}: {}", in_channels,
                              height, width, i, e.what()));
    }
    prev = channels[i];
  }
  return {prev, hw[0], hw[1]};
}

CNN::CNN(const CnnConfig& config, DType dtype) : config_(config) {
  config_.validate();
  Conv2dOptions o = conv_options(config_);
  int64_t prev = config_.in_channels;
  int64_t layer = 0;
  auto add_tap = [&](LayerTap tap, Module* pre, auto make_bn, int64_t width) {
    tap.layer = layer++;
    tap.pre = pre;
    if (config_.batchnorm) {
      tap.batchnorm = make_bn(width);
      tap.pre = tap.batchnorm;
    }
    tap.pre_name = std::to_string(size() - 1);
    tap.post = emplace<Activation>(config_.activation, config_.leaky_slope);
    tap.post_name = std::to_string(size() - 1);
    return tap;
  };
  for (int64_t c : config_.channels) {
    LayerTap tap;
    try {
      tap.conv = emplace<Conv2d>(prev, c, o, dtype);
    } catch (const Error& e) {
      throw Error(fmt::format("CNN: conv stage {} ({} -> {} channels): {}", taps_.size(), prev, c,
                              e.what()));
    }
    tap = add_tap(
        tap, tap.conv, [&](int64_t w) { return emplace<BatchNorm2d>(w, 1e-5, 0.1, true, dtype); },
        c);
    if (config_.pool > 0) emplace<MaxPool2d>(std::array<int64_t, 2>{config_.pool, config_.pool});
    taps_.push_back(tap);
    prev = c;
  }
  auto feat = config_.feature_shape();
  emplace<Flatten>(1, -1);
  prev = feat[0] * feat[1] * feat[2];  // checked by validate()
  for (int64_t w : config_.fc) {
    LayerTap tap;
    try {
      tap.linear = emplace<Linear>(prev, w, o.bias, dtype);
    } catch (const Error& e) {
      throw Error(fmt::format("CNN: fc layer {} ({} -> {}): {}",
                              taps_.size() - config_.channels.size(), prev, w, e.what()));
    }
    tap = add_tap(
        tap, tap.linear,
        [&](int64_t width) { return emplace<BatchNorm1d>(width, 1e-5, 0.1, true, dtype); }, w);
    if (config_.dropout > 0.0) tap.dropout = emplace<Dropout>(config_.dropout);
    taps_.push_back(tap);
    prev = w;
  }
  output_ = emplace<Linear>(prev, config_.num_classes, true, dtype);
}

Tensor CNN::forward_impl(const Tensor& x) {
  const CnnConfig& c = config_;
  GL_CHECK(x.defined() && x.dim() == 4 && x.size(1) == c.in_channels && x.size(2) == c.height &&
               x.size(3) == c.width,
           "CNN: input {} must be [N, {}, {}, {}]", x.defined() ? x.str() : "undefined",
           c.in_channels, c.height, c.width);
  return Sequential::forward_impl(x);
}

std::unique_ptr<CNN> build_cnn(const CnnConfig& config, DType dtype) {
  return std::make_unique<CNN>(config, dtype);
}

}  // namespace gl::models
