// fs.h: whole-file reads and atomic whole-file writes. Every file gradlens writes goes through
// write_file_atomic, so a killed process leaves either the old file or the new one, never half.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gl::io {

// Reads the whole file; throws std::runtime_error naming the path when it cannot.
std::vector<uint8_t> read_file(const std::string& path);

// Writes `bytes` to a temporary file in the same directory, fsyncs it, renames it over `path`
// and fsyncs the directory. The parent directory must exist (see ensure_dir).
void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes);
void write_file_atomic(const std::string& path, std::string_view bytes);

// Creates `path` and its missing parents; throws if it exists and is not a directory.
void ensure_dir(const std::string& path);

bool file_exists(const std::string& path);

}  // namespace gl::io
