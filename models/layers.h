// layers.h: the building blocks of the MLP and CNN builders: Linear, Conv2d, Activation,
// BatchNorm1d/2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Dropout, Flatten and Sequential.
// Parameter and buffer names, shapes and layouts are PyTorch's (nn.Linear, nn.BatchNorm1d,
// nn.Sequential), so state dicts match.
#pragma once
#include <array>
#include <memory>

#include "engine/generator.h"
#include "engine/ops.h"
#include "models/module.h"

namespace gl::models {

// y = x W^T + b with weight [out, in] and bias [out]; one GEMM with the bias fused.
// Inputs [N, in] or [*, in]. The weights start at zero: initialize them with
// reset_parameters (PyTorch's default) or init_model (models/init.h).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, DType dtype = DType::f32);
  std::string kind() const override { return "Linear"; }
  std::string extra_repr() const override;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  const Tensor& weight() const { return *weight_; }
  const Tensor& bias() const { return bias_ ? *bias_ : none_; }  // undefined without bias
  // PyTorch's nn.Linear default: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
  void reset_parameters(Generator& gen);

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  int64_t in_, out_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
  Tensor none_;
};

// An elementwise activation; no parameters (so it takes an index in a Sequential without
// adding state-dict keys, as nn.ReLU does).
class Activation : public Module {
 public:
  explicit Activation(ActivationKind act, double leaky_slope = 0.01);
  std::string kind() const override;  // "ReLU", "LeakyReLU", "Tanh", ...
  std::string extra_repr() const override;
  ActivationKind activation() const { return act_; }
  double leaky_slope() const { return slope_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  ActivationKind act_;
  double slope_;
};

// Batch normalization with PyTorch's semantics (engine batch_norm): in training the batch mean
// and biased variance normalize; the running estimates move by
// r = (1 - momentum) r + momentum * batch_stat with the unbiased variance, and
// num_batches_tracked (i64) counts the updates. In eval the running estimates normalize.
// BatchNorm1d takes [N, C] or [N, C, L], BatchNorm2d [N, C, H, W]; parameter and buffer names
// are nn.BatchNorm*'s.
class BatchNorm : public Module {
 public:
  std::string extra_repr() const override;
  int64_t num_features() const { return features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  const Tensor& weight() const { return weight_ ? *weight_ : none_; }  // undefined if !affine
  const Tensor& bias() const { return bias_ ? *bias_ : none_; }
  const Tensor& running_mean() const { return *running_mean_; }
  const Tensor& running_var() const { return *running_var_; }
  const Tensor& num_batches_tracked() const { return *num_batches_tracked_; }
  // weight 1, bias 0, running mean 0, running var 1, counter 0.
  void reset_parameters();

 protected:
  BatchNorm(const char* kind, int64_t num_features, double eps, double momentum, bool affine,
            DType dtype);
  Tensor normalize(const Tensor& x, const char* layout);

 private:
  int64_t features_;
  double eps_, momentum_;
  bool affine_;
  Tensor* weight_ = nullptr;
  Tensor* bias_ = nullptr;
  Tensor* running_mean_;
  Tensor* running_var_;
  Tensor* num_batches_tracked_;
  Tensor none_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                       bool affine = true, DType dtype = DType::f32)
      : BatchNorm("BatchNorm1d", num_features, eps, momentum, affine, dtype) {}
  std::string kind() const override { return "BatchNorm1d"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                       bool affine = true, DType dtype = DType::f32)
      : BatchNorm("BatchNorm2d", num_features, eps, momentum, affine, dtype) {}
  std::string kind() const override { return "BatchNorm2d"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
};

// 2-D convolution over [N, C, H, W] with weight [out, in / groups, kH, kW] and bias [out]
// (nn.Conv2d's names and layout). Weights start at zero, like Linear's.
struct Conv2dOptions {
  std::array<int64_t, 2> kernel{3, 3};
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};
// Output [H, W] of a convolution with options o over an input [H, W], allocating nothing;
// throws naming `layer` when the dilated kernel is larger than the padded input or a padded
// size overflows 64 bits.
std::array<int64_t, 2> conv2d_output_size(const Conv2dOptions& o, std::array<int64_t, 2> input,
                                          const std::string& layer);
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, const Conv2dOptions& options = {},
         DType dtype = DType::f32);
  std::string kind() const override { return "Conv2d"; }
  std::string extra_repr() const override;
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  const Conv2dOptions& options() const { return opt_; }
  // Inputs feeding one output: in / groups * kH * kW (the fan-in of the initializers).
  int64_t fan_in() const { return in_ / opt_.groups * opt_.kernel[0] * opt_.kernel[1]; }
  int64_t fan_out() const { return out_ / opt_.groups * opt_.kernel[0] * opt_.kernel[1]; }
  const Tensor& weight() const { return *weight_; }
  const Tensor& bias() const { return bias_ ? *bias_ : none_; }
  // PyTorch's nn.Conv2d default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  void reset_parameters(Generator& gen);
  // Output [H, W] for an input [H, W]; throws naming the layer when the input is too small.
  std::array<int64_t, 2> output_size(std::array<int64_t, 2> input) const;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  int64_t in_, out_;
  Conv2dOptions opt_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
  Tensor none_;
};

// Max / average pooling over [N, C, H, W]; stride {0, 0} means stride = kernel.
class Pool2d : public Module {
 public:
  enum class Mode { max, avg };
  Pool2d(Mode mode, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
         std::array<int64_t, 2> padding = {0, 0});
  std::string kind() const override { return mode_ == Mode::max ? "MaxPool2d" : "AvgPool2d"; }
  std::string extra_repr() const override;
  std::array<int64_t, 2> output_size(std::array<int64_t, 2> input) const;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  Mode mode_;
  std::array<int64_t, 2> kernel_, stride_, padding_;
};
class MaxPool2d : public Pool2d {
 public:
  explicit MaxPool2d(std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                     std::array<int64_t, 2> padding = {0, 0})
      : Pool2d(Mode::max, kernel, stride, padding) {}
};
class AvgPool2d : public Pool2d {
 public:
  explicit AvgPool2d(std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                     std::array<int64_t, 2> padding = {0, 0})
      : Pool2d(Mode::avg, kernel, stride, padding) {}
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> output_size);
  std::string kind() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  std::array<int64_t, 2> size_;
};

// Inverted dropout with probability p; identity in eval or when p == 0. Draws its mask from
// a Generator owned elsewhere (the model or the trainer), so one seed fixes every mask.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  std::string kind() const override { return "Dropout"; }
  std::string extra_repr() const override;
  double p() const { return p_; }
  void set_generator(Generator* gen) { gen_ = gen; }
  Generator* generator() const { return gen_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  double p_;
  Generator* gen_ = nullptr;
};

// Flattens dims start_dim..end_dim into one (nn.Flatten's defaults: 1 and -1).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : start_(start_dim), end_(end_dim) {}
  std::string kind() const override { return "Flatten"; }
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  int64_t start_, end_;
};

// Children named "0", "1", ... run in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  std::string kind() const override { return "Sequential"; }
  // Appends a module under the next index and returns it.
  template <class M>
  M* add(std::unique_ptr<M> m) {
    M* raw = m.get();
    append(std::move(m));
    return raw;
  }
  template <class M, class... Args>
  M* emplace(Args&&... args) {
    return add(std::make_unique<M>(std::forward<Args>(args)...));
  }
  std::size_t size() const { return layers_.size(); }
  Module& operator[](std::size_t i) const;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  void append(std::unique_ptr<Module> m);
  std::vector<Module*> layers_;
};

// Points every Dropout in the tree at `gen` (nullptr detaches them).
void set_dropout_generator(Module& root, Generator* gen);

}  // namespace gl::models
