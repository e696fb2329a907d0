// npy_read.cpp: reads a .npy file through the engine's validating reader (engine/io/npy.h:
// header syntax, shape overflow and body size all checked there, errors naming the file) and
// converts the body to doubles; the report never needs the original dtype back.
#include "analysis/npy_read.h"

#include <cstring>

#include "engine/io/npy.h"

namespace gl::analysis {
namespace {

template <typename T>
void convert(const std::vector<uint8_t>& src, std::vector<double>& out) {
  out.resize(src.size() / sizeof(T));
  for (size_t i = 0; i < out.size(); ++i) {
    T v;
    std::memcpy(&v, src.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<double>(v);
  }
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  const io::NpyArray a = io::load_npy(path);  // names the path on any failure
  NpyArray arr;
  arr.shape = a.shape;
  if (a.dtype == "F32") {
    arr.dtype = "<f4";
    convert<float>(a.bytes, arr.values);
  } else if (a.dtype == "F64") {
    arr.dtype = "<f8";
    convert<double>(a.bytes, arr.values);
  } else if (a.dtype == "I64") {
    arr.dtype = "<i8";
    convert<int64_t>(a.bytes, arr.values);
  } else if (a.dtype == "I32") {
    arr.dtype = "<i4";
    convert<int32_t>(a.bytes, arr.values);
  } else {
    arr.dtype = "|u1";
    convert<uint8_t>(a.bytes, arr.values);
  }
  return arr;
}

}  // namespace gl::analysis
