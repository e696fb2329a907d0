// mlp.cpp: validation and construction of MLPs in PyTorch's nn.Sequential layout.
#include "models/mlp.h"

#include <cmath>

namespace gl::models {

MlpConfig MlpConfig::uniform(int64_t in_features, int64_t depth, int64_t width, int64_t num_classes,
                             ActivationKind activation) {
  GL_CHECK(depth >= 1, "MLP: depth {} must be at least 1 hidden layer", depth);
  GL_CHECK(width >= 1, "MLP: width {} must be positive", width);
  MlpConfig c;
  c.in_features = in_features;
  c.hidden.assign(std::size_t(depth), width);
  c.activation = activation;
  c.num_classes = num_classes;
  return c;
}

void MlpConfig::validate() const {
  GL_CHECK(in_features > 0, "MLP: in_features {} must be positive", in_features);
  GL_CHECK(!hidden.empty(), "MLP: depth 0 (no hidden layers); give at least one hidden width");
  for (std::size_t i = 0; i < hidden.size(); ++i)
    GL_CHECK(hidden[i] > 0, "MLP: hidden layer {} has width {}; widths must be positive", i,
             hidden[i]);
  GL_CHECK(num_classes >= 2, "MLP: num_classes {} must be at least 2", num_classes);
  GL_CHECK(dropout >= 0.0 && dropout < 1.0, "MLP: dropout {} outside [0, 1)", dropout);
  GL_CHECK(std::isfinite(leaky_slope), "MLP: leaky_slope {} is not finite", leaky_slope);
}

MLP::MLP(const MlpConfig& config, DType dtype) : config_(config) {
  config_.validate();
  int64_t prev = config_.in_features;
  for (std::size_t i = 0; i < config_.hidden.size(); ++i) {
    int64_t w = config_.hidden[i];
    LayerTap tap;
    tap.layer = int64_t(i);
    tap.linear = emplace<Linear>(
        prev, w, hidden_layer_bias(config_.batchnorm, config_.bias_before_batchnorm), dtype);
    tap.pre = tap.linear;
    if (config_.batchnorm) {
      tap.batchnorm = emplace<BatchNorm1d>(w, 1e-5, 0.1, true, dtype);
      tap.pre = tap.batchnorm;
    }
    tap.pre_name = std::to_string(size() - 1);
    tap.post = emplace<Activation>(config_.activation, config_.leaky_slope);
    tap.post_name = std::to_string(size() - 1);
    if (config_.dropout > 0.0) tap.dropout = emplace<Dropout>(config_.dropout);
    taps_.push_back(tap);
    prev = w;
  }
  output_ = emplace<Linear>(prev, config_.num_classes, true, dtype);
}

std::unique_ptr<MLP> build_mlp(const MlpConfig& config, DType dtype) {
  return std::make_unique<MLP>(config, dtype);
}

}  // namespace gl::models
