// report.h: renders one or more run directories as a self-contained HTML report (inline SVG,
// embedded PNG digits, a few lines of vanilla JS for pre/post toggles; no network).
#pragma once
#include <string>
#include <vector>

#include "analysis/run_data.h"

namespace gl::analysis {

struct ReportOptions {
  std::string title = "gradlens report";
  std::vector<int> classes;       // classes for the per-class plots; empty: all (up to 10)
  size_t max_misclassified = 48;  // digits shown per run
  size_t max_epoch_curves = 8;    // epochs overlaid in histograms and depth profiles
};

std::string render_report(const std::vector<RunData>& runs, const ReportOptions& options);

// Loads every directory, renders, and writes `out` atomically (temp file + rename).
void write_report(const std::vector<std::string>& run_dirs, const std::string& out,
                  const ReportOptions& options);

}  // namespace gl::analysis
