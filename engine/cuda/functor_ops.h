// functor_ops.h: maps each functor type of kernels/functors.h to the CUDA elementwise op that
// instantiates the same functor (kernels/cuda/elementwise.h), so that unary_map/binary_map
// (engine/ops/map.h) send a device tensor to the kernel running the formula the CPU runs.
// A functor without a mapping has no CUDA kernel: the map throws naming the op.
#pragma once
#include <type_traits>

#include "kernels/cuda/elementwise.h"
#include "kernels/functors.h"

namespace gl::cuda_ops {

namespace kc = gl::kernels::cuda;

enum class MapKind { none, unary, binary };

template <class Fn>
struct CudaOp {
  static constexpr MapKind kind = MapKind::none;
};

#define GL_CUDA_UNARY(F, OP)                                \
  template <>                                               \
  struct CudaOp<fn::F> {                                    \
    static constexpr MapKind kind = MapKind::unary;         \
    static constexpr kc::UnaryOp op = kc::UnaryOp::OP;      \
    static kc::OpParams params(const fn::F&) { return {}; } \
  };
#define GL_CUDA_BINARY(F, OP)                               \
  template <>                                               \
  struct CudaOp<fn::F> {                                    \
    static constexpr MapKind kind = MapKind::binary;        \
    static constexpr kc::BinaryOp op = kc::BinaryOp::OP;    \
    static kc::OpParams params(const fn::F&) { return {}; } \
  };

GL_CUDA_UNARY(Neg, neg)
GL_CUDA_UNARY(Exp, exp)
GL_CUDA_UNARY(Log, log)
GL_CUDA_UNARY(Sqrt, sqrt)
GL_CUDA_UNARY(Abs, abs)
GL_CUDA_UNARY(Relu, relu)
GL_CUDA_UNARY(Tanh, tanh)
GL_CUDA_UNARY(Sigmoid, sigmoid)
GL_CUDA_UNARY(Silu, silu)
GL_CUDA_UNARY(GeluErf, gelu_erf)
GL_CUDA_UNARY(GeluTanh, gelu_tanh)
GL_CUDA_BINARY(Add, add)
GL_CUDA_BINARY(Sub, sub)
GL_CUDA_BINARY(Mul, mul)
GL_CUDA_BINARY(Div, div)
GL_CUDA_BINARY(ReluBack, relu_back)
GL_CUDA_BINARY(TanhBackFromY, tanh_back_from_y)
GL_CUDA_BINARY(SigmoidBackFromY, sigmoid_back_from_y)
GL_CUDA_BINARY(SiluBack, silu_back)
GL_CUDA_BINARY(GeluErfBack, gelu_erf_back)
GL_CUDA_BINARY(GeluTanhBack, gelu_tanh_back)
#undef GL_CUDA_UNARY
#undef GL_CUDA_BINARY

// The parameterized functors carry their constants into OpParams (a, b as elementwise.h says).
template <>
struct CudaOp<fn::PowScalar> {
  static constexpr MapKind kind = MapKind::unary;
  static constexpr kc::UnaryOp op = kc::UnaryOp::pow_scalar;
  static kc::OpParams params(const fn::PowScalar& f) { return {f.p, 0}; }
};
template <>
struct CudaOp<fn::LeakyRelu> {
  static constexpr MapKind kind = MapKind::unary;
  static constexpr kc::UnaryOp op = kc::UnaryOp::leaky_relu;
  static kc::OpParams params(const fn::LeakyRelu& f) { return {f.slope, 0}; }
};
template <>
struct CudaOp<fn::Clamp> {
  static constexpr MapKind kind = MapKind::unary;
  static constexpr kc::UnaryOp op = kc::UnaryOp::clamp;
  static kc::OpParams params(const fn::Clamp& f) { return {f.lo, f.hi}; }
};
template <>
struct CudaOp<fn::LeakyReluBack> {
  static constexpr MapKind kind = MapKind::binary;
  static constexpr kc::BinaryOp op = kc::BinaryOp::leaky_relu_back;
  static kc::OpParams params(const fn::LeakyReluBack& f) { return {f.slope, 0}; }
};
template <>
struct CudaOp<fn::ClampBack> {
  static constexpr MapKind kind = MapKind::binary;
  static constexpr kc::BinaryOp op = kc::BinaryOp::clamp_back;
  static kc::OpParams params(const fn::ClampBack& f) { return {f.lo, f.hi}; }
};

}  // namespace gl::cuda_ops
