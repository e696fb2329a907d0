// mlp.h: the MLP builder. An MLP is a Sequential laid out exactly as PyTorch's
//   nn.Sequential(nn.Linear(in, h0), [nn.BatchNorm1d(h0)], act, [nn.Dropout(p)],
//                 nn.Linear(h0, h1), ..., nn.Linear(h_last, num_classes))
// so its state-dict keys are those of a PyTorch model built the same way. Each hidden layer
// takes 2 indices, plus one with batchnorm and one with dropout > 0 (a p = 0 dropout adds no
// module). Example, hidden {128, 64}, batchnorm, dropout 0.1 (4 modules per hidden layer):
//   0.weight [128, in]   0.bias [128]
//   1.weight [128]  1.bias [128]  1.running_mean [128]  1.running_var [128]
//   1.num_batches_tracked []      (2 = activation, 3 = dropout: no keys)
//   4.weight [64, 128]  4.bias [64]   5.* BatchNorm1d(64)   (6 act, 7 dropout)
//   8.weight [classes, 64]  8.bias [classes]
#pragma once
#include <vector>

#include "models/layers.h"

namespace gl::models {

struct MlpConfig {
  int64_t in_features = 0;
  std::vector<int64_t> hidden;  // one width per hidden layer; depth = hidden.size() >= 1
  ActivationKind activation = ActivationKind::relu;
  double leaky_slope = 0.01;
  bool batchnorm = false;
  double dropout = 0.0;  // in [0, 1); 0 adds no Dropout modules
  int64_t num_classes = 10;

  // `depth` hidden layers of `width` units each.
  static MlpConfig uniform(int64_t in_features, int64_t depth, int64_t width, int64_t num_classes,
                           ActivationKind activation = ActivationKind::relu);
  // Throws gl::Error naming the first problem found.
  void validate() const;
};

// Where diagnostics read one hidden layer: `pre` outputs the pre-activation (the BatchNorm
// when there is one, else the Linear) and `post` the activation's output.
struct LayerTap {
  int64_t layer = 0;  // 0-based hidden-layer index
  Linear* linear = nullptr;
  BatchNorm1d* batchnorm = nullptr;  // null without batchnorm
  Module* pre = nullptr;
  Activation* post = nullptr;
  Dropout* dropout = nullptr;       // null when dropout == 0
  std::string pre_name, post_name;  // module names in the Sequential ("1", "2"...)
};

class MLP : public Sequential {
 public:
  // Weights start at zero: apply init_model (models/init.h) or reset_parameters.
  explicit MLP(const MlpConfig& config, DType dtype = DType::f32);
  std::string kind() const override { return "Sequential"; }
  const MlpConfig& config() const { return config_; }
  const std::vector<LayerTap>& taps() const { return taps_; }
  Linear& output_layer() const { return *output_; }
  // PyTorch's default initialization of every Linear (BatchNorm keeps weight 1, bias 0).
  void reset_parameters(Generator& gen);

 private:
  MlpConfig config_;
  std::vector<LayerTap> taps_;
  Linear* output_ = nullptr;
};

std::unique_ptr<MLP> build_mlp(const MlpConfig& config, DType dtype = DType::f32);

}  // namespace gl::models
