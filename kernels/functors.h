// functors.h: elementwise math written once. The CPU loops (engine/ops) and the CUDA kernels
// (kernels/cuda) instantiate these same functors, so a CPU test checks the formula the GPU
// runs. Forward functors take inputs; backward functors take (grad_out, saved values...) and
// return the gradient with respect to the input.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define GL_HD __host__ __device__ __forceinline__
#else
#define GL_HD inline
#endif

namespace gl::fn {

// Overloads so that float stays float on host and device.
GL_HD float m_exp(float x) { return ::expf(x); }
GL_HD double m_exp(double x) { return ::exp(x); }
GL_HD float m_log(float x) { return ::logf(x); }
GL_HD double m_log(double x) { return ::log(x); }
GL_HD float m_sqrt(float x) { return ::sqrtf(x); }
GL_HD double m_sqrt(double x) { return ::sqrt(x); }
GL_HD float m_tanh(float x) { return ::tanhf(x); }
GL_HD double m_tanh(double x) { return ::tanh(x); }
GL_HD float m_erf(float x) { return ::erff(x); }
GL_HD double m_erf(double x) { return ::erf(x); }
GL_HD float m_pow(float x, float p) { return ::powf(x, p); }
GL_HD double m_pow(double x, double p) { return ::pow(x, p); }
GL_HD float m_abs(float x) { return ::fabsf(x); }
GL_HD double m_abs(double x) { return ::fabs(x); }

template <class T>
GL_HD T sigmoid_of(T x) {
  // Stable for large |x|: never evaluates exp of a large positive number.
  if (x >= T(0)) {
    T z = m_exp(-x);
    return T(1) / (T(1) + z);
  }
  T z = m_exp(x);
  return z / (T(1) + z);
}

// ---- element conversion ----
// The dtype conversion of the engine's copies, casts (Tensor::to, copy_) and fills, the same
// on the CPU and the GPU. A floating value converted to an integer type is truncated toward
// zero and clamped to the type's range, NaN giving 0: into u8, -inf, -3.5, 2.9, 300 and NaN
// give 0, 0, 2, 255 and 0 (C++ leaves the out-of-range cases undefined). Every other conversion
// is C++'s: integers wrap modulo 2^bits, floating values round to nearest (overflowing to
// +-inf).
template <class D>
struct IntBounds {
  static_assert(std::is_integral_v<D>);
  static constexpr D hi =
      std::is_signed_v<D> ? D((uint64_t(1) << (8 * sizeof(D) - 1)) - 1) : D(~D(0));
  static constexpr D lo = std::is_signed_v<D> ? D(-hi - 1) : D(0);
};

template <class D, class S>
GL_HD D saturate_cast(S v) {
  if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    if (!(v == v)) return D(0);
    // S(hi) rounds up to a power of two for 64-bit D: every v below it converts exactly.
    if (v <= S(IntBounds<D>::lo)) return IntBounds<D>::lo;
    if (v >= S(IntBounds<D>::hi)) return IntBounds<D>::hi;
    return D(v);
  } else {
    return D(v);
  }
}

// ---- binary ----
struct Add { template <class T> GL_HD T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> GL_HD T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> GL_HD T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> GL_HD T operator()(T a, T b) const { return a / b; } };

// ---- unary forward ----
struct Neg { template <class T> GL_HD T operator()(T x) const { return -x; } };
struct Exp { template <class T> GL_HD T operator()(T x) const { return m_exp(x); } };
struct Log { template <class T> GL_HD T operator()(T x) const { return m_log(x); } };
struct Sqrt { template <class T> GL_HD T operator()(T x) const { return m_sqrt(x); } };
struct Abs { template <class T> GL_HD T operator()(T x) const { return m_abs(x); } };
// NaN propagates (as in PyTorch); -0 gives +0.
struct Relu {
  template <class T>
  GL_HD T operator()(T x) const {
    return x <= T(0) ? T(0) : x;
  }
};
struct Tanh { template <class T> GL_HD T operator()(T x) const { return m_tanh(x); } };
struct Sigmoid { template <class T> GL_HD T operator()(T x) const { return sigmoid_of(x); } };
struct Silu { template <class T> GL_HD T operator()(T x) const { return x * sigmoid_of(x); } };
struct PowScalar {
  double p;
  template <class T> GL_HD T operator()(T x) const { return m_pow(x, T(p)); }
};
struct LeakyRelu {
  double slope;
  template <class T> GL_HD T operator()(T x) const { return x > T(0) ? x : T(slope) * x; }
};
struct Clamp {
  double lo, hi;
  template <class T> GL_HD T operator()(T x) const {
    return x < T(lo) ? T(lo) : (x > T(hi) ? T(hi) : x);
  }
};
// GELU, exact form: x * Phi(x).
struct GeluErf {
  template <class T> GL_HD T operator()(T x) const {
    return T(0.5) * x * (T(1) + m_erf(x * T(0.70710678118654752440)));
  }
};
// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct GeluTanh {
  template <class T> GL_HD T operator()(T x) const {
    const T k = T(0.79788456080286535588);
    T u = k * (x + T(0.044715) * x * x * x);
    return T(0.5) * x * (T(1) + m_tanh(u));
  }
};

// ---- unary backward: (grad_out, x) -> grad_in, or (grad_out, y) where noted ----
struct ReluBack { template <class T> GL_HD T operator()(T g, T x) const { return x > T(0) ? g : T(0); } };
struct LeakyReluBack {
  double slope;
  template <class T> GL_HD T operator()(T g, T x) const { return x > T(0) ? g : T(slope) * g; }
};
// Takes y = tanh(x).
struct TanhBackFromY { template <class T> GL_HD T operator()(T g, T y) const { return g * (T(1) - y * y); } };
// Takes y = sigmoid(x).
struct SigmoidBackFromY { template <class T> GL_HD T operator()(T g, T y) const { return g * y * (T(1) - y); } };
struct SiluBack {
  template <class T> GL_HD T operator()(T g, T x) const {
    T s = sigmoid_of(x);
    return g * s * (T(1) + x * (T(1) - s));
  }
};
struct GeluErfBack {
  template <class T> GL_HD T operator()(T g, T x) const {
    T cdf = T(0.5) * (T(1) + m_erf(x * T(0.70710678118654752440)));
    T pdf = T(0.39894228040143267794) * m_exp(T(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};
struct GeluTanhBack {
  template <class T> GL_HD T operator()(T g, T x) const {
    const T k = T(0.79788456080286535588);
    T x2 = x * x;
    T u = k * (x + T(0.044715) * x2 * x);
    T t = m_tanh(u);
    T du = k * (T(1) + T(3) * T(0.044715) * x2);
    return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
  }
};
struct ClampBack {
  double lo, hi;
  template <class T> GL_HD T operator()(T g, T x) const {
    return (x >= T(lo) && x <= T(hi)) ? g : T(0);
  }
};

}  // namespace gl::fn
