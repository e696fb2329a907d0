// diagnostics.h: activation and gradient diagnostics recorded while an MLP trains, written to
// the run directory's diagnostics/ folder (docs/run_directory.md, docs/diagnostics.md).
// Attaches from outside: forward hooks on the model's taps, gradient hooks on the
// post-activation outputs of recorded steps, and a train::Callback. Activations are reduced
// batch by batch in one fused pass (kernels/cpu/stats.h) during evaluation passes only;
// during training the hooks cost one flag check.
//
// Layers are the hidden layers 0..L-1 (the output Linear is not counted: its output, the
// logits, has no activation to diagnose).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/fs.h"
#include "train/trainer.h"

namespace gl::analysis {

struct DiagnosticsOptions {
  // Groups of statistics (--diagnostics all | none | comma list of these names).
  bool activations = true;  // activations.csv (+ metrics.csv act_mean_i, act_std_i)
  bool histograms = true;   // hist_<layer>_<pre|post>.npy
  bool units = true;        // units.csv, dead_units.json, saturated_units.json
  bool grads = true;        // grads.csv, grad_steps.csv (+ metrics.csv grad_norm_i)
  bool selectivity = true;  // selectivity_<layer>.npy
  // Gradient statistics are recorded at the last step of each epoch and, when every > 0, at
  // every step whose global number is a multiple of `every`.
  int64_t every = 0;
  // A tanh (sigmoid) unit is saturated when |tanh| (|2 sigmoid - 1|) exceeds this value on
  // more than saturated_min_fraction of the test samples.
  double saturation_threshold = 0.99;
  double saturated_min_fraction = 0.5;
  int hist_bins = 60;
  // Histogram ranges are fixed at epoch 0 to `headroom` times the bulk of the values seen at
  // initialization (|mean| + 4 std, capped by the largest magnitude), rounded up to 1, 2, 2.5 or 5
  // times a power of ten (docs/diagnostics.md).
  double headroom = 1.5;
  // The epoch-0 pass holds its activations (to bin them once the ranges are known) when they
  // take at most this many bytes; beyond, it evaluates the test split a second time.
  int64_t hold_limit_bytes = int64_t(512) << 20;

  bool any() const { return activations || histograms || units || grads || selectivity; }
  // Names of the enabled groups, comma-separated ("none" when empty).
  std::string groups() const;
  // "all", "none" or a comma list of group names; throws naming --diagnostics and listing the
  // valid names on an unknown one.
  static DiagnosticsOptions parse(const std::string& list);
};

// The nice number (1, 2, 2.5 or 5 times a power of ten) at or above v > 0; 1 for v <= 0 or
// non-finite v.
double nice_ceil(double v);

class DiagnosticsCallback : public train::Callback {
 public:
  explicit DiagnosticsCallback(DiagnosticsOptions options);
  ~DiagnosticsCallback() override;

  void on_train_begin(train::Trainer& t) override;
  void on_after_backward(train::Trainer& t, int64_t step) override;
  void on_step_end(train::Trainer& t, int64_t step, double loss) override;
  void on_evaluate_begin(train::Trainer& t, int64_t epoch) override;
  void on_evaluate_end(train::Trainer& t, int64_t epoch) override;
  void on_epoch_end(train::Trainer& t, train::EpochResult& result) override;
  // Waits for the epoch's files: a resume keeps the rows of the epochs its checkpoint has.
  void on_before_checkpoint(train::Trainer&) override { writer_.wait(); }
  void on_train_end(train::Trainer& t) override;
  // Recorded steps read the post-activation gradients through tensor hooks; between them the
  // forward hooks only test a flag.
  bool needs_tape(const train::Trainer&, int64_t step) const override {
    return opts_.grads && is_recorded_step(step);
  }
  // The weights are read (for the update ratio) at the recorded steps only.
  bool reads_weights(const train::Trainer&, int64_t step) const override {
    return opts_.grads && is_recorded_step(step);
  }
  // And the gradients at those steps only.
  bool reads_grads(const train::Trainer&, int64_t step) const override {
    return opts_.grads && is_recorded_step(step);
  }

  // Whether gradient statistics are recorded at this global step.
  bool is_recorded_step(int64_t step) const;
  const DiagnosticsOptions& options() const { return opts_; }

  // The fixed histogram range of a layer's pre (post = false) or post-activation.
  std::pair<float, float> hist_range(int64_t layer, bool post) const;
  // The most bytes of activations the epoch-0 pass held at once (at most hold_limit_bytes).
  int64_t held_peak_bytes() const { return held_peak_; }

  // Summary of the last finished evaluation pass for one layer and side (class -1: all).
  struct Moments {
    double mean = 0, std = 0;
    float min = 0, max = 0;
    int64_t count = 0;  // elements (samples x units)
  };
  Moments moments(int64_t layer, bool post, int64_t cls = -1) const;
  // Per-unit counts of the last pass: samples with x > 0 and with |x| > the side's threshold.
  std::vector<uint64_t> unit_positive_counts(int64_t layer, bool post) const;
  std::vector<uint64_t> unit_threshold_counts(int64_t layer, bool post) const;
  float threshold(int64_t layer, bool post) const;

  struct StepGrads {
    int64_t step = 0, epoch = 0;
    double weight_grad = 0, bias_grad = 0, act_grad = 0, weight_norm = 0, update_ratio = 0;
  };
  // Every recorded step so far, per layer ([layer][record]).
  const std::vector<std::vector<StepGrads>>& step_grads() const { return step_grads_; }

 private:
  struct Side;
  struct Layer;
  void attach(train::Trainer& t);
  void reset_accumulators();
  void record(Layer& l, bool post, const Tensor& out);
  void choose_ranges();
  void finish_pass(int64_t epoch);
  void write_files(int64_t epoch);
  void annotate_config(const std::string& run_dir);
  void resume_from_files(train::Trainer& t, int64_t done_epochs);

  DiagnosticsOptions opts_;
  train::Trainer* trainer_ = nullptr;
  // The batch's labels on the host, copied once per batch (not per layer) when they are on a
  // device: the trainer's tensor and its copy.
  Tensor labels_seen_, labels_host_;
  std::vector<Layer> layers_;
  std::vector<int64_t> class_counts_;
  int64_t classes_ = 0, steps_per_epoch_ = 1;
  bool recording_ = false, hist_on_ = false, holding_ = false, pending_update_ = false;
  int64_t held_bytes_ = 0, held_peak_ = 0;  // the epoch-0 pass's held activations
  std::vector<int64_t> hist_epochs_;
  // CSV rows so far (each file is rewritten whole every epoch).
  std::string act_rows_, unit_rows_, grad_rows_, step_rows_;
  std::vector<std::vector<StepGrads>> step_grads_;
  std::shared_ptr<DiagnosticsCallback*> token_;  // what the hooks hold; null after destruction
  io::BackgroundWriter writer_;  // each epoch's files; last member: destroyed (waited for) first
};

}  // namespace gl::analysis
