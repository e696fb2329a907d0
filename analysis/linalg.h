// linalg.h: the dense f64 linear algebra the representation analyses need: a symmetric
// eigensolver (Householder tridiagonalization, then the implicit QL algorithm with Wilkinson
// shifts, as in EISPACK's tred2/tql2) and a Pearson-ready column standardization.
#pragma once
#include <cstdint>
#include <vector>

namespace gl::analysis {

struct SymmetricEigen {
  int64_t n = 0;
  std::vector<double> values;   // n eigenvalues, descending
  std::vector<double> vectors;  // n x n row-major; column k is the unit eigenvector of values[k]
};

// Eigen-decomposition of the symmetric n x n row-major matrix `a` (only symmetry up to rounding
// is assumed: the lower triangle is read). Throws gl::Error on a size mismatch, a non-finite
// entry, or if QL fails to converge (30 iterations per eigenvalue).
SymmetricEigen symmetric_eigen(const std::vector<double>& a, int64_t n);

}  // namespace gl::analysis
