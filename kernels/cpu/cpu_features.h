// cpu_features.h: the run-time CPU feature check shared by the hand-vectorized kernels.
#pragma once
#include "kernels/kernels.h"

namespace gl::kernels::cpu {

// AVX2 and FMA both present (the AVX2 paths use fused multiply-adds).
inline bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// The AVX-512 kernels outside the GEMM (Winograd, direct conv, pooling) run: the CPU has
// AVX-512 F/VL/DQ/BW and the GEMM runs its AVX-512 kernel (cpu::set_isa forces the baseline
// paths for tests).
inline bool cpu_runs_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
  return ok && isa_level() == 2;
}

// The AVX2 paths outside the GEMM run: the CPU has AVX2 and FMA and the GEMM is not forced to
// its scalar kernels.
inline bool cpu_runs_avx2() {
  return cpu_has_avx2_fma() && isa_level() >= 1;
}

}  // namespace gl::kernels::cpu
