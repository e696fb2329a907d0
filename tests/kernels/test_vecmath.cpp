// The vectorized f32 activations against the shared scalar functors (the formula the GPU and
// the f64 gradient checks use), in units in the last place, plus edge values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/vecmath.h"
#include "kernels/functors.h"

using namespace gl::kernels::cpu;

namespace {
// Distance in representable floats.
int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return (std::isnan(a) && std::isnan(b)) ? 0 : INT64_MAX;
  if (a == b) return 0;
  auto key = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, 4);
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  return std::llabs(key(a) - key(b));
}

std::vector<float> sweep(float lo, float hi, int n) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(lo + (hi - lo) * float(i) / float(n - 1));
  for (float e : {0.0f, -0.0f, 1e-8f, -1e-8f, 0.6249f, 0.6251f, -0.625f, 20.f, -20.f, 88.f, -88.f,
                  89.f, -89.f, 1000.f, -1000.f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
    v.push_back(e);
  return v;
}

template <class F>
void check(void (*kernel)(const float*, float*, int64_t), F ref, float lo, float hi,
           int64_t max_ulp, double abs_floor) {
  auto x = sweep(lo, hi, 20001);  // odd length: exercises the tail path
  std::vector<float> y(x.size());
  kernel(x.data(), y.data(), int64_t(x.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    float r = ref(x[i]);
    if (std::isnan(r)) {
      EXPECT_TRUE(std::isnan(y[i])) << "x=" << x[i];
      continue;
    }
    bool ok = ulp_distance(y[i], r) <= max_ulp || std::fabs(double(y[i]) - r) <= abs_floor;
    ASSERT_TRUE(ok) << "x=" << x[i] << " got " << y[i] << " want " << r;
  }
}
}  // namespace

TEST(Vecmath, MatchesFunctorsWithinAFewUlp) {
  if (!vecmath_uses_avx2()) GTEST_SKIP() << "CPU without AVX2+FMA: only the scalar path exists";
  check(exp_f32, gl::fn::Exp{}, -100.f, 100.f, 3, 1e-37);
  check(tanh_f32, gl::fn::Tanh{}, -12.f, 12.f, 3, 1e-7);
  check(sigmoid_f32, gl::fn::Sigmoid{}, -100.f, 100.f, 4, 1e-37);
  check(silu_f32, gl::fn::Silu{}, -100.f, 100.f, 4, 1e-36);
}

TEST(Vecmath, ScalarPathIsTheFunctorExactly) {
  vecmath_force_scalar(true);
  auto x = sweep(-10.f, 10.f, 101);
  std::vector<float> y(x.size());
  tanh_f32(x.data(), y.data(), int64_t(x.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    float r = gl::fn::Tanh{}(x[i]);
    if (std::isnan(r))
      EXPECT_TRUE(std::isnan(y[i]));
    else
      EXPECT_EQ(y[i], r);
  }
  vecmath_force_scalar(false);
}
