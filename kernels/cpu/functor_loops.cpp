// functor_loops.cpp: ReLU, the backwards of ReLU, tanh and sigmoid from their outputs, and the
// product g * f'(x) (kernels/cpu/vecmath.h): the scalar functors' own loops, compiled for
// AVX-512, AVX2 and the baseline and picked at load time (the baseline alone ran them 4 floats at
// a time). This file is compiled without FP contraction (CMakeLists.txt), so every lane computes
// exactly what the scalar functor computes: the same bits on any CPU.
#include <cstdint>

#include "kernels/cpu/vecmath.h"
#include "kernels/functors.h"

namespace gl::kernels::cpu {

#define GL_FUNCTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

GL_FUNCTOR_CLONES void relu_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::Relu{}(x[i]);
}
GL_FUNCTOR_CLONES void relu_backward_f32(const float* g, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::ReluBack{}(g[i], x[i]);
}
GL_FUNCTOR_CLONES void tanh_backward_from_y_f32(const float* g, const float* t, float* y,
                                                int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::TanhBackFromY{}(g[i], t[i]);
}
GL_FUNCTOR_CLONES void sigmoid_backward_from_y_f32(const float* g, const float* s, float* y,
                                                   int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fn::SigmoidBackFromY{}(g[i], s[i]);
}
GL_FUNCTOR_CLONES void times_f32(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

#undef GL_FUNCTOR_CLONES

}  // namespace gl::kernels::cpu
