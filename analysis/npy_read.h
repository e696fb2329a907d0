// npy_read.h: NumPy .npy files as doubles, for the report to read run-directory arrays. The
// file is read and validated by engine/io/npy.h (format versions 1-3, C order, little-endian
// f4, f8, i8, i4, u1).
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

// Throws std::runtime_error naming `path` on a missing file, a bad header, a shape whose size
// overflows, an unsupported dtype (big-endian, complex, object, Fortran order) or a body of
// the wrong size.
NpyArray read_npy(const std::string& path);

}  // namespace gl::analysis
