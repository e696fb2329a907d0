// sweep_report.h: the report of a sweep directory (sweep.json, summary.csv, runs/<id>/): test
// accuracy over epochs per initialization and per activation, final accuracy against depth
// (curves and a heatmap), per-layer activation statistics and gradient norms (the
// vanishing/exploding picture), and the He factor comparison when the sweep varies it.
#pragma once
#include <string>
#include <vector>

#include "analysis/run_data.h"

namespace gl::analysis {

// True when `dir` holds sweep.json or a summary.csv / summary-K-of-N.csv.
bool is_sweep_dir(const std::string& dir);

struct SweepRunData {
  std::string id, activation, init, status;
  std::string variant;  // the grid's other axes, "lr=0.01, momentum=0.9" (empty: none)
  int depth = 0;
  long long seed = 0;
  // From summary.csv; a diverged run's final_test_acc is that of its last finished epoch.
  double final_test_acc = 0, best_test_acc = 0;
  int epochs = 0;   // epochs finished
  Metrics metrics;  // empty when the run directory is missing
};

struct SweepData {
  std::string dir, name;
  std::vector<SweepRunData> runs;  // summary.csv order
  std::vector<std::string> notes;
  std::string variant_axes;  // the names of those other axes, "lr, momentum" (empty: none)
};

SweepData load_sweep(const std::string& dir);

struct SweepReportOptions {
  std::string title = "gradlens sweep report";
  std::vector<int> depths;  // depths for the per-epoch and per-layer figures; empty: automatic
};

std::string render_sweep_report(const SweepData& sweep, const SweepReportOptions& options);
void write_sweep_report(const std::string& dir, const std::string& out,
                        const SweepReportOptions& options);

}  // namespace gl::analysis
