// activation.cpp: relu, leaky_relu, tanh, sigmoid, gelu (erf and tanh forms), silu.
#include "engine/ops.h"
#include "engine/ops/map.h"
#include "kernels/cpu/vecmath.h"
#include "kernels/functors.h"

namespace gl {

using detail::binary_map;
using detail::unary_map;

namespace {
using F32Kernel = void (*)(const float*, float*, int64_t);

// The forward map: contiguous f32 goes to the vectorized CPU kernel when there is one (chunks
// split across threads for large tensors); everything else evaluates the functor.
template <class Fwd>
Tensor forward_map(const Tensor& x, Fwd fwd, F32Kernel fast, const char* name) {
  if (fast && x.defined() && x.dtype() == DType::f32 && x.device().is_cpu() && x.is_contiguous()) {
    Tensor out = Tensor::empty(x.shape(), DType::f32);
    const float* xp = x.data<float>();
    float* op = out.data<float>();
    int64_t n = x.numel();
    constexpr int64_t chunk = 1 << 14;
    int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for if (n >= loops::kParallelGrain)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t s = c * chunk;
      fast(xp + s, op + s, std::min(chunk, n - s));
    }
    return out;
  }
  return unary_map(x, fwd, name);
}

// Activation whose backward reads the input x.
template <class Fwd, class Back>
Tensor act_from_x(const Tensor& x, Fwd fwd, Back back, const char* name, F32Kernel fast = nullptr) {
  Tensor out = forward_map(x, fwd, fast, name);
  if (needs_grad({&x})) {
    Tensor sx = x.detach();
    attach_grad_fn(out, name, {x}, [sx, back](const Tensor& g) -> std::vector<Tensor> {
      return {binary_map(g, sx, back, "activation_backward")};
    }, {x.shape()});
  }
  return out;
}
// Activation whose backward reads the output y (cheaper: no transcendental in backward).
template <class Fwd, class Back>
Tensor act_from_y(const Tensor& x, Fwd fwd, Back back, const char* name, F32Kernel fast = nullptr) {
  Tensor out = forward_map(x, fwd, fast, name);
  if (needs_grad({&x})) {
    Tensor y = out.detach();
    attach_grad_fn(out, name, {x}, [y, back](const Tensor& g) -> std::vector<Tensor> {
      return {binary_map(g, y, back, "activation_backward")};
    }, {x.shape()});
  }
  return out;
}
}  // namespace

Tensor relu(const Tensor& x) { return act_from_x(x, fn::Relu{}, fn::ReluBack{}, "relu"); }
Tensor leaky_relu(const Tensor& x, double s) {
  return act_from_x(x, fn::LeakyRelu{s}, fn::LeakyReluBack{s}, "leaky_relu");
}
Tensor tanh(const Tensor& x) {
  return act_from_y(x, fn::Tanh{}, fn::TanhBackFromY{}, "tanh", kernels::cpu::tanh_f32);
}
Tensor sigmoid(const Tensor& x) {
  return act_from_y(x, fn::Sigmoid{}, fn::SigmoidBackFromY{}, "sigmoid", kernels::cpu::sigmoid_f32);
}
Tensor gelu(const Tensor& x, bool approximate) {
  if (approximate) return act_from_x(x, fn::GeluTanh{}, fn::GeluTanhBack{}, "gelu_tanh");
  return act_from_x(x, fn::GeluErf{}, fn::GeluErfBack{}, "gelu");
}
Tensor silu(const Tensor& x) {
  return act_from_x(x, fn::Silu{}, fn::SiluBack{}, "silu", kernels::cpu::silu_f32);
}

ActivationKind parse_activation(const std::string& n) {
  if (n == "identity" || n == "none" || n == "linear") return ActivationKind::identity;
  if (n == "relu") return ActivationKind::relu;
  if (n == "leaky_relu") return ActivationKind::leaky_relu;
  if (n == "tanh") return ActivationKind::tanh;
  if (n == "sigmoid") return ActivationKind::sigmoid;
  if (n == "gelu") return ActivationKind::gelu;
  if (n == "gelu_tanh") return ActivationKind::gelu_tanh;
  if (n == "silu") return ActivationKind::silu;
  throw Error(fmt::format(
      "unknown activation '{}' (known: relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh, silu, "
      "identity)",
      n));
}

const char* activation_name(ActivationKind a) {
  switch (a) {
    case ActivationKind::identity: return "identity";
    case ActivationKind::relu: return "relu";
    case ActivationKind::leaky_relu: return "leaky_relu";
    case ActivationKind::tanh: return "tanh";
    case ActivationKind::sigmoid: return "sigmoid";
    case ActivationKind::gelu: return "gelu";
    case ActivationKind::gelu_tanh: return "gelu_tanh";
    case ActivationKind::silu: return "silu";
  }
  return "?";
}

Tensor activate(const Tensor& x, ActivationKind a, double slope) {
  switch (a) {
    case ActivationKind::identity: return x;
    case ActivationKind::relu: return relu(x);
    case ActivationKind::leaky_relu: return leaky_relu(x, slope);
    case ActivationKind::tanh: return tanh(x);
    case ActivationKind::sigmoid: return sigmoid(x);
    case ActivationKind::gelu: return gelu(x, false);
    case ActivationKind::gelu_tanh: return gelu(x, true);
    case ActivationKind::silu: return silu(x);
  }
  return x;
}

}  // namespace gl
