// scratch.h: per-thread scratch buffers reused across calls, so the convolution kernels do not
// fault in fresh pages for their temporary matrices on every training step.
#pragma once
#include <cstddef>
#include <vector>

namespace gl::kernels::cpu {

// Buffer `slot` (0 .. kScratchSlots - 1) of the calling thread, grown to at least n elements.
// A caller owns the slots it uses until it returns; callers never nest.
inline constexpr int kScratchSlots = 6;
template <class T>
T* thread_scratch(int slot, std::size_t n) {
  static thread_local std::vector<T> buffers[kScratchSlots];
  auto& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

}  // namespace gl::kernels::cpu
