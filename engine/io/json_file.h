// json_file.h: JSON files read with errors that name the file and the key, never a bare library
// message: whole-file reads, and JsonReader for the values in them.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace gl::io {

// The deepest nesting of arrays and objects a JSON document may have (the outermost one is
// level 1). nlohmann's parser copes with any depth, but what walks a document afterwards
// (dump, comparisons, copies, the readers' own recursions) would exhaust the stack.
inline constexpr int kMaxJsonNesting = 128;

// Throws std::runtime_error "SOURCE:LINE:COLUMN: arrays and objects nested more than 128 deep"
// when the JSON `text` nests deeper than kMaxJsonNesting; a cheap scan, before parsing.
void check_json_nesting(std::string_view text, const std::string& source);

// `text` parsed as JSON, its nesting checked first; throws std::runtime_error naming `source`
// ("SOURCE: invalid JSON: ...").
nlohmann::json parse_json(std::string_view text, const std::string& source);
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& source);

// A JSON value as text for a message, shortened to about `max_chars` characters ("[[[[ ...").
template <class Json>
std::string json_text(const Json& value, std::size_t max_chars = 80) {
  std::string s = value.dump();
  return s.size() <= max_chars ? s : s.substr(0, max_chars - 4) + " ...";
}

// Reads and parses `path`; throws std::runtime_error naming it when it is missing, is a
// directory, cannot be read, is not valid JSON or nests deeper than kMaxJsonNesting.
nlohmann::json read_json_file(const std::string& path);
nlohmann::ordered_json read_ordered_json_file(const std::string& path);

// Reads the JSON object in `path` into `out` and returns "", or returns why the file holds no
// object ("PATH: invalid JSON: ...", "PATH: expected an object, got [1]") and leaves `out`
// null. For files a resumed run may start again; a file that cannot be read still throws.
std::string read_json_object_file(const std::string& path, nlohmann::json& out);

// The message of an exception thrown while reading values out of the document of `path`:
// "PATH: key 'KEY': type must be string, but is number" (without the key part when `key` is
// empty); the library's "[json.exception.type_error.302]" prefix is dropped.
std::string json_error(const std::string& path, const std::exception& e,
                       const std::string& key = "");

// "PATH: key 'KEY': WHAT", without the key part when `key` is empty and the path part when
// `path` is.
std::string json_key_error(const std::string& path, const std::string& key,
                           const std::string& what);

namespace detail {
template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};
template <class T>
struct is_string_map : std::false_type {};
template <class T>
struct is_string_map<std::map<std::string, T>> : std::true_type {};
}  // namespace detail

// A value in the JSON document of `file`, with the path of keys that leads to it
// ("params[3].numel"). Every read checks the type and throws std::runtime_error naming the file
// and the key where nlohmann's get<> and value() would throw a message naming neither, or
// convert silently: "run/optim/optim.json: key 'params[3].numel': expected a whole number from
// -9223372036854775808 to 9223372036854775807, got \"12\"". An integer is read from a whole
// number within its type's range (2.0 counts; 2.5 and 1e30 are refused, which get<> truncates
// or overflows).
template <class Json>
class BasicJsonReader {
 public:
  BasicJsonReader(const Json& value, std::string file, std::string key = "")
      : value_(&value), file_(std::move(file)), key_(std::move(key)) {}
  BasicJsonReader(const Json&& value, std::string file, std::string key = "") = delete;

  const Json& json() const { return *value_; }
  const std::string& key() const { return key_; }

  // Throws "FILE: key 'KEY': what".
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(json_key_error(file_, key_, what));
  }
  // The value as JSON text, shortened to about 80 characters.
  std::string text() const { return json_text(*value_); }

  // Whether this is an object with a member `name`.
  bool contains(const std::string& name) const {
    return value_->is_object() && value_->contains(name);
  }
  // The member `name` of this object; throws when this is not an object or lacks the member.
  BasicJsonReader operator[](const std::string& name) const {
    const auto it = object().find(name);
    if (it == value_->end()) member(*value_, name).fail("missing");
    return member(*it, name);
  }
  // Element `i` of this array; throws when this is not an array or is shorter.
  BasicJsonReader operator[](std::size_t i) const {
    if (i >= array().size())
      fail("expected at least " + std::to_string(i + 1) + " elements, got " + text());
    return element((*value_)[i], i);
  }
  std::size_t size() const { return array().size(); }  // of this array
  // The elements of this array, and the members of this object (in the document's order for
  // an ordered_json); each throws when this is not one.
  std::vector<BasicJsonReader> elements() const {
    std::vector<BasicJsonReader> out;
    for (std::size_t i = 0; i < array().size(); ++i) out.push_back(element((*value_)[i], i));
    return out;
  }
  std::vector<std::pair<std::string, BasicJsonReader>> members() const {
    std::vector<std::pair<std::string, BasicJsonReader>> out;
    for (auto it = object().begin(); it != value_->end(); ++it)
      out.emplace_back(it.key(), member(it.value(), it.key()));
    return out;
  }

  // The value as T: bool, std::string, a floating-point or integer type, or a std::vector or
  // std::map<std::string, ...> of these.
  template <class T>
  T get() const {
    const Json& v = *value_;
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) fail("expected true or false, got " + text());
      return v.template get<bool>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) fail("expected a string, got " + text());
      return v.template get<std::string>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) fail("expected a number, got " + text());
      return v.template get<T>();
    } else if constexpr (std::is_integral_v<T>) {
      return whole<T>();
    } else if constexpr (detail::is_vector<T>::value) {
      T out;
      for (const BasicJsonReader& e : elements())
        out.push_back(e.template get<typename T::value_type>());
      return out;
    } else if constexpr (detail::is_string_map<T>::value) {
      T out;
      for (const auto& [name, m] : members())
        out.emplace(name, m.template get<typename T::mapped_type>());
      return out;
    } else {
      static_assert(detail::is_vector<T>::value, "JsonReader::get: unsupported type");
    }
  }
  // Member `name` of this object as T, or `fallback` when the object has no such member.
  template <class T>
  T get(const std::string& name, const T& fallback) const {
    return object().contains(name) ? (*this)[name].template get<T>() : fallback;
  }

  // The value when it is an object / an array; throws otherwise.
  const Json& object() const {
    if (!value_->is_object()) fail("expected an object, got " + text());
    return *value_;
  }
  const Json& array() const {
    if (!value_->is_array()) fail("expected an array, got " + text());
    return *value_;
  }

 private:
  BasicJsonReader member(const Json& v, const std::string& name) const {
    return BasicJsonReader(v, file_, key_.empty() ? name : key_ + "." + name);
  }
  BasicJsonReader element(const Json& v, std::size_t i) const {
    return BasicJsonReader(v, file_, key_ + "[" + std::to_string(i) + "]");
  }
  template <class I>
  I whole() const {
    const Json& v = *value_;
    using limits = std::numeric_limits<I>;
    if (v.is_number_float()) {
      const double d = v.template get<double>();
      if (d != std::floor(d)) fail("expected a whole number, got " + text());
      if (d >= double(limits::min()) && d < std::ldexp(1.0, limits::digits)) return I(d);
    } else if (v.is_number_unsigned()) {
      if (std::in_range<I>(v.template get<uint64_t>())) return I(v.template get<uint64_t>());
    } else if (v.is_number_integer()) {
      if (std::in_range<I>(v.template get<int64_t>())) return I(v.template get<int64_t>());
    }
    fail("expected a whole number from " + std::to_string(limits::min()) + " to " +
         std::to_string(limits::max()) + ", got " + text());
  }

  const Json* value_;
  std::string file_, key_;
};

using JsonReader = BasicJsonReader<nlohmann::json>;
using OrderedJsonReader = BasicJsonReader<nlohmann::ordered_json>;

}  // namespace gl::io
