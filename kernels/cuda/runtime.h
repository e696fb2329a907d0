// runtime.h: CUDA runtime services for the kernel layer: device discovery, error checking
// macros, a stream-ordered caching device allocator, host<->device copies and a per-device
// default stream. Every kernel entry point in kernels/cuda takes a cudaStream_t; nullptr
// means default_stream() of the current device (a non-blocking stream, not the legacy one).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace gl::kernels::cuda {

// Throws std::runtime_error("file:line: call: cudaErrorX: message") when err != cudaSuccess.
void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
void throw_cublas_error(cublasStatus_t st, const char* call, const char* file, int line);

#define GL_CUDA_CHECK(call)                                                      \
  do {                                                                           \
    cudaError_t gl_err_ = (call);                                                \
    if (gl_err_ != cudaSuccess)                                                  \
      ::gl::kernels::cuda::throw_cuda_error(gl_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define GL_CUBLAS_CHECK(call)                                                     \
  do {                                                                            \
    cublasStatus_t gl_st_ = (call);                                               \
    if (gl_st_ != CUBLAS_STATUS_SUCCESS)                                          \
      ::gl::kernels::cuda::throw_cublas_error(gl_st_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: reports invalid configurations (grid too large, too much shared
// memory) at the launch site instead of at the next unrelated call.
#define GL_CUDA_CHECK_LAUNCH() GL_CUDA_CHECK(cudaGetLastError())

// Blocks of `threads` for a grid-stride loop over `work` items: enough for one item per thread,
// capped at 65535 (far more than an H100 keeps resident, so the cap never costs parallelism;
// every thread loops).
inline int grid_stride_blocks(int64_t work, int threads) {
  int64_t b = (work + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535) b = 65535;
  return int(b);
}

// Current device (cudaGetDevice), checked.
int current_device();

// Makes `device` the calling thread's current device for the scope's lifetime and restores the
// previous one on exit; device < 0 changes nothing. Every launch, copy and allocation with the
// default stream (nullptr) goes to the current device, so code handed memory of a given device
// runs inside a scope for that device (the engine does this at its CUDA entry points). Costs a
// cudaGetDevice, plus two cudaSetDevice calls when the device actually changes.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = -1;  // the device to restore, or -1 when nothing was changed
};

// The per-device default stream (created on first use, non-blocking, never destroyed).
// device < 0 means the current device.
cudaStream_t default_stream(int device = -1);
// nullptr -> default_stream(); anything else is returned unchanged.
cudaStream_t resolve_stream(cudaStream_t s);

// Cached device properties used by launch heuristics.
int sm_count(int device = -1);

// cuBLAS handle of a device (created on first use), bound to `stream` before returning.
cublasHandle_t cublas_handle(cudaStream_t stream);

// ---- caching allocator ----
// Blocks are rounded up to size classes (powers of two from 512 B up to 1 MiB, multiples of
// 2 MiB above) and, when freed, kept in a per (device, stream, class) free list for reuse
// without cudaFree. Reuse is stream-ordered: a freed block is only handed out again on the
// stream it was allocated for, where later work is ordered after its last use. A block used
// on another stream must be synchronized by the caller before it is freed.
// device_alloc(0) returns nullptr; device_free(nullptr) is a no-op. When cudaMalloc fails the
// cache is emptied and the allocation retried once before throwing std::runtime_error.
void* device_alloc(size_t bytes, int device = -1, cudaStream_t stream = nullptr);
void device_free(void* ptr);

struct AllocatorStats {
  size_t bytes_in_use = 0;  // rounded sizes of live blocks
  size_t peak_bytes_in_use = 0;
  size_t bytes_reserved = 0;  // everything obtained from cudaMalloc and not yet cudaFree'd
  uint64_t cuda_malloc_count = 0;
  uint64_t cuda_free_count = 0;
  uint64_t alloc_count = 0;      // device_alloc calls that returned a block
  uint64_t cache_hit_count = 0;  // of which served from a free list
};
AllocatorStats allocator_stats();
void reset_peak_stats();
// Returns every cached (free) block to the driver. Live blocks are untouched.
void empty_cache();
// The rounded size device_alloc reserves for a request (exposed for tests).
size_t allocator_size_class(size_t bytes);

// ---- copies (stream nullptr -> default stream) ----
// Host->device and device->device are asynchronous with respect to the host only for pinned
// host memory; copy_to_host waits for the stream so the data is ready on return.
void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream = nullptr);
void copy_to_host(void* dst, const void* src, size_t bytes, cudaStream_t stream = nullptr);
void copy_device_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream = nullptr);
// dst on dst_device <- src on src_device (cudaMemcpyPeerAsync), ordered on `stream` only: the
// caller makes sure src's writers on its own device have finished.
void copy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
               cudaStream_t stream = nullptr);
void memset_device(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
void synchronize(cudaStream_t stream = nullptr);

// RAII owner of one device_alloc block (typed view for convenience in tests and benches).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count, cudaStream_t stream = nullptr)
      : ptr_(static_cast<T*>(device_alloc(count * sizeof(T), -1, stream))), count_(count) {}
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), count_(o.count_) {
    o.ptr_ = nullptr;
    o.count_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(ptr_);
      ptr_ = o.ptr_;
      count_ = o.count_;
      o.ptr_ = nullptr;
      o.count_ = 0;
    }
    return *this;
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace gl::kernels::cuda
