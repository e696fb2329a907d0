// optim_stats.h: per-step optimization dynamics of every parameter tensor, measured by a
// Trainer callback with one fused pass per parameter over (grad, previous grad, weight,
// previous weight): near-zero gradients, how many small gradients are released or retained,
// sign flips, the weight-difference norm, the weight change of components whose gradient was
// zero, moving averages of gradients and weights, and local minimum / maximum crossings.
// Once per epoch it also codes the gradient signs into a downsampled layer-wise sign map.
//
// Definitions (g_t, w_t: gradient and weight at step t, g_t computed at w_t; the pass runs
// after backward, before the optimizer step, so w_t - w_{t-1} is the previous update):
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
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/fs.h"
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

class OptimStatsCallback : public train::Callback {
 public:
  explicit OptimStatsCallback(OptimStatsOptions options = {});

  void on_train_begin(train::Trainer& t) override;
  void on_epoch_begin(train::Trainer& t, int64_t epoch) override;
  void on_after_backward(train::Trainer& t, int64_t global_step) override;
  void on_epoch_end(train::Trainer& t, train::EpochResult& result) override;
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

  // Writes <dir>/optim.json and the .npy arrays described in docs/run_directory.md. (During
  // training, each epoch's files are written on a background thread; on_train_end waits.)
  void write(const std::string& dir) const;

 private:
  struct State {
    std::vector<float> prev_grad, prev_weight, ema_grad, ema_weight;
    bool have_prev = false, have_ema = false;
  };
  void record(train::Trainer& t, int64_t step, bool full);
  io::AtomicWriteBatch files(const std::string& dir) const;
  void sign_map_row(train::Trainer& t);

  OptimStatsOptions opt_;
  std::vector<std::string> names_;
  std::vector<int64_t> numels_;
  std::vector<Tensor> params_;  // handles taken at on_train_begin (no name building per step)
  std::vector<State> state_;
  std::vector<OptimRecord> records_;
  std::vector<std::vector<std::vector<int8_t>>> sign_maps_, sign_zooms_;
  std::vector<int64_t> sign_epochs_;
  int64_t steps_in_epoch_ = 0, batches_ = 0, epoch_ = 0;
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
