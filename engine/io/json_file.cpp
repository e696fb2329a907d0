// json_file.cpp: whole-file JSON reads over read_file, and the "file: key: what" messages of
// nlohmann's exceptions and of JsonReader.
#include "engine/io/json_file.h"

#include <stdexcept>

#include "engine/io/fs.h"

namespace gl::io {
namespace {

template <class Json>
Json parse_text(std::string_view text, const std::string& source) {
  check_json_nesting(text, source);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(json_error(source, e));
  }
}

std::string_view as_text(const std::vector<uint8_t>& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

template <class Json>
Json parse_file(const std::string& path) {
  return parse_text<Json>(as_text(read_file(path)), path);
}

}  // namespace

void check_json_nesting(std::string_view text, const std::string& source) {
  int depth = 0;
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {  // a string: brackets inside do not nest; an escape hides the next byte
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '\n') {
      ++line;
      line_start = i + 1;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonNesting) {
        std::size_t column = 1;  // in characters, as the TOML reader counts them
        for (std::size_t k = line_start; k < i; ++k)
          column += (static_cast<unsigned char>(text[k]) & 0xC0) != 0x80;
        throw std::runtime_error(source + ":" + std::to_string(line) + ":" +
                                 std::to_string(column) + ": arrays and objects nested more than " +
                                 std::to_string(kMaxJsonNesting) + " deep");
      }
    } else if (c == ']' || c == '}') {
      --depth;  // an unbalanced close is the parser's to report
    }
  }
}

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  return parse_text<nlohmann::json>(text, source);
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& source) {
  return parse_text<nlohmann::ordered_json>(text, source);
}

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
    parsed = parse_json(as_text(bytes), path);
  } catch (const std::runtime_error& e) {
    return e.what();
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
