// fp_env.cpp: the flush-to-zero switch (fp_env.h).
#include "kernels/cpu/fp_env.h"

#include <omp.h>

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace gl::kernels::cpu {

namespace {
#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned kFtzDaz = 0x8040;  // MXCSR bit 15 (FTZ) and bit 6 (DAZ)
#elif defined(__aarch64__)
constexpr uint64_t kFz = uint64_t(1) << 24;  // FPCR.FZ
uint64_t read_fpcr() {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
void write_fpcr(uint64_t v) {
  __asm__ volatile("msr fpcr, %0" : : "r"(v));
}
#endif
}  // namespace

bool can_flush_denormals() {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
  return true;
#else
  return false;
#endif
}

bool flushes_denormals() {
#if defined(__x86_64__) || defined(__i386__)
  return (_mm_getcsr() & kFtzDaz) == kFtzDaz;
#elif defined(__aarch64__)
  return (read_fpcr() & kFz) != 0;
#else
  return false;
#endif
}

void set_flush_denormals(bool flush) {
#if defined(__x86_64__) || defined(__i386__)
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(flush ? (csr | kFtzDaz) : (csr & ~kFtzDaz));
#elif defined(__aarch64__)
  const uint64_t v = read_fpcr();
  write_fpcr(flush ? (v | kFz) : (v & ~kFz));
#else
  (void)flush;
#endif
}

namespace {
void set_everywhere(bool flush) {
  set_flush_denormals(flush);
  if (omp_in_parallel()) return;  // a nested scope: the team's other threads are busy
#pragma omp parallel
  set_flush_denormals(flush);
}
}  // namespace

DenormalScope::DenormalScope(bool flush) : before_(flushes_denormals()) {
  set_everywhere(flush);
}

DenormalScope::~DenormalScope() {
  set_everywhere(before_);
}

}  // namespace gl::kernels::cpu
