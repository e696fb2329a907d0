// png.h: encodes 8-bit grayscale or RGB pixels as PNG (zlib deflate, our own CRC-32) and as
// a base64 data URI, so the report can embed digits without external files.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gl::analysis {

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);
// pixels: row-major HWC, channels 1 (gray) or 3 (RGB). Returns the PNG file bytes.
std::string encode_png(const uint8_t* pixels, int width, int height, int channels);
std::string base64(const std::string& bytes);
std::string png_data_uri(const uint8_t* pixels, int width, int height, int channels);

}  // namespace gl::analysis
