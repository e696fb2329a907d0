// png.cpp: the minimal PNG writer: signature, IHDR, one IDAT (filter 0 on every row), IEND.
#include "analysis/png.h"

#include <zlib.h>

#include <array>
#include <stdexcept>

namespace gl::analysis {
namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
}

void chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_u32(out, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  const auto& t = crc_table();
  crc ^= 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) crc = t[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::string encode_png(const uint8_t* pixels, int width, int height, int channels) {
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
    throw std::runtime_error("encode_png: need width, height > 0 and 1 or 3 channels, got " +
                             std::to_string(width) + "x" + std::to_string(height) + "x" +
                             std::to_string(channels));
  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(width));
  put_u32(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string{8, static_cast<char>(channels == 1 ? 0 : 2), 0, 0, 0};
  chunk(out, "IHDR", ihdr);
  const size_t stride = static_cast<size_t>(width) * channels;
  std::string raw;
  raw.reserve((stride + 1) * height);
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(pixels + y * stride), stride);
  }
  uLongf len = compressBound(raw.size());
  std::string z(len, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &len,
                reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 9) != Z_OK)
    throw std::runtime_error("encode_png: zlib compression failed");
  z.resize(len);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", "");
  return out;
}

std::string base64(const std::string& bytes) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(a[(v >> s) & 63]);
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += {a[(v >> 18) & 63], a[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += {a[(v >> 18) & 63], a[(v >> 12) & 63], a[(v >> 6) & 63], '='};
  }
  return out;
}

std::string png_data_uri(const uint8_t* pixels, int width, int height, int channels) {
  return "data:image/png;base64," + base64(encode_png(pixels, width, height, channels));
}

}  // namespace gl::analysis
