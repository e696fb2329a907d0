// analyze_attach.cpp: connects --analyze and --tensorboard to the optimization-dynamics and
// TensorBoard callbacks (analysis/optim_stats.h, analysis/tensorboard.h).
#include <sstream>

#include "analysis/corr_callback.h"
#include "analysis/optim_stats.h"
#include "analysis/tensorboard.h"
#include "tools/command.h"
#include "tools/train_flags.h"

namespace gl::tools {

void add_analyze_flags(CLI::App& app, TrainFlags& f) {
  app.add_option(
         "--analyze", f.analyze,
         "none, or a comma list of: optim (per-step optimization dynamics in <out>/optim/), corr "
         "(layer cross-correlation at the start of every epoch in <out>/analysis/; MLPs only)")
      ->capture_default_str();
  app.add_option("--analyze-every", f.analyze_every,
                 "Record optimization statistics every N steps (each against the step before)")
      ->transform(integer_in(1, kInt64Max))
      ->capture_default_str();
  app.add_option("--zero-grad-threshold", f.zero_grad_threshold,
                 "|g| below this counts as a zero gradient (--analyze optim)")
      ->capture_default_str();
  app.add_option("--ema-decay", f.ema_decay,
                 "Decay of the gradient and weight moving averages (--analyze optim)")
      ->capture_default_str();
  app.add_option_function<std::vector<std::string>>(
         "--tensorboard",
         [&f](const std::vector<std::string>& v) {
           f.tensorboard = true;
           f.tensorboard_dir = v.empty() ? "" : v.front();
         },
         "Write TensorBoard event files to DIR (default <out>/tensorboard)")
      ->expected(0, 1)
      ->type_name("[DIR]");
}

void attach_analysis(train::Trainer& trainer, const TrainFlags& f) {
  bool optim = false, corr = false;
  std::stringstream list(f.analyze);
  if (f.analyze != "none") {
    GL_CHECK(!f.analyze.empty() && f.analyze.back() != ',',
             "--analyze '{}': expected none, or a comma list of optim and corr", f.analyze);
  }
  for (std::string item; f.analyze != "none" && std::getline(list, item, ',');) {
    GL_CHECK(!item.empty(), "--analyze '{}' has an empty item", f.analyze);
    GL_CHECK(item != "none", "--analyze '{}': none cannot be listed with analyses", f.analyze);
    bool* on = item == "optim" ? &optim : item == "corr" ? &corr : nullptr;
    GL_CHECK(on, "--analyze: unknown analysis '{}' (known: none, optim, corr)", item);
    GL_CHECK(!*on, "--analyze '{}': {} is listed twice", f.analyze, item);
    *on = true;
  }
  if (optim) {
    analysis::OptimStatsOptions o;
    o.every = f.analyze_every;
    o.zero_threshold = f.zero_grad_threshold;
    o.ema_decay = f.ema_decay;
    trainer.add_callback(std::make_shared<analysis::OptimStatsCallback>(o));
  } else {
    GL_CHECK(f.analyze_every >= 1, "--analyze-every must be >= 1, got {}", f.analyze_every);
  }
  GL_CHECK(!corr || trainer.config().model != "cnn",
           "--analyze corr: layer correlations read [N, features] activations and do not support "
           "--model cnn yet");
  if (corr) trainer.add_callback(analysis::make_corr_callback({}));
  if (f.tensorboard)
    trainer.add_callback(std::make_shared<analysis::tb::TensorBoardCallback>(f.tensorboard_dir));
}

}  // namespace gl::tools
