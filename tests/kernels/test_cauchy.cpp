// The t-SNE kernels (kernels/cpu/cauchy.h), AVX2 and scalar paths, against naive f64 loops over
// ragged sizes (empty lists, fewer than 8 sources, tails) and weighted sources.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cauchy.h"

using namespace gl::kernels::cpu;

namespace {

std::vector<float> uniform(int64_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// Both paths where the CPU has AVX2, else the scalar one alone.
template <class F>
void each_path(F f) {
  cauchy_force_scalar(true);
  f("scalar");
  cauchy_force_scalar(false);
  if (cauchy_uses_avx2()) f("avx2");
}

}  // namespace

TEST(Cauchy, RepulsionMatchesNaiveF64) {
  const int64_t nt = 13;
  for (int64_t ns : {0, 1, 7, 8, 9, 64, 203}) {
    auto tx = uniform(nt, -5, 5, 1), ty = uniform(nt, -5, 5, 2);
    auto sx = uniform(ns, -8, 8, 3), sy = uniform(ns, -8, 8, 4), sc = uniform(ns, 0, 40, 5);
    each_path([&](const char* path) {
      std::vector<double> z(nt), fx(nt), fy(nt);
      cauchy_repulsion_f32(tx.data(), ty.data(), nt, sx.data(), sy.data(), sc.data(), ns, z.data(),
                           fx.data(), fy.data());
      for (int64_t i = 0; i < nt; ++i) {
        double rz = 0, rx = 0, ry = 0, scale = 0;
        for (int64_t e = 0; e < ns; ++e) {
          const double dx = double(tx[i]) - sx[e], dy = double(ty[i]) - sy[e];
          const double w = 1 / (1 + dx * dx + dy * dy);
          rz += sc[e] * w;
          rx += sc[e] * w * w * dx;
          ry += sc[e] * w * w * dy;
          scale += sc[e] * w * w * (std::abs(dx) + std::abs(dy));
        }
        EXPECT_NEAR(z[i], rz, 1e-5 * rz + 1e-30) << path << " ns " << ns << " i " << i;
        EXPECT_NEAR(fx[i], rx, 1e-5 * scale + 1e-30) << path << " ns " << ns << " i " << i;
        EXPECT_NEAR(fy[i], ry, 1e-5 * scale + 1e-30) << path << " ns " << ns << " i " << i;
      }
    });
  }
}

TEST(Cauchy, RepulsionOfACoincidentSourceIsItsWeight) {
  const float t[1] = {2.5f}, s[1] = {2.5f}, c[1] = {3.0f};
  each_path([&](const char* path) {
    double z, fx, fy;
    cauchy_repulsion_f32(t, t, 1, s, s, c, 1, &z, &fx, &fy);
    EXPECT_EQ(z, 3.0) << path;  // w = 1 exactly
    EXPECT_EQ(fx, 0.0) << path;
    EXPECT_EQ(fy, 0.0) << path;
  });
}

TEST(Cauchy, AttractionMatchesNaiveF64) {
  const int64_t n = 300;
  auto y = uniform(2 * n, -20, 20, 6);
  // Rows of 0 to 40 entries (covering every tail length), random columns and weights.
  std::mt19937 rng(7);
  std::vector<int64_t> row_ptr{0};
  std::vector<int32_t> col;
  std::vector<float> val;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = int64_t(rng() % 41);
    for (int64_t t = 0; t < len; ++t) {
      col.push_back(int32_t(rng() % n));
      val.push_back(float(rng() % 1000) * 1e-6f);
    }
    row_ptr.push_back(int64_t(col.size()));
  }
  each_path([&](const char* path) {
    std::vector<double> f(size_t(2 * n), -1.0);
    cauchy_attraction_f32(y.data(), row_ptr.data(), col.data(), val.data(), 5, n, f.data());
    EXPECT_EQ(f[0], -1.0) << path;  // rows before row_begin untouched
    for (int64_t i = 5; i < n; ++i) {
      double rx = 0, ry = 0, scale = 0;
      for (int64_t t = row_ptr[i]; t < row_ptr[i + 1]; ++t) {
        const int64_t j = col[t];
        const double dx = double(y[2 * i]) - y[2 * j], dy = double(y[2 * i + 1]) - y[2 * j + 1];
        const double m = val[t] / (1 + dx * dx + dy * dy);
        rx += m * dx;
        ry += m * dy;
        scale += m * (std::abs(dx) + std::abs(dy));
      }
      EXPECT_NEAR(f[2 * i], rx, 1e-5 * scale + 1e-30) << path << " row " << i;
      EXPECT_NEAR(f[2 * i + 1], ry, 1e-5 * scale + 1e-30) << path << " row " << i;
    }
  });
}
