// optim.h: SGD, Adam and AdamW with exactly torch.optim's update rules (1.13), stepping the
// parameters' raw data in one fused pass per parameter under NoGrad. Parameters whose
// .grad is undefined are skipped (and their state is not advanced), as in PyTorch.
//
// Optimizer state is exposed as named tensors so checkpoints restore it bit-exactly:
//   SGD:   "state.<i>.momentum_buffer"           (present once param i has stepped)
//   Adam:  "state.<i>.step" (i64 scalar), "state.<i>.exp_avg", "state.<i>.exp_avg_sq"
// where <i> is the parameter's index in the list given to the constructor.
#pragma once
#include <memory>
#include <vector>

#include "engine/tensor.h"
#include "models/module.h"

namespace gl::models {

namespace cuda {
class DeviceStepper;  // models/cuda/optim_cuda.h (CUDA builds)
}

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  virtual std::string kind() const = 0;
  // Drops every parameter's .grad (set_to_none, PyTorch's default since 2.0).
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr);  // for schedules
  const std::vector<Tensor>& params() const { return params_; }

  // Deep copies of the state; load_state_dict checks names and shapes and copies values in.
  virtual NamedTensors state_dict() const = 0;
  virtual void load_state_dict(const NamedTensors& state) = 0;

 protected:
  // The parameter's gradient as a contiguous tensor, or undefined when it has none.
  Tensor grad_of(std::size_t i) const;
  // Parameters on a CUDA device step there, all in one launch. The gradients of every
  // parameter, or none (then the step is skipped); throws naming the first missing one.
  bool on_device() const { return !params_.empty() && params_[0].device().is_cuda(); }
  std::vector<Tensor> device_grads() const;
  std::vector<Tensor> params_;
  double lr_;
  std::shared_ptr<cuda::DeviceStepper> stepper_;  // built on the first device step
};

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// PyTorch's SGD: g += wd * p; with momentum, buf = g on the first step, else
// buf = momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum * buf : buf;
// p -= lr * g.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SgdOptions& options);
  void step() override;
  std::string kind() const override { return "SGD"; }
  const SgdOptions& options() const { return opt_; }
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;

 private:
  SgdOptions opt_;
  std::vector<Tensor> momentum_;  // undefined until a parameter first steps
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// PyTorch's Adam (L2: g += wd * p) and AdamW (decoupled: p *= 1 - lr * wd first):
// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options, bool decoupled = false);
  void step() override;
  std::string kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
  const AdamOptions& options() const { return opt_; }
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;

 private:
  AdamOptions opt_;
  bool decoupled_;
  std::vector<int64_t> steps_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
};

class AdamW : public Adam {
 public:
  // options.weight_decay is the decoupled decay (torch.optim.AdamW defaults it to 0.01;
  // AdamOptions keeps 0 so the value is always stated by the caller).
  AdamW(std::vector<Tensor> params, const AdamOptions& options) : Adam(params, options, true) {}
};

}  // namespace gl::models
