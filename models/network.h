// network.h: what the Trainer and the diagnostics need of a classifier, whichever builder made
// it (MLP, CNN): a Sequential with one LayerTap per hidden layer and a final Linear.
#pragma once
#include <string>
#include <vector>

#include "models/layers.h"

namespace gl::models {

// Where diagnostics read one hidden layer: `pre` outputs the pre-activation (the BatchNorm
// when there is one, else the Linear or Conv2d) and `post` the activation's output. Exactly one
// of `linear` and `conv` is set; a conv layer's units are its output channels.
struct LayerTap {
  int64_t layer = 0;  // 0-based hidden-layer index
  Linear* linear = nullptr;
  Conv2d* conv = nullptr;
  BatchNorm* batchnorm = nullptr;  // null without batchnorm
  Module* pre = nullptr;
  Activation* post = nullptr;
  Dropout* dropout = nullptr;       // null when dropout == 0
  std::string pre_name, post_name;  // module names in the Sequential ("1", "2"...)

  bool is_conv() const { return conv != nullptr; }
  // Units (Linear outputs, or Conv2d output channels) and inputs feeding each unit.
  int64_t units() const { return conv ? conv->out_channels() : linear->out_features(); }
  int64_t fan_in() const { return conv ? conv->fan_in() : linear->in_features(); }
  const Tensor& weight() const { return conv ? conv->weight() : linear->weight(); }
  const Tensor& bias() const { return conv ? conv->bias() : linear->bias(); }
};

// Whether a hidden Linear or Conv2d gets a bias. Not when batch norm follows it (unless asked
// to keep it, as runs made before this choice existed did): batch norm subtracts the batch
// mean, so in training the output does not depend on that bias and its gradient is zero but
// for rounding, which an adaptive optimizer would step on (PyTorch's bias=False before a norm).
inline bool hidden_layer_bias(bool batchnorm, bool bias_before_batchnorm) {
  return !batchnorm || bias_before_batchnorm;
}

class Network : public Sequential {
 public:
  std::string kind() const override { return "Sequential"; }
  const std::vector<LayerTap>& taps() const { return taps_; }
  Linear& output_layer() const { return *output_; }
  // PyTorch's default initialization of every Linear and Conv2d (BatchNorm: weight 1, bias 0).
  virtual void reset_parameters(Generator& gen);

 protected:
  std::vector<LayerTap> taps_;
  Linear* output_ = nullptr;
};

}  // namespace gl::models
