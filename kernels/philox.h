// philox.h: the counter-based Philox4x32-R generator (Salmon et al., SC'11; Random123), usable
// from host and device code. The CPU engine and the CUDA kernels both include this header, so
// a (seed, stream, index) triple yields bit-identical uniform numbers on either device; that is
// what makes dropout masks and initialization agree between CPU and GPU runs.
//
// Stream layout (fixed; changing it changes every random number the engine draws):
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (block low, block high, stream low, stream high), block = index / 4
//   element `index` of a stream is word (index % 4) of philox4x32_10(counter, key).
#pragma once
#include <cmath>
#include <cstdint>

#if !defined(GL_HD)
#if defined(__CUDACC__)
#define GL_HD __host__ __device__ __forceinline__
#else
#define GL_HD inline
#endif
#endif

namespace gl::rng {

struct Philox4x32Ctr {
  uint32_t v[4];
};
struct Philox4x32Key {
  uint32_t v[2];
};

inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

GL_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  // A 64-bit product is exact on both host and device (IMAD.WIDE on the GPU).
  const uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

GL_HD Philox4x32Ctr philox4x32_round(Philox4x32Ctr c, Philox4x32Key k) {
  uint32_t hi0, lo0, hi1, lo1;
  philox_mulhilo(kPhiloxM0, c.v[0], hi0, lo0);
  philox_mulhilo(kPhiloxM1, c.v[2], hi1, lo1);
  Philox4x32Ctr out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

// R rounds; the key is bumped between rounds (the first round uses the key as given).
template <int R>
GL_HD Philox4x32Ctr philox4x32(Philox4x32Ctr c, Philox4x32Key k) {
  static_assert(R >= 1 && R <= 16, "Philox4x32: 1..16 rounds");
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < R; ++r) {
    if (r > 0) {
      k.v[0] += kPhiloxW0;
      k.v[1] += kPhiloxW1;
    }
    c = philox4x32_round(c, k);
  }
  return c;
}

GL_HD Philox4x32Ctr philox4x32_10(Philox4x32Ctr c, Philox4x32Key k) { return philox4x32<10>(c, k); }

// Uniform float in [0, 1): the top 24 bits scaled by 2^-24, so every value is exactly
// representable and 1.0f can never be produced (a dropout test `u < p` with p = 1 keeps nothing
// and p = 0 drops nothing).
GL_HD float philox_u01(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

// Block of 4 raw words for (seed, stream, block).
GL_HD Philox4x32Ctr philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  Philox4x32Ctr c{{uint32_t(block), uint32_t(block >> 32), uint32_t(stream),
                   uint32_t(stream >> 32)}};
  Philox4x32Key k{{uint32_t(seed), uint32_t(seed >> 32)}};
  return philox4x32_10(c, k);
}

// Raw 32-bit word number `index` of (seed, stream).
GL_HD uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  const Philox4x32Ctr r = philox_block(seed, stream, index >> 2);
  return r.v[index & 3u];
}

// Uniform float in [0, 1) number `index` of (seed, stream).
GL_HD float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox_u01(philox_u32(seed, stream, index));
}

}  // namespace gl::rng

// ---- The engine's draws: element `index` of a draw starting at `offset` of the stream keyed by
// `seed` uses the whole block philox4x32_10(counter = offset + index, stream 0). Uniforms use 53
// bits, normals one Box-Muller pair per block, so f32 and f64 tensors drawn from the same
// generator state agree to rounding. Tensor::rand/randn, dropout masks and the CUDA kernels
// that reproduce them all go through these functions.
namespace gl::philox {

GL_HD rng::Philox4x32Ctr block_at(uint64_t seed, uint64_t offset, uint64_t index) {
  return rng::philox_block(seed, 0, offset + index);
}

// 53-bit uniform double in [0, 1) from two 32-bit words.
GL_HD double unit_double(uint32_t a, uint32_t b) {
  return (double(a >> 5) * 67108864.0 + double(b >> 6)) * (1.0 / 9007199254740992.0);
}

GL_HD double uniform_at(uint64_t seed, uint64_t offset, uint64_t index) {
  rng::Philox4x32Ctr b = block_at(seed, offset, index);
  return unit_double(b.v[0], b.v[1]);
}

// Standard normal by Box-Muller (cosine branch) from one block.
GL_HD double normal_at(uint64_t seed, uint64_t offset, uint64_t index) {
  rng::Philox4x32Ctr b = block_at(seed, offset, index);
  double u1 = unit_double(b.v[0], b.v[1]);
  double u2 = unit_double(b.v[2], b.v[3]);
  return ::sqrt(-2.0 * ::log(1.0 - u1)) * ::cos(6.283185307179586476925 * u2);
}

}  // namespace gl::philox
