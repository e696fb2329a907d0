// optim_cuda.h: optimizer steps for parameters on a CUDA device, all parameters in one kernel
// launch (kernels/cuda/optim.h). The slot table is built once and holds fixed pointers. Fresh
// .grad tensors that are contiguous f32 of their parameters' shapes (up to 256 parameters)
// reach the step as kernel arguments, read in place; others are first copied into gradient
// buffers the stepper owns (device-to-device, asynchronous). CUDA builds only.
#pragma once
#include <memory>
#include <vector>

#include "engine/tensor.h"
#include "kernels/cuda/optim.h"
#include "models/optim.h"

namespace gl::models::cuda {

class DeviceStepper {
 public:
  // params: contiguous f32 tensors on one CUDA device (each call runs on that device, whichever
  // is current); state0/state1: per-parameter buffers
  // of the same shapes on that device, or empty vectors when the optimizer has none.
  DeviceStepper(const std::vector<Tensor>& params, const std::vector<Tensor>& state0,
                const std::vector<Tensor>& state1);
  ~DeviceStepper();
  // The gradients of the next step: grads[i] has param i's shape (any layout, on the device);
  // read in place when every one is contiguous f32 on the stepper's device and there are at most
  // 256 (GradArgs::kMax), else copied into the buffers.
  void load_grads(const std::vector<Tensor>& grads);
  // step is 1-based; SGD step 1 sets the momentum buffer to the gradient.
  void sgd(const SgdOptions& o, double lr, int64_t step);
  void adam(const AdamOptions& o, double lr, bool decoupled, int64_t step);

 private:
  Device device_;
  std::vector<Tensor> grads_;
  kernels::cuda::GradArgs args_{};  // count 0: the step reads grads_
  std::unique_ptr<kernels::cuda::OptimTable> table_;
};

}  // namespace gl::models::cuda
