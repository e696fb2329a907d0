// Shared helpers of the convolution kernel tests: random f32 data, widening to f64 for the
// references, and the relative error against them.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace gl::testing {

inline std::vector<float> random_floats(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}
// max |got - want| / (1 + max |want|): f32 rounding of sums of a few hundred to a few hundred
// thousand products gives 1e-7 to 1e-5 of the magnitude; a wrong transform or tap gives O(1).
inline double rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double m = 0, scale = 0;
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    // A NaN (an element never written, say) must fail: std::max would pass over it.
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    m = std::max(m, std::fabs(double(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return m / (1.0 + scale);
}

// f() with the OpenMP thread count set to `threads`, restored afterwards.
template <class F>
auto with_threads(int threads, F f) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto r = f();
  omp_set_num_threads(saved);
  return r;
}

}  // namespace gl::testing
