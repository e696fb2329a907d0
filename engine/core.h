// core.h: dtypes, devices, shapes and the error type shared by the whole engine.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gl {

// Every user-facing failure (bad shape, wrong dtype, corrupt file...) is a gl::Error whose
// message names the op or file and the offending values.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

#define GL_CHECK(cond, ...)                                  \
  do {                                                       \
    if (!(cond)) throw ::gl::Error(fmt::format(__VA_ARGS__)); \
  } while (0)

// v for a message: a NaN of either sign prints as "nan" (fmt writes a negative NaN as "-nan",
// a sign that means nothing to the reader).
inline double message_value(double v) {
  return std::isnan(v) ? std::numeric_limits<double>::quiet_NaN() : v;
}

// Text read from a file, for a message that quotes it: control bytes and DEL become \xNN (a
// NUL would otherwise end the message wherever it is read as a C string, and a carriage
// return or escape sequence would garble the terminal); everything else is kept.
std::string message_text(std::string_view text);

enum class DType : uint8_t { f32, f64, i64, u8 };

inline std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}
inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}
inline bool is_floating(DType d) { return d == DType::f32 || d == DType::f64; }

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::i64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::u8; };

struct Device {
  enum class Kind : uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {Kind::cuda, i}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_cuda() const { return kind == Kind::cuda; }
  bool operator==(const Device&) const = default;
  std::string str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }
  // Parses "cpu", "cuda", "cuda:N"; throws gl::Error otherwise.
  static Device parse(const std::string& s);
};

using Shape = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }
// Throws naming the shape: its element count (or, with dtype, its byte count) does not fit in
// int64_t. Kept out of line so the checked products below stay small.
[[noreturn]] void throw_shape_too_large(const Shape& s);
[[noreturn]] void throw_shape_bytes_too_large(const Shape& s, int64_t numel, DType dtype);
// The number of elements of s. The product is checked: one whose count exceeds int64_t throws
// naming the shape instead of wrapping (a shape with a zero dim has 0 elements however large
// the others are).
inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    if (__builtin_mul_overflow(n, d, &n)) [[unlikely]] {
      for (auto z : s)
        if (z == 0) return 0;
      throw_shape_too_large(s);
    }
  }
  return n;
}
// The bytes of a contiguous tensor of shape s and dtype; throws naming the shape when they
// exceed int64_t (so byte offsets and sizes never wrap).
inline std::size_t shape_nbytes(const Shape& s, DType dtype) {
  const int64_t n = shape_numel(s);
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n, int64_t(dtype_size(dtype)), &bytes)) [[unlikely]]
    throw_shape_bytes_too_large(s, n, dtype);
  return std::size_t(bytes);
}
inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  GL_CHECK(d >= 0 && d < std::max<int64_t>(ndim, 1) && (ndim > 0 || d == 0),
           "{}: dim {} out of range for a tensor with {} dims", op, dim, ndim);
  return d;
}
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace gl
