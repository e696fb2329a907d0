// npy.h: NumPy .npy files (format version 1.0 written; 1.0, 2.0 and 3.0 read), C order,
// little-endian. dtype names follow safetensors: "F32","F64","I64","I32","U8".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gl::io {

struct NpyArray {
  std::string dtype;
  std::vector<int64_t> shape;  // empty for a 0-d array
  std::vector<uint8_t> bytes;
};

std::vector<uint8_t> serialize_npy(const NpyArray& array);
NpyArray parse_npy(const std::vector<uint8_t>& file, const std::string& source);

void save_npy(const std::string& path, const NpyArray& array);
NpyArray load_npy(const std::string& path);

}  // namespace gl::io
