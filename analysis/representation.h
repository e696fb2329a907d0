// representation.h: the analyses of `gradlens analyze`, each reading a trained run (see
// analysis/capture.h) and writing RUN_DIR/analysis/* (docs/run_directory.md, "analysis/").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/capture.h"
#include "analysis/tsne.h"
#include "train/augment.h"

namespace gl::analysis {

struct AnalyzeOptions {
  std::string layers;     // comma-separated layer names ("" = every hidden layer)
  ExampleQuery examples;  // which examples (count 0: the analysis's default)
  int64_t batch_size = 1000;
  bool save_activations = true;  // activations_<layer>.npy for corr/pca/tsne
  // pca
  int64_t pca_components = 2;
  // tsne
  TsneOptions tsne;
  bool trustworthiness = true;
  // augment
  int64_t augment_index = 0;  // example of the split to augment
  int64_t augmentations = 300;
  int64_t augment_reference = 1000;  // examples for the dataset variance
  data::AugmentOptions augment;
  // neurons
  int64_t top_k = 9;
  int64_t top_units = 32;  // units whose top images are saved (most selective first)
  bool quiet = false;
};

void analyze_corr(RunModel& run, const AnalyzeOptions& o);
void analyze_pca(RunModel& run, const AnalyzeOptions& o);
void analyze_tsne(RunModel& run, const AnalyzeOptions& o);
void analyze_augment(RunModel& run, const AnalyzeOptions& o);
void analyze_neurons(RunModel& run, const AnalyzeOptions& o);

// Per-feature variance across augmentations divided by variance across the dataset
// ([d]; NaN where the dataset variance is 0). aug: [m, d], data: [n, d].
std::vector<double> variance_ratio(const float* aug, int64_t m, const float* data, int64_t n,
                                   int64_t d);

}  // namespace gl::analysis
