// optim_stats.h: per-step optimization dynamics of every parameter tensor, measured by a
// Trainer callback: near-zero gradients, how many small gradients are released or retained,
// sign flips, the weight-difference norm, the weight change of components whose gradient was
// zero, moving averages of gradients and weights, and local minimum / maximum crossings.
// Once per epoch it also codes the gradient signs into a downsampled layer-wise sign map.
//
// Definitions (g_t, w_t: gradient and weight at step t, g_t computed at w_t, both as they are
// after backward and before the optimizer step, so w_t - w_{t-1} is the previous update):
//   zero          |g_t| < zero_threshold
//   small_prev    |g_{t-1}| < small_threshold; released: of those, |g_t| >= small_threshold;
//                 retained: of those, |g_t| < small_threshold (fractions of small_prev)
//   sign_flip     g_t * g_{t-1} < 0 (exact zeros never flip), as a count and a fraction
//   weight_diff   ||w_t - w_{t-1}||_2
//   zero_grad_dw  ||w_t - w_{t-1}||_2 over components with |g_{t-1}| < zero_threshold: how far
//                 weights moved without a gradient (momentum, weight decay)
//   ema_grad/ema_weight   ||m_t||_2 with m_t = d m_{t-1} + (1 - d) x_t, m_0 = x_0
//   local_min     g_t * g_{t-1} < 0 and (w_t - w_{t-1}) * (g_t - g_{t-1}) > 0: the gradient
//                 changed sign while growing along the step (positive secant curvature)
//   local_max     g_t * g_{t-1} < 0 and (w_t - w_{t-1}) * (g_t - g_{t-1}) < 0
// With every = N > 1 a record is made at steps divisible by N, each against the step just
// before it (snapshotted, no statistics); the moving averages then run over the records.
//
// How it is measured (kernels/cpu/optim_stats.h, v2): the step before a record leaves one byte
// per component (the signs and smallness of g_{t-1}, the direction of w_t - w_{t-1}), the
// small_prev count and the two weight-difference sums, computed across its update; the record reads
// g_t, w_t, those bytes and the moving averages. When the optimizer steps on the CPU, both run
// inside its step, chunk by chunk (models::StepObserver), while the chunk is in cache: the
// statistics add 18 bytes of memory traffic per component and step (the code byte and the two
// moving averages, read and written). Otherwise (a CUDA optimizer, parameters the optimizer does
// not step, f64 parameters, a step observer already set, or observe_optimizer off) the same kernels
// run as separate passes after backward and after the step, on host copies if need be. Both ways
// give the same records, bit for bit. The weight change is thus taken across the optimizer's
// update: weights changed between steps by anything else are not seen.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/fs.h"
#include "kernels/cpu/optim_stats.h"
#include "models/optim.h"
#include "train/trainer.h"

namespace gl::analysis {

struct OptimStatsOptions {
  int64_t every = 1;              // record every N steps (1: every step)
  double zero_threshold = 1e-7;   // |g| below this counts as a zero gradient
  double small_threshold = 1e-5;  // released / retained threshold
  double ema_decay = 0.99;
  int64_t sign_map_width = 256;    // columns of the downsampled sign map per parameter
  int64_t sign_map_zoom = 96;      // leading components kept at full resolution
  double sign_large_factor = 2.0;  // |g| > factor * mean|g| of the tensor codes as "large"
  bool write_files = true;         // write <run>/optim/ (tests may keep results in memory only)
  // Measure inside the optimizer's CPU step (false: separate passes; the same records).
  bool observe_optimizer = true;
};

// The statistics of one parameter tensor at one recorded step (or their sum over tensors).
enum OptimStat : int {
  kZeroCount,
  kSmallPrevCount,
  kReleasedCount,
  kRetainedCount,
  kSignFlipCount,
  kLocalMinCount,
  kLocalMaxCount,
  kZeroFraction,
  kReleasedFraction,
  kRetainedFraction,
  kSignFlipFraction,
  kWeightDiffNorm,
  kZeroGradWeightChangeNorm,
  kEmaGradNorm,
  kEmaWeightNorm,
  kNumOptimStats
};
const char* optim_stat_name(int stat);

// Codes of the sign map.
enum SignCode : int8_t {
  kSignZero = 0,
  kSignPositiveSmall = 1,
  kSignNegativeSmall = -1,
  kSignLarge = 2
};

struct OptimRecord {
  int64_t step = 0, epoch = 0;
  // [parameter][stat]; the last row is the total over all parameters.
  std::vector<std::array<double, kNumOptimStats>> stats;
};

class OptimStatsCallback : public train::Callback, private models::StepObserver {
 public:
  explicit OptimStatsCallback(OptimStatsOptions options = {});

  void on_train_begin(train::Trainer& t) override;
  void on_epoch_begin(train::Trainer& t, int64_t epoch) override;
  void on_after_backward(train::Trainer& t, int64_t global_step) override;
  void on_step_end(train::Trainer& t, int64_t global_step, double loss) override;
  void on_epoch_end(train::Trainer& t, train::EpochResult& result) override;
  // Waits for the epoch's files and writes the state the next epoch continues from
  // (optim/state_epoch_E.safetensors), so a run resumed from this checkpoint ends with the
  // files of an uninterrupted one.
  void on_before_checkpoint(train::Trainer& t) override;
  void on_train_end(train::Trainer& t) override;  // waits for the last files
  // Reads .grad and the weights; no hooks.
  bool needs_tape(const train::Trainer&, int64_t) const override { return false; }

  const std::vector<std::string>& names() const { return names_; }
  const std::vector<int64_t>& numels() const { return numels_; }
  const std::vector<OptimRecord>& records() const { return records_; }
  // [parameter] -> rows of sign codes (one per epoch), each sign_map_width (or numel) wide.
  const std::vector<std::vector<std::vector<int8_t>>>& sign_maps() const { return sign_maps_; }
  const std::vector<std::vector<std::vector<int8_t>>>& sign_zooms() const { return sign_zooms_; }
  const OptimStatsOptions& options() const { return opt_; }
  // Steps measured inside the optimizer's step (for at least one parameter); the others, by
  // separate passes.
  int64_t observed_steps() const { return observed_steps_; }

  // Writes <dir>/optim.json and the .npy arrays described in docs/run_directory.md. (During
  // training, each epoch's files are written on a background thread; on_train_end waits.)
  void write(const std::string& dir) const;

 private:
  struct State {
    std::vector<uint8_t> code;  // of the last snapshot step (kernels/cpu/optim_stats.h)
    std::vector<float> ema_grad, ema_weight;
    bool have_ema = false;
    // Across the last snapshot step's update: the weight-difference sums of the next record.
    kernels::cpu::OptimUpdateSums update;
    // This step: measured inside the optimizer's step (else by separate passes).
    bool observed = false;
    kernels::cpu::OptimRecordSums record;  // separate passes: the record's sums
    Tensor grad;                           // separate passes: g_t, kept for the snapshot
    std::vector<float> weight_before;      // separate passes: w_t, kept for the snapshot
    // Inside the optimizer's step: the sums of each block, added in block order at the end.
    std::vector<kernels::cpu::OptimRecordSums> record_blocks;
    std::vector<kernels::cpu::OptimUpdateSums> update_blocks;
    std::vector<uint8_t> seen;  // per block: 1 before_update, 2 after_update
  };
  void begin_step(train::Trainer& t, int64_t step);
  void finish_record();
  kernels::cpu::OptimStepParams kernel_params(const State& s) const;
  State* observed_state(std::size_t param);  // nullptr: not measured inside this step
  void before_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                     const float* w) override;
  void after_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                    const float* w) override;
  io::AtomicWriteBatch files(const std::string& dir) const;
  // Resuming after `done` epochs: the records and sign-map rows of those epochs from the files,
  // the moving averages and the pending snapshot from state_epoch_<done>.safetensors.
  void resume_from_files(const std::string& dir, int64_t done);
  void sign_map_row(train::Trainer& t);

  OptimStatsOptions opt_;
  std::vector<std::string> names_;
  std::vector<int64_t> numels_;
  std::vector<Tensor> params_;  // handles taken at on_train_begin (no name building per step)
  std::vector<int64_t> of_optimizer_;  // optimizer parameter index -> index here (-1: none)
  bool can_observe_ = false;           // the optimizer steps on the CPU
  std::vector<State> state_;
  // This step: a record (against the step before), a snapshot (for the next step), both.
  bool recording_ = false, snapshotting_ = false, observing_ = false;
  int64_t snapshot_step_ = -1, observed_steps_ = 0;
  OptimRecord current_;  // the record being made
  std::vector<OptimRecord> records_;
  std::vector<std::vector<std::vector<int8_t>>> sign_maps_, sign_zooms_;
  std::vector<int64_t> sign_epochs_;
  int64_t steps_in_epoch_ = 0, batches_ = 0, epoch_ = 0;
  int64_t state_epoch_ = 0;      // the epoch of the last state file written (or resumed from)
  io::BackgroundWriter writer_;  // last member: destroyed (waited for) first
};

// Sign code of one component given the tensor's large threshold.
inline int8_t sign_code(float g, double large) {
  double a = g < 0 ? -double(g) : double(g);
  if (a > large) return kSignLarge;
  if (g > 0) return kSignPositiveSmall;
  if (g < 0) return kSignNegativeSmall;
  return kSignZero;
}

// Downsamples one row of codes to `width` bins of consecutive components (bin b covers
// [b*n/width, (b+1)*n/width)); each bin takes its most frequent code, ties to the larger
// |code| then the positive one.
std::vector<int8_t> downsample_codes(const std::vector<int8_t>& codes, int64_t width);

}  // namespace gl::analysis
