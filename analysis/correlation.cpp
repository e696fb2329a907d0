// correlation.cpp: Pearson matrices as Z_x^T Z_y with unit-norm centred columns, so one f64
// GEMM (the engine's dgemm) does the O(n dx dy) work; means use two passes for accuracy.
#include "analysis/correlation.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/core.h"
#include "kernels/kernels.h"

namespace gl::analysis {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Columns of x centred and scaled to unit Euclidean norm, [n, d] f64; `constant[j]` marks a
// column with (relative) zero spread, left all-zero.
std::vector<double> standardize_columns(const float* x, int64_t n, int64_t d,
                                        std::vector<char>& constant) {
  std::vector<double> z(static_cast<size_t>(n * d)), mean(static_cast<size_t>(d), 0.0),
      ss(static_cast<size_t>(d), 0.0), maxabs(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[j] += x[i * d + j];
  for (int64_t j = 0; j < d; ++j) mean[j] /= double(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      double c = double(x[i * d + j]) - mean[j];
      z[size_t(i * d + j)] = c;
      ss[j] += c * c;
      maxabs[j] = std::max(maxabs[j], std::abs(double(x[i * d + j])));
    }
  constant.assign(static_cast<size_t>(d), 0);
  std::vector<double> inv(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    double norm = std::sqrt(ss[j]);
    // f32 inputs: spread below ~1e-6 of the magnitude is rounding, not signal.
    constant[j] = !(norm > 1e-6 * maxabs[j] * std::sqrt(double(n))) || norm == 0.0;
    inv[j] = constant[j] ? 0.0 : 1.0 / norm;
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) z[size_t(i * d + j)] *= inv[j];
  return z;
}

// Z_x^T Z_y with NaN for the constant features, clamped to [-1, 1].
std::vector<double> cross_of_standardized(const std::vector<double>& zx,
                                          const std::vector<char>& cx, int64_t dx,
                                          const std::vector<double>& zy,
                                          const std::vector<char>& cy, int64_t dy, int64_t n) {
  std::vector<double> c(static_cast<size_t>(dx * dy), 0.0);
  kernels::cpu::dgemm(true, false, dx, dy, n, 1.0, zx.data(), dx, zy.data(), dy, 0.0, c.data(), dy);
  for (int64_t a = 0; a < dx; ++a)
    for (int64_t b = 0; b < dy; ++b) {
      double& v = c[size_t(a * dy + b)];
      if (cx[a] || cy[b])
        v = kNaN;
      else
        v = std::clamp(v, -1.0, 1.0);
    }
  return c;
}

}  // namespace

std::vector<double> pearson_cross(const float* x, int64_t n, int64_t dx, const float* y,
                                  int64_t dy) {
  GL_CHECK(n >= 2, "correlation: need at least 2 examples, got {}", n);
  GL_CHECK(dx >= 1 && dy >= 1, "correlation: empty feature matrix ({} x {} features)", dx, dy);
  std::vector<char> cx, cy;
  std::vector<double> zx = standardize_columns(x, n, dx, cx);
  if (x == y && dx == dy) return cross_of_standardized(zx, cx, dx, zx, cx, dx, n);
  std::vector<double> zy = standardize_columns(y, n, dy, cy);
  return cross_of_standardized(zx, cx, dx, zy, cy, dy, n);
}

std::vector<std::vector<double>> pearson_pairs(const std::vector<const float*>& layers, int64_t n,
                                               const std::vector<int64_t>& widths) {
  GL_CHECK(n >= 2, "correlation: need at least 2 examples, got {}", n);
  GL_CHECK(layers.size() == widths.size(), "correlation: {} layers but {} widths", layers.size(),
           widths.size());
  const size_t L = layers.size();
  std::vector<std::vector<double>> z(L);
  std::vector<std::vector<char>> constant(L);
  for (size_t a = 0; a < L; ++a) {
    GL_CHECK(widths[a] >= 1, "correlation: layer {} has no features", a);
    z[a] = standardize_columns(layers[a], n, widths[a], constant[a]);
  }
  std::vector<std::vector<double>> out;
  for (size_t a = 0; a < L; ++a)
    for (size_t b = a; b < L; ++b)
      out.push_back(
          cross_of_standardized(z[a], constant[a], widths[a], z[b], constant[b], widths[b], n));
  return out;
}

std::vector<double> feature_correlation(const float* x, int64_t n, int64_t d) {
  return pearson_cross(x, n, d, x, d);
}

std::vector<double> sample_correlation(const float* x, int64_t n, int64_t d) {
  GL_CHECK(d >= 2, "sample correlation: need at least 2 features per example, got {}", d);
  std::vector<float> t(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) t[size_t(j * n + i)] = x[i * d + j];
  return pearson_cross(t.data(), d, n, t.data(), n);
}

double mean_abs(const std::vector<double>& c, int64_t self_width) {
  GL_CHECK(self_width <= 0 || c.size() == size_t(self_width * self_width),
           "mean |r|: a [{0}, {0}] matrix has {1} entries, got {2}", self_width,
           self_width * self_width, c.size());
  double s = 0;
  int64_t k = 0;
  for (size_t i = 0; i < c.size(); ++i)
    if (!std::isnan(c[i]) && (self_width <= 0 || i % size_t(self_width + 1) != 0)) {
      s += std::abs(c[i]);
      ++k;
    }
  return k ? s / double(k) : 0.0;
}

}  // namespace gl::analysis
