// vecmath.h: vectorized f32 transcendental activations over contiguous arrays. AVX2+FMA and
// AVX-512 versions (Cephes-style polynomials, a few ulp) are chosen at run time; the scalar
// fallback evaluates the shared functors of kernels/functors.h. The f64 path (gradient checks)
// always uses the functors, so the exact formula stays the one tested against finite differences.
#pragma once
#include <cstdint>

#include "kernels/kernels.h"

namespace gl::kernels::cpu {

void exp_f32(const float* x, float* y, int64_t n);
void tanh_f32(const float* x, float* y, int64_t n);
void sigmoid_f32(const float* x, float* y, int64_t n);
// silu(x) = x * sigmoid(x)
void silu_f32(const float* x, float* y, int64_t n);
// gelu(x) = x Phi(x), the erf form (Phi the standard normal CDF)
void gelu_f32(const float* x, float* y, int64_t n);
// y = g * gelu'(x) = g * (Phi(x) + x phi(x))
void gelu_backward_f32(const float* g, const float* x, float* y, int64_t n);
// y = g * silu'(x) = g * s (1 + x (1 - s)), s = sigmoid(x)
void silu_backward_f32(const float* g, const float* x, float* y, int64_t n);
// gelu, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), and y = g * its derivative
void gelu_tanh_f32(const float* x, float* y, int64_t n);
void gelu_tanh_backward_f32(const float* g, const float* x, float* y, int64_t n);
// y = gelu(x) and d = gelu'(x) in one pass (erf and tanh forms): g * d is then, bit for bit,
// what the backward kernel above gives from x, for every x that is not NaN (NaN gives NaN).
void gelu_and_derivative_f32(const float* x, float* y, float* d, int64_t n);
void gelu_tanh_and_derivative_f32(const float* x, float* y, float* d, int64_t n);

// Piecewise-linear and from-output activations: plain loops over the functors, built for
// AVX-512, AVX2 and the baseline (picked at load time) with no fused multiply-adds, so the same
// values as the functors bit for bit on any CPU.
void relu_f32(const float* x, float* y, int64_t n);
// y = g where x > 0, else 0
void relu_backward_f32(const float* g, const float* x, float* y, int64_t n);
// y = g * (1 - t^2) with t = tanh(x), and y = g * s (1 - s) with s = sigmoid(x)
void tanh_backward_from_y_f32(const float* g, const float* t, float* y, int64_t n);
void sigmoid_backward_from_y_f32(const float* g, const float* s, float* y, int64_t n);
// y = a * b elementwise (the backward through a derivative kept from the forward: g * f'(x)).
void times_f32(const float* a, const float* b, float* y, int64_t n);

// In place over an m x n block whose rows are ldc floats apart: each row what tanh_f32 /
// sigmoid_f32 give it, bit for bit. activation_rows_f32 returns the function for the current
// selection (AVX-512, AVX2 or scalar; null for the activations that are no transcendental map).
// The GEMM epilogue applies it to each output tile while the tile is in L1.
using RowsMapF32 = void (*)(float* c, int64_t ldc, int64_t m, int64_t n);
RowsMapF32 activation_rows_f32(Activation act);

// True when the AVX2 or AVX-512 paths are in use (for tests and benchmarks); the second when
// AVX-512 is (on a CPU that runs it, unless forced to AVX2).
bool vecmath_uses_avx2();
bool vecmath_uses_avx512();
// Forces AVX2 on an AVX-512 CPU (tests compare the two); false restores automatic selection.
void vecmath_force_avx2(bool on);
// Forces the scalar path (tests compare both); false restores automatic selection.
void vecmath_force_scalar(bool on);

}  // namespace gl::kernels::cpu
