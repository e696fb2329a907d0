// optim_report.cpp: report figures of the optimization dynamics (see optim_report.h). Per-step
// series are averaged into at most kMaxPoints buckets so long runs stay light.
#include "analysis/optim_report.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "analysis/npy_read.h"
#include "analysis/optim_stats.h"
#include "analysis/svg.h"
#include "engine/io/fs.h"
#include "engine/io/json_file.h"

namespace gl::analysis {
namespace {

constexpr size_t kMaxPoints = 400;

std::string figure(int& figures, const std::string& svg_text, const std::string& caption) {
  ++figures;
  return "<figure>" + svg_text + "<figcaption><b>Figure " + std::to_string(figures) + ".</b> " +
         caption + "</figcaption></figure>\n";
}

// Bucket means of (x, y) down to at most kMaxPoints points, NaNs skipped.
void thin(std::vector<double>& x, std::vector<double>& y) {
  if (x.size() <= kMaxPoints) return;
  std::vector<double> ox, oy;
  const size_t n = x.size();
  for (size_t b = 0; b < kMaxPoints; ++b) {
    size_t lo = b * n / kMaxPoints, hi = (b + 1) * n / kMaxPoints;
    double sx = 0, sy = 0;
    size_t cy = 0;
    for (size_t i = lo; i < hi; ++i) {
      sx += x[i];
      if (std::isfinite(y[i])) sy += y[i], ++cy;
    }
    ox.push_back(sx / double(hi - lo));
    oy.push_back(cy ? sy / double(cy) : NAN);
  }
  x.swap(ox);
  y.swap(oy);
}

}  // namespace

std::string optim_section_html(const std::string& run_dir, int& figures) {
  namespace fs = std::filesystem;
  const std::string dir = run_dir + "/optim";
  if (!fs::exists(dir + "/optim.json")) return "";
  const nlohmann::json document = io::read_json_file(dir + "/optim.json");
  const io::JsonReader j(document, dir + "/optim.json");
  NpyArray stats = read_npy(dir + "/stats.npy");
  NpyArray steps = read_npy(dir + "/steps.npy");
  const std::vector<io::JsonReader> params = j["params"].elements();
  const int64_t P = int64_t(params.size()), S = kNumOptimStats;
  GL_CHECK(stats.shape.size() == 3 && stats.shape[1] == P + 1 && stats.shape[2] == S,
           "{}/stats.npy: expected shape [records, {}, {}]", dir, P + 1, S);
  const int64_t R = stats.shape[0];
  GL_CHECK(steps.shape.size() == 2 && steps.shape[0] == R, "{}/steps.npy: expected [{}, 2]", dir,
           R);
  const double spe = std::max<double>(1.0, j.get("steps_per_epoch", 1.0));

  std::string html = "<h3>Optimization dynamics</h3><p class=\"note\">Recorded every " +
                     std::to_string(j.get<int64_t>("every", 1)) +
                     " step(s); zero gradient: |g| &lt; " +
                     svg::format_number(j.get("zero_threshold", 1e-7)) +
                     "; released/retained: of the components with |g| &lt; " +
                     svg::format_number(j.get("small_threshold", 1e-5)) +
                     " at the previous step. One curve per parameter tensor.</p>";
  if (R == 0) return html + "<p class=\"note\">No records yet.</p>";

  auto chart = [&](int stat, const std::string& title, const std::string& ylabel, bool log_y,
                   bool with_total) {
    svg::LineChart c;
    c.title = title;
    c.xlabel = "epoch";
    c.ylabel = ylabel;
    c.log_y = log_y;
    for (int64_t k = 0; k <= P; ++k) {
      if (k == P && !with_total) break;
      svg::Series s;
      s.name = k == P ? "total" : params[size_t(k)]["name"].get<std::string>();
      for (int64_t r = 0; r < R; ++r) {
        s.x.push_back(steps.values[size_t(r * 2)] / spe);
        s.y.push_back(stats.values[size_t((r * (P + 1) + k) * S + stat)]);
      }
      thin(s.x, s.y);
      if (k == P) s.color = "#222222", s.dashed = true;
      c.series.push_back(std::move(s));
    }
    c.legend = P <= 12;
    return svg::line_chart(c);
  };
  html += "<div class=\"row\">";
  html += figure(figures, chart(kZeroCount, "Zero gradients", "count (log scale)", true, true),
                 "Components whose gradient magnitude is below the zero threshold, per step "
                 "(bucket-averaged), per parameter and in total (dashed).");
  html +=
      figure(figures, chart(kReleasedFraction, "Released small gradients", "fraction", false, true),
             "Of the components whose gradient was small at the previous step, the fraction "
             "whose gradient grew above the threshold; the rest were retained.");
  html += "</div><div class=\"row\">";
  html += figure(figures, chart(kSignFlipFraction, "Gradient sign flips", "fraction", false, true),
                 "Fraction of components whose gradient changed sign between consecutive steps.");
  html += figure(
      figures,
      chart(kWeightDiffNorm, "Weight-difference norm", "‖w_t − w_{t−1}‖ (log scale)", true, true),
      "Euclidean norm of each step's weight change, per parameter and in total.");
  html += "</div>";

  // The sign map of the largest parameter, downsampled, then its first components in full.
  int64_t best = -1, best_n = 0;
  for (int64_t k = 0; k < P; ++k) {
    const io::JsonReader& p = params[size_t(k)];
    if (p.contains("sign_map") && p["numel"].get<int64_t>() > best_n)
      best = k, best_n = p["numel"].get<int64_t>();
  }
  if (best < 0) return html;
  const io::JsonReader& bp = params[size_t(best)];
  const auto epochs = j.get("sign_map_epochs", std::vector<double>{});
  // Codes -1, 0, 1, 2 drawn as four distinct viridis colours.
  auto code_value = [](double c) {
    return c == -1 ? 0.0 : c == 0 ? 1.0 / 3 : c == 1 ? 2.0 / 3 : 1.0;
  };
  auto code_name = [](double v) {
    return v < 1.0 / 6   ? "negative-small"
           : v < 0.5     ? "zero"
           : v < 5.0 / 6 ? "positive-small"
                         : "large";
  };
  auto sign_map = [&](const std::string& file, const std::string& title, const std::string& xlabel,
                      double col_scale) {
    NpyArray m = read_npy(dir + "/" + file);
    GL_CHECK(m.shape.size() == 2, "{}/{}: expected [epochs, columns]", dir, file);
    svg::Heatmap h;
    h.title = title;
    h.xlabel = xlabel;
    h.ylabel = "epoch";
    h.vmin = 0.0;
    h.vmax = 1.0;
    h.colorbar_label = "neg · zero · pos · large";
    for (int64_t r = 0; r < m.shape[0]; ++r)
      h.row_labels.push_back(size_t(r) < epochs.size() ? svg::format_number(epochs[size_t(r)])
                                                       : std::to_string(r + 1));
    for (int64_t c = 0; c < m.shape[1]; ++c)
      h.col_labels.push_back(std::to_string(int64_t(double(c) * col_scale)));
    for (double v : m.values) h.values.push_back(code_value(v));
    h.tooltip = [&h, code_name](int r, int c, double v) {
      return "epoch " + h.row_labels[size_t(r)] + ", index " + h.col_labels[size_t(c)] + ": " +
             code_name(v);
    };
    return svg::heatmap(h);
  };
  const std::string name = bp["name"].get<std::string>();
  NpyArray full = read_npy(dir + "/" + bp["sign_map"].get<std::string>());
  const double scale =
      full.shape.size() == 2 && full.shape[1] > 0 ? double(best_n) / double(full.shape[1]) : 1;
  html += "<div class=\"row\">";
  html += figure(figures,
                 sign_map(bp["sign_map"].get<std::string>(), "Gradient sign map: " + name,
                          "parameter index (downsampled)", scale),
                 "Sign of each component's gradient at the last step of every epoch: "
                 "negative-small, zero, positive-small, or large (|g| above " +
                     svg::format_number(j.get("sign_large_factor", 2.0)) +
                     "× the tensor's mean |g|); each column is the most frequent code of " +
                     svg::format_number(scale) + " consecutive components.");
  html += figure(figures,
                 sign_map(bp["sign_map_zoom"].get<std::string>(),
                          "Zoom: first components of " + name, "parameter index", 1.0),
                 "The first components of the same map at full resolution.");
  html += "</div>";
  return html;
}

}  // namespace gl::analysis
