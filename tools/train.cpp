// train.cpp: `gradlens train`: train a model and write a run directory.
#include <fmt/core.h>

#include <algorithm>
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

// What a run writes into its directory (docs/run_directory.md), and the temporaries of
// interrupted writes.
bool run_output(const std::string& name) {
  static const char* const kNames[] = {"config.json",
                                       "metrics.csv",
                                       "steps.csv",
                                       "per_class.csv",
                                       "confusion.csv",
                                       "misclassified.csv",
                                       "misclassified_images.npy",
                                       "model.safetensors",
                                       "checkpoint.safetensors",
                                       "diverged.json",
                                       "report.html",
                                       "diagnostics",
                                       "optim",
                                       "analysis",
                                       "tensorboard"};
  for (const char* n : kNames)
    if (name == n) return true;
  return io::is_atomic_temporary(name);
}

// A new run does not write into a directory that holds something: an old run's leftovers
// (diagnostics of other layers, optim/ and analysis/ files) would be read back as the new
// run's. --resume continues the run there; with --overwrite (remove = true, called once the
// new run's flags and data have passed their checks) a run's files are removed first.
void prepare_out(const train::TrainConfig& cfg, bool overwrite, bool remove) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (cfg.resume || !fs::is_directory(cfg.out, ec)) return;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(cfg.out)) entries.push_back(e.path());
  if (entries.empty()) return;
  std::sort(entries.begin(), entries.end());
  if (!overwrite) {
    std::string some;
    for (std::size_t i = 0; i < std::min<std::size_t>(entries.size(), 3); ++i)
      some += (i ? ", " : "") + entries[i].filename().string();
    throw Error(fmt::format(
        "--out {}: the directory is not empty (it holds {}{}); --resume continues the run in it, "
        "--overwrite starts over (removing a run's files first), or give another --out",
        cfg.out, some, entries.size() > 3 ? ", ..." : ""));
  }
  if (!remove) return;
  for (const auto& p : entries)
    if (run_output(p.filename().string())) fs::remove_all(p);
}

RegisterCommand reg(
    "train", "Train an MLP or CNN on MNIST, Fashion-MNIST or CIFAR-10 and write a run directory",
    [](CLI::App& sub) {
      auto state = std::make_shared<TrainFlags>();
      add_train_flags(sub, *state);
      sub.callback([state]() {
        train::TrainConfig cfg = state->to_config();
        prepare_out(cfg, state->overwrite, false);
        std::vector<train::EpochResult> history;
        std::optional<train::DivergedError> diverged;
        {
          train::Trainer trainer(cfg);
          attach_diagnostics(trainer, *state);
          attach_analysis(trainer, *state);
          prepare_out(cfg, state->overwrite, true);
          // Once every flag has passed its checks: an error stays the one line on stderr.
          for (const std::string& n : state->unused_flags(cfg))
            fmt::print(stderr, "gradlens train: note: {}\n", n);
          for (const auto& note : trainer.limit_notes())
            fmt::print(stderr, "gradlens train: note: {}\n", note.second);
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
