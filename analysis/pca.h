// pca.h: principal component analysis of an [n, d] activation matrix: the sample covariance
// (f64, divided by n - 1) eigen-decomposed by analysis/linalg.h, explained variance per
// component, and the projection of every example on the leading components.
#pragma once
#include <cstdint>
#include <vector>

namespace gl::analysis {

struct PcaResult {
  int64_t n = 0, d = 0, components = 0;
  std::vector<double> mean;                      // [d]
  std::vector<double> explained_variance;        // [d], descending (eigenvalues, >= 0)
  std::vector<double> explained_variance_ratio;  // [d], sums to 1 (all 0 for constant data)
  std::vector<double> axes;                      // [components, d] row-major unit principal axes
  std::vector<double> projection;                // [n, components] row-major
};

// Signs are fixed so the largest-magnitude entry of each axis is positive (sklearn's
// convention differs; compare projections up to sign). Throws for n < 2 or components > d.
PcaResult pca(const float* x, int64_t n, int64_t d, int64_t components = 2);

}  // namespace gl::analysis
