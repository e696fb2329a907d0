// tensor_io.h: Tensor <-> the raw buffers of safetensors and .npy files.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/io/npy.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"

namespace gl::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

NamedBuffer to_buffer(const std::string& name, const Tensor& t);
// Throws naming the tensor when its dtype is not one gradlens computes in (F32, F64, I64, U8).
Tensor from_buffer(const NamedBuffer& b);

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});
NamedTensors load_tensors(const std::string& path);

void save_npy(const std::string& path, const Tensor& t);
Tensor load_npy_tensor(const std::string& path);

}  // namespace gl::io
