// optim_cuda.cpp: the one-launch device optimizer steps behind SGD and Adam/AdamW.
#include "models/cuda/optim_cuda.h"

#include "engine/cuda/ops_cuda.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/runtime.h"

namespace gl::models::cuda {

namespace kc = gl::kernels::cuda;

DeviceStepper::DeviceStepper(const std::vector<Tensor>& params, const std::vector<Tensor>& state0,
                             const std::vector<Tensor>& state1) {
  if (!params.empty()) device_ = params[0].device();
  std::vector<kc::ParamSlot> slots;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    GL_CHECK(p.device().is_cuda() && p.dtype() == DType::f32 && p.is_contiguous(),
             "optimizer on CUDA: parameter {} is {} on {} (contiguous f32 on a CUDA device needed)",
             i, p.str(), p.device().str());
    GL_CHECK(p.device() == device_,
             "optimizer on CUDA: parameter {} is on {} but parameter 0 is on {} (one launch "
             "steps every parameter, so all must be on one device)",
             i, p.device().str(), device_.str());
    grads_.push_back(Tensor::zeros(p.shape(), DType::f32, p.device()));
    kc::ParamSlot s;
    s.param = static_cast<float*>(p.raw_data());
    s.grad = static_cast<const float*>(grads_.back().raw_data());
    auto state_ptr = [&](const std::vector<Tensor>& st) -> float* {
      if (st.empty()) return nullptr;
      GL_CHECK(st[i].defined() && st[i].shape() == p.shape() && st[i].device() == p.device() &&
                   st[i].dtype() == DType::f32 && st[i].is_contiguous(),
               "optimizer on CUDA: state of parameter {} does not match {}", i, p.str());
      return static_cast<float*>(st[i].raw_data());
    };
    s.state0 = state_ptr(state0);
    s.state1 = state_ptr(state1);
    s.n = p.numel();
    slots.push_back(s);
  }
  const auto scope = cuda_ops::device_scope(device_);
  table_ = std::make_unique<kc::OptimTable>(slots);
}

DeviceStepper::~DeviceStepper() = default;

void DeviceStepper::load_grads(const std::vector<Tensor>& grads) {
  GL_CHECK(grads.size() == grads_.size(), "optimizer on CUDA: {} gradients for {} parameters",
           grads.size(), grads_.size());
  // Contiguous f32 gradients of the parameters' shapes on their device (what backward makes)
  // are read where they are: their pointers go to the step as kernel arguments. Their memory
  // stays valid for the step: the caching allocator reuses a freed block only in stream order.
  bool direct = grads.size() <= std::size_t(kc::GradArgs::kMax);
  for (std::size_t i = 0; i < grads.size() && direct; ++i) {
    const Tensor& g = grads[i];
    direct = g.defined() && g.is_contiguous() && g.dtype() == DType::f32 && g.device() == device_ &&
             g.shape() == grads_[i].shape();
  }
  args_.count = 0;
  if (direct) {
    for (std::size_t i = 0; i < grads.size(); ++i)
      args_.grad[i] = static_cast<const float*>(grads[i].raw_data());
    args_.count = int(grads.size());
    return;
  }
  for (std::size_t i = 0; i < grads.size(); ++i) grads_[i].copy_(grads[i]);
}

void DeviceStepper::sgd(const SgdOptions& o, double lr, int64_t step) {
  kc::SgdConfig c;
  c.lr = float(lr);
  c.momentum = float(o.momentum);
  c.dampening = float(o.dampening);
  c.weight_decay = float(o.weight_decay);
  c.nesterov = o.nesterov;
  const auto scope = cuda_ops::device_scope(device_);
  kc::sgd_step(*table_, c, step, nullptr, &args_);
}

void DeviceStepper::adam(const AdamOptions& o, double lr, bool decoupled, int64_t step) {
  kc::AdamConfig c;
  c.lr = float(lr);
  c.beta1 = float(o.beta1);
  c.beta2 = float(o.beta2);
  c.eps = float(o.eps);
  c.weight_decay = float(o.weight_decay);
  c.decoupled = decoupled;
  const auto scope = cuda_ops::device_scope(device_);
  kc::adam_step(*table_, c, step, nullptr, &args_);
}

}  // namespace gl::models::cuda
