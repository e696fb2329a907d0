// npy_read.cpp: parses the .npy header dictionary by hand (descr, fortran_order, shape) and
// converts the body to doubles; the report never needs the original dtype back.
#include "analysis/npy_read.h"

#include <cstring>
#include <stdexcept>

#include "engine/io/fs.h"

namespace gl::analysis {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// Returns the text after `'key':` in the header dictionary, trimmed of leading spaces.
std::string field(const std::string& header, const std::string& key, const std::string& path) {
  auto pos = header.find("'" + key + "'");
  if (pos == std::string::npos) fail(path, "npy header has no '" + key + "'");
  pos = header.find(':', pos);
  if (pos == std::string::npos) fail(path, "npy header is malformed near '" + key + "'");
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  return header.substr(pos);
}

template <typename T>
void convert(const char* src, size_t n, std::vector<double>& out) {
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    out[i] = static_cast<double>(v);
  }
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  const std::vector<uint8_t> raw = io::read_file(path);  // names the path (missing, a directory)
  const std::string bytes(raw.begin(), raw.end());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) fail(path, "not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(path, "truncated npy header");
    for (int i = 0; i < 4; ++i)
      header_len |= size_t(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    header_start = 12;
  } else {
    fail(path, "unsupported npy version " + std::to_string(major));
  }
  if (header_start + header_len > bytes.size()) fail(path, "truncated npy header");
  const std::string header = bytes.substr(header_start, header_len);

  NpyArray arr;
  std::string descr = field(header, "descr", path);
  if (descr.empty() || descr[0] != '\'') fail(path, "npy descr is not a simple dtype");
  arr.dtype = descr.substr(1, descr.find('\'', 1) - 1);
  if (field(header, "fortran_order", path).rfind("True", 0) == 0)
    fail(path, "Fortran-order arrays are not supported");
  std::string shape = field(header, "shape", path);
  if (shape.empty() || shape[0] != '(') fail(path, "npy shape is malformed");
  shape = shape.substr(1, shape.find(')') - 1);
  size_t count = 1;
  for (size_t p = 0; p < shape.size();) {
    while (p < shape.size() && (shape[p] == ' ' || shape[p] == ',')) ++p;
    if (p >= shape.size()) break;
    size_t used = 0;
    long long d = std::stoll(shape.substr(p), &used);
    if (d < 0) fail(path, "negative npy dimension");
    arr.shape.push_back(d);
    count *= static_cast<size_t>(d);
    p += used;
  }

  const std::string& t = arr.dtype;
  if (t.size() < 3 || t[0] == '>')
    fail(path, "unsupported npy dtype '" + t + "' (need little-endian)");
  const char kind = t[1];
  const int width = std::stoi(t.substr(2));
  const size_t body = header_start + header_len;
  if (bytes.size() - body < count * static_cast<size_t>(width))
    fail(path,
         "npy body is truncated: expected " + std::to_string(count) + " elements of '" + t + "'");
  const char* src = bytes.data() + body;
  if (kind == 'f' && width == 4)
    convert<float>(src, count, arr.values);
  else if (kind == 'f' && width == 8)
    convert<double>(src, count, arr.values);
  else if ((kind == 'u' || kind == 'b') && width == 1)
    convert<uint8_t>(src, count, arr.values);
  else if (kind == 'u' && width == 2)
    convert<uint16_t>(src, count, arr.values);
  else if (kind == 'u' && width == 4)
    convert<uint32_t>(src, count, arr.values);
  else if (kind == 'u' && width == 8)
    convert<uint64_t>(src, count, arr.values);
  else if (kind == 'i' && width == 1)
    convert<int8_t>(src, count, arr.values);
  else if (kind == 'i' && width == 2)
    convert<int16_t>(src, count, arr.values);
  else if (kind == 'i' && width == 4)
    convert<int32_t>(src, count, arr.values);
  else if (kind == 'i' && width == 8)
    convert<int64_t>(src, count, arr.values);
  else
    fail(path, "unsupported npy dtype '" + t + "'");
  return arr;
}

}  // namespace gl::analysis
