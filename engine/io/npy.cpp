// npy.cpp: .npy writer (v1.0, header padded so the data starts on a 64-byte boundary, as numpy
// does) and a validating reader for the little-endian C-order dtypes gradlens uses.
#include "engine/io/npy.h"

#include <fmt/core.h>
#include <fmt/format.h>

#include <bit>
#include <cctype>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "engine/io/fs.h"

namespace gl::io {
namespace {

static_assert(std::endian::native == std::endian::little, "npy I/O assumes a little-endian host");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;

struct Descr {
  const char* dtype;
  const char* descr;
  int64_t size;
};
constexpr Descr kDescrs[] = {
    {"F32", "<f4", 4}, {"F64", "<f8", 8}, {"I64", "<i8", 8}, {"I32", "<i4", 4}, {"U8", "|u1", 1},
};

const Descr* by_dtype(const std::string& dtype) {
  for (const auto& d : kDescrs)
    if (dtype == d.dtype) return &d;
  return nullptr;
}

const Descr* by_descr(const std::string& descr) {
  for (const auto& d : kDescrs)
    if (descr == d.descr) return &d;
  // numpy writes single-byte types with '|' but '<u1' and '=u1' mean the same thing.
  if (descr == "<u1" || descr == "=u1") return by_descr("|u1");
  return nullptr;
}

// Minimal reader for the Python dict literal numpy writes as the header.
class HeaderParser {
 public:
  HeaderParser(std::string text, std::string source)
      : s_(std::move(text)), src_(std::move(source)) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      std::string key = string_lit();
      expect(':');
      if (key == "descr") {
        descr = string_lit();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = bool_lit();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple_lit();
        have_shape = true;
      } else {
        throw error(fmt::format("unexpected header key '{}'", key));
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skip_ws();
      if (peek() != '}') throw error("expected ',' or '}' in header");
    }
    ++i_;
    if (!have_descr || !have_fortran || !have_shape)
      throw error("header lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  std::runtime_error error(const std::string& what) const {
    return std::runtime_error(fmt::format("npy file '{}': {} (header: {})", src_, what, trimmed()));
  }
  std::string trimmed() const {
    std::string t = s_;
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    return t;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) throw error(fmt::format("expected '{}' in header", c));
    ++i_;
  }
  std::string string_lit() {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') throw error("expected a quoted string in header");
    size_t end = s_.find(q, i_ + 1);
    if (end == std::string::npos) throw error("unterminated string in header");
    std::string v = s_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return v;
  }
  bool bool_lit() {
    skip_ws();
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    throw error("fortran_order is neither True nor False");
  }
  std::vector<int64_t> tuple_lit() {
    std::vector<int64_t> dims;
    expect('(');
    for (;;) {
      skip_ws();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek())))
        throw error("shape entries must be non-negative integers");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        int digit = peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10)
          throw error("shape entry too large");
        v = v * 10 + digit;
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 longs
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ')') throw error("expected ',' or ')' in shape");
    }
    ++i_;
    return dims;
  }

  std::string s_;
  std::string src_;
  size_t i_ = 0;
};

}  // namespace

std::vector<uint8_t> serialize_npy(const NpyArray& array) {
  const Descr* d = by_dtype(array.dtype);
  if (!d)
    throw std::runtime_error(fmt::format(
        "npy: unsupported dtype '{}' (supported: F32, F64, I64, I32, U8)", array.dtype));
  int64_t numel = 1;
  for (int64_t dim : array.shape) {
    if (dim < 0) throw std::runtime_error(fmt::format("npy: negative dimension {}", dim));
    if (__builtin_mul_overflow(numel, dim, &numel) ||
        numel > std::numeric_limits<int64_t>::max() / d->size)
      throw std::runtime_error(
          fmt::format("npy: shape ({}) of {} has more bytes than fit in 64 bits",
                      fmt::join(array.shape, ", "), array.dtype));
  }
  if (static_cast<uint64_t>(numel * d->size) != array.bytes.size())
    throw std::runtime_error(fmt::format("npy: shape ({}) dtype {} needs {} bytes but {} given",
                                         fmt::join(array.shape, ", "), array.dtype, numel * d->size,
                                         array.bytes.size()));
  std::string shape;
  if (array.shape.size() == 1)
    shape = fmt::format("({},)", array.shape[0]);
  else
    shape = fmt::format("({})", fmt::join(array.shape, ", "));
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", d->descr, shape);
  // magic(6) + version(2) + length(2) + header + '\n' is padded to a multiple of 64.
  size_t total = kMagicLen + 2 + 2 + header.size() + 1;
  header.append((kAlign - total % kAlign) % kAlign, ' ');
  header.push_back('\n');
  if (header.size() > 0xFFFF) throw std::runtime_error("npy: header too long for format 1.0");

  std::vector<uint8_t> out(kMagic, kMagic + kMagicLen);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(header.size() & 0xFF));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), array.bytes.begin(), array.bytes.end());
  return out;
}

NpyArray parse_npy(const std::vector<uint8_t>& file, const std::string& source) {
  auto fail = [&](const std::string& what) {
    return std::runtime_error(fmt::format("npy file '{}': {}", source, what));
  };
  if (file.size() < kMagicLen + 2 || std::memcmp(file.data(), kMagic, kMagicLen) != 0)
    throw fail("bad magic: not a .npy file");
  uint8_t major = file[6];
  size_t len_bytes;
  if (major == 1)
    len_bytes = 2;
  else if (major == 2 || major == 3)
    len_bytes = 4;
  else
    throw fail(fmt::format("unsupported format version {}.{}", major, file[7]));
  size_t prefix = kMagicLen + 2 + len_bytes;
  if (file.size() < prefix) throw fail("truncated before the header length");
  uint64_t hlen = 0;
  for (size_t i = 0; i < len_bytes; ++i) hlen |= static_cast<uint64_t>(file[8 + i]) << (8 * i);
  if (hlen > file.size() - prefix)
    throw fail(fmt::format("header length {} exceeds the {} bytes left in the file", hlen,
                           file.size() - prefix));
  std::string text(reinterpret_cast<const char*>(file.data() + prefix), hlen);
  std::string descr;
  bool fortran = false;
  NpyArray out;
  HeaderParser(text, source).parse(descr, fortran, out.shape);
  const Descr* d = by_descr(descr);
  if (!d)
    throw fail(fmt::format("unsupported dtype descr '{}' (supported: <f4 <f8 <i8 <i4 |u1)", descr));
  if (fortran) throw fail("Fortran-order arrays are not supported");
  out.dtype = d->dtype;
  uint64_t numel = 1;
  for (int64_t dim : out.shape) {
    if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / static_cast<uint64_t>(dim))
      throw fail(fmt::format("shape ({}) of {} has more bytes than fit in 64 bits",
                             fmt::join(out.shape, ", "), descr));
    numel *= static_cast<uint64_t>(dim);
  }
  uint64_t want = numel * static_cast<uint64_t>(d->size);
  uint64_t have = file.size() - prefix - hlen;
  if (have != want)
    throw fail(fmt::format("shape ({}) of {} needs {} data bytes but the file holds {}{}",
                           fmt::join(out.shape, ", "), descr, want, have,
                           have < want ? " (truncated)" : " (trailing bytes)"));
  out.bytes.assign(file.begin() + static_cast<std::ptrdiff_t>(prefix + hlen), file.end());
  return out;
}

void save_npy(const std::string& path, const NpyArray& array) {
  std::vector<uint8_t> bytes;
  try {
    bytes = serialize_npy(array);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format("cannot save '{}': {}", path, e.what()));
  }
  write_file_atomic(path, bytes);
}

NpyArray load_npy(const std::string& path) {
  return parse_npy(read_file(path), path);
}

}  // namespace gl::io
