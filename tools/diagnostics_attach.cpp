// diagnostics_attach.cpp: connects --diagnostics, --diagnostics-every and
// --saturation-threshold to the analysis probes (analysis/diagnostics.h).
#include "analysis/diagnostics.h"
#include "tools/train_flags.h"

namespace gl::tools {

void attach_diagnostics(train::Trainer& trainer, const TrainFlags& flags) {
  analysis::DiagnosticsOptions o = analysis::DiagnosticsOptions::parse(flags.diagnostics);
  GL_CHECK(flags.diagnostics_every >= 0, "--diagnostics-every must be >= 0, got {}",
           flags.diagnostics_every);
  GL_CHECK(flags.saturation_threshold > 0 && flags.saturation_threshold < 1,
           "--saturation-threshold must be in (0, 1), got {}", flags.saturation_threshold);
  if (!o.any()) return;
  o.every = flags.diagnostics_every;
  o.saturation_threshold = flags.saturation_threshold;
  trainer.add_callback(std::make_shared<analysis::DiagnosticsCallback>(o));
}

}  // namespace gl::tools
