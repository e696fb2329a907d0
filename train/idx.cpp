// idx.cpp: IDX parsing and writing, and in-memory gzip through zlib.
#include "train/idx.h"

#include <fmt/core.h>
#include <fmt/format.h>
#include <zlib.h>

#include <limits>
#include <stdexcept>

#include "engine/io/fs.h"

namespace gl::data {
namespace {

constexpr uint8_t kTypeU8 = 0x08;
constexpr int kMaxDims = 8;

}  // namespace

bool is_gzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& source,
                            std::size_t max_bytes) {
  std::vector<uint8_t> out;
  // Inflation stops once more than max_bytes are out; max_bytes + 1 of them are kept, so the
  // caller can tell "exactly max_bytes" from "more".
  const std::size_t keep =
      max_bytes < std::numeric_limits<std::size_t>::max() ? max_bytes + 1 : max_bytes;
  z_stream zs{};
  // 16 + MAX_WBITS: gzip wrapper only, with its CRC-32 and length checked by zlib.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
    throw std::runtime_error(fmt::format("'{}': cannot initialise zlib", source));
  zs.next_in = const_cast<Bytef*>(compressed.data());
  zs.avail_in = static_cast<uInt>(compressed.size());
  if (compressed.size() > std::numeric_limits<uInt>::max()) {
    inflateEnd(&zs);
    throw std::runtime_error(fmt::format("'{}': compressed file too large", source));
  }
  // The gzip trailer's ISIZE (the last member's length mod 2^32; the whole file's for the usual
  // single member) sizes the output up front, so inflate writes in place without regrowing a
  // 47 MB buffer. It is only a hint: the loop below grows the buffer if the data runs longer.
  std::size_t used = 0;
  if (compressed.size() >= 18) {
    const uint8_t* t = compressed.data() + compressed.size() - 4;
    const std::size_t isize = std::size_t(t[0]) | std::size_t(t[1]) << 8 | std::size_t(t[2]) << 16 |
                              std::size_t(t[3]) << 24;
    out.resize(std::min<std::size_t>(
                   std::min<std::size_t>(isize, compressed.size() * 1032 + (1 << 16)), keep - 1) +
               1);
  }
  for (;;) {
    if (used >= keep) break;
    if (out.size() - used < (1 << 16))
      out.resize(std::min<std::size_t>(std::max<std::size_t>(out.size() * 2, 1 << 18), keep));
    zs.next_out = out.data() + used;
    zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - used, 1u << 30));
    const std::size_t before = zs.avail_out;
    int rc = inflate(&zs, Z_NO_FLUSH);
    used += before - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members are legal; anything else after the stream is not.
      if (zs.avail_in == 0) break;
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      inflateEnd(&zs);
      throw std::runtime_error(
          fmt::format("'{}': {} trailing bytes after the gzip stream", source, zs.avail_in));
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      inflateEnd(&zs);
      throw std::runtime_error(
          fmt::format("'{}': truncated gzip stream (ends after {} compressed bytes)", source,
                      compressed.size()));
    }
    std::string msg = zs.msg ? zs.msg : fmt::format("zlib error {}", rc);
    inflateEnd(&zs);
    throw std::runtime_error(fmt::format("'{}': corrupt gzip data: {}", source, msg));
  }
  inflateEnd(&zs);
  out.resize(used);
  return out;
}

std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("gzip: cannot initialise zlib");
  std::vector<uint8_t> out(deflateBound(&zs, raw.size()) + 32);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  size_t produced = out.size() - zs.avail_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error(fmt::format("gzip: deflate failed ({})", rc));
  out.resize(produced);
  return out;
}

namespace {
std::runtime_error idx_error(const std::string& source, const std::string& what) {
  return std::runtime_error(fmt::format("IDX file '{}': {}", source, what));
}

struct IdxLayout {
  size_t header;   // bytes of the magic number and the dimensions
  uint64_t count;  // payload bytes the dimensions declare
};

// Parses the header at the start of raw (which need not hold the whole payload): fills dims.
IdxLayout idx_layout(const std::vector<uint8_t>& raw, const std::string& source,
                     std::vector<int64_t>& dims) {
  auto fail = [&](const std::string& what) { return idx_error(source, what); };
  if (raw.size() < 4)
    throw fail(fmt::format("truncated: {} bytes, the magic number needs 4", raw.size()));
  uint32_t magic =
      (uint32_t{raw[0]} << 24) | (uint32_t{raw[1]} << 16) | (uint32_t{raw[2]} << 8) | raw[3];
  if (raw[0] != 0 || raw[1] != 0)
    throw fail(fmt::format("bad magic 0x{:08X}: the first two bytes must be zero", magic));
  if (raw[2] != kTypeU8)
    throw fail(fmt::format("bad magic 0x{:08X}: element type 0x{:02X} is not unsigned byte (0x08)",
                           magic, raw[2]));
  int ndims = raw[3];
  if (ndims < 1 || ndims > kMaxDims)
    throw fail(fmt::format("bad magic 0x{:08X}: {} dimensions (expected 1 to {})", magic, ndims,
                           kMaxDims));
  size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (raw.size() < header)
    throw fail(fmt::format("truncated header: {} bytes, {} dimensions need {}", raw.size(), ndims,
                           header));
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* p = raw.data() + 4 + 4 * d;
    uint32_t dim = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    dims.push_back(dim);
    count *= dim;  // at most 8 factors below 2^32 could overflow; checked next
    if (dim != 0 && count > (uint64_t{1} << 40)) throw fail("dimensions describe over 1 TB");
  }
  return {header, count};
}

// Checks raw as a whole IDX file of unsigned bytes: fills dims, returns the header's size.
size_t check_idx(const std::vector<uint8_t>& raw, const std::string& source,
                 std::vector<int64_t>& dims) {
  const IdxLayout l = idx_layout(raw, source, dims);
  uint64_t have = raw.size() - l.header;
  if (have != l.count)
    throw idx_error(source, fmt::format("payload is {} bytes but dimensions ({}) need {}{}", have,
                                        fmt::join(dims, "x"), l.count,
                                        have < l.count ? " (truncated)" : " (trailing bytes)"));
  return l.header;
}

// Inflates a gzip-compressed IDX file no further than its header declares: the header first
// (at most 4 + 4 * kMaxDims bytes), then the header and payload, plus one byte to tell trailing
// data, so a small file that inflates to gigabytes is refused after the size it claims.
std::vector<uint8_t> gunzip_idx(const std::vector<uint8_t>& compressed, const std::string& source) {
  std::vector<int64_t> dims;
  const IdxLayout l = idx_layout(gunzip(compressed, source, 4 + 4 * kMaxDims), source, dims);
  std::vector<uint8_t> raw = gunzip(compressed, source, l.header + l.count);
  if (raw.size() > l.header + l.count)
    throw idx_error(source, fmt::format("payload runs past the {} bytes dimensions ({}) need "
                                        "(trailing bytes; decompression stopped there)",
                                        l.count, fmt::join(dims, "x")));
  return raw;
}
}  // namespace

IdxArray parse_idx(const std::vector<uint8_t>& raw, const std::string& source) {
  IdxArray out;
  size_t header = check_idx(raw, source, out.dims);
  out.data.assign(raw.begin() + static_cast<std::ptrdiff_t>(header), raw.end());
  return out;
}

IdxArray parse_idx(std::vector<uint8_t>&& raw, const std::string& source) {
  IdxArray out;
  size_t header = check_idx(raw, source, out.dims);
  raw.erase(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(header));
  out.data = std::move(raw);
  return out;
}

std::vector<uint8_t> serialize_idx(const IdxArray& array) {
  if (array.dims.empty() || array.dims.size() > static_cast<size_t>(kMaxDims))
    throw std::runtime_error(
        fmt::format("IDX: {} dimensions (expected 1 to {})", array.dims.size(), kMaxDims));
  uint64_t count = 1;
  for (int64_t d : array.dims) {
    if (d < 0 || d > std::numeric_limits<uint32_t>::max())
      throw std::runtime_error(fmt::format("IDX: dimension {} does not fit 32 bits", d));
    count *= static_cast<uint64_t>(d);
  }
  if (count != array.data.size())
    throw std::runtime_error(fmt::format("IDX: dimensions ({}) need {} bytes but {} given",
                                         fmt::join(array.dims, "x"), count, array.data.size()));
  std::vector<uint8_t> out{0, 0, kTypeU8, static_cast<uint8_t>(array.dims.size())};
  for (int64_t d : array.dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  out.insert(out.end(), array.data.begin(), array.data.end());
  return out;
}

IdxArray read_idx(const std::string& path) {
  std::vector<uint8_t> bytes = io::read_file(path);
  bool gz_name = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (is_gzip(bytes))
    bytes = gunzip_idx(bytes, path);
  else if (gz_name)
    throw std::runtime_error(fmt::format("'{}': not a gzip file (bad gzip magic)", path));
  return parse_idx(std::move(bytes), path);
}

void write_idx(const std::string& path, const IdxArray& array, bool compress) {
  std::vector<uint8_t> bytes;
  try {
    bytes = serialize_idx(array);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format("cannot write '{}': {}", path, e.what()));
  }
  if (compress) bytes = gzip(bytes);
  io::write_file_atomic(path, bytes);
}

}  // namespace gl::data
