// fp_env.h: how the CPU treats subnormal floats while gradlens trains.
//
// On many x86 cores (Intel's among them) an arithmetic instruction that reads or produces a
// subnormal float (|x| < 1.18e-38) takes a microcode assist a hundred times slower than the
// instruction itself. Training makes such values all the time (saturated tanh and sigmoid
// units, vanishing gradients through deep nets, momentum decaying towards zero); on those
// cores a deep tanh MLP's epoch ran twice as long with them as without. Flushing them (the
// MXCSR bits FTZ, subnormal results become zero, and DAZ, subnormal inputs read as zero; FZ
// in FPCR on AArch64) trades values below 1.18e-38 for zero, as TensorFlow and XLA do on the
// CPU by default. It applies to float and double alike, per thread.
#pragma once

namespace gl::kernels::cpu {

// Whether this build can switch the mode (x86-64 and AArch64; elsewhere the scope is a no-op).
bool can_flush_denormals();
// Whether the calling thread flushes subnormals now.
bool flushes_denormals();
// Sets the calling thread's mode.
void set_flush_denormals(bool flush);

// For its lifetime: the calling thread and every OpenMP worker thread flush subnormals (or keep
// them); at its end each goes back to what the calling thread had before. Threads OpenMP starts
// meanwhile inherit the mode of the thread that starts them.
class DenormalScope {
 public:
  explicit DenormalScope(bool flush);
  ~DenormalScope();
  DenormalScope(const DenormalScope&) = delete;
  DenormalScope& operator=(const DenormalScope&) = delete;

 private:
  bool before_;
};

}  // namespace gl::kernels::cpu
