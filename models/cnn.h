// cnn.h: the CNN builder. A CNN is a Sequential laid out as PyTorch's
//   nn.Sequential(nn.Conv2d(C, c0, k, padding=p), [nn.BatchNorm2d(c0)], act, nn.MaxPool2d(pool),
//                 ... one such stage per entry of `channels` ...,
//                 nn.Flatten(),
//                 nn.Linear(flat, f0), [nn.BatchNorm1d(f0)], act, [nn.Dropout(d)],
//                 ... one per entry of `fc` ...,
//                 nn.Linear(f_last, num_classes))
// so its state-dict keys are those of the same PyTorch model. pool 0 adds no pooling modules.
// A Conv2d or Linear followed by batch norm has no bias (PyTorch's bias=False) unless
// bias_before_batchnorm; the classifier always has one.
// The default (channels {32, 64}, fc {128}, kernel 3, padding 1, pool 2) on a 1x28x28 input:
//   conv3x3(32)-act-maxpool2 [32,14,14] - conv3x3(64)-act-maxpool2 [64,7,7] - fc128-act - fc10.
#pragma once
#include <array>
#include <vector>

#include "models/network.h"

namespace gl::models {

struct CnnConfig {
  int64_t in_channels = 1, height = 28, width = 28;
  std::vector<int64_t> channels{32, 64};  // output channels of each conv stage (>= 1 stage)
  std::vector<int64_t> fc{128};           // hidden Linear widths after the convs (may be empty)
  int64_t kernel = 3;
  int64_t padding = -1;  // -1: kernel / 2 ("same" for odd kernels at stride 1)
  int64_t pool = 2;      // max-pool window and stride after each conv stage; 0: none
  ActivationKind activation = ActivationKind::relu;
  double leaky_slope = 0.01;
  bool batchnorm = false;  // BatchNorm2d after each conv, BatchNorm1d after each hidden Linear
  // With batchnorm: give the convs and hidden Linears a bias too (redundant: hidden_layer_bias).
  bool bias_before_batchnorm = false;
  double dropout = 0.0;  // after each hidden Linear's activation; 0 adds no module
  int64_t num_classes = 10;

  int64_t effective_padding() const { return padding < 0 ? kernel / 2 : padding; }
  // Throws gl::Error naming the first problem (including an input too small for the stages).
  void validate() const;
  // [C, H, W] after the conv stages, i.e. what Flatten sees.
  std::array<int64_t, 3> feature_shape() const;
};

class CNN : public Network {
 public:
  // Weights start at zero: apply init_model (models/init.h) or reset_parameters.
  explicit CNN(const CnnConfig& config, DType dtype = DType::f32);
  const CnnConfig& config() const { return config_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  CnnConfig config_;
};

std::unique_ptr<CNN> build_cnn(const CnnConfig& config, DType dtype = DType::f32);

}  // namespace gl::models
