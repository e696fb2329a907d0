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

// GELU (erf form) against x Phi(x) in f64 with Phi from erfc: the f32 functor loses the left
// tail to the cancellation in 1 + erf(x), the kernel computes erfc directly. Measured: within
// 7.5e-7 relative (12 ulp at worst, near x = -1.4 where erfc = 1 - erf loses bits); the
// derivative within 2.8e-7 of |Phi| + |x phi| (its two terms cancel near its root, x = -0.75).
// Values under 1e-30 count as equal.
TEST(Vecmath, GeluAndItsDerivativeMatchTheF64Formula) {
  if (!vecmath_uses_avx2()) GTEST_SKIP() << "CPU without AVX2+FMA: only the scalar path exists";
  auto x = sweep(-14.f, 14.f, 40001);
  std::vector<float> g(x.size()), y(x.size()), d(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) g[i] = 0.5f + float(i % 7) * 0.25f;
  gelu_f32(x.data(), y.data(), int64_t(x.size()));
  gelu_backward_f32(g.data(), x.data(), d.data(), int64_t(x.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    // The f64 reference through erfc (1 + erf(x) cancels in f64 too below x = -8).
    const double xd = x[i], cdf = 0.5 * std::erfc(-xd / std::sqrt(2.0));
    const double pdf = std::exp(-0.5 * xd * xd) * 0.3989422804014327;
    const double r = xd * cdf, rd = double(g[i]) * (cdf + xd * pdf);
    if (std::isnan(r))
      EXPECT_TRUE(std::isnan(y[i])) << "x=" << x[i];
    else if (std::isinf(r))
      EXPECT_EQ(double(y[i]), r) << "x=" << x[i];
    else
      ASSERT_LE(std::fabs(double(y[i]) - r), 1.5e-6 * std::fabs(r) + 1e-30)
          << "x=" << x[i] << " got " << y[i] << " want " << r;
    if (std::isnan(rd)) {
      EXPECT_TRUE(std::isnan(d[i])) << "x=" << x[i];
      continue;
    }
    const double scale =
        std::fabs(g[i]) * (cdf + std::fabs(xd) * std::exp(-0.5 * xd * xd) * 0.3989422804014327);
    ASSERT_LE(std::fabs(double(d[i]) - rd), 5e-7 * scale + 1e-30)
        << "x=" << x[i] << " got " << d[i] << " want " << rd;
  }
  // The scalar path evaluates the functors.
  vecmath_force_scalar(true);
  std::vector<float> ys(x.size());
  gelu_f32(x.data(), ys.data(), int64_t(x.size()));
  vecmath_force_scalar(false);
  for (std::size_t i = 0; i < x.size(); i += 97) {
    if (std::isnan(ys[i])) continue;
    EXPECT_EQ(ys[i], gl::fn::GeluErf{}(x[i]));
  }
}

// SiLU's derivative and the tanh form of GELU (forward and derivative) against the functors in
// f64. Tolerances: a few ulp relative, plus the absolute error f32 cannot avoid where terms
// cancel (1 + tanh(u) for very negative x; 1 - tanh(u)^2 times a factor growing as x^3).
TEST(Vecmath, SiluAndGeluTanhMatchTheF64Functors) {
  if (!vecmath_uses_avx2()) GTEST_SKIP() << "CPU without AVX2+FMA: only the scalar path exists";
  auto x = sweep(-12.f, 12.f, 30001);
  std::vector<float> g(x.size()), y(x.size()), ds(x.size()), dg(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) g[i] = 0.5f + float(i % 5) * 0.375f;
  const int64_t n = int64_t(x.size());
  gelu_tanh_f32(x.data(), y.data(), n);
  gelu_tanh_backward_f32(g.data(), x.data(), dg.data(), n);
  silu_backward_f32(g.data(), x.data(), ds.data(), n);
  auto near = [](float got, double want, double tol) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return double(got) == want;
    return std::fabs(double(got) - want) <= tol;
  };
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xd = x[i], gd = g[i], ax = std::fabs(xd);
    if (std::isinf(xd)) continue;  // the functors' own 0 * inf
    const double r = gl::fn::GeluTanh{}(xd);
    ASSERT_TRUE(near(y[i], r, 2e-6 * std::fabs(r) + 1e-7 * ax + 1e-30))
        << "gelu_tanh x=" << x[i] << " got " << y[i] << " want " << r;
    const double rg = gl::fn::GeluTanhBack{}(gd, xd);
    ASSERT_TRUE(
        near(dg[i], rg, 2e-6 * std::fabs(rg) + 2e-7 * gd * (1 + ax * (1 + 0.134 * xd * xd))))
        << "gelu_tanh' x=" << x[i] << " got " << dg[i] << " want " << rg;
    const double rs = gl::fn::SiluBack{}(gd, xd);
    ASSERT_TRUE(near(ds[i], rs, 2e-6 * std::fabs(rs) + 2e-7 * gd))
        << "silu' x=" << x[i] << " got " << ds[i] << " want " << rs;
  }
}

// ReLU, the from-output backwards and the plain product run the functors' own loops, built for
// the CPU's widest vectors: every element bit for bit the scalar functor's, including signed
// zeros, infinities, denormals and NaN (NaN only as NaN), over lengths with every tail.
TEST(Vecmath, FunctorLoopsGiveTheFunctorsBits) {
  std::vector<float> x = sweep(-30.f, 30.f, 4001), g = sweep(-3.f, 3.f, 4001);
  for (float e : {1e-40f, -1e-40f, 3e-39f, std::numeric_limits<float>::max(),
                  -std::numeric_limits<float>::max(), 0.999999f, -0.999999f, 1.f, -1.f}) {
    x.push_back(e);
    g.push_back(e);
  }
  // Values in (-1, 1) as tanh and sigmoid outputs, with many rounding cases of 1 - y^2.
  std::vector<float> t(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) t[i] = std::tanh(x[i] / 7.f) * 0.999f;
  auto same = [](float a, float b) {
    return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
  };
  for (int64_t n : {int64_t(x.size()), int64_t(1), int64_t(15), int64_t(17), int64_t(33)}) {
    std::vector<float> y(std::size_t(n), 7.f);
    relu_f32(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same(y[i], gl::fn::Relu{}(x[i]))) << x[i];
    relu_backward_f32(g.data(), x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_TRUE(same(y[i], gl::fn::ReluBack{}(g[i], x[i]))) << g[i] << " " << x[i];
    for (const std::vector<float>* out : {&t, &x}) {
      const std::vector<float>& o = *out;
      tanh_backward_from_y_f32(g.data(), o.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_TRUE(same(y[i], gl::fn::TanhBackFromY{}(g[i], o[i]))) << g[i] << " " << o[i];
      sigmoid_backward_from_y_f32(g.data(), o.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_TRUE(same(y[i], gl::fn::SigmoidBackFromY{}(g[i], o[i]))) << g[i] << " " << o[i];
      times_f32(g.data(), o.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same(y[i], g[i] * o[i])) << g[i] << " " << o[i];
    }
  }
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

// The AVX-512 and AVX2 loops are one source (vecmath_impl.inc) over the same operations: on a
// CPU that runs both they must agree bit for bit, tails (the padded last vector) included.
TEST(Vecmath, Avx512AndAvx2GiveTheSameBits) {
  if (!vecmath_uses_avx512()) GTEST_SKIP() << "CPU without AVX-512: only the AVX2 path runs here";
  std::vector<float> x = sweep(-30.f, 30.f, 20011), g = sweep(-3.f, 3.f, 20011);
  g.resize(x.size(), 0.5f);
  using Map = void (*)(const float*, float*, int64_t);
  using Back = void (*)(const float*, const float*, float*, int64_t);
  const Map maps[] = {exp_f32, tanh_f32, sigmoid_f32, silu_f32, gelu_f32, gelu_tanh_f32};
  const Back backs[] = {gelu_backward_f32, silu_backward_f32, gelu_tanh_backward_f32};
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b, const char* what,
                      std::size_t k) {
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i)
      ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0)
          << what << " " << k << " at x = " << i << ": avx512 " << a[i] << " avx2 " << b[i];
  };
  for (int64_t n : {int64_t(x.size()), int64_t(13), int64_t(1)}) {  // 13, 1: the tail alone
    for (std::size_t k = 0; k < std::size(maps); ++k) {
      std::vector<float> wide(std::size_t(n), 0.f), narrow(std::size_t(n), 0.f);
      maps[k](x.data(), wide.data(), n);
      vecmath_force_avx2(true);
      maps[k](x.data(), narrow.data(), n);
      vecmath_force_avx2(false);
      same_bits(wide, narrow, "map", k);
    }
    for (std::size_t k = 0; k < std::size(backs); ++k) {
      std::vector<float> wide(std::size_t(n), 0.f), narrow(std::size_t(n), 0.f);
      backs[k](g.data(), x.data(), wide.data(), n);
      vecmath_force_avx2(true);
      backs[k](g.data(), x.data(), narrow.data(), n);
      vecmath_force_avx2(false);
      same_bits(wide, narrow, "backward", k);
    }
  }
}

// The fused step keeps GELU's derivative from the forward instead of its input: y must be the
// forward kernel's bits and g * d the backward kernel's, on every path (scalar, AVX2, AVX-512).
TEST(Vecmath, ForwardWithDerivativeGivesForwardAndBackwardBits) {
  std::vector<float> x = sweep(-16.f, 16.f, 20011), g = sweep(-3.f, 3.f, 20011);
  g.resize(x.size(), 0.5f);
  using Map = void (*)(const float*, float*, int64_t);
  using Back = void (*)(const float*, const float*, float*, int64_t);
  using Both = void (*)(const float*, float*, float*, int64_t);
  const Map maps[] = {gelu_f32, gelu_tanh_f32};
  const Back backs[] = {gelu_backward_f32, gelu_tanh_backward_f32};
  const Both both[] = {gelu_and_derivative_f32, gelu_tanh_and_derivative_f32};
  for (int mode = 0; mode < 3; ++mode) {  // automatic, AVX2 forced, scalar forced
    vecmath_force_avx2(mode == 1);
    vecmath_force_scalar(mode == 2);
    for (int64_t n : {int64_t(x.size()), int64_t(13)}) {
      for (std::size_t k = 0; k < std::size(maps); ++k) {
        const std::size_t m = std::size_t(n);
        std::vector<float> y(m), d(m), y_ref(m), back_ref(m);
        both[k](x.data(), y.data(), d.data(), n);
        maps[k](x.data(), y_ref.data(), n);
        backs[k](g.data(), x.data(), back_ref.data(), n);
        for (std::size_t i = 0; i < m; ++i) {
          if (std::isnan(x[i])) {
            EXPECT_TRUE(std::isnan(y[i]) && std::isnan(g[i] * d[i]));
            continue;
          }
          const float gd = g[i] * d[i];
          ASSERT_EQ(std::memcmp(&y[i], &y_ref[i], 4), 0)
              << "mode " << mode << " fn " << k << " x=" << x[i] << ": " << y[i] << " vs "
              << y_ref[i];
          ASSERT_EQ(std::memcmp(&gd, &back_ref[i], 4), 0)
              << "mode " << mode << " fn " << k << " x=" << x[i] << ": " << gd << " vs "
              << back_ref[i];
        }
      }
    }
  }
  vecmath_force_avx2(false);
  vecmath_force_scalar(false);
}
