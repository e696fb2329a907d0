// safetensors.h: read and write the safetensors format (8-byte little-endian header length, a
// JSON header mapping tensor names to {dtype, shape, data_offsets}, an optional "__metadata__"
// string map, then one contiguous byte buffer). Files written here load with
// safetensors.torch.load_file; loads validate every field and name the file and the problem.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gl::io {

// One tensor as raw little-endian, C-order bytes. dtype is a safetensors name:
// "F64","F32","F16","BF16","I64","I32","I16","I8","U64","U32","U16","U8","BOOL","F8_E4M3","F8_E5M2".
struct NamedBuffer {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

struct SafetensorsFile {
  std::vector<NamedBuffer> tensors;  // in file (offset) order
  std::map<std::string, std::string> metadata;
};

// Bytes per element of a safetensors dtype name; throws for an unknown name.
int64_t safetensors_dtype_size(const std::string& dtype);

// Builds the whole file in memory. Tensors are laid out as the reference implementation does:
// by descending dtype alignment, then by name, so every tensor starts aligned to its element
// size (the header is padded with spaces to a multiple of 8 bytes).
std::vector<uint8_t> serialize_safetensors(const std::vector<NamedBuffer>& entries,
                                           const std::map<std::string, std::string>& metadata = {});

// Parses and validates a whole file held in memory; `source` names it in error messages.
SafetensorsFile parse_safetensors(const std::vector<uint8_t>& file, const std::string& source);

void save_safetensors(const std::string& path, const std::vector<NamedBuffer>& entries,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace gl::io
