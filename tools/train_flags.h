// train_flags.h: the flags of `gradlens train`, shared with `gradlens sweep` so any training
// flag can be swept.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace gl::tools {

struct TrainFlags {
  train::TrainConfig cfg;
  std::string hidden;
  std::vector<std::string> init_args;
  std::string diagnostics = "none";
  int64_t diagnostics_every = 0;
  double saturation_threshold = 0.99;
  train::TrainConfig to_config() const;
};

void add_train_flags(CLI::App& app, TrainFlags& flags);
// Adds the diagnostics callbacks requested by --diagnostics (none when "none").
void attach_diagnostics(train::Trainer& trainer, const TrainFlags& flags);

}  // namespace gl::tools
