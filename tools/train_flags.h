// train_flags.h: the flags of `gradlens train`, shared with `gradlens sweep` so any training
// flag can be swept.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace gl::tools {

// A field outside cfg that changes what a run does or writes belongs in the sweep's run
// fingerprint too (train_flag_info in tools/sweep.cpp), or runs differing only in it are
// refused as duplicates.
struct TrainFlags {
  train::TrainConfig cfg;
  std::string hidden;
  std::string channels, fc;  // --channels / --fc lists (empty: the TrainConfig defaults)
  CLI::App* app = nullptr;   // where the flags were parsed: which ones the user gave
  std::vector<std::string> init_args;
  std::string diagnostics = "none";
  int64_t diagnostics_every = 0;
  double saturation_threshold = 0.99;
  bool overwrite = false;  // --overwrite: a non-empty --out loses a run's files first
  train::TrainConfig to_config() const;
  // The flags given on the command line that this configuration does not use (SGD's momentum
  // under Adam, a CNN's --channels for an MLP, ...), one note each; they are accepted (a sweep
  // may fix a flag that only some of its runs use) but a single run says so.
  std::vector<std::string> unused_flags(const train::TrainConfig& c) const;

  // ---- optimization dynamics and TensorBoard (tools/analyze_attach.cpp) ----
  std::string analyze = "none";  // comma list: optim
  int64_t analyze_every = 1;
  double zero_grad_threshold = 1e-7;
  double ema_decay = 0.99;
  bool tensorboard = false;
  std::string tensorboard_dir;  // empty: <out>/tensorboard
};

void add_train_flags(CLI::App& app, TrainFlags& flags);
// --threads and --limit-test, which `gradlens eval` takes as well.
void add_threads_flag(CLI::App& app, int& threads);
void add_limit_test_flag(CLI::App& app, int64_t& limit_test);
// Adds the diagnostics callbacks requested by --diagnostics (none when "none").
void attach_diagnostics(train::Trainer& trainer, const TrainFlags& flags);

// --analyze, --analyze-every, --zero-grad-threshold, --ema-decay, --tensorboard [DIR].
void add_analyze_flags(CLI::App& app, TrainFlags& flags);
// Adds the callbacks requested by --analyze and --tensorboard (TensorBoard last, so it sees
// every metrics.csv column). Throws naming the flag on a bad value.
void attach_analysis(train::Trainer& trainer, const TrainFlags& flags);

}  // namespace gl::tools
