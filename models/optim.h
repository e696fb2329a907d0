// optim.h: SGD, Adam and AdamW with exactly torch.optim's update rules (1.13), stepping the
// parameters' raw data in one fused pass per parameter under NoGrad. Parameters whose
// .grad is undefined are skipped (and their state is not advanced), as in PyTorch.
//
// Optimizer state is exposed as named tensors so checkpoints restore it bit-exactly:
//   SGD:   "state.<i>.momentum_buffer"           (present once param i has stepped)
//   Adam:  "state.<i>.step" (i64 scalar), "state.<i>.exp_avg", "state.<i>.exp_avg_sq"
// where <i> is the parameter's index in the list given to the constructor.
//
// A StepObserver watches a CPU step chunk by chunk: the step of an f32 parameter then runs in
// chunks of kObserveChunk components, each between the observer's before_update and
// after_update calls, so that what the observer reads (the chunk's gradient and weights) is in
// cache, and the update that follows finds it there again. The update itself is unchanged.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "models/module.h"

namespace gl::models {

namespace cuda {
class DeviceStepper;  // models/cuda/optim_cuda.h (CUDA builds)
}

// Watches the CPU step of the f32 parameters of an Optimizer (see above). For each parameter
// that steps (it has a gradient) and each chunk [lo, lo + n) of its components, with g and w
// pointing at component lo of the gradient the step uses and of the weights:
//   before_update: right before the chunk is updated (w holds the weights before the step);
//   after_update:  right after (w holds the updated weights).
// `param` is the parameter's index in Optimizer::params(). Chunks start at multiples of
// Optimizer::kObserveChunk and are that long but the last. The chunks of one parameter may run
// concurrently on several threads; before_update and after_update of one chunk run on the same
// thread, in that order. The calls must not throw.
class StepObserver {
 public:
  virtual ~StepObserver() = default;
  virtual void before_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                             const float* w) = 0;
  virtual void after_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                            const float* w) = 0;
};

class Optimizer {
 public:
  static constexpr int64_t kObserveChunk = 4096;

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
  // The observer of the CPU steps (not owned; nullptr: none). It must stay alive while set.
  void set_step_observer(StepObserver* observer) { observer_ = observer; }
  StepObserver* step_observer() const { return observer_; }
  // True when step() reports its f32 parameters to the observer (parameters on the CPU; a step
  // on a CUDA device reports nothing).
  bool observes_steps() const { return !on_device(); }

  // Deep copies of the state; load_state_dict checks names and shapes and copies values in.
  virtual NamedTensors state_dict() const = 0;
  virtual void load_state_dict(const NamedTensors& state) = 0;
  // Refuses a state that is not the one `steps` steps leave when every step has a gradient for
  // every parameter (what a training run's checkpoint holds): a buffer the optimizer keeps that
  // is missing, a key it does not keep, a dtype or shape other than its parameter's, or (Adam)
  // a step count other than `steps`. Errors name the key with `prefix` before it.
  void check_state_after(const NamedTensors& state, int64_t steps,
                         const std::string& prefix = "") const;

 protected:
  // One tensor of the state after `steps` steps: its dtype and shape, and for a step counter
  // the count it holds.
  struct StateEntry {
    std::string key;
    DType dtype;
    Shape shape;
    std::optional<int64_t> count;
  };
  virtual std::vector<StateEntry> state_after(int64_t steps) const = 0;
  // The parameter's gradient as a contiguous tensor, or undefined when it has none.
  Tensor grad_of(std::size_t i) const;
  // Parameters on a CUDA device step there, all in one launch. The gradients of every
  // parameter, or none (then the step is skipped); throws naming the first missing one.
  bool on_device() const { return !params_.empty() && params_[0].device().is_cuda(); }
  std::vector<Tensor> device_grads() const;
  std::vector<Tensor> params_;
  double lr_;
  std::shared_ptr<cuda::DeviceStepper> stepper_;  // built on the first device step
  StepObserver* observer_ = nullptr;
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
  // Steps parameter i alone (its momentum buffer included), bit for bit what step() does for
  // it. For a caller that has a gradient before the others (the fused MLP step updates each
  // layer right after its gradient): it steps every parameter once and then skips step().
  // Needs steps_params_alone().
  void step_param(std::size_t i);
  // Parameters on the CPU and no step observer: then step() is step_param over every i.
  bool steps_params_alone() const { return !on_device() && observer_ == nullptr; }
  // Parameter i's momentum buffer (undefined before its first step, or without momentum).
  const Tensor& momentum_buffer(std::size_t i) const { return momentum_.at(i); }
  std::string kind() const override { return "SGD"; }
  const SgdOptions& options() const { return opt_; }
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;

 protected:
  std::vector<StateEntry> state_after(int64_t steps) const override;

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

 protected:
  std::vector<StateEntry> state_after(int64_t steps) const override;

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
