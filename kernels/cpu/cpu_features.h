// cpu_features.h: the run-time CPU feature check shared by the hand-vectorized kernels.
#pragma once

namespace gl::kernels::cpu {

// AVX2 and FMA both present (the AVX2 paths use fused multiply-adds).
inline bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

}  // namespace gl::kernels::cpu
