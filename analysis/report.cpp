// report.cpp: the HTML report. One section per run (in columns when several runs are given),
// a comparison section overlaying runs, and diagnostics figures that stay readable at 50
// layers: depth profiles (x = layer, one curve per epoch), layer x epoch heatmaps, and
// histogram small multiples that wrap.
#include "analysis/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "analysis/optim_report.h"
#include "analysis/repr_report.h"
#include "analysis/svg.h"
#include "engine/core.h"
#include "engine/io/fs.h"

namespace gl::analysis {
namespace {

using svg::escape;
using svg::format_number;
namespace fs = std::filesystem;

const char* kTrainColor = "#0072b2";
const char* kTestColor = "#d55e00";

const char* kStyle = R"CSS(
:root { --ink:#1d1d1f; --muted:#666; --rule:#e3e3e3; --accent:#0072b2; }
* { box-sizing: border-box; }
body { margin:0; color:var(--ink); background:#fafafa;
  font: 14px/1.5 "Source Sans 3","Segoe UI","Helvetica Neue",Helvetica,Arial,sans-serif; }
main { max-width: 1500px; margin: 0 auto; padding: 28px 32px 60px; background:#fff; }
h1 { font: 600 28px/1.2 Georgia,"Times New Roman",serif; margin: 0 0 4px; }
h2 { font: 600 21px/1.3 Georgia,"Times New Roman",serif; margin: 34px 0 8px; padding-bottom:4px;
  border-bottom: 1px solid var(--rule); }
h3 { font-size: 15px; margin: 22px 0 6px; color:#333; text-transform: uppercase; letter-spacing:.04em; }
.sub { color: var(--muted); margin: 0 0 18px; }
code { font: 12.5px/1.4 "JetBrains Mono",Menlo,Consolas,monospace; background:#f3f3f3; padding:1px 4px; border-radius:3px; }
nav { font-size: 13px; color: var(--muted); margin-bottom: 8px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
figure { margin: 10px 0 18px; }
figure svg { width: 100%; height: auto; max-width: var(--fig-max, 640px); display:block; }
figcaption { font-size: 12.5px; color: #444; margin-top: 4px; max-width: 640px; }
figcaption b { color: var(--ink); }
.runs { display: grid; gap: 28px; align-items: start; }
.run { min-width: 0; }
.run > h2 { margin-top: 18px; }
.runs.multi .row > figure { flex-basis: 100%; }
.row { display: flex; flex-wrap: wrap; gap: 8px 22px; }
.row > figure { flex: 1 1 300px; min-width: 0; }
.multiples { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 4px 12px; }
.multiples figure svg { max-width: 300px; }
.multiples figure { margin: 0; }
.multiples figcaption { font-size: 11.5px; margin-top: 0; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 14px; }
th, td { padding: 3px 9px; border-bottom: 1px solid var(--rule); text-align: right; }
th { font-weight: 600; border-bottom: 1.5px solid #999; background: #fcfcfc; }
td.l, th.l { text-align: left; }
tr.worst td { background: #fff1e8; }
.kv td:first-child { color: #333; font-family: "JetBrains Mono",Menlo,Consolas,monospace; font-size: 12px; }
.stats { display:flex; flex-wrap: wrap; gap: 10px; margin: 6px 0 8px; }
.stat { border: 1px solid var(--rule); border-radius: 6px; padding: 5px 12px; min-width: 110px; }
.stat b { display:block; font-size: 19px; font-weight: 600; }
.stat span { font-size: 11.5px; color: var(--muted); }
.note { color: var(--muted); font-size: 12.5px; font-style: italic; }
.swatch { display:inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: -1px; margin-right: 5px; }
button.toggle { font: inherit; font-size: 12px; border: 1px solid #bbb; background: #fff; border-radius: 4px;
  padding: 1px 9px; cursor: pointer; margin-right: 4px; }
button.toggle.on { background: var(--ink); color: #fff; border-color: var(--ink); }
.hidden { display: none !important; }
details > summary { cursor: pointer; color: var(--accent); font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--rule); padding-top: 8px; }
)CSS";

// Shows one member of a toggle group: buttons carry data-group and data-show.
const char* kScript = R"JS(
document.addEventListener('click', function (e) {
  var b = e.target.closest('button.toggle'); if (!b) return;
  var g = b.dataset.group;
  document.querySelectorAll('[data-group="' + g + '"]').forEach(function (el) {
    if (el.tagName === 'BUTTON') el.classList.toggle('on', el === b);
    else el.classList.toggle('hidden', el.dataset.member !== b.dataset.show);
  });
});
)JS";

class Page {
 public:
  std::string html;
  int figures = 0;
  int groups = 0;

  void figure(const std::string& svg_text, const std::string& caption,
              const std::string& cls = "") {
    ++figures;
    html += "<figure" + (cls.empty() ? std::string() : " class=\"" + cls + "\"") + ">" + svg_text +
            "<figcaption><b>Figure " + std::to_string(figures) + ".</b> " + caption +
            "</figcaption></figure>\n";
  }
  // A panel of small multiples: a figure without its own number.
  void panel(const std::string& svg_text, const std::string& caption) {
    html += "<figure>" + svg_text +
            (caption.empty() ? "" : "<figcaption>" + caption + "</figcaption>") + "</figure>";
  }
};

bool is_percent(const std::vector<double>& v) {
  for (double x : v)
    if (std::isfinite(x) && x > 1.0001) return true;
  return false;
}

std::vector<double> to_percent(const std::vector<double>& v) {
  if (is_percent(v)) return v;
  std::vector<double> out;
  for (double x : v) out.push_back(x * 100);
  return out;
}

std::string pct(double v) {
  if (!std::isfinite(v)) return svg::kMissingValue;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", v);
  return buf;
}

// Indices of at most `max` evenly spaced entries, always keeping the first and the last.
std::vector<size_t> pick(size_t n, size_t max) {
  std::vector<size_t> out;
  if (n == 0) return out;
  if (n <= max || max < 2) {
    for (size_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  for (size_t k = 0; k < max; ++k) {
    size_t i = static_cast<size_t>(std::llround(static_cast<double>(k) * (n - 1) / (max - 1)));
    if (out.empty() || out.back() != i) out.push_back(i);
  }
  return out;
}

std::string seq_color(size_t k, size_t n) {
  return svg::hex(svg::colormap(svg::ColorMap::Viridis, n > 1 ? 0.9 * k / (n - 1) : 0.45));
}

std::string epoch_label(double e) {
  return format_number(e, 6);
}

// What the summary shows of a run whose metrics.csv has no rows.
const char* kNoEpoch = "no epoch finished yet";

// A metrics.csv column's final value: the last row's. A run whose last row is NaN (it
// diverged, or its evaluation failed) must not show an earlier epoch's value as its final one
// beside the epoch count, so that case is spelled out: the last row's value ("nan") and its
// epoch, with the last finite value and the epoch it is from.
struct Final {
  std::string value;  // the last row's value, formatted; kMissingValue when the column has no rows
  std::string note;   // when that value is not finite: its epoch and the last finite value
};

Final final_value(const std::vector<double>& v, const std::vector<double>& epochs,
                  const std::function<std::string(double)>& fmt) {
  if (v.empty()) return {svg::kMissingValue, ""};
  const size_t last = v.size() - 1;
  if (std::isfinite(v[last])) return {fmt(v[last]), ""};
  auto epoch = [&](size_t i) { return i < epochs.size() ? epoch_label(epochs[i]) : "?"; };
  std::string note = "at epoch " + epoch(last);
  for (size_t i = last; i-- > 0;)
    if (std::isfinite(v[i])) {
      note += "; last finite " + fmt(v[i]) + " at epoch " + epoch(i);
      break;
    }
  return {format_number(v[last]), note};
}

std::string layer_name(const RunData& run, int layer) {
  if (run.diagnostics && layer >= 0 &&
      static_cast<size_t>(layer) < run.diagnostics->layers.size() &&
      !run.diagnostics->layers[layer].name.empty())
    return run.diagnostics->layers[layer].name;
  return "layer " + std::to_string(layer);
}

// A [layer][epoch] matrix from long-format rows.
struct Grid {
  std::vector<double> epochs;
  int layers = 0;
  std::vector<std::vector<double>> v;  // [layer][epoch index]
};

template <typename Row, typename Get, typename Keep>
Grid grid_of(const std::vector<Row>& rows, Get get, Keep keep) {
  Grid g;
  std::set<double> epochs;
  for (auto& r : rows)
    if (keep(r)) epochs.insert(r.epoch), g.layers = std::max(g.layers, r.layer + 1);
  g.epochs.assign(epochs.begin(), epochs.end());
  g.v.assign(g.layers, std::vector<double>(g.epochs.size(), NAN));
  for (auto& r : rows) {
    if (!keep(r)) continue;
    size_t e = std::lower_bound(g.epochs.begin(), g.epochs.end(), r.epoch) - g.epochs.begin();
    g.v[r.layer][e] = get(r);
  }
  return g;
}

// The epochs (column indices) of g where some layer has a value a chart draws: finite, and
// positive on a log scale. Other epochs (weight gradients at epoch 0, before training) get no
// curve, colour or column.
std::vector<size_t> drawn_epochs(const Grid& g, bool log_y) {
  std::vector<size_t> out;
  for (size_t e = 0; e < g.epochs.size(); ++e)
    for (int l = 0; l < g.layers; ++l)
      if (svg::drawn(g.v[l][e], log_y)) {
        out.push_back(e);
        break;
      }
  return out;
}

// Depth profile: x = layer, one curve per (selected) epoch that has a value to draw, viridis from
// first to last epoch.
std::string depth_profile(const Grid& g, const std::string& title, const std::string& ylabel,
                          bool log_y, size_t max_curves,
                          std::vector<std::pair<double, std::string>> hlines = {}) {
  svg::LineChart c;
  c.title = title;
  c.xlabel = "layer (input → output)";
  c.ylabel = ylabel;
  c.log_y = log_y;
  c.hlines = std::move(hlines);
  const std::vector<size_t> drawn = drawn_epochs(g, log_y);
  std::vector<size_t> idx;
  for (size_t i : pick(drawn.size(), max_curves)) idx.push_back(drawn[i]);
  for (size_t k = 0; k < idx.size(); ++k) {
    svg::Series s;
    s.name = "epoch " + epoch_label(g.epochs[idx[k]]);
    s.color = seq_color(k, idx.size());
    s.markers = g.layers <= 12;
    for (int l = 0; l < g.layers; ++l) s.x.push_back(l), s.y.push_back(g.v[l][idx[k]]);
    c.series.push_back(std::move(s));
  }
  if (idx.size() > 1)
    c.sequential_legend = std::make_tuple("epoch", g.epochs[idx.front()], g.epochs[idx.back()]);
  return svg::line_chart(c);
}

std::string layer_epoch_heatmap(const RunData& run, const Grid& g, const std::string& title,
                                const std::string& bar_label, bool log_color, svg::ColorMap map) {
  svg::Heatmap h;
  h.title = title;
  h.xlabel = "epoch";
  h.ylabel = "layer";
  h.map = map;
  h.log_color = log_color;
  h.colorbar_label = bar_label;
  // Columns: the epochs with a finite value (a blank cell within one is a value not measured).
  const std::vector<size_t> cols = drawn_epochs(g, false);
  for (int l = 0; l < g.layers; ++l) h.row_labels.push_back(std::to_string(l));
  for (size_t e : cols) h.col_labels.push_back(epoch_label(g.epochs[e]));
  for (int l = 0; l < g.layers; ++l)
    for (size_t e : cols) h.values.push_back(g.v[l][e]);
  h.tooltip = [&run, &g, cols](int r, int c, double v) {
    return layer_name(run, r) + ", epoch " + epoch_label(g.epochs[cols[c]]) + ": " +
           (std::isnan(v) ? "not measured" : format_number(v, 4));
  };
  return svg::heatmap(h);
}

// x = epoch, one curve per layer (viridis by depth); for deep nets a heatmap reads better.
std::string per_layer_over_epochs(const RunData& run, const Grid& g, const std::string& title,
                                  const std::string& ylabel, bool log_y,
                                  std::vector<std::pair<double, std::string>> hlines = {}) {
  if (g.layers > 12)
    return layer_epoch_heatmap(run, g, title, ylabel, log_y,
                               log_y ? svg::ColorMap::Viridis : svg::ColorMap::Viridis);
  svg::LineChart c;
  c.title = title;
  c.xlabel = "epoch";
  c.ylabel = ylabel;
  c.log_y = log_y;
  c.hlines = std::move(hlines);
  for (int l = 0; l < g.layers; ++l) {
    svg::Series s;
    s.name = layer_name(run, l);
    s.color = seq_color(l, g.layers);
    s.x = g.epochs;
    s.y = g.v[l];
    c.series.push_back(std::move(s));
  }
  return svg::line_chart(c);
}

void flatten(const nlohmann::json& j, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    return;
  }
  out.emplace_back(prefix, j.is_string() ? j.get<std::string>() : j.dump());
}

void config_table(Page& p, const RunData& run) {
  if (run.config.is_null()) return;
  std::vector<std::pair<std::string, std::string>> kv;
  flatten(run.config, "", kv);
  p.html += "<details" + std::string(kv.size() <= 24 ? " open" : "") + "><summary>configuration (" +
            std::to_string(kv.size()) +
            " flags)</summary><table class=\"kv\"><tr><th class=\"l\">flag</th><th "
            "class=\"l\">value</th></tr>";
  for (auto& [k, v] : kv)
    p.html +=
        "<tr><td class=\"l\">" + escape(k) + "</td><td class=\"l\">" + escape(v) + "</td></tr>";
  p.html += "</table></details>\n";
}

void stats(Page& p, const RunData& run) {
  const auto& m = run.metrics;
  auto acc = to_percent(m.test_acc);
  double best = NAN, best_epoch = NAN;
  for (size_t i = 0; i < acc.size(); ++i)
    if (std::isfinite(acc[i]) && !(acc[i] <= best)) best = acc[i], best_epoch = m.epoch[i];
  double total_time = 0;
  for (double t : m.epoch_time)
    if (std::isfinite(t)) total_time += t;
  auto stat = [&](const std::string& v, const std::string& label) {
    p.html +=
        "<div class=\"stat\"><b>" + escape(v) + "</b><span>" + escape(label) + "</span></div>";
  };
  auto stat_final = [&](const Final& f, const std::string& label) {
    stat(f.value, label + (f.note.empty() ? "" : " (" + f.note + ")"));
  };
  auto loss4 = [](double v) { return format_number(v, 4); };
  p.html += "<div class=\"stats\">";
  if (m.epoch.empty()) {  // stopped (killed, or diverged) before its first epoch ended
    stat(kNoEpoch, "no accuracy or loss to show");
    p.html += "</div>\n";
    return;
  }
  // A diverged run has no final model: its last row is the last epoch it finished.
  const std::string last =
      run.diverged ? " at epoch " + epoch_label(m.epoch.back()) + ", the last before it diverged"
                   : "";
  stat_final(final_value(acc, m.epoch, pct),
             run.diverged ? "test accuracy" + last : "final test accuracy");
  stat(pct(best),
       "best test accuracy" + (std::isfinite(best) ? " (epoch " + epoch_label(best_epoch) + ")"
                                                   : std::string(" (no finite value)")));
  stat_final(final_value(m.test_loss, m.epoch, loss4),
             run.diverged ? "test loss" + last : "final test loss");
  stat(std::to_string(m.epoch.size()), "epochs");
  if (!m.epoch_time.empty()) stat(format_number(total_time, 3) + " s", "training time");
  p.html += "</div>\n";
}

void training_curves(Page& p, const RunData& run) {
  const auto& m = run.metrics;
  if (m.epoch.empty()) return;  // stats() says so
  svg::LineChart loss;
  loss.title = "Loss";
  loss.xlabel = "epoch";
  loss.ylabel = "cross-entropy (nats)";
  loss.series.push_back({"train", m.epoch, m.train_loss, kTrainColor, false, m.epoch.size() <= 30});
  loss.series.push_back({"test", m.epoch, m.test_loss, kTestColor, false, m.epoch.size() <= 30});
  svg::LineChart acc;
  acc.title = "Accuracy";
  acc.xlabel = "epoch";
  acc.ylabel = "accuracy (%)";
  acc.series.push_back(
      {"train", m.epoch, to_percent(m.train_acc), kTrainColor, false, m.epoch.size() <= 30});
  acc.series.push_back(
      {"test", m.epoch, to_percent(m.test_acc), kTestColor, false, m.epoch.size() <= 30});
  p.html += "<h3>Training curves</h3><div class=\"row\">";
  p.figure(svg::line_chart(loss),
           "Mean cross-entropy per epoch on the training set (blue) and the test set (orange).");
  p.figure(svg::line_chart(acc), "Classification accuracy per epoch, train and test.");
  p.html += "</div>\n";
}

void per_class_section(Page& p, const RunData& run) {
  if (run.per_class.empty() && run.confusion.empty()) return;
  p.html += "<h3>Per-class results</h3>";
  if (!run.per_class.empty()) {
    std::vector<double> accs;
    for (auto& r : run.per_class) accs.push_back(r.accuracy);
    const bool percent = is_percent(accs);
    size_t worst = 0;
    for (size_t i = 0; i < run.per_class.size(); ++i)
      if (run.per_class[i].accuracy < run.per_class[worst].accuracy) worst = i;
    p.html +=
        "<table "
        "class=\"per-class\"><tr><th>class</th><th>accuracy</th><th>precision</th><th>recall</"
        "th><th>F1</th><th>support</th></tr>";
    auto f = [&](double v) { return escape(pct(percent ? v : v * 100)); };
    for (size_t i = 0; i < run.per_class.size(); ++i) {
      const auto& r = run.per_class[i];
      p.html += std::string("<tr") + (i == worst ? " class=\"worst\"" : "") + "><td>" +
                std::to_string(r.cls) + "</td><td>" + f(r.accuracy) + "</td><td>" + f(r.precision) +
                "</td><td>" + f(r.recall) + "</td><td>" + f(r.f1) + "</td><td>" +
                format_number(r.support, 6) + "</td></tr>";
    }
    p.html += "</table><p class=\"note\">Highlighted: the class with the lowest accuracy.</p>";
  }
  if (!run.confusion.empty()) {
    const size_t k = run.confusion.size();
    svg::Heatmap h;
    h.title = "Confusion matrix";
    h.xlabel = "predicted class";
    h.ylabel = "true class";
    h.map = svg::ColorMap::Blues;
    h.cell_labels = true;
    h.colorbar_label = "count";
    h.log_color = false;
    h.max_width = 520;
    double total = 0;
    std::vector<double> row_sum(k, 0);
    for (size_t r = 0; r < k; ++r)
      for (size_t c = 0; c < k; ++c)
        row_sum[r] += run.confusion[r][c], total += run.confusion[r][c];
    for (size_t i = 0; i < k; ++i)
      h.row_labels.push_back(std::to_string(i)), h.col_labels.push_back(std::to_string(i));
    for (auto& row : run.confusion) h.values.insert(h.values.end(), row.begin(), row.end());
    // Colour by sqrt(count) via an explicit range so the few errors stay visible next to
    // the diagonal; labels keep the raw counts.
    std::vector<double> raw = h.values;
    for (double& v : h.values) v = std::sqrt(std::max(v, 0.0));
    h.label_format = [](double v) { return format_number(std::round(v * v), 6); };
    h.tooltip = [raw, row_sum, k](int r, int c, double) {
      double n = raw[static_cast<size_t>(r) * k + c];
      return "true " + std::to_string(r) + " → predicted " + std::to_string(c) + ": " +
             format_number(n, 6) +
             (row_sum[r] > 0 ? " (" + format_number(100 * n / row_sum[r], 3) + "% of class " +
                                   std::to_string(r) + ")"
                             : "");
    };
    h.colorbar_label = "√count";
    p.html += "<div class=\"row\">";
    p.figure(svg::heatmap(h),
             "Confusion matrix on the test set (" + format_number(total, 7) +
                 " images). Rows: true class; columns: predicted class; cells show counts, "
                 "shaded by the square root of the count so that rare confusions stay visible.");
    if (!run.per_class.empty()) {
      svg::BarChart b;
      b.title = "Per-class accuracy";
      b.xlabel = "class";
      b.ylabel = "accuracy (%)";
      svg::BarGroup g{"accuracy", {}, kTestColor};
      std::vector<double> accs;
      for (auto& r : run.per_class) accs.push_back(r.accuracy);
      accs = to_percent(accs);
      double lo = *std::min_element(accs.begin(), accs.end());
      for (size_t i = 0; i < run.per_class.size(); ++i)
        b.categories.push_back(std::to_string(run.per_class[i].cls));
      g.values = accs;
      b.groups.push_back(g);
      b.ymin = std::max(0.0, std::floor((lo - 5) / 10) * 10);
      b.ymax = 100;
      b.value_labels = true;
      p.figure(svg::bar_chart(b), "Test accuracy of each class (the y axis starts at " +
                                      format_number(*b.ymin) + "%).");
    }
    p.html += "</div>\n";
  }
}

void misclassified_section(Page& p, const RunData& run, const ReportOptions& o) {
  if (run.misclassified.empty()) return;
  p.html += "<h3>Misclassified examples</h3>";
  std::map<std::pair<int, int>, int> pairs;
  for (auto& m : run.misclassified) pairs[{m.true_class, m.predicted}]++;
  std::vector<std::pair<int, std::pair<int, int>>> common;
  for (auto& [k, v] : pairs) common.push_back({v, k});
  std::sort(common.rbegin(), common.rend());
  p.html += "<p>" + std::to_string(run.misclassified.size()) +
            " test images are misclassified. Most frequent confusions (true → predicted): ";
  for (size_t i = 0; i < common.size() && i < 5; ++i)
    p.html += (i ? ", " : "") + std::to_string(common[i].second.first) + " → " +
              std::to_string(common[i].second.second) + " (" + std::to_string(common[i].first) +
              ")";
  p.html += ".</p>";
  if (run.misclassified_images.empty()) {
    p.html +=
        "<p class=\"note\">No misclassified_images.npy in this run; digits are not shown.</p>";
    return;
  }
  std::vector<svg::GridImage> imgs;
  for (size_t i = 0; i < run.misclassified_images.size() && i < o.max_misclassified; ++i) {
    const auto& m = run.misclassified[i];
    const auto& im = run.misclassified_images[i];
    svg::GridImage g{im.height,
                     im.width,
                     im.channels,
                     im.pixels,
                     std::to_string(m.predicted) + "/" + std::to_string(m.true_class),
                     "test image " + std::to_string(m.index) + ": predicted " +
                         std::to_string(m.predicted) + ", true " + std::to_string(m.true_class)};
    imgs.push_back(std::move(g));
  }
  const int scale = imgs.front().width <= 32 ? 2 : 1;
  p.figure(svg::image_grid(imgs, 12, scale),
           "The first " + std::to_string(imgs.size()) + " of " +
               std::to_string(run.misclassified.size()) +
               " misclassified test images, labelled <code>pred/true</code>.");
}

Grid metrics_grid(const Metrics& m, const std::vector<std::vector<double>>& cols) {
  Grid g;
  g.epochs = m.epoch;
  g.layers = static_cast<int>(cols.size());
  g.v = cols;
  return g;
}

void metrics_layers_section(Page& p, const RunData& run, const ReportOptions& o) {
  const auto& m = run.metrics;
  const Grid act_std = metrics_grid(m, m.act_std), act_mean = metrics_grid(m, m.act_mean),
             grad = metrics_grid(m, m.grad_norm);
  // Columns without a value (no rows yet, or gradients not recorded) draw no figure.
  const bool stds = !drawn_epochs(act_std, false).empty(),
             means = !drawn_epochs(act_mean, false).empty(),
             grads = !drawn_epochs(grad, true).empty();
  if (!stds && !means && !grads) return;
  const std::string L = std::to_string(m.layers());
  p.html += "<h3>Per-layer summary from metrics.csv</h3><div class=\"row\">";
  if (stds)
    p.figure(depth_profile(act_std, "Activation std by depth", "std of activations", false,
                           o.max_epoch_curves),
             "Standard deviation of each layer's activations (" + L +
                 " layers), one curve per epoch (dark: early, light: late). "
                 "A curve that shrinks or grows with depth shows signal vanishing or exploding in "
                 "the forward pass.");
  if (grads)
    p.figure(
        depth_profile(grad, "Gradient norm by depth", "‖∇W‖ (log scale)", true, o.max_epoch_curves),
        "Norm of each layer's weight gradient, log scale, one curve per epoch. Gradients "
        "that fall by decades "
        "toward the input are the vanishing-gradient picture.");
  p.html += "</div><div class=\"row\">";
  if (means)
    p.figure(per_layer_over_epochs(run, act_mean, "Activation mean", "mean of activations", false),
             "Mean activation of each layer across epochs" +
                 std::string(m.layers() > 12 ? " (layer × epoch)."
                                             : ", one curve per layer (dark: input side)."));
  if (grads)
    p.figure(per_layer_over_epochs(run, grad, "Gradient norm over training", "‖∇W‖", true),
             "Weight-gradient norm of each layer across epochs, log scale" +
                 std::string(m.layers() > 12 ? " (colour: log10)." : "."));
  p.html += "</div>\n";
  if (!grads)
    p.html +=
        "<p class=\"note\">metrics.csv's grad_norm_i columns hold no gradient norm (they are "
        "recorded with <code>--diagnostics grads</code>).</p>\n";
}

// Whether one bin of a histogram holds more than 20 times the median of its nonzero bins.
bool has_spike(const std::vector<double>& counts) {
  std::vector<double> nz;
  for (double c : counts)
    if (c > 0) nz.push_back(c);
  if (nz.size() < 3) return false;
  const double top = *std::max_element(nz.begin(), nz.end());
  std::nth_element(nz.begin(), nz.begin() + std::ptrdiff_t(nz.size() / 2), nz.end());
  return top > 20.0 * nz[nz.size() / 2];
}

void histogram_section(Page& p, const RunData& run, const Diagnostics& d, const ReportOptions& o) {
  if (d.histograms.empty()) return;
  p.html += "<h3>Activation histograms</h3>";
  bool has_pre = false, has_post = false;
  for (auto& h : d.histograms) (h.post ? has_post : has_pre) = true;
  const std::string group = "g" + std::to_string(++p.groups);
  const std::string shown = has_post ? "post" : "pre";
  if (has_pre && has_post)
    p.html += "<p><button class=\"toggle on\" data-group=\"" + group +
              "\" data-show=\"post\">post-activation</button>"
              "<button class=\"toggle\" data-group=\"" +
              group + "\" data-show=\"pre\">pre-activation</button></p>";
  size_t rows = d.histograms.front().counts.size();
  auto idx = pick(rows, o.max_epoch_curves);
  ++p.figures;
  const int fig = p.figures;
  for (const char* kind : {"post", "pre"}) {
    const bool post = std::string(kind) == "post";
    if ((post && !has_post) || (!post && !has_pre)) continue;
    p.html += "<div class=\"multiples" + std::string(kind == shown ? "" : " hidden") +
              "\" data-group=\"" + group + "\" data-member=\"" + kind + "\">";
    for (auto& h : d.histograms) {
      if (h.post != post) continue;
      svg::HistogramOverlay ov;
      ov.title = layer_name(run, h.layer) + (static_cast<size_t>(h.layer) < d.layers.size() &&
                                                     !d.layers[h.layer].activation.empty()
                                                 ? " (" + d.layers[h.layer].activation + ")"
                                                 : "");
      ov.xlabel = std::string(post ? "post" : "pre") + "-activation value";
      ov.width = 240;
      ov.height = 170;
      for (size_t i : idx) {
        if (i >= h.counts.size()) continue;
        ov.counts.push_back(h.counts[i]);
        if (h.edges.size() > 1) ov.curve_edges.push_back(h.edges[i]);
        ov.curve_values.push_back(i < d.epochs.size() ? d.epochs[i] : static_cast<double>(i));
      }
      // A spike (ReLU's zeros, saturated tanh/sigmoid units) would flatten everything else on
      // a linear axis: such panels get a log axis.
      ov.log_y = std::any_of(ov.counts.begin(), ov.counts.end(), has_spike);
      ov.ylabel = ov.log_y ? "fraction (log scale)" : "fraction";
      ov.edges = h.edges.front();
      // The edge bins also hold what fell outside the range fixed at epoch 0: say how much, at
      // the last epoch shown, so a pile-up there is not read as a peak of the distribution.
      std::string note;
      const size_t last = idx.empty() ? 0 : idx.back();
      if (last < h.outside.size() && last < h.counts.size()) {
        double total = 0;
        for (double c : h.counts[last]) total += c;
        const double below = h.outside[last][0], above = h.outside[last][1];
        auto share = [&](double n) { return format_number(100.0 * n / total, 3) + "%"; };
        if (total > 0 && (below > 0 || above > 0))
          note = "epoch " +
                 (last < d.epochs.size() ? epoch_label(d.epochs[last]) : std::to_string(last)) +
                 ": " + (below > 0 ? share(below) + " below the range" : "") +
                 (below > 0 && above > 0 ? ", " : "") +
                 (above > 0 ? share(above) + " above it" : "") + " (in the edge bins)";
      }
      p.panel(svg::histogram_overlay(ov), escape(note));
    }
    p.html += "</div>";
  }
  p.html +=
      "<p class=\"caption\" style=\"font-size:12.5px\"><b>Figure " + std::to_string(fig) +
      ".</b> Distribution of each layer's activations, one panel per layer, with " +
      std::to_string(idx.size()) +
      " epochs overlaid (dark: early, light: late). Each curve is normalised to sum to 1. Panels "
      "where one bin holds over 20 times the median bin (ReLU's zeros, saturated units) have a "
      "log scale. The ranges are fixed at initialization; values outside them are counted in "
      "the first or last bin, and a panel's note gives their share at the last epoch shown.</p>\n";
}

void activation_section(Page& p, const RunData& run, const Diagnostics& d, const ReportOptions& o) {
  if (d.activations.empty()) return;
  auto all_post = [](const ActivationRow& r) { return r.post && r.cls == -1; };
  Grid mean = grid_of(
      d.activations, [](auto& r) { return r.mean; }, all_post);
  Grid std_ = grid_of(
      d.activations, [](auto& r) { return r.std; }, all_post);
  Grid pre_std = grid_of(
      d.activations, [](auto& r) { return r.std; }, [](auto& r) { return !r.post && r.cls == -1; });
  p.html += "<h3>Activation statistics</h3><div class=\"row\">";
  p.figure(depth_profile(mean, "Post-activation mean by depth", "mean", false, o.max_epoch_curves),
           "Mean post-activation of each layer over all test samples, one curve per epoch.");
  p.figure(depth_profile(std_, "Post-activation std by depth", "std (log scale)", true,
                         o.max_epoch_curves),
           "Standard deviation of each layer's post-activations, log scale, one curve per epoch.");
  p.html += "</div><div class=\"row\">";
  p.figure(layer_epoch_heatmap(run, std_, "Post-activation std (layer × epoch)", "std", true,
                               svg::ColorMap::Viridis),
           "Post-activation std for every layer and epoch (colour: log scale; hover for values).");
  if (pre_std.layers > 0)
    p.figure(layer_epoch_heatmap(run, pre_std, "Pre-activation std (layer × epoch)", "std", true,
                                 svg::ColorMap::Viridis),
             "Pre-activation std for every layer and epoch (colour: log scale).");
  p.html += "</div>\n";

  // Per-class profiles at the last epoch.
  std::set<int> present;
  double last_epoch = -INFINITY;
  for (auto& r : d.activations)
    if (r.cls >= 0) present.insert(r.cls), last_epoch = std::max(last_epoch, r.epoch);
  if (present.empty()) return;
  std::vector<int> classes;
  if (!o.classes.empty()) {
    for (int c : o.classes) {
      GL_CHECK(present.count(c),
               "--classes: class {} is not in the per-class statistics of {} (classes {} to {})", c,
               run.dir, *present.begin(), *present.rbegin());
      classes.push_back(c);
    }
  } else {
    for (int c : present)
      if (classes.size() < 10) classes.push_back(c);
  }
  if (classes.empty()) return;
  svg::LineChart cm, cs;
  cm.title = "Per-class mean by depth (epoch " + epoch_label(last_epoch) + ")";
  cs.title = "Per-class std by depth (epoch " + epoch_label(last_epoch) + ")";
  cm.xlabel = cs.xlabel = "layer (input → output)";
  cm.ylabel = "post-activation mean";
  cs.ylabel = "post-activation std";
  for (size_t k = 0; k < classes.size(); ++k) {
    svg::Series sm, ss;
    sm.name = ss.name = "class " + std::to_string(classes[k]);
    sm.color = ss.color = svg::category_color(static_cast<int>(k));
    std::map<int, std::pair<double, double>> by_layer;
    for (auto& r : d.activations)
      if (r.post && r.cls == classes[k] && r.epoch == last_epoch)
        by_layer[r.layer] = {r.mean, r.std};
    for (auto& [l, v] : by_layer)
      sm.x.push_back(l), sm.y.push_back(v.first), ss.x.push_back(l), ss.y.push_back(v.second);
    cm.series.push_back(sm);
    cs.series.push_back(ss);
  }
  p.html += "<div class=\"row\">";
  p.figure(svg::line_chart(cm),
           "Mean post-activation per layer for samples of each chosen class, at the last epoch.");
  p.figure(
      svg::line_chart(cs),
      "Standard deviation of post-activations per layer for each chosen class, at the last epoch.");
  p.html += "</div>\n";
}

void units_section(Page& p, const RunData& run, const Diagnostics& d) {
  if (d.units.empty()) return;
  Grid dead = grid_of(
      d.units, [](auto& r) { return 100 * r.dead; }, [](auto&) { return true; });
  Grid sat = grid_of(
      d.units, [](auto& r) { return 100 * r.saturated; }, [](auto&) { return true; });
  const size_t e = dead.epochs.size() - 1;
  svg::LineChart c;
  c.title = "Dead and saturated units (epoch " + epoch_label(dead.epochs[e]) + ")";
  c.xlabel = "layer (input → output)";
  c.ylabel = "units (%)";
  c.ymin = 0.0;
  svg::Series sd{"dead", {}, {}, "#444444", false, dead.layers <= 16};
  svg::Series ss{"saturated", {}, {}, "#d55e00", true, dead.layers <= 16};
  for (int l = 0; l < dead.layers; ++l) {
    sd.x.push_back(l), sd.y.push_back(dead.v[l][e]);
    ss.x.push_back(l), ss.y.push_back(sat.v[l][e]);
  }
  c.series = {sd, ss};
  p.html += "<h3>Dead and saturated units</h3><div class=\"row\">";
  p.figure(svg::line_chart(c),
           "Share of units in each layer that are dead (never active on the test set) or "
           "saturated (always in the flat part of the activation), at the last epoch.");
  // A fraction is NaN where it is not measured: dead units for tanh and sigmoid layers,
  // saturated ones for the ReLU family. The dead-unit heatmap of a tanh network would be empty,
  // so the saturation heatmap is drawn where some layer has that measured and not the other.
  bool any_dead = false, sat_only = false, dead_gaps = false;
  for (int l = 0; l < dead.layers; ++l)
    for (size_t k = 0; k < dead.epochs.size(); ++k) {
      const bool has_dead = std::isfinite(dead.v[l][k]);
      any_dead |= has_dead;
      dead_gaps |= !has_dead;
      sat_only |= !has_dead && std::isfinite(sat.v[l][k]);
    }
  const std::string blank = " Blank cells: not measured for the layer's activation.";
  if (any_dead)
    p.figure(layer_epoch_heatmap(run, dead, "Dead units (layer × epoch)", "%", false,
                                 svg::ColorMap::Viridis),
             "Percentage of dead units for every layer and epoch." +
                 (dead_gaps ? blank : std::string()));
  if (sat_only) {
    bool sat_gaps = false;
    for (auto& row : sat.v)
      for (double v : row) sat_gaps |= !std::isfinite(v);
    p.figure(layer_epoch_heatmap(run, sat, "Saturated units (layer × epoch)", "%", false,
                                 svg::ColorMap::Viridis),
             "Percentage of saturated units for every layer and epoch." +
                 (sat_gaps ? blank : std::string()));
  }
  p.html += "</div>\n";
  if (!any_dead && !sat_only)
    p.html +=
        "<p class=\"note\">No layer has dead or saturated units measured (dead units are "
        "measured for ReLU-family activations, saturated units for tanh and sigmoid), so there "
        "is no layer × epoch heatmap.</p>\n";
  if (!d.dead_units.empty() || !d.saturated_units.empty()) {
    p.html +=
        "<details><summary>unit lists" +
        (d.units_epoch ? " at epoch " + epoch_label(*d.units_epoch) : std::string()) +
        "</summary><table><tr><th class=\"l\">layer</th><th>dead</th><th class=\"l\">dead units "
        "(first 20)</th><th>saturated</th><th class=\"l\">saturated units (first 20)</th></tr>";
    const size_t n = std::max(d.dead_units.size(), d.saturated_units.size());
    auto list = [](const std::vector<std::vector<int64_t>>& v, size_t l) {
      std::string s;
      if (l >= v.size()) return s;
      for (size_t i = 0; i < v[l].size() && i < 20; ++i) {
        if (i) s += ' ';
        s += std::to_string(v[l][i]);
      }
      if (v[l].size() > 20) s += " …";
      return s;
    };
    // Whether units.csv has layer l's fraction measured (at the lists' epoch, else at the
    // layer's last row): a layer whose fraction is NaN has an empty list that means "not
    // measured", not "no such units". A layer without rows keeps its list's count.
    auto measured = [&](size_t l, bool saturated) {
      const UnitsRow* row = nullptr;
      for (const UnitsRow& r : d.units) {
        if (r.layer != static_cast<int>(l)) continue;
        if (d.units_epoch && r.epoch == *d.units_epoch) {
          row = &r;
          break;
        }
        if (!row || r.epoch >= row->epoch) row = &r;
      }
      return !row || std::isfinite(saturated ? row->saturated : row->dead);
    };
    bool any_na = false;
    auto cells = [&](const std::vector<std::vector<int64_t>>& v, size_t l, bool saturated) {
      if (!measured(l, saturated)) {
        any_na = true;
        return std::string("<td>n/a</td><td class=\"l\"></td>");
      }
      return "<td>" + std::to_string(l < v.size() ? v[l].size() : 0) + "</td><td class=\"l\">" +
             list(v, l) + "</td>";
    };
    for (size_t l = 0; l < n; ++l)
      p.html += "<tr><td class=\"l\">" + escape(layer_name(run, static_cast<int>(l))) + "</td>" +
                cells(d.dead_units, l, false) + cells(d.saturated_units, l, true) + "</tr>";
    p.html += "</table>";
    if (any_na)
      p.html +=
          "<p class=\"note\">n/a: not measured for the layer's activation (dead units are "
          "measured for the ReLU family, saturated units for tanh and sigmoid).</p>";
    p.html += "</details>\n";
  }
}

void grads_section(Page& p, const RunData& run, const Diagnostics& d, const ReportOptions& o) {
  if (d.grads.empty()) return;
  auto all = [](auto&) { return true; };
  Grid wg = grid_of(
      d.grads, [](auto& r) { return r.weight_grad_norm; }, all);
  Grid ag = grid_of(
      d.grads, [](auto& r) { return r.act_grad_norm; }, all);
  Grid ur = grid_of(
      d.grads, [](auto& r) { return r.update_ratio; }, all);
  Grid wn = grid_of(
      d.grads, [](auto& r) { return r.weight_norm; }, all);
  p.html += "<h3>Gradient flow</h3>";
  // Epoch 0, before training, has weight norms only: a run stopped before its first epoch ended
  // has no gradient to draw.
  if (drawn_epochs(wg, true).empty()) {
    p.html +=
        "<p class=\"note\">grads.csv has no weight-gradient norm yet (epoch 0, before training, "
        "has none).</p>";
  } else {
    p.html += "<div class=\"row\">";
    p.figure(depth_profile(wg, "Weight-gradient norm by depth", "‖∇W‖ (log scale)", true,
                           o.max_epoch_curves),
             "Frobenius norm of each layer's weight gradient, log scale, one curve per epoch. A "
             "steady fall toward the "
             "input means vanishing gradients; a rise means exploding ones.");
    p.figure(layer_epoch_heatmap(run, wg, "Weight-gradient norm (layer × epoch)", "‖∇W‖", true,
                                 svg::ColorMap::Viridis),
             "The same norms for every layer and epoch (colour: log scale).");
    p.html += "</div>";
  }
  p.html += "<div class=\"row\">";
  if (!drawn_epochs(ag, true).empty())
    p.figure(depth_profile(ag, "Activation-gradient norm by depth", "‖∂L/∂a‖ (log scale)", true,
                           o.max_epoch_curves),
             "Norm of the loss gradient with respect to each layer's output, one curve per epoch.");
  if (!drawn_epochs(ur, true).empty())
    p.figure(
        per_layer_over_epochs(run, ur, "Update / weight ratio", "‖ΔW‖ / ‖W‖", true,
                              {{1e-3, "10⁻³"}}),
        "Size of each epoch's last weight update relative to the weights, log scale" +
            std::string(ur.layers > 12 ? " (layer × epoch, colour: log scale)"
                                       : "; the dashed line marks the usual 10⁻³ rule of thumb") +
            ".");
  if (!drawn_epochs(wn, false).empty())
    p.figure(depth_profile(wn, "Weight norm by depth", "‖W‖", false, o.max_epoch_curves),
             "Frobenius norm of each layer's weights, one curve per epoch.");
  p.html += "</div>\n";
}

void selectivity_section(Page& p, const RunData& run, const Diagnostics& d) {
  if (d.selectivity.empty()) return;
  p.html +=
      "<h3>Class selectivity</h3><div class=\"multiples\" "
      "style=\"grid-template-columns:repeat(auto-fill,minmax(320px,1fr))\">";
  ++p.figures;
  const int fig = p.figures;
  bool capped = false;
  for (auto& [layer, a] : d.selectivity) {
    const int64_t classes = a.shape[0], units = a.shape[1];
    // Order units by preferred class, then by how much they prefer it; cap the count shown,
    // taking the units class by class so that no class drops out of the figure.
    std::vector<std::tuple<int64_t, double, int64_t>> order;
    for (int64_t u = 0; u < units; ++u) {
      int64_t best = 0;
      double sum = 0;
      for (int64_t c = 0; c < classes; ++c) {
        double v = a.values[c * units + u];
        sum += v;
        if (v > a.values[best * units + u]) best = c;
      }
      double mean_other = classes > 1 ? (sum - a.values[best * units + u]) / (classes - 1) : 0;
      order.emplace_back(best, -(a.values[best * units + u] - mean_other), u);
    }
    std::sort(order.begin(), order.end());
    std::vector<int64_t> preferred;
    for (auto& o : order) preferred.push_back(std::get<0>(o));
    const std::vector<size_t> chosen = pick_per_class(preferred, 96);
    const size_t shown = chosen.size();
    capped |= shown < order.size();
    svg::Heatmap h;
    h.title = layer_name(run, layer);
    h.xlabel = "unit (sorted by preferred class)";
    h.ylabel = "class";
    h.colorbar_label = "mean";
    h.max_width = 420;
    for (int64_t c = 0; c < classes; ++c) h.row_labels.push_back(std::to_string(c));
    for (size_t i : chosen) h.col_labels.push_back(std::to_string(std::get<2>(order[i])));
    for (int64_t c = 0; c < classes; ++c)
      for (size_t i : chosen) h.values.push_back(a.values[c * units + std::get<2>(order[i])]);
    p.panel(svg::heatmap(h),
            escape(layer_name(run, layer)) + ": " + std::to_string(shown) + " of " +
                std::to_string(units) + " units" +
                (shown < order.size() ? " (each preferred class in turn, strongest first)" : ""));
  }
  p.html += "</div><p style=\"font-size:12.5px\"><b>Figure " + std::to_string(fig) +
            ".</b> Mean post-activation of units for test samples of each class (rows), units "
            "ordered by the class they respond to most." +
            (capped ? " Layers with more than 96 units show 96, taken from each preferred class "
                      "in turn (the units preferring it most first), so that every class keeps "
                      "its share."
                    : "") +
            "</p>\n";
}

void layers_table(Page& p, const Diagnostics& d) {
  if (d.layers.empty()) return;
  p.html += "<details" + std::string(d.layers.size() <= 8 ? " open" : "") + "><summary>layers (" +
            std::to_string(d.layers.size()) +
            ")</summary><table><tr><th>#</th><th class=\"l\">name</th><th "
            "class=\"l\">kind</th><th>in</th><th>out</th><th class=\"l\">activation</th></tr>";
  for (size_t i = 0; i < d.layers.size(); ++i) {
    auto& l = d.layers[i];
    p.html += "<tr><td>" + std::to_string(i) + "</td><td class=\"l\">" + escape(l.name) +
              "</td><td class=\"l\">" + escape(l.kind) + "</td><td>" + std::to_string(l.in) +
              "</td><td>" + std::to_string(l.out) + "</td><td class=\"l\">" + escape(l.activation) +
              "</td></tr>";
  }
  p.html += "</table></details>\n";
}

std::string anchor(size_t i) {
  return "run-" + std::to_string(i + 1);
}

void run_section(Page& p, const RunData& run, size_t i, const ReportOptions& o) {
  p.html += "<article class=\"run\" id=\"" + anchor(i) + "\"><h2>" + escape(run.name) +
            "</h2><p class=\"sub\"><code>" + escape(run.dir) + "</code></p>";
  stats(p, run);
  config_table(p, run);
  if (!run.notes.empty()) {
    p.html += "<p class=\"note\">";
    for (size_t k = 0; k < run.notes.size(); ++k) p.html += (k ? "; " : "") + escape(run.notes[k]);
    p.html += ".</p>";
  }
  training_curves(p, run);
  per_class_section(p, run);
  misclassified_section(p, run, o);
  metrics_layers_section(p, run, o);
  if (run.diagnostics) {
    const auto& d = *run.diagnostics;
    p.html += "<h3>Diagnostics</h3>";
    layers_table(p, d);
    histogram_section(p, run, d, o);
    activation_section(p, run, d, o);
    units_section(p, run, d);
    grads_section(p, run, d, o);
    selectivity_section(p, run, d);
  }
  p.html += optim_section_html(run.dir, p.figures);    // present when the run has optim/
  representation_section(run.dir, p.html, p.figures);  // RUN_DIR/analysis, when present
  p.html += "</article>\n";
}

// Per-layer value at the last epoch for the comparison plots: diagnostics first, metrics.csv next.
std::vector<double> last_profile(const RunData& run, bool grad) {
  if (run.diagnostics &&
      (grad ? !run.diagnostics->grads.empty() : !run.diagnostics->activations.empty())) {
    Grid g = grad ? grid_of(
                        run.diagnostics->grads, [](auto& r) { return r.weight_grad_norm; },
                        [](auto&) { return true; })
                  : grid_of(
                        run.diagnostics->activations, [](auto& r) { return r.std; },
                        [](auto& r) { return r.post && r.cls == -1; });
    std::vector<double> out;
    for (auto& row : g.v) out.push_back(row.empty() ? NAN : row.back());
    return out;
  }
  std::vector<double> out;
  for (auto& col : grad ? run.metrics.grad_norm : run.metrics.act_std)
    out.push_back(col.empty() ? NAN : col.back());
  return out;
}

void comparison_section(Page& p, const std::vector<RunData>& runs) {
  p.html += "<section id=\"comparison\"><h2>Comparison</h2>";
  p.html +=
      "<table><tr><th class=\"l\">run</th><th>epochs</th><th>final train loss</th><th>final test "
      "loss</th><th>final train acc.</th><th>final test acc.</th><th>best test acc.</th><th>time "
      "(s)</th></tr>";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& m = runs[i].metrics;
    auto acc = to_percent(m.test_acc);
    double best = NAN;
    for (double a : acc)
      if (std::isfinite(a) && !(a <= best)) best = a;
    double t = 0;
    for (double x : m.epoch_time)
      if (std::isfinite(x)) t += x;
    auto loss4 = [](double v) { return format_number(v, 4); };
    auto cell = [&](const std::vector<double>& v, const std::function<std::string(double)>& fmt) {
      const Final f = final_value(v, m.epoch, fmt);
      return "<td>" + escape(f.value) +
             (f.note.empty() ? "" : " <span class=\"note\">(" + escape(f.note) + ")</span>") +
             "</td>";
    };
    p.html += "<tr><td class=\"l\"><span class=\"swatch\" style=\"background:" +
              svg::category_color(static_cast<int>(i)) + "\"></span><a href=\"#" + anchor(i) +
              "\">" + escape(runs[i].name) + "</a></td><td>" + std::to_string(m.epoch.size()) +
              "</td>";
    if (m.epoch.empty())
      p.html += std::string("<td class=\"l note\" colspan=\"6\">") + kNoEpoch + "</td></tr>";
    else
      p.html += cell(m.train_loss, loss4) + cell(m.test_loss, loss4) +
                cell(to_percent(m.train_acc), pct) + cell(acc, pct) + "<td>" + pct(best) +
                "</td><td>" + (m.epoch_time.empty() ? svg::kMissingValue : format_number(t, 4)) +
                "</td></tr>";
  }
  p.html += "</table>";
  svg::LineChart loss, acc;
  loss.title = "Loss";
  loss.ylabel = "cross-entropy (nats)";
  acc.title = "Test accuracy";
  acc.ylabel = "accuracy (%)";
  loss.xlabel = acc.xlabel = "epoch";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& m = runs[i].metrics;
    std::string color = svg::category_color(static_cast<int>(i));
    loss.series.push_back({runs[i].name + " (test)", m.epoch, m.test_loss, color, false, false});
    loss.series.push_back(
        {runs[i].name + " (train)", m.epoch, m.train_loss, color, true, false, 1.3});
    acc.series.push_back(
        {runs[i].name + " (test)", m.epoch, to_percent(m.test_acc), color, false, false});
    acc.series.push_back(
        {runs[i].name + " (train)", m.epoch, to_percent(m.train_acc), color, true, false, 1.3});
  }
  p.html += "<div class=\"row\">";
  p.figure(svg::line_chart(loss),
           "Loss of every run: solid lines test, dashed lines train; one colour per run.");
  p.figure(svg::line_chart(acc), "Accuracy of every run: solid lines test, dashed lines train.");
  p.html += "</div>";
  svg::LineChart sd, gn;
  sd.title = "Activation std by depth (last epoch)";
  sd.ylabel = "std (log scale)";
  gn.title = "Gradient norm by depth (last epoch)";
  gn.ylabel = "‖∇W‖ (log scale)";
  sd.xlabel = gn.xlabel = "layer (input → output)";
  sd.log_y = gn.log_y = true;
  for (size_t i = 0; i < runs.size(); ++i) {
    std::string color = svg::category_color(static_cast<int>(i));
    for (auto [chart, grad] : {std::pair{&sd, false}, std::pair{&gn, true}}) {
      auto prof = last_profile(runs[i], grad);
      svg::Series s{runs[i].name, {}, prof, color, false, prof.size() <= 16};
      for (size_t l = 0; l < prof.size(); ++l) s.x.push_back(static_cast<double>(l));
      if (svg::has_drawn_point(s, chart->log_y)) chart->series.push_back(std::move(s));
    }
  }
  if (!sd.series.empty() || !gn.series.empty()) {
    p.html += "<div class=\"row\">";
    if (!sd.series.empty())
      p.figure(
          svg::line_chart(sd),
          "Post-activation standard deviation of each layer at the last epoch, one curve per run.");
    if (!gn.series.empty())
      p.figure(svg::line_chart(gn),
               "Weight-gradient norm of each layer at the last epoch, one curve per run.");
    p.html += "</div>";
  }
  p.html += "</section>\n";
}

}  // namespace

std::string render_report(const std::vector<RunData>& runs, const ReportOptions& o) {
  if (!o.classes.empty()) {
    bool per_class = false;
    for (const RunData& r : runs)
      if (r.diagnostics)
        for (const auto& a : r.diagnostics->activations) per_class |= a.cls >= 0;
    GL_CHECK(per_class,
             "--classes: no run here has per-class statistics (they come with --diagnostics "
             "activations)");
  }
  if (runs.empty()) throw std::runtime_error("report: no run directories given");
  Page p;
  p.html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
      "content=\"width=device-width, initial-scale=1\">"
      "<title>" +
      escape(o.title) + "</title><style>" + kStyle + "</style></head><body><main>\n";
  p.html += "<header><h1>" + escape(o.title) + "</h1><p class=\"sub\">" +
            std::to_string(runs.size()) + (runs.size() == 1 ? " run" : " runs") + ": ";
  for (size_t i = 0; i < runs.size(); ++i)
    p.html += (i ? ", " : "") + std::string("<code>") + escape(runs[i].dir) + "</code>";
  p.html += "</p></header><nav>";
  if (runs.size() > 1) p.html += "<a href=\"#comparison\">Comparison</a>";
  for (size_t i = 0; i < runs.size(); ++i)
    p.html += "<a href=\"#" + anchor(i) + "\">" + escape(runs[i].name) + "</a>";
  p.html += "</nav>\n";
  if (runs.size() > 1) comparison_section(p, runs);
  const size_t cols = std::min<size_t>(runs.size(), 3);
  p.html += std::string("<section class=\"runs") + (cols > 1 ? " multi" : "") +
            "\" style=\"grid-template-columns:repeat(" + std::to_string(cols) +
            ",minmax(0,1fr));--fig-max:" + (cols == 1 ? "640px" : "100%") + "\">\n";
  for (size_t i = 0; i < runs.size(); ++i) run_section(p, runs[i], i, o);
  p.html +=
      "</section><footer>Generated by <code>gradlens report</code>. Self-contained: figures are "
      "inline SVG, no network access.</footer></main><script>" +
      std::string(kScript) + "</script></body></html>\n";
  return p.html;
}

void write_report(const std::vector<std::string>& run_dirs, const std::string& out,
                  const ReportOptions& o) {
  std::vector<RunData> runs;
  for (auto& d : run_dirs) runs.push_back(load_run(d, o.max_misclassified));
  const std::string html = render_report(runs, o);
  fs::path target(out);
  if (target.has_parent_path() && !fs::exists(target.parent_path()))
    throw std::runtime_error("cannot write '" + out + "': directory '" +
                             target.parent_path().string() + "' does not exist");
  io::write_file_atomic(out, html);
}

}  // namespace gl::analysis
