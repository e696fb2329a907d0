// runtime.cu: device discovery, error reporting, per-device streams and cuBLAS handles, and
// the stream-ordered caching allocator declared in runtime.h. Host code only (no kernels).
// Layout: the allocator keeps live blocks in a hash map (pointer -> block) and free blocks in
// an ordered map keyed by (device, stream, size class). One mutex guards both.
// speed: not yet measured on a GPU.
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/runtime.h"

namespace gl::kernels::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  // Clear a non-sticky error so the next unrelated check does not report it again.
  (void)cudaGetLastError();
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " +
                           cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

void throw_cublas_error(cublasStatus_t st, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " +
                           cublasGetStatusName(st) + ": " + cublasGetStatusString(st));
}

int device_count() {
  // Never throws: a missing driver (cudaErrorInsufficientDriver, cudaErrorNoDevice, ...)
  // means "no usable device".
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

int current_device() {
  int d = 0;
  GL_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

DeviceScope::DeviceScope(int device) {
  if (device < 0) return;
  const int prev = current_device();
  if (device == prev) return;
  GL_CUDA_CHECK(cudaSetDevice(device));
  prev_ = prev;
}

DeviceScope::~DeviceScope() {
  if (prev_ >= 0) (void)cudaSetDevice(prev_);
}

namespace {

constexpr int kMaxDevices = 64;

struct PerDevice {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  int sms = 0;
};

std::mutex& device_mutex() {
  static std::mutex m;
  return m;
}
PerDevice& per_device(int device) {
  static PerDevice table[kMaxDevices];
  if (device < 0 || device >= kMaxDevices)
    throw std::out_of_range("cuda: device index " + std::to_string(device) + " out of range");
  return table[device];
}

}  // namespace

cudaStream_t default_stream(int device) {
  if (device < 0) device = current_device();
  std::lock_guard<std::mutex> lock(device_mutex());
  PerDevice& pd = per_device(device);
  if (!pd.stream) {
    DeviceScope guard(device);
    GL_CUDA_CHECK(cudaStreamCreateWithFlags(&pd.stream, cudaStreamNonBlocking));
  }
  return pd.stream;
}

cudaStream_t resolve_stream(cudaStream_t s) { return s ? s : default_stream(-1); }

int sm_count(int device) {
  if (device < 0) device = current_device();
  std::lock_guard<std::mutex> lock(device_mutex());
  PerDevice& pd = per_device(device);
  if (pd.sms == 0)
    GL_CUDA_CHECK(cudaDeviceGetAttribute(&pd.sms, cudaDevAttrMultiProcessorCount, device));
  return pd.sms;
}

cublasHandle_t cublas_handle(cudaStream_t stream) {
  const int device = current_device();
  stream = resolve_stream(stream);
  cublasHandle_t h;
  {
    std::lock_guard<std::mutex> lock(device_mutex());
    PerDevice& pd = per_device(device);
    if (!pd.cublas) {
      GL_CUBLAS_CHECK(cublasCreate(&pd.cublas));
      // Plain FP32: the reference backend must not silently use TF32 tensor cores.
      GL_CUBLAS_CHECK(cublasSetMathMode(pd.cublas, CUBLAS_DEFAULT_MATH));
    }
    h = pd.cublas;
  }
  GL_CUBLAS_CHECK(cublasSetStream(h, stream));
  return h;
}

// ---------------------------------------------------------------------------------------
// Caching allocator
namespace {

struct Block {
  size_t size;  // size class
  int device;
  cudaStream_t stream;
};

using FreeKey = std::tuple<int, cudaStream_t, size_t>;

struct Allocator {
  std::mutex mu;
  std::unordered_map<void*, Block> live;
  std::multimap<FreeKey, void*> free_blocks;
  AllocatorStats stats;

  // Caller holds mu.
  void release_free_blocks() {
    for (auto& [key, ptr] : free_blocks) {
      DeviceScope guard(std::get<0>(key));
      GL_CUDA_CHECK(cudaFree(ptr));
      stats.bytes_reserved -= std::get<2>(key);
      ++stats.cuda_free_count;
    }
    free_blocks.clear();
  }
};

Allocator& allocator() {
  // Leaked on purpose: blocks may be freed by static destructors after main returns, and
  // the driver reclaims device memory at exit anyway.
  static Allocator* a = new Allocator();
  return *a;
}

}  // namespace

size_t allocator_size_class(size_t bytes) {
  constexpr size_t kMin = 512;
  constexpr size_t kSmallMax = size_t(1) << 20;
  constexpr size_t kLargeStep = size_t(2) << 20;
  if (bytes <= kMin) return kMin;
  if (bytes <= kSmallMax) {
    size_t s = kMin;
    while (s < bytes) s <<= 1;
    return s;
  }
  return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
}

void* device_alloc(size_t bytes, int device, cudaStream_t stream) {
  if (bytes == 0) return nullptr;
  if (device < 0) device = current_device();
  if (!stream) stream = default_stream(device);
  const size_t cls = allocator_size_class(bytes);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  void* ptr = nullptr;
  auto it = a.free_blocks.find(FreeKey{device, stream, cls});
  if (it != a.free_blocks.end()) {
    ptr = it->second;
    a.free_blocks.erase(it);
    ++a.stats.cache_hit_count;
  } else {
    DeviceScope guard(device);
    cudaError_t err = cudaMalloc(&ptr, cls);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      a.release_free_blocks();
      err = cudaMalloc(&ptr, cls);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::runtime_error("cuda::device_alloc: cudaMalloc of " + std::to_string(cls) +
                               " bytes on device " + std::to_string(device) + " failed: " +
                               cudaGetErrorString(err) + " (" +
                               std::to_string(a.stats.bytes_in_use) + " bytes in use)");
    }
    ++a.stats.cuda_malloc_count;
    a.stats.bytes_reserved += cls;
  }
  a.live.emplace(ptr, Block{cls, device, stream});
  a.stats.bytes_in_use += cls;
  if (a.stats.bytes_in_use > a.stats.peak_bytes_in_use)
    a.stats.peak_bytes_in_use = a.stats.bytes_in_use;
  ++a.stats.alloc_count;
  return ptr;
}

void device_free(void* ptr) {
  if (!ptr) return;
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.live.find(ptr);
  if (it == a.live.end())
    throw std::invalid_argument("cuda::device_free: pointer was not returned by device_alloc "
                                "or was already freed");
  const Block b = it->second;
  a.live.erase(it);
  a.stats.bytes_in_use -= b.size;
  a.free_blocks.emplace(FreeKey{b.device, b.stream, b.size}, ptr);
}

AllocatorStats allocator_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.stats;
}

void reset_peak_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.stats.peak_bytes_in_use = a.stats.bytes_in_use;
}

void empty_cache() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.release_free_blocks();
}

// ---------------------------------------------------------------------------------------
void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  GL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, resolve_stream(stream)));
}

void copy_to_host(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  stream = resolve_stream(stream);
  GL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  GL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  GL_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, resolve_stream(stream)));
}

void copy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
               cudaStream_t stream) {
  if (bytes == 0) return;
  GL_CUDA_CHECK(
      cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, resolve_stream(stream)));
}

void memset_device(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  GL_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, resolve_stream(stream)));
}

void synchronize(cudaStream_t stream) {
  GL_CUDA_CHECK(cudaStreamSynchronize(resolve_stream(stream)));
}

}  // namespace gl::kernels::cuda
