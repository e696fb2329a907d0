// elementwise.cpp: arithmetic and unary math, forward and backward side by side.
#include "engine/ops.h"
#include "engine/ops/map.h"
#include "kernels/functors.h"

namespace gl {

namespace detail {
void check_float_cpu(const Tensor& x, const char* op) {
  GL_CHECK(x.defined(), "{}: undefined tensor", op);
  GL_CHECK(is_floating(x.dtype()), "{}: dtype {} not supported (f32 or f64), tensor {}", op,
           dtype_name(x.dtype()), x.str());
  GL_CHECK(x.device().is_cpu(), "{}: tensor on {} but this op has no kernel there yet", op,
           x.device().str());
}
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  GL_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch {} vs {}", op, a.str(), b.str());
  GL_CHECK(a.device() == b.device(), "{}: device mismatch {} vs {}", op, a.device().str(),
           b.device().str());
}
}  // namespace detail

using detail::binary_map;
using detail::unary_map;

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_map(a, b, fn::Add{}, "add");
  if (needs_grad({&a, &b}))
    attach_grad_fn(out, "add", {a, b}, [](const Tensor& g) -> std::vector<Tensor> { return {g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_map(a, b, fn::Sub{}, "sub");
  if (needs_grad({&a, &b}))
    attach_grad_fn(out, "sub", {a, b},
                   [](const Tensor& g) -> std::vector<Tensor> { return {g, neg(g)}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_map(a, b, fn::Mul{}, "mul");
  if (needs_grad({&a, &b})) {
    Tensor sa = a.detach(), sb = b.detach();
    attach_grad_fn(out, "mul", {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
      return {mul(g, sb), mul(g, sa)};
    }, {a.shape(), b.shape()});
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_map(a, b, fn::Div{}, "div");
  if (needs_grad({&a, &b})) {
    Tensor sa = a.detach(), sb = b.detach();
    attach_grad_fn(out, "div", {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
      Tensor ga = div(g, sb);
      Tensor gb = neg(div(mul(ga, sa), sb));
      return {ga, gb};
    }, {a.shape(), b.shape()});
  }
  return out;
}

// The scalar lives on a's device so that the broadcast stays on one device.
Tensor add(const Tensor& a, double b) {
  return add(a, detail::on_cuda(a) ? Tensor::full({}, b, a.dtype(), a.device()) : Tensor::scalar(b, a.dtype()));
}
Tensor mul(const Tensor& a, double b) {
  return mul(a, detail::on_cuda(a) ? Tensor::full({}, b, a.dtype(), a.device()) : Tensor::scalar(b, a.dtype()));
}

Tensor neg(const Tensor& x) {
  Tensor out = unary_map(x, fn::Neg{}, "neg");
  if (needs_grad({&x}))
    attach_grad_fn(out, "neg", {x}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return out;
}

Tensor pow(const Tensor& x, double p) {
  Tensor out = unary_map(x, fn::PowScalar{p}, "pow");
  if (needs_grad({&x})) {
    Tensor sx = x.detach();
    attach_grad_fn(out, "pow", {x}, [sx, p](const Tensor& g) -> std::vector<Tensor> {
      return {mul(g, mul(pow(sx, p - 1.0), p))};
    }, {x.shape()});
  }
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = unary_map(x, fn::Exp{}, "exp");
  if (needs_grad({&x})) {
    Tensor y = out.detach();
    attach_grad_fn(out, "exp", {x}, [y](const Tensor& g) -> std::vector<Tensor> { return {mul(g, y)}; },
                   {x.shape()});
  }
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = unary_map(x, fn::Log{}, "log");
  if (needs_grad({&x})) {
    Tensor sx = x.detach();
    attach_grad_fn(out, "log", {x}, [sx](const Tensor& g) -> std::vector<Tensor> { return {div(g, sx)}; },
                   {x.shape()});
  }
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary_map(x, fn::Sqrt{}, "sqrt");
  if (needs_grad({&x})) {
    Tensor y = out.detach();
    attach_grad_fn(out, "sqrt", {x}, [y](const Tensor& g) -> std::vector<Tensor> {
      return {div(g, mul(y, 2.0))};
    }, {x.shape()});
  }
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out = unary_map(x, fn::Abs{}, "abs");
  if (needs_grad({&x})) {
    Tensor sx = x.detach();
    attach_grad_fn(out, "abs", {x}, [sx](const Tensor& g) -> std::vector<Tensor> {
      // d|x|/dx = sign(x), taken as 0 at 0. On CUDA by composition of relu_back (exact):
      // (x > 0 ? g : 0) - (-x > 0 ? g : 0).
      if (detail::on_cuda(sx))
        return {sub(binary_map(g, sx, fn::ReluBack{}, "abs_backward"),
                    binary_map(g, neg(sx), fn::ReluBack{}, "abs_backward"))};
      return {binary_map(g, sx, [](auto gv, auto xv) { return xv > 0 ? gv : (xv < 0 ? -gv : gv * 0); }, "abs_backward")};
    }, {x.shape()});
  }
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  GL_CHECK(lo <= hi, "clamp: lower bound {} above upper bound {}", lo, hi);
  Tensor out = unary_map(x, fn::Clamp{lo, hi}, "clamp");
  if (needs_grad({&x})) {
    Tensor sx = x.detach();
    attach_grad_fn(out, "clamp", {x}, [sx, lo, hi](const Tensor& g) -> std::vector<Tensor> {
      return {binary_map(g, sx, fn::ClampBack{lo, hi}, "clamp_backward")};
    }, {x.shape()});
  }
  return out;
}

}  // namespace gl
