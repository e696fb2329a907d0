// core.cpp: broadcasting rules and device parsing.
#include "engine/core.h"

namespace gl {

std::string message_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F)
      out += fmt::format("\\x{:02X}", c);
    else
      out += ch;
  }
  return out;
}

void throw_shape_too_large(const Shape& s) {
  throw Error(fmt::format("shape {} has more elements than fit in 64 bits (more than {})",
                          shape_str(s), std::numeric_limits<int64_t>::max()));
}
void throw_shape_bytes_too_large(const Shape& s, int64_t numel, DType dtype) {
  throw Error(
      fmt::format("shape {} of {} ({} elements of {} bytes) needs more bytes than fit in "
                  "64 bits (more than {})",
                  shape_str(s), dtype_name(dtype), numel, dtype_size(dtype),
                  std::numeric_limits<int64_t>::max()));
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    GL_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast", op,
             shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      std::size_t pos = 0;
      int i = std::stoi(s.substr(5), &pos);
      if (pos == s.size() - 5 && i >= 0) return cuda(i);
    } catch (const std::exception&) {
    }
  }
  throw Error(fmt::format("unknown device '{}' (expected cpu, cuda or cuda:N)", s));
}

}  // namespace gl
