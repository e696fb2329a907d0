// diagnostics_attach.cpp: connects --diagnostics to the analysis probes.
#include "tools/train_flags.h"

namespace gl::tools {

void attach_diagnostics(train::Trainer& trainer, const TrainFlags& flags) {
  (void)trainer;
  GL_CHECK(flags.diagnostics == "none", "--diagnostics {}: diagnostics are not built in yet",
           flags.diagnostics);
}

}  // namespace gl::tools
