// philox.h: counter-based Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11), usable on host and device. Element i of a draw uses counter block
// (offset + i) under the generator's key, so the CPU and the GPU produce the same numbers
// for the same seed whatever the thread layout.
#pragma once
#include <cstdint>

#include "kernels/functors.h"

namespace gl::philox {

struct Block {
  uint32_t v[4];
};

GL_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

// Philox4x32 with 10 rounds on counter c under key k.
GL_HD Block philox4x32_10(Block c, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, c.v[0], hi0, lo0);
    mulhilo(0xCD9E8D57u, c.v[2], hi1, lo1);
    Block n;
    n.v[0] = hi1 ^ c.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ c.v[3] ^ k1;
    n.v[3] = lo0;
    c = n;
  }
  return c;
}

// The block for element `index` of a draw starting at `offset` of the stream keyed by seed.
GL_HD Block block_at(uint64_t seed, uint64_t offset, uint64_t index) {
  uint64_t ctr = offset + index;
  Block c{{uint32_t(ctr), uint32_t(ctr >> 32), 0u, 0u}};
  return philox4x32_10(c, uint32_t(seed), uint32_t(seed >> 32));
}

// 53-bit uniform double in [0, 1) from two 32-bit words.
GL_HD double unit_double(uint32_t a, uint32_t b) {
  return (double(a >> 5) * 67108864.0 + double(b >> 6)) * (1.0 / 9007199254740992.0);
}

GL_HD double uniform_at(uint64_t seed, uint64_t offset, uint64_t index) {
  Block b = block_at(seed, offset, index);
  return unit_double(b.v[0], b.v[1]);
}

// Standard normal by Box-Muller (cosine branch) from one block.
GL_HD double normal_at(uint64_t seed, uint64_t offset, uint64_t index) {
  Block b = block_at(seed, offset, index);
  double u1 = unit_double(b.v[0], b.v[1]);
  double u2 = unit_double(b.v[2], b.v[3]);
  return ::sqrt(-2.0 * ::log(1.0 - u1)) * ::cos(6.283185307179586476925 * u2);
}

}  // namespace gl::philox
