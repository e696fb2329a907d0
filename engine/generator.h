// generator.h: an explicitly seeded Philox stream. Each draw of n numbers consumes counters
// [offset, offset + n) and advances the offset, so a (seed, offset) pair names a draw exactly
// and the GPU can reproduce it.
#pragma once
#include <cstdint>

namespace gl {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves n counters and returns the offset of the first.
  uint64_t advance(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }
  double uniform();  // one number in [0, 1)
  double normal();
  // A uniformly random integer in [0, n).
  uint64_t below(uint64_t n);

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

}  // namespace gl
