// test_fp_env.cpp: DenormalScope flushes subnormal floats and doubles to zero on the calling
// thread and on the threads of an OpenMP team, keeps them when asked to, and puts back the mode
// it found. Oracle: IEEE gradual underflow, 1e-30f * 1e-10f = 1e-40f (a float subnormal) and
// 1e-300 * 1e-10 = 1e-310 (a double subnormal).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/fp_env.h"

namespace {

using namespace gl::kernels::cpu;

// Through volatile, so that the compiler cannot fold the products at compile time.
float mulf(float a, float b) {
  volatile float x = a, y = b;
  return x * y;
}
double muld(double a, double b) {
  volatile double x = a, y = b;
  return x * y;
}

// True when the calling thread flushes: a subnormal result becomes 0 (FTZ) and a subnormal
// input reads as 0 (DAZ), in float and in double.
bool thread_flushes() {
  const bool ftz_f = mulf(1e-30f, 1e-10f) == 0.0f;
  const bool daz_f = mulf(1e-40f, 1e30f) == 0.0f;  // 1e-10 under gradual underflow
  const bool ftz_d = muld(1e-300, 1e-10) == 0.0;
  EXPECT_EQ(ftz_f, daz_f);
  EXPECT_EQ(ftz_f, ftz_d);
  EXPECT_EQ(ftz_f, flushes_denormals());
  return ftz_f;
}

// thread_flushes() on every thread of a team of the default size.
std::vector<int> team_flushes() {
  std::vector<int> out(std::size_t(omp_get_max_threads()), -1);
#pragma omp parallel
  out[std::size_t(omp_get_thread_num())] = thread_flushes() ? 1 : 0;
  return out;
}

TEST(FpEnv, GradualUnderflowIsTheIeeeResult) {
  if (!can_flush_denormals()) GTEST_SKIP() << "this build cannot switch the subnormal mode";
  set_flush_denormals(false);
  const float p = mulf(1e-30f, 1e-10f);
  EXPECT_EQ(std::fpclassify(p), FP_SUBNORMAL);
  EXPECT_NEAR(double(p), 1e-40, 1e-45);
  EXPECT_NEAR(double(mulf(1e-40f, 1e30f)), 1e-10, 1e-14);
  EXPECT_EQ(std::fpclassify(muld(1e-300, 1e-10)), FP_SUBNORMAL);
}

TEST(FpEnv, ScopeFlushesOnEveryThreadAndRestores) {
  if (!can_flush_denormals()) GTEST_SKIP() << "this build cannot switch the subnormal mode";
  omp_set_num_threads(3);
  set_flush_denormals(false);
#pragma omp parallel
  set_flush_denormals(false);
  EXPECT_FALSE(thread_flushes());
  {
    DenormalScope flush(true);
    EXPECT_TRUE(thread_flushes());
    EXPECT_EQ(team_flushes(), std::vector<int>(3, 1));
    {
      DenormalScope keep(false);  // nested: keeps them, then goes back to flushing
      EXPECT_FALSE(thread_flushes());
      EXPECT_EQ(team_flushes(), std::vector<int>(3, 0));
    }
    EXPECT_TRUE(thread_flushes());
    EXPECT_EQ(team_flushes(), std::vector<int>(3, 1));
    // Normal values are untouched.
    EXPECT_EQ(mulf(1.5f, 2.0f), 3.0f);
    EXPECT_EQ(mulf(1e-18f, 1e-18f), 1e-18f * 1e-18f);  // 1e-36: normal, above 1.18e-38
  }
  EXPECT_FALSE(thread_flushes());
  EXPECT_EQ(team_flushes(), std::vector<int>(3, 0));
  omp_set_num_threads(omp_get_num_procs());
}

TEST(FpEnv, ScopeInsideAParallelRegionSetsItsOwnThread) {
  if (!can_flush_denormals()) GTEST_SKIP() << "this build cannot switch the subnormal mode";
  set_flush_denormals(false);
  std::vector<int> inside(2, -1), after(2, -1);
#pragma omp parallel num_threads(2)
  {
    const auto t = std::size_t(omp_get_thread_num());
    {
      DenormalScope flush(true);
      inside[t] = thread_flushes() ? 1 : 0;
    }
    after[t] = thread_flushes() ? 1 : 0;
  }
  EXPECT_EQ(inside, std::vector<int>(2, 1));
  EXPECT_EQ(after, std::vector<int>(2, 0));
}

}  // namespace
