// json_file.h: JSON files read with errors that name the file (and, where the caller knows it,
// the key), never a bare library message.
#pragma once
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

namespace gl::io {

// Reads and parses `path`; throws std::runtime_error naming it when it is missing, is a
// directory, cannot be read or is not valid JSON.
nlohmann::json read_json_file(const std::string& path);
nlohmann::ordered_json read_ordered_json_file(const std::string& path);

// The message of an exception thrown while reading values out of the document of `path`:
// "PATH: key 'KEY': type must be string, but is number" (without the key part when `key` is
// empty); the library's "[json.exception.type_error.302]" prefix is dropped.
std::string json_error(const std::string& path, const std::exception& e,
                       const std::string& key = "");

}  // namespace gl::io
