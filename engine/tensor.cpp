// tensor.cpp: storage, creation, metadata, element access, views and copies.
#include "engine/tensor.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <ostream>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "engine/autograd.h"
#include "engine/generator.h"
#include "engine/ops/loops.h"
#include "kernels/functors.h"
#include "kernels/philox.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "engine/cuda/ops_cuda.h"
#include "kernels/cuda/runtime.h"
#include "kernels/kernels.h"
#endif

namespace gl {

// ---------------------------------------------------------------- storage
DeviceAllocatorHooks& cuda_allocator_hooks() {
  static DeviceAllocatorHooks hooks = [] {
    DeviceAllocatorHooks h;
#if defined(GRADLENS_HAVE_CUDA)
    // The stream-ordered caching allocator of kernels/cuda. Each call runs on the device that
    // holds the memory (its default stream); copies synchronize so that a host read after
    // to(cpu) sees the data.
    namespace kc = kernels::cuda;
    h.alloc = [](std::size_t bytes, int device) { return kc::device_alloc(bytes, device); };
    h.free = [](void* p) { kc::device_free(p); };
    h.copy = [](void* dst, int dst_device, const void* src, int src_device, std::size_t bytes) {
      if (dst_device >= 0 && src_device >= 0 && dst_device != src_device) {
        // Between two devices: the source's pending work first, then a peer copy ordered
        // after the destination's.
        kc::synchronize(kc::default_stream(src_device));
        const kc::DeviceScope scope(dst_device);
        kc::copy_peer(dst, dst_device, src, src_device, bytes);
        kc::synchronize();
        return;
      }
      const kc::DeviceScope scope(dst_device >= 0 ? dst_device : src_device);
      if (src_device < 0)
        kc::copy_to_device(dst, src, bytes);
      else if (dst_device < 0)
        kc::copy_to_host(dst, src, bytes);
      else
        kc::copy_device_to_device(dst, src, bytes);
      kc::synchronize();
    };
    h.memset0 = [](void* dst, int device, std::size_t bytes) {
      const kc::DeviceScope scope(device);
      kc::memset_device(dst, 0, bytes);
    };
#endif
    return h;
  }();
  return hooks;
}

namespace {
// Training allocates the same few large buffers every step. glibc serves blocks above 128 KB
// with mmap and returns them with munmap, so every step would page-fault its activations in
// afresh; raising the thresholds keeps those blocks in the heap for reuse.
void tune_host_allocator() {
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
  });
}
}  // namespace

namespace {
// Freed host blocks of a few sizes kept per thread for the next allocation of the same size.
// A training step frees and reallocates the same buffers (activations, gradients: 64 KiB for
// a 128 x 128 layer) every step; handing them back to glibc costs a free plus a fastbin
// consolidation per block (about 5% of a fused sweep step) and a malloc to get them again.
// Blocks from 512 bytes up (a layer's bias gradient is 1 KiB while it is summed in f64: an
// aligned request that size makes glibc consolidate its fast bins every time), at most
// kMaxCachedBytes per thread in all; freeing a block
// while the cache is full, or after the thread's cache was destroyed, frees it at once.
class HostBlockCache {
 public:
  static constexpr std::size_t kMinBytes = 512;
  static constexpr std::size_t kMaxCachedBytes = std::size_t(256) << 20;

  ~HostBlockCache() {
    alive_ = false;
    for (auto& [bytes, blocks] : free_)
      for (void* p : blocks) std::free(p);
  }
  // A block of `rounded` bytes (a multiple of 64), from the cache when one is there.
  static void* take(std::size_t rounded) {
    if (rounded >= kMinBytes && alive_) {
      auto& c = instance();
      auto it = c.free_.find(rounded);
      if (it != c.free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        c.cached_ -= rounded;
        return p;
      }
    }
    return std::aligned_alloc(64, rounded);
  }
  static void give(void* p, std::size_t rounded) {
    if (rounded >= kMinBytes && alive_) {
      auto& c = instance();
      if (c.cached_ + rounded <= kMaxCachedBytes) {
        c.free_[rounded].push_back(p);
        c.cached_ += rounded;
        return;
      }
    }
    std::free(p);
  }
  static std::size_t cached_bytes() { return alive_ ? instance().cached_ : 0; }

 private:
  static HostBlockCache& instance() {
    thread_local HostBlockCache c;
    return c;
  }
  // Trivially destructible, so it stays readable while the cache itself is being destroyed.
  static thread_local bool alive_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
};
thread_local bool HostBlockCache::alive_ = true;

std::size_t host_block_bytes(std::size_t n) {
  const std::size_t rounded = ((n + 63) / 64) * 64;
  return rounded == 0 ? 64 : rounded;
}
}  // namespace

std::size_t host_block_cache_bytes() {
  return HostBlockCache::cached_bytes();
}

Storage::Storage(std::size_t n, Device dev) : nbytes(n), device(dev) {
  GL_CHECK(n <= std::size_t(std::numeric_limits<int64_t>::max()),
           "cannot allocate {} bytes (more than fit in 64-bit signed offsets)", n);
  if (dev.is_cpu()) {
    tune_host_allocator();
    data = HostBlockCache::take(host_block_bytes(n));
    GL_CHECK(data != nullptr, "out of host memory allocating {} bytes", n);
  } else {
    auto& h = cuda_allocator_hooks();
    GL_CHECK(h.alloc != nullptr,
             "device {} requested, but this gradlens was built without CUDA support", dev.str());
#if defined(GRADLENS_HAVE_CUDA)
    int count = kernels::cuda::device_count();
    GL_CHECK(dev.index < count, "device {} requested, but {} CUDA device(s) are available{}",
             dev.str(), count, count == 0 ? " (no GPU or driver found)" : "");
#endif
    data = h.alloc(n, dev.index);
  }
}

Storage::~Storage() {
  if (device.is_cpu()) {
    HostBlockCache::give(data, host_block_bytes(nbytes));
  } else if (cuda_allocator_hooks().free) {
    cuda_allocator_hooks().free(data);
  }
}

Tensor make_tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
                   DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---------------------------------------------------------------- dtype helpers
namespace {
template <class F>
auto visit_dtype(DType d, F&& f) {
  switch (d) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::i64:
      return f(int64_t{});
    case DType::u8:
      return f(uint8_t{});
  }
  throw Error("unknown dtype");
}

double load_as_double(const void* p, DType d) {
  return visit_dtype(d, [&](auto tag) { return double(*static_cast<const decltype(tag)*>(p)); });
}
void store_from_double(void* p, DType d, double v) {
  visit_dtype(d, [&](auto tag) {
    using T = decltype(tag);
    *static_cast<T*>(p) = fn::saturate_cast<T>(v);
    return 0;
  });
}

void check_cpu(const Tensor& t, const char* op) {
  GL_CHECK(t.device().is_cpu(), "{}: tensor on {} (this operation needs a CPU tensor)", op,
           t.device().str());
}

// dst[i] = src[i] over two tensors of the same shape, any strides, any dtypes.
void strided_copy(const Tensor& src, const Tensor& dst) {
  GL_CHECK(src.shape() == dst.shape(), "copy_: shape {} into {}", shape_str(src.shape()),
           shape_str(dst.shape()));
  if (!src.device().is_cpu() || !dst.device().is_cpu()) {
#if defined(GRADLENS_HAVE_CUDA)
    // On one device: a strided kernel (converting dtype), no host synchronization. Across
    // devices the bytes move contiguous and in one dtype; layout and dtype changes happen on
    // whichever side has the data.
    if (src.device() == dst.device()) {
      cuda_ops::copy(src, dst);
      return;
    }
    if (src.device().is_cpu() && dst.device().is_cuda()) {
      Tensor s = src.to(dst.dtype()).contiguous();
      if (dst.is_contiguous()) {
        cuda_allocator_hooks().copy(dst.raw_data(), dst.device().index, s.raw_data(), -1,
                                    std::size_t(s.numel()) * dtype_size(s.dtype()));
        return;
      }
      Tensor staged = Tensor::empty(dst.shape(), dst.dtype(), dst.device());
      cuda_allocator_hooks().copy(staged.raw_data(), dst.device().index, s.raw_data(), -1,
                                  std::size_t(s.numel()) * dtype_size(s.dtype()));
      cuda_ops::copy(staged, dst);
      return;
    }
    if (src.device().is_cuda() && dst.device().is_cpu() &&
        !(src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous())) {
      Tensor s = src.detach().contiguous();
      Tensor host = Tensor::empty(src.shape(), src.dtype());
      cuda_allocator_hooks().copy(host.raw_data(), -1, s.raw_data(), src.device().index,
                                  std::size_t(s.numel()) * dtype_size(s.dtype()));
      strided_copy(host, dst);
      return;
    }
#endif
    auto& h = cuda_allocator_hooks();
    GL_CHECK(h.copy != nullptr, "copy between {} and {}: built without CUDA", src.device().str(),
             dst.device().str());
    GL_CHECK(src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous(),
             "copy across devices needs contiguous tensors of one dtype");
    auto index = [](const Device& d) { return d.is_cpu() ? -1 : d.index; };
    h.copy(dst.raw_data(), index(dst.device()), src.raw_data(), index(src.device()),
           std::size_t(src.numel()) * dtype_size(src.dtype()));
    return;
  }
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), std::size_t(src.numel()) * dtype_size(src.dtype()));
    return;
  }
  visit_dtype(src.dtype(), [&](auto stag) {
    using S = decltype(stag);
    return visit_dtype(dst.dtype(), [&](auto dtag) {
      using D = decltype(dtag);
      const S* s = static_cast<const S*>(src.raw_data());
      D* d = static_cast<D*>(dst.raw_data());
      loops::for_each_row<2>(dst.shape(), {dst.strides(), src.strides()},
                             [&](auto off, int64_t n, auto st) {
                               D* dp = d + off[0];
                               const S* sp = s + off[1];
                               if (st[0] == 1 && st[1] == 1) {
                                 for (int64_t i = 0; i < n; ++i)
                                   dp[i] = fn::saturate_cast<D>(sp[i]);
                               } else {
                                 for (int64_t i = 0; i < n; ++i)
                                   dp[i * st[0]] = fn::saturate_cast<D>(sp[i * st[1]]);
                               }
                             });
      return 0;
    });
  });
}
}  // namespace

// ---------------------------------------------------------------- creation
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape) GL_CHECK(d >= 0, "empty: negative dimension in shape {}", shape_str(shape));
  auto st = std::make_shared<Storage>(shape_nbytes(shape, dtype), device);
  return make_tensor(std::move(st), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cpu()) {
    std::memset(t.raw_data(), 0, t.storage()->nbytes);
  } else {
    cuda_allocator_hooks().memset0(t.raw_data(), device.index, t.storage()->nbytes);
  }
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
#if defined(GRADLENS_HAVE_CUDA)
  if (device.is_cuda()) {  // a fill kernel: no host->device copy inside a step
    Tensor t = empty(shape, dtype, device);
    cuda_ops::fill(t, value);
    return t;
  }
#endif
  Tensor t = empty(shape, dtype, Device::cpu());
  t.fill_(value);
  return device.is_cpu() ? t : t.to(device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype) {
  return full({}, value, dtype);
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i)
    store_from_double(static_cast<char*>(t.raw_data()) + i * dtype_size(dtype), dtype, double(i));
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  GL_CHECK(int64_t(values.size()) == shape_numel(shape),
           "from_vector: {} values for shape {} ({} elements)", values.size(), shape_str(shape),
           shape_numel(shape));
  Tensor t = empty(shape, DTypeOf<T>::value);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&);
template Tensor Tensor::from_vector<int64_t>(const std::vector<int64_t>&, const Shape&);
template Tensor Tensor::from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&);

namespace {
// Fills a new tensor with element i = f(seed, offset, i) for one reserved range of the stream.
template <class F>
Tensor philox_fill(const Shape& shape, Generator& gen, DType dtype, const char* op, F f) {
  GL_CHECK(is_floating(dtype), "{}: dtype {} is not floating point", op, dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype);
  int64_t n = t.numel();
  uint64_t off = gen.advance(uint64_t(n));
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) p[i] = T(f(gen.seed(), off, uint64_t(i)));
    return 0;
  });
  return t;
}
}  // namespace

Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype, double lo, double hi) {
  return philox_fill(shape, gen, dtype, "rand", [lo, hi](uint64_t s, uint64_t o, uint64_t i) {
    return lo + (hi - lo) * philox::uniform_at(s, o, i);
  });
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, double mean, double std) {
  return philox_fill(shape, gen, dtype, "randn", [mean, std](uint64_t s, uint64_t o, uint64_t i) {
    return mean + std * philox::normal_at(s, o, i);
  });
}

// ---------------------------------------------------------------- metadata
void Tensor::check_defined(const char* what) const {
  GL_CHECK(impl_ != nullptr, "{}: tensor is undefined", what);
}
const Shape& Tensor::shape() const {
  check_defined("shape");
  return impl_->shape;
}
const Shape& Tensor::strides() const {
  check_defined("strides");
  return impl_->strides;
}
int64_t Tensor::offset() const {
  return impl_->offset;
}
int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}
DType Tensor::dtype() const {
  check_defined("dtype");
  return impl_->dtype;
}
Device Tensor::device() const {
  check_defined("device");
  return impl_->storage->device;
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  return impl_->storage;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] != 1 && impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return fmt::format("{}{}", dtype_name(dtype()), shape_str(shape()));
}

void* Tensor::raw_data() const {
  check_defined("data");
  return static_cast<char*>(impl_->storage->data) +
         impl_->offset * int64_t(dtype_size(impl_->dtype));
}

template <class T>
T* Tensor::data() const {
  check_defined("data");
  GL_CHECK(dtype() == DTypeOf<T>::value, "data<{}>() on a {} tensor", dtype_name(DTypeOf<T>::value),
           str());
  check_cpu(*this, "data");
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

double Tensor::item() const {
  GL_CHECK(numel() == 1, "item: tensor {} has {} elements, not 1", str(), numel());
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  return load_as_double(c.raw_data(), dtype());
}

namespace {
int64_t element_offset(const Tensor& t, std::initializer_list<int64_t> index, const char* op) {
  GL_CHECK(int64_t(index.size()) == t.dim(), "{}: {} indices for tensor {}", op, index.size(),
           t.str());
  int64_t off = 0, d = 0;
  for (int64_t i : index) {
    GL_CHECK(i >= 0 && i < t.shape()[d], "{}: index {} out of range for dim {} of {}", op, i, d,
             t.str());
    off += i * t.strides()[d];
    ++d;
  }
  return off;
}
}  // namespace

double Tensor::at(std::initializer_list<int64_t> index) const {
  check_cpu(*this, "at");
  int64_t off = element_offset(*this, index, "at");
  return load_as_double(static_cast<char*>(raw_data()) + off * int64_t(dtype_size(dtype())),
                        dtype());
}
void Tensor::set_at(std::initializer_list<int64_t> index, double value) {
  check_cpu(*this, "set_at");
  int64_t off = element_offset(*this, index, "set_at");
  store_from_double(static_cast<char*>(raw_data()) + off * int64_t(dtype_size(dtype())), dtype(),
                    value);
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(Device::cpu()).to(DTypeOf<T>::value).contiguous();
  const T* p = static_cast<const T*>(c.raw_data());
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

void Tensor::fill_(double value) const {
#if defined(GRADLENS_HAVE_CUDA)
  if (device().is_cuda()) {
    cuda_ops::fill(*this, value);
    return;
  }
#endif
  check_cpu(*this, "fill_");
  visit_dtype(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(raw_data());
    T v = fn::saturate_cast<T>(value);
    loops::for_each_row<1>(shape(), {strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = v;
    });
    return 0;
  });
}

void Tensor::copy_(const Tensor& src) const {
  strided_copy(src, *this);
}

// ---------------------------------------------------------------- views
namespace {
Tensor view_of(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  return make_tensor(base.storage(), std::move(shape), std::move(strides), offset, base.dtype());
}

// Shape with one -1 inferred from numel.
Shape infer_shape(Shape shape, int64_t numel, const char* op, const Shape& from) {
  int64_t known = 1, infer = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      GL_CHECK(infer < 0, "{}: more than one -1 in shape {}", op, shape_str(shape));
      infer = int64_t(i);
    } else {
      GL_CHECK(shape[i] >= 0, "{}: negative dimension in shape {}", op, shape_str(shape));
      GL_CHECK(!__builtin_mul_overflow(known, shape[i], &known) || numel == 0,
               "{}: cannot reshape {} into {}", op, shape_str(from), shape_str(shape));
    }
  }
  if (infer >= 0) {
    GL_CHECK(known != 0 && numel % known == 0, "{}: cannot reshape {} into {}", op, shape_str(from),
             shape_str(shape));
    shape[infer] = numel / known;
  }
  GL_CHECK(shape_numel(shape) == numel, "{}: cannot reshape {} ({} elements) into {}", op,
           shape_str(from), numel, shape_str(shape));
  return shape;
}

// Strides for viewing (shape, strides) as new_shape without a copy, if possible. The old dims
// are walked from the innermost outwards in chunks that are contiguous among themselves; each
// chunk must be covered exactly by a run of new dims.
bool view_strides(Shape shape, Shape strides, const Shape& new_shape, Shape& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) == 0) {
    out = contiguous_strides(new_shape);
    return true;
  }
  if (shape.empty()) {
    shape = {1};
    strides = {1};
  }
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = int64_t(shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= shape[tensor_d];
    if (tensor_d == 0 ||
        (shape[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}
}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  Shape ns = infer_shape(shape_in, numel(), "view", shape());
  Shape nst;
  GL_CHECK(view_strides(shape(), strides(), ns, nst),
           "view: tensor {} with strides {} cannot be viewed as {} without a copy (use reshape)",
           str(), shape_str(strides()), shape_str(ns));
  Tensor out = view_of(*this, ns, nst, offset());
  if (needs_grad({this})) {
    Shape in_shape = shape();
    attach_grad_fn(out, "view", {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
      return {g.reshape(in_shape)};
    });
  }
  return out;
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape ns = infer_shape(shape_in, numel(), "reshape", shape());
  Shape nst;
  if (view_strides(shape(), strides(), ns, nst)) return view(ns);
  return contiguous().view(ns);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  int64_t n = dim();
  d0 = wrap_dim(d0, n, "transpose");
  d1 = wrap_dim(d1, n, "transpose");
  std::vector<int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (n > 0) std::swap(perm[d0], perm[d1]);
  return permute(perm);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  int64_t n = dim();
  GL_CHECK(int64_t(dims.size()) == n, "permute: {} dims given for tensor {}", dims.size(), str());
  Shape ns(n), nst(n);
  std::vector<bool> seen(n, false);
  std::vector<int64_t> inverse(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = wrap_dim(dims[i], n, "permute");
    GL_CHECK(!seen[d], "permute: dim {} repeated in {}", d, shape_str(Shape(dims)));
    seen[d] = true;
    ns[i] = shape()[d];
    nst[i] = strides()[d];
    inverse[d] = i;
  }
  Tensor out = view_of(*this, ns, nst, offset());
  if (needs_grad({this})) {
    attach_grad_fn(out, "permute", {*this}, [inverse](const Tensor& g) -> std::vector<Tensor> {
      return {g.permute(inverse)};
    });
  }
  return out;
}

Tensor Tensor::slice(int64_t dim_in, int64_t start, int64_t end, int64_t step) const {
  int64_t d = wrap_dim(dim_in, dim(), "slice");
  int64_t len = shape()[d];
  GL_CHECK(step > 0, "slice: step must be positive, got {}", step);
  if (start < 0) start += len;
  if (end < 0) end += len;
  start = std::clamp<int64_t>(start, 0, len);
  end = std::clamp<int64_t>(end, start, len);
  Shape ns = shape(), nst = strides();
  ns[d] = (end - start + step - 1) / step;
  nst[d] = strides()[d] * step;
  Tensor out = view_of(*this, ns, nst, offset() + start * strides()[d]);
  if (needs_grad({this})) {
    Shape in_shape = shape();
    DType dt = dtype();
    Device dev = device();
    attach_grad_fn(
        out, "slice", {*this},
        [in_shape, dt, dev, d, start, end, step](const Tensor& g) -> std::vector<Tensor> {
          Tensor z = Tensor::zeros(in_shape, dt, dev);
          z.slice(d, start, end, step).copy_(g);
          return {z};
        });
  }
  return out;
}

Tensor Tensor::narrow(int64_t dim_in, int64_t start, int64_t length) const {
  int64_t d = wrap_dim(dim_in, dim(), "narrow");
  GL_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d],
           "narrow: range [{}, {}) out of bounds for dim {} of {}", start, start + length, d,
           str());
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim_in, int64_t index) const {
  int64_t d = wrap_dim(dim_in, dim(), "select");
  int64_t len = shape()[d];
  if (index < 0) index += len;
  GL_CHECK(index >= 0 && index < len, "select: index {} out of range for dim {} of {}", index, d,
           str());
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  GL_CHECK(target.size() >= shape().size(), "expand: cannot expand {} to fewer dims {}", str(),
           shape_str(target));
  Shape ns = target, nst(target.size(), 0);
  std::size_t lead = target.size() - shape().size();
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      GL_CHECK(target[i] >= 0, "expand: invalid size {} for a new dim", target[i]);
      continue;
    }
    int64_t s = shape()[i - lead];
    if (target[i] == -1 || target[i] == s) {
      ns[i] = s;
      nst[i] = strides()[i - lead];
    } else {
      GL_CHECK(s == 1, "expand: {} cannot be expanded to {}", str(), shape_str(target));
      nst[i] = 0;
    }
  }
  Tensor out = view_of(*this, ns, nst, offset());
  if (needs_grad({this})) {
    // The gradient of the expanded view is summed back by the broadcast reduction.
    attach_grad_fn(out, "expand", {*this},
                   [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  }
  return out;
}

Tensor Tensor::squeeze(int64_t dim_in) const {
  int64_t d = wrap_dim(dim_in, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape ns = shape();
  ns.erase(ns.begin() + d);
  return reshape(ns);
}

Tensor Tensor::unsqueeze(int64_t dim_in) const {
  int64_t d = wrap_dim(dim_in, dim() + 1, "unsqueeze");
  Shape ns = shape();
  ns.insert(ns.begin() + d, 1);
  return reshape(ns);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  GL_CHECK(s <= e, "flatten: start_dim {} after end_dim {}", start_dim, end_dim);
  Shape ns(shape().begin(), shape().begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= shape()[i];
  ns.push_back(m);
  ns.insert(ns.end(), shape().begin() + e + 1, shape().end());
  return reshape(ns);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  strided_copy(*this, out);
  if (needs_grad({this})) {
    attach_grad_fn(out, "clone", {*this},
                   [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  }
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), dt, device());
  strided_copy(*this, out);
  if (needs_grad({this}) && is_floating(dt)) {
    DType src = dtype();
    attach_grad_fn(out, "to_dtype", {*this},
                   [src](const Tensor& g) -> std::vector<Tensor> { return {g.to(src)}; });
  }
  return out;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), dev);
  strided_copy(src, out);
  if (needs_grad({this})) {
    Device back = device();
    attach_grad_fn(out, "to_device", {*this},
                   [back](const Tensor& g) -> std::vector<Tensor> { return {g.to(back)}; });
  }
  return out;
}

// ---------------------------------------------------------------- autograd state
bool Tensor::requires_grad() const {
  return impl_ && impl_->requires_grad;
}
Tensor& Tensor::requires_grad_(bool on) {
  check_defined("requires_grad_");
  GL_CHECK(!on || is_floating(dtype()),
           "requires_grad_: only floating tensors can require grad, got {}", str());
  GL_CHECK(on || !impl_->grad_fn, "requires_grad_(false) on a non-leaf tensor; use detach()");
  impl_->requires_grad = on;
  return *this;
}
bool Tensor::is_leaf() const {
  return !impl_ || !impl_->grad_fn;
}
Tensor Tensor::grad() const {
  check_defined("grad");
  return impl_->grad;
}
void Tensor::set_grad(const Tensor& g) const {
  check_defined("set_grad");
  GL_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient {} for tensor {}", g.str(),
           str());
  impl_->grad = g;
}
void Tensor::zero_grad() const {
  impl_->grad = Tensor();
}
void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  run_backward(*this, grad, retain_graph);
}
Tensor Tensor::detach() const {
  check_defined("detach");
  return view_of(*this, shape(), strides(), offset());
}
void Tensor::retain_grad() const {
  check_defined("retain_grad");
  GL_CHECK(requires_grad(), "retain_grad: tensor {} does not require grad", str());
  impl_->retains_grad = true;
}
int Tensor::add_hook(GradHook hook) const {
  check_defined("add_hook");
  GL_CHECK(requires_grad(), "add_hook: tensor {} does not require grad", str());
  int id = impl_->next_hook_id++;
  impl_->hooks.emplace_back(id, std::move(hook));
  return id;
}
void Tensor::remove_hook(int id) const {
  auto& h = impl_->hooks;
  h.erase(std::remove_if(h.begin(), h.end(), [id](auto& p) { return p.first == id; }), h.end());
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->grad_fn : none;
}

// ---------------------------------------------------------------- printing
std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(" << str() << ", " << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ")\n";
  Tensor c = to(Device::cpu()).contiguous();
  int64_t n = c.numel();
  int64_t last = c.dim() > 0 ? c.shape().back() : 1;
  const int64_t limit = 64;
  os << "[";
  for (int64_t i = 0; i < std::min(n, limit); ++i) {
    if (i > 0) os << (i % last == 0 ? ",\n " : ", ");
    os << fmt::format("{:.6g}", load_as_double(static_cast<char*>(c.raw_data()) +
                                                   i * int64_t(dtype_size(c.dtype())),
                                               c.dtype()));
  }
  if (n > limit) os << ", ... (" << n - limit << " more)";
  os << "]";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.to_string();
}

}  // namespace gl
