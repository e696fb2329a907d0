// linalg.cpp: Householder reduction to tridiagonal form and implicit QL iterations (EISPACK
// tred2/tql2, in the form of the public-domain JAMA port), all in f64. O(n^3); 784 x 784 takes
// well under a second.
#include "analysis/linalg.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/core.h"

namespace gl::analysis {
namespace {

// V (n x n, row-major, holds the matrix on entry) -> orthogonal V, diagonal d, off-diagonal e.
void tred2(int64_t n, std::vector<double>& V, std::vector<double>& d, std::vector<double>& e) {
  auto v = [&](int64_t i, int64_t j) -> double& { return V[size_t(i * n + j)]; };
  for (int64_t j = 0; j < n; ++j) d[j] = v(n - 1, j);
  for (int64_t i = n - 1; i > 0; --i) {
    double scale = 0.0, h = 0.0;
    for (int64_t k = 0; k < i; ++k) scale += std::abs(d[k]);
    if (scale == 0.0) {
      e[i] = d[i - 1];
      for (int64_t j = 0; j < i; ++j) {
        d[j] = v(i - 1, j);
        v(i, j) = 0.0;
        v(j, i) = 0.0;
      }
    } else {
      for (int64_t k = 0; k < i; ++k) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      double f = d[i - 1];
      double g = std::sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (int64_t j = 0; j < i; ++j) e[j] = 0.0;
      for (int64_t j = 0; j < i; ++j) {
        f = d[j];
        v(j, i) = f;
        g = e[j] + v(j, j) * f;
        for (int64_t k = j + 1; k <= i - 1; ++k) {
          g += v(k, j) * d[k];
          e[k] += v(k, j) * f;
        }
        e[j] = g;
      }
      f = 0.0;
      for (int64_t j = 0; j < i; ++j) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      double hh = f / (h + h);
      for (int64_t j = 0; j < i; ++j) e[j] -= hh * d[j];
      for (int64_t j = 0; j < i; ++j) {
        f = d[j];
        g = e[j];
        for (int64_t k = j; k <= i - 1; ++k) v(k, j) -= (f * e[k] + g * d[k]);
        d[j] = v(i - 1, j);
        v(i, j) = 0.0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (int64_t i = 0; i < n - 1; ++i) {
    v(n - 1, i) = v(i, i);
    v(i, i) = 1.0;
    double h = d[i + 1];
    if (h != 0.0) {
      for (int64_t k = 0; k <= i; ++k) d[k] = v(k, i + 1) / h;
      for (int64_t j = 0; j <= i; ++j) {
        double g = 0.0;
        for (int64_t k = 0; k <= i; ++k) g += v(k, i + 1) * v(k, j);
        for (int64_t k = 0; k <= i; ++k) v(k, j) -= g * d[k];
      }
    }
    for (int64_t k = 0; k <= i; ++k) v(k, i + 1) = 0.0;
  }
  for (int64_t j = 0; j < n; ++j) {
    d[j] = v(n - 1, j);
    v(n - 1, j) = 0.0;
  }
  v(n - 1, n - 1) = 1.0;
  e[0] = 0.0;
}

void tql2(int64_t n, std::vector<double>& V, std::vector<double>& d, std::vector<double>& e) {
  auto v = [&](int64_t i, int64_t j) -> double& { return V[size_t(i * n + j)]; };
  for (int64_t i = 1; i < n; ++i) e[i - 1] = e[i];
  e[n - 1] = 0.0;
  double f = 0.0, tst1 = 0.0;
  const double eps = std::pow(2.0, -52.0);
  for (int64_t l = 0; l < n; ++l) {
    tst1 = std::max(tst1, std::abs(d[l]) + std::abs(e[l]));
    int64_t m = l;
    while (m < n) {
      if (std::abs(e[m]) <= eps * tst1) break;
      ++m;
    }
    if (m > l) {
      int iter = 0;
      do {
        GL_CHECK(++iter <= 30, "symmetric_eigen: QL did not converge for eigenvalue {} of {}", l,
                 n);
        double g = d[l];
        double p = (d[l + 1] - g) / (2.0 * e[l]);
        double r = std::hypot(p, 1.0);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        double dl1 = d[l + 1];
        double h = g - d[l];
        for (int64_t i = l + 2; i < n; ++i) d[i] -= h;
        f += h;
        p = d[m];
        double c = 1.0, c2 = c, c3 = c;
        double el1 = e[l + 1];
        double s = 0.0, s2 = 0.0;
        for (int64_t i = m - 1; i >= l; --i) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = std::hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          for (int64_t k = 0; k < n; ++k) {
            h = v(k, i + 1);
            v(k, i + 1) = s * v(k, i) + c * h;
            v(k, i) = c * v(k, i) - s * h;
          }
        }
        p = -s * s2 * c3 * el1 * e[l] / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (std::abs(e[l]) > eps * tst1);
    }
    d[l] = d[l] + f;
    e[l] = 0.0;
  }
}

}  // namespace

SymmetricEigen symmetric_eigen(const std::vector<double>& a, int64_t n) {
  GL_CHECK(n >= 1 && int64_t(a.size()) == n * n,
           "symmetric_eigen: expected a {} x {} matrix ({} values), got {} values", n, n, n * n,
           a.size());
  std::vector<double> V(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      // Symmetrize from the lower triangle so rounding asymmetry cannot matter.
      double x = i >= j ? a[size_t(i * n + j)] : a[size_t(j * n + i)];
      GL_CHECK(std::isfinite(x), "symmetric_eigen: entry ({}, {}) is {}", i, j, x);
      V[size_t(i * n + j)] = x;
    }
  std::vector<double> d(static_cast<size_t>(n)), e(static_cast<size_t>(n));
  if (n == 1) {
    d[0] = V[0];
    V[0] = 1.0;
  } else {
    tred2(n, V, d, e);
    tql2(n, V, d, e);
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return d[x] > d[y]; });
  SymmetricEigen out;
  out.n = n;
  out.values.resize(static_cast<size_t>(n));
  out.vectors.resize(static_cast<size_t>(n * n));
  for (int64_t k = 0; k < n; ++k) {
    out.values[k] = d[order[k]];
    for (int64_t i = 0; i < n; ++i) out.vectors[size_t(i * n + k)] = V[size_t(i * n + order[k])];
  }
  return out;
}

}  // namespace gl::analysis
