// tensor.h: Tensor, a cheap handle to shared storage plus shape, strides, offset, dtype and
// device, and the autograd state (requires_grad, grad, grad_fn, hooks) of the tape.
#pragma once
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "engine/core.h"

namespace gl {

class Generator;
struct Node;
struct TensorImpl;

// A block of memory on one device. Views share one Storage.
struct Storage {
  void* data = nullptr;
  std::size_t nbytes = 0;
  Device device;
  Storage(std::size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Allocation hooks for non-CPU devices, installed by the CUDA backend when it is built in.
struct DeviceAllocatorHooks {
  void* (*alloc)(std::size_t bytes, int device) = nullptr;
  void (*free)(void* ptr) = nullptr;
  // Copies `bytes` from src, memory of device src_device, to dst, memory of device dst_device
  // (-1: host memory), and waits for the copy. Runs on the devices that hold the memory,
  // whichever device is current.
  void (*copy)(void* dst, int dst_device, const void* src, int src_device,
               std::size_t bytes) = nullptr;
  void (*memset0)(void* dst, int device, std::size_t bytes) = nullptr;
};
DeviceAllocatorHooks& cuda_allocator_hooks();

// Bytes of freed host blocks the calling thread keeps for reuse (Storage reuses a freed
// block of the same rounded size instead of returning it to the system allocator).
std::size_t host_block_cache_bytes();

// A gradient hook sees the gradient flowing into a tensor; returning a defined tensor
// replaces that gradient, returning Tensor() keeps it.
class Tensor;
using GradHook = std::function<Tensor(const Tensor&)>;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = {});
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = {});
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = {});
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = {});
  static Tensor scalar(double value, DType dtype = DType::f32);
  static Tensor arange(int64_t n, DType dtype = DType::f32);
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // Uniform in [lo, hi) and standard normal, from an explicitly seeded Philox generator.
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32, double lo = 0.0,
                     double hi = 1.0);
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32,
                      double mean = 0.0, double std = 1.0);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  std::string str() const;        // "f32[2, 3]"
  std::string to_string() const;  // metadata and (abbreviated) values

  // ---- data ----
  void* raw_data() const;  // address of element 0 (storage + offset)
  template <class T>
  T* data() const;  // checks dtype and CPU residency
  const std::shared_ptr<Storage>& storage() const;
  double item() const;  // one-element tensor -> double
  double at(std::initializer_list<int64_t> index) const;
  void set_at(std::initializer_list<int64_t> index, double value);
  template <class T>
  std::vector<T> to_vector() const;  // row-major copy, converting dtype

  // ---- views (share storage; differentiable) ----
  Tensor view(const Shape& shape) const;     // requires compatible strides
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  // A floating value converted to i64 or u8 (here, in copy_, fill_, full and set_at) is truncated
  // toward zero and clamped to the dtype's range, NaN giving 0, on the CPU and on a GPU alike
  // (gl::fn::saturate_cast in kernels/functors.h).
  Tensor to(DType dtype) const;
  // Between two CUDA devices the copy is a peer copy; any device may be current.
  Tensor to(Device device) const;

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const;
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  void zero_grad() const;  // drops .grad
  // Backpropagates from this tensor. Without `grad` the tensor must have one element.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // shares storage, no history
  void retain_grad() const;
  int add_hook(GradHook hook) const;
  void remove_hook(int id) const;
  const std::shared_ptr<Node>& grad_fn() const;

  // ---- in-place helpers for optimizers and initializers (no autograd) ----
  void fill_(double value) const;
  void copy_(const Tensor& src) const;  // same shape; converts dtype

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  void check_defined(const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  std::vector<std::pair<int, GradHook>> hooks;
  int next_hook_id = 0;
};

// Makes a tensor from its parts (used by views and ops).
Tensor make_tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
                   DType dtype);

}  // namespace gl
