// report.cpp: `gradlens report RUN_DIR [RUN_DIR...]` writes a self-contained report.html.
#include "analysis/report.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>

#include "analysis/sweep_report.h"
#include "tools/command.h"

namespace gl::tools {
namespace {

std::vector<int> parse_classes(const std::string& list) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      int c = std::stoi(item, &used);
      if (used != item.size() || c < 0) throw std::invalid_argument(item);
      out.push_back(c);
    } catch (const std::exception&) {
      throw std::runtime_error("--classes: '" + item +
                               "' is not a class index (expected e.g. 0,3,8)");
    }
  }
  return out;
}

// The report replaces --out; a name that is not .html/.htm could be one of the runs' own files
// (metrics.csv, config.json), which would be overwritten with HTML.
void check_out(const std::string& out) {
  std::string ext = std::filesystem::path(out).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (ext != ".html" && ext != ".htm")
    throw std::runtime_error("--out " + out +
                             ": the report is HTML; give a file name ending in .html or .htm");
  if (std::filesystem::is_directory(out))
    throw std::runtime_error("--out " + out + ": is a directory; give a file name ending in .html");
}

const RegisterCommand reg{
    "report", "Write a self-contained HTML report of one or more run directories",
    [](CLI::App& sub) {
      struct Opts {
        std::vector<std::string> dirs;
        std::string out, title = "gradlens report", classes;
      };
      auto o = std::make_shared<Opts>();
      sub.add_option("RUN_DIR", o->dirs,
                     "Run directories (several: compared side by side), or one sweep directory")
          ->required();
      sub.add_option(
          "--out,-o", o->out,
          "Output file, ending in .html or .htm so that no run's own file can be replaced "
          "(default RUN_DIR/report.html for one run, ./report.html for several)");
      sub.add_option("--title", o->title, "Report title")->capture_default_str();
      sub.add_option(
          "--classes", o->classes,
          "Comma-separated classes for the per-class activation plots (default: the first 10; "
          "they need a run trained with --diagnostics activations)");
      sub.callback([o] {
        analysis::ReportOptions opts;
        opts.title = o->title;
        if (!o->classes.empty()) opts.classes = parse_classes(o->classes);
        std::string out = o->out;
        if (!out.empty()) check_out(out);
        // A sweep directory (sweep.json / summary.csv) gets the sweep report.
        if (o->dirs.size() == 1 && analysis::is_sweep_dir(o->dirs[0])) {
          if (!o->classes.empty())
            throw std::runtime_error("--classes: " + o->dirs[0] +
                                     " is a sweep; the per-class plots are in a run's report "
                                     "(gradlens report DIR/runs/RUN)");
          if (out.empty()) out = (std::filesystem::path(o->dirs[0]) / "report.html").string();
          analysis::SweepReportOptions so;
          if (o->title != "gradlens report") so.title = o->title;
          analysis::write_sweep_report(o->dirs[0], out, so);
          std::cout << "wrote " << out << "\n";
          return;
        }
        if (out.empty())
          out = o->dirs.size() == 1 ? (std::filesystem::path(o->dirs[0]) / "report.html").string()
                                    : "report.html";
        analysis::write_report(o->dirs, out, opts);
        std::cout << "wrote " << out << "\n";
      });
    }};

}  // namespace
}  // namespace gl::tools
