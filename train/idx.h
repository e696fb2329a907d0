// idx.h: the IDX format of MNIST and Fashion-MNIST (big-endian header: two zero bytes, a type
// code, the number of dimensions, then one 32-bit size per dimension; unsigned-byte payload),
// raw or gzip-compressed, plus the gzip helpers the dataset tools share.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace gl::data {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Decompresses a gzip stream (one or more members); `source` names it in errors. Inflation
// stops once more than max_bytes are out: the result then holds max_bytes + 1 bytes, and the
// caller, who knows what the size should be, says what is wrong.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& source,
                            std::size_t max_bytes = std::numeric_limits<std::size_t>::max());
// Compresses to a gzip stream with a zero timestamp, so equal inputs give equal files.
std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw);
bool is_gzip(const std::vector<uint8_t>& bytes);

// Parses an uncompressed IDX image; only the unsigned-byte type (0x08) is accepted.
IdxArray parse_idx(const std::vector<uint8_t>& raw, const std::string& source);
// The same, reusing raw's memory for the payload.
IdxArray parse_idx(std::vector<uint8_t>&& raw, const std::string& source);
std::vector<uint8_t> serialize_idx(const IdxArray& array);

// Reads a file, gunzipping it when it starts with the gzip magic.
IdxArray read_idx(const std::string& path);
// Writes atomically; gzip-compressed when `compress` is true.
void write_idx(const std::string& path, const IdxArray& array, bool compress);

}  // namespace gl::data
