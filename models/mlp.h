// mlp.h: the MLP builder. An MLP is a Sequential laid out exactly as PyTorch's
//   nn.Sequential(nn.Linear(in, h0), [nn.BatchNorm1d(h0)], act, [nn.Dropout(p)],
//                 nn.Linear(h0, h1), ..., nn.Linear(h_last, num_classes))
// so its state-dict keys are those of a PyTorch model built the same way. Each hidden layer
// takes 2 indices, plus one with batchnorm and one with dropout > 0 (a p = 0 dropout adds no
// module). A Linear followed by batch norm has no bias (nn.Linear(..., bias=False)) unless
// bias_before_batchnorm; the classifier always has one. Example, hidden {128, 64}, batchnorm,
// dropout 0.1 (4 modules per hidden layer):
//   0.weight [128, in]
//   1.weight [128]  1.bias [128]  1.running_mean [128]  1.running_var [128]
//   1.num_batches_tracked []      (2 = activation, 3 = dropout: no keys)
//   4.weight [64, 128]   5.* BatchNorm1d(64)   (6 act, 7 dropout)
//   8.weight [classes, 64]  8.bias [classes]
// (with bias_before_batchnorm, 0.bias [128] and 4.bias [64] as well).
#pragma once
#include <vector>

#include "models/network.h"

namespace gl::models {

struct MlpConfig {
  int64_t in_features = 0;
  std::vector<int64_t> hidden;  // one width per hidden layer; depth = hidden.size() >= 1
  ActivationKind activation = ActivationKind::relu;
  double leaky_slope = 0.01;
  bool batchnorm = false;
  // With batchnorm: give the hidden Linears a bias too (redundant: hidden_layer_bias).
  bool bias_before_batchnorm = false;
  double dropout = 0.0;  // in [0, 1); 0 adds no Dropout modules
  int64_t num_classes = 10;

  // `depth` hidden layers of `width` units each.
  static MlpConfig uniform(int64_t in_features, int64_t depth, int64_t width, int64_t num_classes,
                           ActivationKind activation = ActivationKind::relu);
  // Throws gl::Error naming the first problem found.
  void validate() const;
};

class MLP : public Network {
 public:
  // Weights start at zero: apply init_model (models/init.h) or reset_parameters.
  explicit MLP(const MlpConfig& config, DType dtype = DType::f32);
  const MlpConfig& config() const { return config_; }

 private:
  MlpConfig config_;
};

std::unique_ptr<MLP> build_mlp(const MlpConfig& config, DType dtype = DType::f32);

}  // namespace gl::models
