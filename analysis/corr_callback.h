// corr_callback.h: `--analyze corr` during training. At the start of every epoch (and once
// after the last) it captures the hidden layers on a fixed set of test examples, computes the
// Pearson cross-correlation matrix of every layer pair i <= j and records its mean |r|:
//   RUN_DIR/analysis/corr_means.json   {"layers": [...], "examples": n, "epochs": [e...],
//                                       "pairs": {"h0-h1": [mean per epoch], ...}, "seconds":
//                                       [...]}
//   RUN_DIR/analysis/corr_epochs/e<E>_<a>_<b>.npy   f4 [width_a, width_b]
// Epoch E is the state after E training epochs (the start of epoch E + 1). On the CPU the
// activations for E >= 1 are copied from the trainer's evaluation after epoch E (same weights,
// eval mode) instead of a separate forward pass, and the record is made at the end of that
// evaluation; the files are written in the background (one atomic batch per record) and are
// complete when training ends. "seconds" is the time each record held up the training thread.
//
// Attach: trainer.add_callback(gl::analysis::make_corr_callback({}));
#pragma once
#include <cstdint>
#include <memory>

#include "train/trainer.h"

namespace gl::analysis {

struct CorrCallbackOptions {
  int64_t examples = 1000;    // first n test examples (fewer if the split is smaller)
  bool save_matrices = true;  // the .npy matrices besides the means
};

std::shared_ptr<train::Callback> make_corr_callback(const CorrCallbackOptions& options);

}  // namespace gl::analysis
