// optim_stats.h: the fused per-step pass of the optimization-dynamics statistics
// (analysis/optim_stats.h defines them). One read of (gradient g, weight w) and of the previous
// step's snapshot (pg, pw) and moving averages (eg, ew) yields every count and squared norm;
// the same pass then overwrites the snapshot with (g, w) and advances the moving averages.
//
// Per component i (comparisons are on floats, so NaN is never below a threshold, never
// positive or negative and never flips; exact zeros never flip):
//   zero        |g| < zero_threshold
//   small_prev  |pg| < small_threshold; retained: that and |g| < small_threshold
//   sign_flip   (g > 0 and pg < 0) or (g < 0 and pg > 0)
//   local_min   sign_flip and ((w > pw and g > pg) or (w < pw and g < pg))
//   local_max   sign_flip and ((w > pw and g < pg) or (w < pw and g > pg))
//   weight_diff_sq             sum of (double(w) - double(pw))^2
//   zero_grad_weight_change_sq the same over components with |pg| < zero_threshold
//   ema: eg' = keep * eg + new * g, ew' = keep * ew + new * w (float, no fused multiply-add),
//        ema_grad_sq / ema_weight_sq: sums of double(eg')^2, double(ew')^2
// Counts are exact (int32 lanes flushed to int64 per block); squares are formed and summed in
// double, so the results equal a double-precision naive loop up to summation order. The array
// is cut into fixed chunks whose sums are added in order: results do not depend on the thread
// count. AVX2 is chosen at run time; the scalar loop is the fallback.
//
// Speed (bench/bench_optim_kernel.cpp, the 118,282 parameters of the 784-128-128-10 MLP, one
// thread, AMD EPYC, CPU time): AVX2 123 us (about 36 GB/s over the 40 bytes per component:
// memory-bound), the scalar loop 1162 us. In a training step the arrays come from L3/DRAM and
// the pass takes about 0.2 ms (bench/results/optim_overhead.md).
#pragma once
#include <cstdint>

namespace gl::kernels::cpu {

struct OptimStepSums {
  int64_t zero = 0, small_prev = 0, retained = 0, sign_flip = 0, local_min = 0, local_max = 0;
  double weight_diff_sq = 0, zero_grad_weight_change_sq = 0, ema_grad_sq = 0, ema_weight_sq = 0;
};

struct OptimStepParams {
  float zero_threshold = 1e-7f;
  float small_threshold = 1e-5f;
  float ema_keep = 0.99f;  // 0 and 1 for the first average (eg' = g)
  float ema_new = 0.01f;
};

// g, w: n floats (read); pg, pw, eg, ew: n floats (read, then overwritten).
OptimStepSums optim_step_stats(const float* g, const float* w, float* pg, float* pw, float* eg,
                               float* ew, int64_t n, const OptimStepParams& p);

// True when the AVX2 path is in use; force_scalar(true) selects the scalar loop (tests compare).
bool optim_stats_uses_avx2();
void optim_stats_force_scalar(bool on);

}  // namespace gl::kernels::cpu
