// tensor_io.cpp: conversions between tensors and file buffers (little-endian hosts only).
#include "engine/io/tensor_io.h"

#include <cstring>

namespace gl::io {

namespace {
const char* st_name(DType d) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}
DType st_dtype(const std::string& s, const std::string& what) {
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "I64") return DType::i64;
  if (s == "U8") return DType::u8;
  throw Error(fmt::format("{}: dtype {} is not supported (F32, F64, I64, U8)", what, s));
}
std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = t.to(Device::cpu()).contiguous();
  std::vector<uint8_t> b(std::size_t(c.numel()) * dtype_size(c.dtype()));
  if (!b.empty()) std::memcpy(b.data(), c.raw_data(), b.size());
  return b;
}
Tensor tensor_of(const std::string& dtype, const std::vector<int64_t>& shape,
                 const std::vector<uint8_t>& bytes, const std::string& what) {
  DType dt = st_dtype(dtype, what);
  Tensor t = Tensor::empty(shape, dt);
  GL_CHECK(bytes.size() == std::size_t(t.numel()) * dtype_size(dt),
           "{}: {} bytes for {} {}", what, bytes.size(), dtype, shape_str(shape));
  if (!bytes.empty()) std::memcpy(t.raw_data(), bytes.data(), bytes.size());
  return t;
}
}  // namespace

NamedBuffer to_buffer(const std::string& name, const Tensor& t) {
  return {name, st_name(t.dtype()), t.shape(), bytes_of(t)};
}

Tensor from_buffer(const NamedBuffer& b) {
  return tensor_of(b.dtype, b.shape, b.bytes, "tensor '" + b.name + "'");
}

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<NamedBuffer> bufs;
  bufs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) bufs.push_back(to_buffer(name, t));
  save_safetensors(path, bufs, metadata);
}

NamedTensors load_tensors(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  NamedTensors out;
  for (const auto& b : f.tensors)
    out.emplace_back(b.name, tensor_of(b.dtype, b.shape, b.bytes, path + ": tensor '" + b.name + "'"));
  return out;
}

void save_npy(const std::string& path, const Tensor& t) {
  save_npy(path, NpyArray{st_name(t.dtype()), t.shape(), bytes_of(t)});
}

Tensor load_npy_tensor(const std::string& path) {
  NpyArray a = load_npy(path);
  return tensor_of(a.dtype, a.shape, a.bytes, path);
}

}  // namespace gl::io
