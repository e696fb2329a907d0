// optim.cu: multi-tensor SGD (momentum, dampening, Nesterov, weight decay) and Adam/AdamW
// steps. Layout: a device table of ParamSlot (one per tensor) and of TensorChunk (tensor
// index, start element); block b updates elements [start, start + 16384) of its chunk's
// tensor with a block-stride loop, so one launch covers every parameter however the sizes
// are distributed. Per-element formulas match torch.optim (SGD: buf = mu*buf + (1-dampening)*g,
// first step buf = g; Adam: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)).
// speed: not yet measured on a GPU.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/index_math.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/runtime.h"

namespace gl::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Slot t with its gradient pointer from the step's arguments when they hold one.
__device__ __forceinline__ ParamSlot slot_of(const ParamSlot* slots, const GradArgs& grads, int t) {
  ParamSlot s = slots[t];
  if (grads.count > 0) s.grad = grads.grad[t];
  return s;
}

__global__ void sgd_kernel(const ParamSlot* slots, const TensorChunk* chunks, SgdConfig cfg,
                           bool first_step, GradArgs grads) {
  const TensorChunk ch = chunks[blockIdx.x];
  const ParamSlot s = slot_of(slots, grads, ch.tensor);
  const int64_t end = ch.start + OptimTable::kChunk < s.n ? ch.start + OptimTable::kChunk : s.n;
  for (int64_t i = ch.start + threadIdx.x; i < end; i += blockDim.x) {
    float g = s.grad[i];
    const float p = s.param[i];
    if (cfg.weight_decay != 0.0f) g += cfg.weight_decay * p;
    if (cfg.momentum != 0.0f) {
      const float buf = first_step ? g : cfg.momentum * s.state0[i] + (1.0f - cfg.dampening) * g;
      s.state0[i] = buf;
      g = cfg.nesterov ? g + cfg.momentum * buf : buf;
    }
    s.param[i] = p - cfg.lr * g;
  }
}

__global__ void adam_kernel(const ParamSlot* slots, const TensorChunk* chunks, AdamConfig cfg,
                            float step_size, float inv_sqrt_bc2, GradArgs grads) {
  const TensorChunk ch = chunks[blockIdx.x];
  const ParamSlot s = slot_of(slots, grads, ch.tensor);
  const int64_t end = ch.start + OptimTable::kChunk < s.n ? ch.start + OptimTable::kChunk : s.n;
  for (int64_t i = ch.start + threadIdx.x; i < end; i += blockDim.x) {
    float g = s.grad[i];
    float p = s.param[i];
    if (cfg.weight_decay != 0.0f) {
      if (cfg.decoupled)
        p *= 1.0f - cfg.lr * cfg.weight_decay;
      else
        g += cfg.weight_decay * p;
    }
    const float m = cfg.beta1 * s.state0[i] + (1.0f - cfg.beta1) * g;
    const float v = cfg.beta2 * s.state1[i] + (1.0f - cfg.beta2) * g * g;
    s.state0[i] = m;
    s.state1[i] = v;
    const float denom = sqrtf(v) * inv_sqrt_bc2 + cfg.eps;
    s.param[i] = p - step_size * (m / denom);
  }
}

// The step's gradient arguments, checked against the table: none (the table's buffers), or one
// pointer per tensor, non-null where the tensor has elements.
GradArgs grad_args(const OptimTable& table, const GradArgs* grads, const char* name) {
  if (!grads || grads->count == 0) return GradArgs{};
  if (grads->count != table.num_tensors() || grads->count > GradArgs::kMax)
    throw std::invalid_argument(std::string(name) + ": " + std::to_string(grads->count) +
                                " gradient pointers for a table of " +
                                std::to_string(table.num_tensors()) + " tensors (at most " +
                                std::to_string(GradArgs::kMax) + ")");
  for (int t = 0; t < grads->count; ++t)
    if (!grads->grad[t] && table.tensor_size(t) > 0)
      throw std::invalid_argument(std::string(name) + ": gradient pointer " + std::to_string(t) +
                                  " is null");
  return *grads;
}

}  // namespace

OptimTable::OptimTable(const std::vector<ParamSlot>& slots, cudaStream_t stream) {
  if (slots.size() > size_t(0x7fffffff))
    throw std::invalid_argument("cuda::OptimTable: too many tensors");
  std::vector<int64_t> sizes;
  has_state0_ = has_state1_ = !slots.empty();
  for (size_t t = 0; t < slots.size(); ++t) {
    const ParamSlot& s = slots[t];
    if (s.n < 0)
      throw std::invalid_argument("cuda::OptimTable: tensor " + std::to_string(t) +
                                  " has negative size " + std::to_string(s.n));
    if (s.n > 0 && (!s.param || !s.grad))
      throw std::invalid_argument("cuda::OptimTable: tensor " + std::to_string(t) +
                                  " has a null param or grad pointer");
    has_state0_ = has_state0_ && (s.n == 0 || s.state0);
    has_state1_ = has_state1_ && (s.n == 0 || s.state1);
    sizes.push_back(s.n);
  }
  sizes_ = sizes;
  const std::vector<TensorChunk> chunks = build_chunks(sizes, kChunk);
  num_tensors_ = int(slots.size());
  num_chunks_ = int64_t(chunks.size());
  if (num_chunks_ > 0x7fffffff) throw std::invalid_argument("cuda::OptimTable: too many chunks");
  stream = resolve_stream(stream);
  // Owned by members, so a throw below frees what was already allocated.
  slots_ = DeviceBuffer<ParamSlot>(slots.size(), stream);
  chunks_ = DeviceBuffer<TensorChunk>(chunks.size(), stream);
  copy_to_device(slots_.get(), slots.data(), slots.size() * sizeof(ParamSlot), stream);
  copy_to_device(chunks_.get(), chunks.data(), chunks.size() * sizeof(TensorChunk), stream);
  // The vectors above are pageable and die with this constructor: wait for the copies.
  synchronize(stream);
}

void sgd_step(const OptimTable& table, const SgdConfig& cfg, int64_t step, cudaStream_t stream,
              const GradArgs* grads) {
  if (step < 1)
    throw std::invalid_argument("cuda::sgd_step: step must be >= 1, got " + std::to_string(step));
  if (cfg.momentum != 0.0f && !table.has_state0())
    throw std::invalid_argument("cuda::sgd_step: momentum needs a state0 buffer for every tensor");
  if (cfg.nesterov && (cfg.momentum <= 0.0f || cfg.dampening != 0.0f))
    throw std::invalid_argument("cuda::sgd_step: Nesterov needs momentum > 0 and dampening 0");
  const GradArgs args = grad_args(table, grads, "cuda::sgd_step");
  if (table.num_chunks() == 0) return;
  sgd_kernel<<<unsigned(table.num_chunks()), kThreads, 0, resolve_stream(stream)>>>(
      static_cast<const ParamSlot*>(table.device_slots()),
      static_cast<const TensorChunk*>(table.device_chunks()), cfg, step == 1, args);
  GL_CUDA_CHECK_LAUNCH();
}

void adam_step(const OptimTable& table, const AdamConfig& cfg, int64_t step, cudaStream_t stream,
               const GradArgs* grads) {
  if (step < 1)
    throw std::invalid_argument("cuda::adam_step: step must be >= 1, got " + std::to_string(step));
  if (!table.has_state0() || !table.has_state1())
    throw std::invalid_argument(
        "cuda::adam_step: needs state0 (exp_avg) and state1 (exp_avg_sq) for every tensor");
  const GradArgs args = grad_args(table, grads, "cuda::adam_step");
  if (table.num_chunks() == 0) return;
  // Bias corrections in double on the host, like PyTorch's Python-float arithmetic.
  const double bc1 = 1.0 - std::pow(double(cfg.beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(cfg.beta2), double(step));
  const float step_size = float(double(cfg.lr) / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  adam_kernel<<<unsigned(table.num_chunks()), kThreads, 0, resolve_stream(stream)>>>(
      static_cast<const ParamSlot*>(table.device_slots()),
      static_cast<const TensorChunk*>(table.device_chunks()), cfg, step_size, inv_sqrt_bc2, args);
  GL_CUDA_CHECK_LAUNCH();
}

}  // namespace gl::kernels::cuda
