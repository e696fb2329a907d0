// run_data.h: everything the report reads from one run directory (docs/run_directory.md),
// loaded strictly: a missing optional file leaves its part empty, a malformed one throws.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "analysis/npy_read.h"

namespace gl::analysis {

struct Metrics {
  std::vector<double> epoch, train_loss, test_loss, train_acc, test_acc, epoch_time;
  // Optional per-layer columns act_mean_i, act_std_i, grad_norm_i: [layer][row].
  std::vector<std::vector<double>> act_mean, act_std, grad_norm;
  size_t layers() const { return act_std.size(); }
};

struct PerClassRow {
  int cls = 0;
  double accuracy = 0, precision = 0, recall = 0, f1 = 0, support = 0;
};

struct Misclassified {
  int64_t index = 0;
  int true_class = 0, predicted = 0;
};

struct LayerInfo {
  std::string name, kind, activation;
  int64_t in = 0, out = 0;
};

struct ActivationRow {
  double epoch = 0;
  int layer = 0;
  bool post = true;
  int cls = -1;  // -1: all samples
  double mean = 0, std = 0, min = 0, max = 0;
};

struct UnitsRow {
  double epoch = 0;
  int layer = 0;
  double dead = 0, saturated = 0;
};

struct GradRow {
  double epoch = 0;
  int layer = 0;
  double weight_grad_norm = 0, bias_grad_norm = 0, act_grad_norm = 0, weight_norm = 0,
         update_ratio = 0;
};

struct LayerHistogram {
  int layer = 0;
  bool post = true;
  std::vector<std::vector<double>> counts;  // [epoch row][bin]
  std::vector<std::vector<double>> edges;   // one row shared by all epochs, or one per row
  // Per row: values below the first edge, above the last (both also counted in the edge bins)
  // and NaN (hist_<layer>_<kind>_outside.npy); empty when the file is absent.
  std::vector<std::vector<double>> outside;
};

struct Diagnostics {
  std::vector<LayerInfo> layers;
  std::vector<double> epochs;  // epochs of the histogram rows
  std::vector<ActivationRow> activations;
  std::vector<UnitsRow> units;
  std::vector<GradRow> grads;
  std::vector<LayerHistogram> histograms;
  std::optional<double> units_epoch;  // epoch of the dead/saturated unit lists
  std::vector<std::vector<int64_t>> dead_units, saturated_units;  // [layer] -> unit ids
  std::vector<std::pair<int, NpyArray>> selectivity;              // (layer, [classes, units])
};

struct Image {
  int height = 0, width = 0, channels = 1;  // HWC u8
  std::vector<uint8_t> pixels;
};

struct RunData {
  std::string dir, name;
  nlohmann::json config;  // null when config.json is absent
  Metrics metrics;
  std::vector<PerClassRow> per_class;
  std::vector<std::vector<double>> confusion;  // [true][pred]; empty when absent
  std::vector<Misclassified> misclassified;
  int64_t misclassified_images_total = 0;
  std::vector<Image> misclassified_images;  // first few, same order as misclassified
  std::optional<Diagnostics> diagnostics;
  std::vector<std::string> notes;  // missing optional files, shown in the report
  bool diverged = false;           // diverged.json (readable) says the run stopped diverged
};

// max_images: how many misclassified images to decode (the rest are counted only).
RunData load_run(const std::string& dir, size_t max_images = 64);

// The layers a metrics.csv header names in its act_mean_i, act_std_i and grad_norm_i columns
// (one more than the largest i; 0 for none). An index past any real network's is refused,
// naming the file.
int per_layer_columns(const std::vector<std::string>& header, const std::string& path);

}  // namespace gl::analysis
