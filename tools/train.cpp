// train.cpp: `gradlens train`: train a model and write a run directory.
#include <fmt/core.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/io/fs.h"
#include "tools/command.h"
#include "tools/train_flags.h"
#include "train/trainer.h"

namespace gl::tools {
namespace {

constexpr int kExitDiverged = 3;

RegisterCommand reg(
    "train", "Train an MLP or CNN on MNIST, Fashion-MNIST or CIFAR-10 and write a run directory",
    [](CLI::App& sub) {
      auto state = std::make_shared<TrainFlags>();
      add_train_flags(sub, *state);
      sub.callback([state]() {
        train::TrainConfig cfg = state->to_config();
        std::vector<train::EpochResult> history;
        std::optional<train::DivergedError> diverged;
        {
          train::Trainer trainer(cfg);
          attach_diagnostics(trainer, *state);
          attach_analysis(trainer, *state);
          io::ensure_dir(cfg.out);  // names a file in the way, which the remove would not
          std::filesystem::remove(cfg.out + "/diverged.json");
          try {
            history = trainer.run();
          } catch (const train::DivergedError& e) {
            diverged = e;
          }
        }  // the trainer and its callbacks go first: their pending files are written
        if (diverged) {
          // A distinct exit code and a marker file, so a sweep records the run
          // as diverged instead of failed and does not retry it.
          const auto& e = *diverged;
          train::write_diverged_marker(cfg.out, e);
          fmt::print(stderr, "gradlens train: diverged: {}\n", e.what());
          std::fflush(stdout);
          std::exit(kExitDiverged);
        }
        const auto& last = history.back();
        fmt::print("{}: test accuracy {:.2f}% after {} epochs (run directory {})\n", cfg.dataset,
                   100 * last.test_acc, last.epoch, cfg.out);
      });
    });

}  // namespace
}  // namespace gl::tools
