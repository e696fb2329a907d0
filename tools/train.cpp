// train.cpp: `gradlens train`: train a model and write a run directory.
#include <fmt/core.h>

#include "analysis/corr_callback.h"
#include "tools/command.h"
#include "tools/train_flags.h"
#include "train/trainer.h"

namespace gl::tools {
namespace {

RegisterCommand reg("train", "Train a model on MNIST or Fashion-MNIST and write a run directory",
                    [](CLI::App& sub) {
                      auto state = std::make_shared<TrainFlags>();
                      add_train_flags(sub, *state);
                      // Representation analysis during training (analysis/corr_callback.h).
                      auto analyze = std::make_shared<std::string>();
                      sub.add_option("--analyze", *analyze,
                                     "corr: layer cross-correlation at the start of every epoch "
                                     "(RUN_DIR/analysis/corr_means.json)")
                          ->check(CLI::IsMember({"corr"}));
                      sub.callback([state, analyze]() {
                        train::TrainConfig cfg = state->to_config();
                        train::Trainer trainer(cfg);
                        attach_diagnostics(trainer, *state);
                        if (*analyze == "corr") trainer.add_callback(analysis::make_corr_callback({}));
                        auto history = trainer.run();
                        const auto& last = history.back();
                        fmt::print("{}: test accuracy {:.2f}% after {} epochs (run directory {})\n",
                                   cfg.dataset, 100 * last.test_acc, last.epoch, cfg.out);
                      });
                    });

}  // namespace
}  // namespace gl::tools
