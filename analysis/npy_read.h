// npy_read.h: a tiny reader for NumPy .npy files (format versions 1-3, C order, little-endian
// bool/int/uint/float of any width), enough for the report to read run-directory arrays.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gl::analysis {

struct NpyArray {
  std::vector<int64_t> shape;
  std::string dtype;           // the descr string, e.g. "<f8", "|u1"
  std::vector<double> values;  // every element converted to double, C order

  int64_t size() const { return static_cast<int64_t>(values.size()); }
  int64_t dim(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

// Throws std::runtime_error naming `path` on a missing file, a bad header, an unsupported
// dtype (big-endian, complex, object, Fortran order) or a truncated body.
NpyArray read_npy(const std::string& path);

}  // namespace gl::analysis
