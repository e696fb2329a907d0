// batch.h: the host side of the pointer-array batches whose kernels take up to a fixed number
// of entries per launch, their pointers passed by value as a kernel argument (blockIdx.y names
// the entry): the checks of the arrays and the split into launches.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace gl::kernels::cuda {

// Throws std::invalid_argument naming `op` when count is negative or an entry of one of the
// host arrays of device pointers is null.
template <class... Ptrs>
void check_batch(const char* op, int64_t count, Ptrs... arrays) {
  if (count < 0)
    throw std::invalid_argument(std::string(op) + ": negative count " + std::to_string(count));
  for (int64_t i = 0; i < count; ++i)
    if (((arrays[i] == nullptr) || ...))
      throw std::invalid_argument(std::string(op) + ": null pointer in entry " + std::to_string(i));
}

// launch(first, entries) for consecutive runs of at most kMax of the count entries, in order.
template <int kMax, class F>
void for_each_launch(int64_t count, F&& launch) {
  for (int64_t first = 0; first < count; first += kMax)
    launch(first, int(count - first < kMax ? count - first : kMax));
}

}  // namespace gl::kernels::cuda
