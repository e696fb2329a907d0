// cuda_devices.h: the tests that need several CUDA devices.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "kernels/kernels.h"
#if defined(GRADLENS_HAVE_CUDA)
#include <optional>

#include "kernels/cuda/runtime.h"
#endif

namespace gl::testing {

// "" when this build has CUDA and the machine at least `n` CUDA devices, else the reason.
inline std::string missing_gpus(int n) {
#if defined(GRADLENS_HAVE_CUDA)
  const int have = kernels::cuda::device_count();
  if (have >= n) return "";
  return std::to_string(have) + " CUDA device(s) on this machine, " + std::to_string(n) + " needed";
#else
  return "this build has no CUDA backend (configure with -DGRADLENS_CUDA=ON), " +
         std::to_string(n) + " CUDA devices needed";
#endif
}

// Fixture of the tests that use tensors on cuda:1 while cuda:0 is current: skips with fewer
// than two devices, else makes cuda:0 current for the test.
class TwoGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = missing_gpus(2);
    if (!why.empty()) GTEST_SKIP() << "multi-device test skipped: " << why;
#if defined(GRADLENS_HAVE_CUDA)
    current_.emplace(0);
#endif
  }
#if defined(GRADLENS_HAVE_CUDA)
  std::optional<kernels::cuda::DeviceScope> current_;
#endif
};

}  // namespace gl::testing
