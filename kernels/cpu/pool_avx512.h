// pool_avx512.h: AVX-512 max pooling with 2x2 windows and stride 2 (no padding), f32
// (kernels/cpu/pool_avx512.cpp). conv.cpp uses it for the CNNs' pooling layers where
// cpu_runs_avx512() (cpu_features.h); it keeps the scalar path's first-maximum and NaN rules
// exactly.
#pragma once
#include <cstdint>

namespace gl::kernels::cpu {

// out / argmax [planes, h / 2, w / 2] from x [planes, h, w]; argmax is the flat index in the plane.
void max_pool_2x2_forward_avx512(int64_t planes, int64_t h, int64_t w, const float* x, float* out,
                                 int32_t* argmax);
// grad_x [planes, h, w] (overwritten) = grad_out scattered to the argmax positions.
void max_pool_2x2_backward_avx512(int64_t planes, int64_t h, int64_t w, const float* grad_out,
                                  const int32_t* argmax, float* grad_x);

}  // namespace gl::kernels::cpu
