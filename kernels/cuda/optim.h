// optim.h: multi-tensor optimizer steps on the GPU. All parameters of a model are updated by
// one kernel launch: an OptimTable uploads (once) a table of device pointers and sizes plus a
// chunk list (index_math.h build_chunks), and each CUDA block updates one chunk. Float only.
// Formulas follow PyTorch's torch.optim.SGD and Adam/AdamW.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/index_math.h"
#include "kernels/cuda/runtime.h"

namespace gl::kernels::cuda {

// One parameter tensor: param and grad have n elements; state0/state1 are the optimizer
// buffers (SGD: momentum buffer in state0; Adam: exp_avg in state0, exp_avg_sq in state1),
// zero-initialized by the caller, or null when the optimizer does not use them.
struct ParamSlot {
  float* param = nullptr;
  const float* grad = nullptr;
  float* state0 = nullptr;
  float* state1 = nullptr;
  int64_t n = 0;
};

// The device copy of the slot table and chunk list. Build it once per set of parameters
// (the pointers must stay valid); stepping does no host<->device traffic.
class OptimTable {
 public:
  explicit OptimTable(const std::vector<ParamSlot>& slots, cudaStream_t stream = nullptr);
  OptimTable(const OptimTable&) = delete;
  OptimTable& operator=(const OptimTable&) = delete;

  int64_t num_chunks() const { return num_chunks_; }
  int num_tensors() const { return num_tensors_; }
  const void* device_slots() const { return slots_.get(); }
  const void* device_chunks() const { return chunks_.get(); }
  bool has_state0() const { return has_state0_; }
  bool has_state1() const { return has_state1_; }
  int64_t tensor_size(int t) const { return sizes_[size_t(t)]; }

  static constexpr int64_t kChunk = 16384;  // elements per block

 private:
  DeviceBuffer<ParamSlot> slots_;
  DeviceBuffer<TensorChunk> chunks_;
  int64_t num_chunks_ = 0;
  int num_tensors_ = 0;
  std::vector<int64_t> sizes_;
  bool has_state0_ = false, has_state1_ = false;
};

// Gradient pointers handed to one step by value, as kernel arguments: when count > 0,
// grad[t] is read for tensor t instead of the table's grad pointer (count must then equal the
// table's tensor count). The step then needs no copy of fresh gradients into fixed buffers.
struct GradArgs {
  static constexpr int kMax = 256;
  const float* grad[kMax];
  int count = 0;
};

struct SgdConfig {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};
// step is 1-based; on step 1 the momentum buffer is set to the gradient (PyTorch), not
// blended with the zero-initialized state.
void sgd_step(const OptimTable& table, const SgdConfig& cfg, int64_t step,
              cudaStream_t stream = nullptr, const GradArgs* grads = nullptr);

struct AdamConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;  // true: AdamW (p *= 1 - lr*wd); false: Adam (g += wd*p)
};
// step is 1-based (bias corrections 1 - beta^step).
void adam_step(const OptimTable& table, const AdamConfig& cfg, int64_t step,
               cudaStream_t stream = nullptr, const GradArgs* grads = nullptr);

}  // namespace gl::kernels::cuda
