// json_file.cpp: whole-file JSON reads over read_file, and the "file: key: what" messages of
// nlohmann's exceptions and of JsonReader.
#include "engine/io/json_file.h"

#include <stdexcept>

#include "engine/io/fs.h"

namespace gl::io {
namespace {

template <class Json>
Json parse_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  try {
    return Json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(json_error(path, e));
  }
}

}  // namespace

nlohmann::json read_json_file(const std::string& path) {
  return parse_file<nlohmann::json>(path);
}

nlohmann::ordered_json read_ordered_json_file(const std::string& path) {
  return parse_file<nlohmann::ordered_json>(path);
}

std::string read_json_object_file(const std::string& path, nlohmann::json& out) {
  const std::vector<uint8_t> bytes = read_file(path);
  out = nlohmann::json();
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::parse_error& e) {
    return json_error(path, e);
  }
  if (!parsed.is_object())
    return json_key_error(path, "", "expected an object, got " + JsonReader(parsed, path).text());
  out = std::move(parsed);
  return "";
}

std::string json_error(const std::string& path, const std::exception& e, const std::string& key) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0) {
    auto close = what.find("] ");
    if (close != std::string::npos) what.erase(0, close + 2);
  }
  if (dynamic_cast<const nlohmann::json::parse_error*>(&e) != nullptr)
    return json_key_error(path, "", "invalid JSON: " + what);
  return json_key_error(path, key, what);
}

std::string json_key_error(const std::string& path, const std::string& key,
                           const std::string& what) {
  return (path.empty() ? "" : path + ": ") + (key.empty() ? "" : "key '" + key + "': ") + what;
}

}  // namespace gl::io
