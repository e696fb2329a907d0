// pca.cpp: covariance by one f64 GEMM of the centred data, then the symmetric eigensolver.
#include "analysis/pca.h"

#include <fmt/core.h>

#include <cmath>

#include "analysis/linalg.h"
#include "engine/core.h"
#include "kernels/kernels.h"

namespace gl::analysis {

PcaResult pca(const float* x, int64_t n, int64_t d, int64_t components) {
  GL_CHECK(n >= 2, "pca: need at least 2 examples, got {}", n);
  GL_CHECK(d >= 1 && components >= 1 && components <= d, "pca: {} components asked of {} features",
           components, d);
  PcaResult r;
  r.n = n;
  r.d = d;
  r.components = components;
  r.mean.assign(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) r.mean[j] += x[i * d + j];
  for (auto& m : r.mean) m /= double(n);
  std::vector<double> c(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) c[size_t(i * d + j)] = double(x[i * d + j]) - r.mean[j];
  std::vector<double> cov(static_cast<size_t>(d * d), 0.0);
  kernels::cpu::dgemm(true, false, d, d, n, 1.0 / double(n - 1), c.data(), d, c.data(), d, 0.0,
                      cov.data(), d);
  SymmetricEigen e = symmetric_eigen(cov, d);
  r.explained_variance.resize(static_cast<size_t>(d));
  double total = 0;
  for (int64_t k = 0; k < d; ++k) {
    r.explained_variance[k] = std::max(e.values[k], 0.0);
    total += r.explained_variance[k];
  }
  r.explained_variance_ratio.resize(static_cast<size_t>(d));
  for (int64_t k = 0; k < d; ++k)
    r.explained_variance_ratio[k] = total > 0 ? r.explained_variance[k] / total : 0.0;
  r.axes.resize(static_cast<size_t>(components * d));
  for (int64_t k = 0; k < components; ++k) {
    int64_t big = 0;
    for (int64_t j = 0; j < d; ++j)
      if (std::abs(e.vectors[size_t(j * d + k)]) > std::abs(e.vectors[size_t(big * d + k)]))
        big = j;
    double sign = e.vectors[size_t(big * d + k)] < 0 ? -1.0 : 1.0;
    for (int64_t j = 0; j < d; ++j) r.axes[size_t(k * d + j)] = sign * e.vectors[size_t(j * d + k)];
  }
  r.projection.assign(static_cast<size_t>(n * components), 0.0);
  kernels::cpu::dgemm(false, true, n, components, d, 1.0, c.data(), d, r.axes.data(), d, 0.0,
                      r.projection.data(), components);
  return r;
}

}  // namespace gl::analysis
