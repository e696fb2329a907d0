// avx512_util.h: what the hand-written AVX-512 kernels outside the GEMM share (winograd,
// conv_direct, pool_avx512): their target attribute and the mask of the first lanes.
#pragma once
#include <immintrin.h>

#include <cstdint>

// The AVX-512 subsets these kernels use; callers check cpu_runs_avx512() (cpu_features.h).
#define GL_AVX512_KERNEL __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))

namespace gl::kernels::cpu {

// The first `count` of 16 lanes (none for count <= 0, all for count >= 16).
GL_AVX512_KERNEL inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

}  // namespace gl::kernels::cpu
