// optim_stats.h: the per-step passes of the optimization-dynamics statistics
// (analysis/optim_stats.h defines them). Two versions:
//
// v2 (used by the callback): the statistics are split across the optimizer's update, so that
// the state kept between steps is one byte per component instead of the previous gradient and
// weight (two floats), and the passes can run chunk by chunk inside the optimizer's own loop
// (models/optim.h StepObserver) while the chunk's gradient and weights are in cache:
//   optim_update_block   across the update of step t-1: reads g_{t-1}, w_{t-1} (before) and
//                        w_t (after); writes the code byte of each component (OptimCode),
//                        counts small_prev and sums the weight-difference squares the record
//                        of step t reports;
//   optim_record_block   before the update of step t: reads g_t, w_t and the codes; counts the
//                        rest, and advances the moving averages.
// Given a sign flip (g_t and g_{t-1} nonzero with opposite signs), g_t > g_{t-1} exactly when
// g_t > 0, so local minima and maxima need only the signs of g_{t-1} and of w_t - w_{t-1}.
// Extra memory traffic per component and step: the code (1 byte read, 1 written) and the two
// moving averages (8 read, 8 written); g and w are read where the optimizer reads them anyway.
//
// v1 (optim_step_stats, kept for the benchmark and as the reference of the single-pass form):
// one pass after backward over (g, w) and the kept previous gradient, previous weight and
// moving averages, reading 6 and writing 4 float arrays (40 bytes per component).
//
// Per component (comparisons are on floats, so NaN is never below a threshold, never
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
// (g, w: this step; pg, pw: the step before.) Counts are exact (int32 lanes flushed to int64
// per call); squares are formed and summed in double, so the results equal a double-precision
// naive loop up to summation order. Whole arrays are cut into fixed blocks whose sums are added
// in order: results do not depend on the thread count, nor on whether the blocks were summed
// inside the optimizer's step or by a separate pass (the same block functions run both ways).
// AVX-512 (v2), then AVX2, is chosen at run time; the scalar loop is the fallback. On every
// path the moving averages round as the scalar loop (two products, then their sum), so the
// averages themselves are the same bits on every path.
//
// Speed (OMP_NUM_THREADS=1 build/bench/bench_optim_kernel, the 118,282 parameters of the
// 784-128-128-10 MLP, one thread, AMD EPYC (Zen 5), CPU time, a loaded machine): v2 record +
// weight copy + update, block by block: AVX-512 56 us, AVX2 135 us, scalar 1697 us; v1 AVX2
// 103 us, scalar 1051 us. Both are bound by their arithmetic more than by memory once the
// arrays are in L2/L3. Inside a training step (perf samples, bench/results/optim_overhead.md)
// v2 costs about 0.06 ms; v1 cost about 0.3 ms, most of it in the optimizer's loop after it,
// which ran with dirty upper halves of the vector registers (the AVX paths now clear them
// before their scalar tails).
#pragma once
#include <cstdint>
#include <string>

namespace gl::kernels::cpu {

// v2's sums. The record pass of step t: zero, retained, sign flips, minima, maxima, moving
// averages; the update pass of step t-1: small_prev (|g_{t-1}| < small_threshold) and the weight
// differences, which the record of step t reports.
struct OptimRecordSums {
  int64_t zero = 0, retained = 0, sign_flip = 0, local_min = 0, local_max = 0;
  double ema_grad_sq = 0, ema_weight_sq = 0;
  OptimRecordSums& operator+=(const OptimRecordSums& o);
};
struct OptimUpdateSums {
  int64_t small_prev = 0;
  double weight_diff_sq = 0, zero_grad_weight_change_sq = 0;
  OptimUpdateSums& operator+=(const OptimUpdateSums& o);
};

// v1's sums: all of them, from one pass.
struct OptimStepSums : OptimRecordSums, OptimUpdateSums {
  OptimStepSums& operator+=(const OptimStepSums& o);
};

struct OptimStepParams {
  float zero_threshold = 1e-7f;
  float small_threshold = 1e-5f;
  float ema_keep = 0.99f;  // 0 and 1 for the first average (eg' = g)
  float ema_new = 0.01f;
};

// v1. g, w: n floats (read); pg, pw, eg, ew: n floats (read, then overwritten).
OptimStepSums optim_step_stats(const float* g, const float* w, float* pg, float* pw, float* eg,
                               float* ew, int64_t n, const OptimStepParams& p);

// ---------------------------------------------------------------- v2
// The code byte of one component, written across the update of step t-1.
enum OptimCode : uint8_t {
  kCodeGradPositive = 1,  // g_{t-1} > 0
  kCodeGradNegative = 2,  // g_{t-1} < 0
  kCodeWeightUp = 4,      // w_t > w_{t-1}
  kCodeWeightDown = 8,    // w_t < w_{t-1}
  kCodeGradSmall = 16,    // |g_{t-1}| < small_threshold
};

// Components per block: the unit of summation of whole arrays (and of the chunks a caller
// passes to the block functions, which must start at multiples of it).
constexpr int64_t kOptimBlock = 4096;

// One block (n <= kOptimBlock). g, w: this step's gradient and weights (read); code: the codes
// of the step before (read); eg, ew: the moving averages (read, then overwritten).
OptimRecordSums optim_record_block(const float* g, const float* w, const uint8_t* code, float* eg,
                                   float* ew, int64_t n, const OptimStepParams& p);
// One block (n <= kOptimBlock). g, w_before: this step's gradient and weights before its update;
// w_after: the weights after it (all read); code: this step's codes (written).
OptimUpdateSums optim_update_block(const float* g, const float* w_before, const float* w_after,
                                   uint8_t* code, int64_t n, const OptimStepParams& p);
// Whole arrays: the block functions over blocks of kOptimBlock, their sums added in block order
// (blocks run on several threads for large n).
OptimRecordSums optim_record_pass(const float* g, const float* w, const uint8_t* code, float* eg,
                                  float* ew, int64_t n, const OptimStepParams& p);
OptimUpdateSums optim_update_pass(const float* g, const float* w_before, const float* w_after,
                                  uint8_t* code, int64_t n, const OptimStepParams& p);

// The instruction set the passes run: "avx512" (AVX-512F: v2; v1 then runs its AVX2 loop),
// "avx2" or "scalar", the best the CPU runs unless forced. optim_stats_force_isa takes one of
// those or "auto" and throws std::invalid_argument for one the CPU cannot run (tests compare the
// paths).
const char* optim_stats_isa();
void optim_stats_force_isa(const std::string& name);

}  // namespace gl::kernels::cpu
