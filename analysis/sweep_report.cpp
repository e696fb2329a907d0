// sweep_report.cpp: renders a sweep directory as one self-contained HTML page of inline SVG.
// Runs are grouped by (activation, init, depth), one set of figures per value of any other grid
// axes (lr, ...); several seeds are averaged for the final accuracies, and the curves show the
// first seed.
#include "analysis/sweep_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "analysis/csv_read.h"
#include "analysis/run_data.h"
#include "analysis/svg.h"
#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "models/init.h"

namespace gl::analysis {
namespace {

namespace fs = std::filesystem;
using svg::escape;

const char* kStyle = R"CSS(
body { margin:0; color:#1d1d1f; background:#fafafa;
  font: 14px/1.5 "Source Sans 3","Segoe UI","Helvetica Neue",Helvetica,Arial,sans-serif; }
main { max-width: 1500px; margin: 0 auto; padding: 28px 32px 60px; background:#fff; }
h1 { font: 600 28px/1.2 Georgia,serif; margin: 0 0 4px; }
h2 { font: 600 21px/1.3 Georgia,serif; margin: 34px 0 8px; padding-bottom:4px; border-bottom: 1px solid #e3e3e3; }
h2.variant { font-size: 26px; margin-top: 56px; border-bottom: 3px solid #333; }
h3 { font-size: 15px; margin: 22px 0 6px; color:#333; text-transform: uppercase; letter-spacing:.04em; }
.sub, .note { color: #666; }
.note { font-size: 12.5px; font-style: italic; }
code { font: 12.5px/1.4 Menlo,Consolas,monospace; background:#f3f3f3; padding:1px 4px; border-radius:3px; }
nav a { color: #0072b2; text-decoration: none; margin-right: 14px; font-size: 13px; }
.row { display: flex; flex-wrap: wrap; gap: 8px 22px; }
.row > figure { flex: 1 1 380px; min-width: 0; max-width: 560px; margin: 8px 0; }
.multiples { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 4px 12px; }
figure svg { width: 100%; height: auto; display: block; }
.heat figure svg { width: auto; max-width: 100%; }
figcaption { font-size: 12.5px; color: #444; margin-top: 4px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 14px; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e3e3e3; text-align: right; }
th { border-bottom: 1.5px solid #999; }
td.l, th.l { text-align: left; }
tr.div td { background: #fff1e8; }
.stats { display:flex; flex-wrap: wrap; gap: 10px; margin: 6px 0 8px; }
.stat { border: 1px solid #e3e3e3; border-radius: 6px; padding: 5px 12px; min-width: 110px; }
.stat b { display:block; font-size: 19px; }
.stat span { font-size: 11.5px; color: #666; }
details > summary { cursor: pointer; color: #0072b2; font-size: 13px; }
footer { margin-top: 40px; color: #666; font-size: 12px; border-top: 1px solid #e3e3e3; padding-top: 8px; }
)CSS";

double mean_finite(const std::vector<double>& v) {
  double s = 0;
  int n = 0;
  for (double x : v)
    if (std::isfinite(x)) {
      s += x;
      ++n;
    }
  return n ? s / n : NAN;
}

std::string fmt_pct(double v) {
  if (!std::isfinite(v)) return svg::kMissingValue;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100 * v);
  return buf;
}
std::string pct(double v) {
  return fmt_pct(v);
}

Metrics read_metrics(const std::string& path) {
  CsvTable t = read_csv(path);
  Metrics m;
  auto col = [&](const std::string& name) {
    std::vector<double> out;
    int c = t.column(name);
    if (c < 0) return out;
    for (size_t r = 0; r < t.rows.size(); ++r) out.push_back(t.number(r, c));
    return out;
  };
  m.epoch = col("epoch");
  m.train_loss = col("train_loss");
  m.test_loss = col("test_loss");
  m.train_acc = col("train_acc");
  m.test_acc = col("test_acc");
  m.epoch_time = col("epoch_time");
  const int layers = per_layer_columns(t.header, t.path);
  auto fill = [&](std::vector<std::vector<double>>& dst, const std::string& prefix) {
    dst.assign(size_t(layers), std::vector<double>(t.rows.size(), NAN));
    for (int i = 0; i < layers; ++i) {
      auto c = col(prefix + std::to_string(i));
      if (!c.empty()) dst[size_t(i)] = c;
    }
  };
  if (layers > 0) {
    fill(m.act_mean, "act_mean_");
    fill(m.act_std, "act_std_");
    fill(m.grad_norm, "grad_norm_");
  }
  return m;
}

struct InitSpec {
  std::string name;
  std::map<std::string, std::string> args;
};
InitSpec parse_init(const std::string& s) {
  InitSpec out;
  size_t pos = s.find(':');
  out.name = s.substr(0, pos);
  while (pos != std::string::npos) {
    size_t next = s.find(':', pos + 1);
    std::string kv =
        s.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    auto eq = kv.find('=');
    if (eq != std::string::npos) out.args[kv.substr(0, eq)] = kv.substr(eq + 1);
    pos = next;
  }
  return out;
}

template <class T>
std::vector<T> distinct(const std::vector<SweepRunData>& runs, T SweepRunData::*field) {
  std::vector<T> out;
  for (auto& r : runs)
    if (std::find(out.begin(), out.end(), r.*field) == out.end()) out.push_back(r.*field);
  return out;
}

struct Page {
  std::string html;
  void figure(const std::string& svg_text, const std::string& caption) {
    html += "<figure>" + svg_text + "<figcaption>" + caption + "</figcaption></figure>\n";
  }
};

class Report {
 public:
  // prefix: of the section anchors, when one page holds several reports (one per value of the
  // grid's other axes).
  Report(const SweepData& s, const SweepReportOptions& o, std::string prefix = "")
      : s_(s), o_(o), prefix_(std::move(prefix)) {
    acts_ = distinct(s.runs, &SweepRunData::activation);
    inits_ = distinct(s.runs, &SweepRunData::init);
    depths_ = distinct(s.runs, &SweepRunData::depth);
    std::sort(depths_.begin(), depths_.end());
    if (!o.depths.empty()) {
      for (int d : o.depths)
        if (std::count(depths_.begin(), depths_.end(), d)) chosen_.push_back(d);
    } else if (depths_.size() <= 3) {
      chosen_ = depths_;
    } else {
      chosen_ = {depths_.front(), depths_[depths_.size() / 2], depths_.back()};
    }
  }

  // The first seed's run of a cell (curves), or null.
  const SweepRunData* run(const std::string& a, const std::string& i, int d) const {
    for (auto& r : s_.runs)
      if (r.activation == a && r.init == i && r.depth == d) return &r;
    return nullptr;
  }
  // Mean final test accuracy over the seeds that did not diverge; NaN when every seed diverged
  // or is missing. *runs and *diverged: the cell's runs, and how many of them diverged.
  double final_acc(const std::string& a, const std::string& i, int d, int* runs,
                   int* diverged) const {
    std::vector<double> v;
    *runs = *diverged = 0;
    for (auto& r : s_.runs)
      if (r.activation == a && r.init == i && r.depth == d) {
        ++*runs;
        if (r.status == "diverged")
          ++*diverged;
        else
          v.push_back(r.final_test_acc);
      }
    return mean_finite(v);
  }

  std::string render() {
    p_.html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
              escape(o_.title) + "</title><style>" + kStyle + "</style></head><body><main>\n";
    p_.html += "<header><h1>" + escape(o_.title) + "</h1><p class=\"sub\">sweep <code>" +
               escape(s_.name) + "</code> in <code>" + escape(s_.dir) + "</code></p></header>";
    overview();
    // Axes beyond activation, init, depth and seed (an lr, a momentum...): one set of figures
    // per combination of their values, so no figure mixes runs that differ in them.
    const std::vector<std::string> variants = distinct(s_.runs, &SweepRunData::variant);
    if (variants.size() <= 1) {
      p_.html += nav("");
      sections();
    } else {
      p_.html += "<p class=\"note\">This grid also varies " + escape(s_.variant_axes) +
                 ": one set "
                 "of figures for each of its " +
                 std::to_string(variants.size()) + " values.</p>";
      for (std::size_t k = 0; k < variants.size(); ++k) {
        SweepData part;
        part.dir = s_.dir;
        part.name = s_.name;
        for (const auto& r : s_.runs)
          if (r.variant == variants[k]) part.runs.push_back(r);
        Report sub(part, o_, "v" + std::to_string(k) + "-");
        p_.html += "<h2 class=\"variant\">" + escape(variants[k]) + "</h2>" + sub.nav(sub.prefix_);
        sub.sections();
        p_.html += sub.p_.html;
      }
    }
    runs_table();
    p_.html +=
        "<footer>Generated by <code>gradlens report</code> from summary.csv and each run's "
        "metrics.csv. Self-contained: inline SVG, no network access.</footer></main></body>"
        "</html>\n";
    return p_.html;
  }

 private:
  std::string nav(const std::string& prefix) const {
    auto link = [&](const char* id, const char* text) {
      return "<a href=\"#" + prefix + id + "\">" + text + "</a>";
    };
    return "<nav>" + link("depth", "Accuracy vs depth") + link("epochs", "Accuracy over epochs") +
           link("acts", "Activations per layer") + link("grads", "Gradient norms") +
           link("he", "He factor") + "<a href=\"#runs\">Runs</a></nav>\n";
  }

  void sections() {
    depth_section();
    epochs_section();
    activation_section();
    grads_section();
    he_factor_section();
  }

  void overview() {
    size_t diverged = 0;
    double best = NAN;
    std::string best_id;
    for (auto& r : s_.runs) {
      diverged += r.status == "diverged";
      // A diverged run's summary row keeps its last finished epoch's accuracy: not a result.
      if (r.status != "diverged" && std::isfinite(r.final_test_acc) &&
          !(r.final_test_acc <= best)) {
        best = r.final_test_acc;
        best_id = r.id;
      }
    }
    p_.html += "<div class=\"stats\">";
    auto stat = [&](const std::string& v, const std::string& label) {
      p_.html +=
          "<div class=\"stat\"><b>" + escape(v) + "</b><span>" + escape(label) + "</span></div>";
    };
    stat(std::to_string(s_.runs.size()), "runs");
    stat(std::to_string(diverged), "diverged");
    stat(fmt_pct(best), "best final test accuracy");
    stat(best_id.empty() ? svg::kMissingValue : best_id, "best run");
    p_.html += "</div>";
    for (auto& n : s_.notes) p_.html += "<p class=\"note\">" + escape(n) + "</p>";
    // With several seeds per cell, the accuracy heatmaps and the accuracy-against-depth curves
    // average them, but a curve over epochs or layers is one run's.
    std::set<long long> seeds;
    for (auto& r : s_.runs) seeds.insert(r.seed);
    if (seeds.size() > 1)
      p_.html += "<p class=\"note\">" + std::to_string(seeds.size()) +
                 " seeds: final accuracies (heatmaps, accuracy against depth, the He factor "
                 "comparison) are means over the seeds that did not diverge; curves over epochs "
                 "and per-layer profiles show one run per cell, the first of its seeds in "
                 "summary.csv order.</p>";
  }

  void depth_section() {
    p_.html += "<h2 id=\"" + prefix_ + "depth\">Final test accuracy against depth</h2>";
    // One heatmap per activation (rows: initializations, columns: depths) keeps labels whole.
    p_.html += "<div class=\"row heat\">";
    for (auto& a : acts_) {
      svg::Heatmap hm;
      hm.title = "final test accuracy (%), " + a;
      hm.xlabel = "depth (hidden layers)";
      hm.ylabel = "initialization";
      for (int d : depths_) hm.col_labels.push_back(std::to_string(d));
      std::vector<std::pair<int, int>> cell_runs;  // (runs, diverged) per cell
      for (auto& i : inits_) {
        hm.row_labels.push_back(i);
        for (int d : depths_) {
          int runs = 0, div = 0;
          double v = final_acc(a, i, d, &runs, &div);
          hm.values.push_back(std::isfinite(v) ? 100 * v : NAN);
          cell_runs.emplace_back(runs, div);
        }
      }
      hm.vmin = 0;
      hm.vmax = 100;
      hm.cell_labels = true;
      hm.colorbar_label = "test accuracy %";
      hm.max_width = 420;
      const size_t cols = depths_.size();
      const auto rows = hm.row_labels, col_labels = hm.col_labels;
      hm.tooltip = [rows, col_labels, cell_runs, cols](int r, int c, double v) {
        std::string cell = rows[size_t(r)] + ", depth " + col_labels[size_t(c)] + ": ";
        const auto [runs, div] = cell_runs[size_t(r) * cols + size_t(c)];
        if (!std::isfinite(v)) return cell + (div > 0 ? "diverged" : "no data");
        cell += svg::format_number(v) + "%";
        if (runs > 1)
          cell += fmt::format(" (mean of {} seed{}", runs - div, runs - div > 1 ? "s" : "");
        if (div > 0) cell += fmt::format("{}{} of {} diverged", runs > 1 ? "; " : " (", div, runs);
        return cell + (runs > 1 || div > 0 ? ")" : "");
      };
      p_.figure(svg::heatmap(hm), "Activation <b>" + escape(a) +
                                      "</b>: blank cells diverged (NaN/inf loss) or are "
                                      "missing; with several seeds a cell is the mean over "
                                      "those that did not diverge (its tooltip says how many "
                                      "did).");
    }
    p_.html += "</div>";
    p_.html += "<div class=\"row\">";
    for (auto& a : acts_) {
      svg::LineChart c;
      c.title = "activation " + a;
      c.xlabel = "depth";
      c.ylabel = "final test accuracy %";
      c.ymin = 0;
      c.ymax = 100;
      int all_runs = 0, all_diverged = 0;
      for (size_t k = 0; k < inits_.size(); ++k) {
        svg::Series sr{inits_[k], {}, {}, svg::category_color(int(k))};
        sr.markers = true;
        for (int d : depths_) {
          int runs = 0, div = 0;
          double v = final_acc(a, inits_[k], d, &runs, &div);
          all_runs += runs;
          all_diverged += div;
          sr.x.push_back(d);
          sr.y.push_back(std::isfinite(v) ? 100 * v : NAN);
        }
        c.series.push_back(sr);
      }
      if (all_runs > 0 && all_diverged == all_runs) c.empty_note = "every run diverged";
      p_.figure(svg::line_chart(c),
                "Final test accuracy against depth, one curve per "
                "initialization, activation <b>" +
                    escape(a) + "</b>.");
    }
    p_.html += "</div>";
  }

  svg::LineChart epochs_chart(const std::string& title,
                              const std::vector<std::pair<std::string, const SweepRunData*>>& rs) {
    svg::LineChart c;
    c.title = title;
    c.xlabel = "epoch";
    c.ylabel = "test accuracy %";
    c.width = 460;
    c.height = 290;
    for (size_t k = 0; k < rs.size(); ++k) {
      if (!rs[k].second) continue;
      const Metrics& m = rs[k].second->metrics;
      svg::Series sr{rs[k].first, m.epoch, {}, svg::category_color(int(k))};
      for (double v : m.test_acc) sr.y.push_back(100 * v);
      sr.markers = m.epoch.size() <= 12;
      add(c, std::move(sr));
    }
    return c;
  }

  // A chart of runs none of which finished an epoch would be empty: it is left out.
  void epochs_figure(const svg::LineChart& c, const std::string& caption) {
    if (!c.series.empty()) p_.figure(svg::line_chart(c), caption);
  }

  void epochs_section() {
    p_.html += "<h2 id=\"" + prefix_ + "epochs\">Test accuracy over epochs</h2>";
    for (int d : chosen_) {
      p_.html += "<h3>depth " + std::to_string(d) +
                 ": per initialization, at fixed activation</h3><div class=\"row\">";
      for (auto& a : acts_) {
        std::vector<std::pair<std::string, const SweepRunData*>> rs;
        for (auto& i : inits_) rs.emplace_back(i, run(a, i, d));
        epochs_figure(epochs_chart(a + ", depth " + std::to_string(d), rs),
                      "One curve per initialization; a curve that stops early diverged.");
      }
      p_.html += "</div><h3>depth " + std::to_string(d) +
                 ": per activation, at fixed initialization</h3><div class=\"row\">";
      for (auto& i : inits_) {
        std::vector<std::pair<std::string, const SweepRunData*>> rs;
        for (auto& a : acts_) rs.emplace_back(a, run(a, i, d));
        epochs_figure(epochs_chart(i + ", depth " + std::to_string(d), rs),
                      "One curve per activation.");
      }
      p_.html += "</div>";
    }
  }

  // Adds s to c when it has a point to draw: a run without metrics rows, or a statistic its
  // metrics.csv does not record, gets no curve and no legend entry.
  static void add(svg::LineChart& c, svg::Series s) {
    if (svg::has_drawn_point(s, c.log_y)) c.series.push_back(std::move(s));
  }

  // Per-layer profile at one metrics row (x = layer).
  static svg::Series profile(const std::string& name, const std::vector<std::vector<double>>& cols,
                             size_t row, std::string color) {
    svg::Series sr{name, {}, {}, std::move(color)};
    for (size_t l = 0; l < cols.size(); ++l) {
      sr.x.push_back(double(l));
      sr.y.push_back(row < cols[l].size() ? cols[l][row] : NAN);
    }
    return sr;
  }

  bool any_layers() const {
    for (auto& r : s_.runs)
      if (r.metrics.layers() > 0) return true;
    return false;
  }

  void activation_section() {
    p_.html += "<h2 id=\"" + prefix_ + "acts\">Activations per layer</h2>";
    if (!any_layers()) {
      p_.html +=
          "<p class=\"note\">The runs' metrics.csv files have no act_mean_i / act_std_i "
          "columns (train with --diagnostics).</p>";
      return;
    }
    for (int d : chosen_) {
      p_.html += "<h3>depth " + std::to_string(d) + ", last epoch</h3><div class=\"row\">";
      for (auto& a : acts_) {
        for (int which = 0; which < 2; ++which) {
          svg::LineChart c;
          c.title = a + ": post-activation " + (which ? "std" : "mean");
          c.xlabel = "layer";
          c.ylabel = which ? "std (log)" : "mean";
          c.log_y = which == 1;
          c.width = 460;
          c.height = 290;
          for (size_t k = 0; k < inits_.size(); ++k) {
            const SweepRunData* r = run(a, inits_[k], d);
            if (!r || r->metrics.layers() == 0 || r->metrics.epoch.empty()) continue;
            const auto& cols = which ? r->metrics.act_std : r->metrics.act_mean;
            add(c,
                profile(inits_[k], cols, r->metrics.epoch.size() - 1, svg::category_color(int(k))));
          }
          if (!c.series.empty())
            p_.figure(svg::line_chart(c), std::string("Post-activation ") +
                                              (which ? "standard deviation" : "mean") +
                                              " of each layer over the test set, one curve per "
                                              "initialization.");
        }
      }
      p_.html += "</div>";
    }
    // Layer x epoch heatmaps of the std for the deepest chosen depth, one per pair.
    int d = chosen_.back();
    p_.html += "<details><summary>act_std per layer across epochs, depth " + std::to_string(d) +
               " (every pair)</summary><div class=\"multiples\">";
    for (auto& a : acts_)
      for (auto& i : inits_) {
        const SweepRunData* r = run(a, i, d);
        if (!r || r->metrics.layers() == 0 || r->metrics.epoch.empty()) continue;
        svg::Heatmap hm;
        hm.title = a + " / " + i;
        hm.xlabel = "epoch";
        hm.ylabel = "layer";
        hm.log_color = true;
        hm.max_width = 300;
        for (double e : r->metrics.epoch) hm.col_labels.push_back(svg::format_number(e));
        for (size_t l = 0; l < r->metrics.layers(); ++l) {
          hm.row_labels.push_back(std::to_string(l));
          for (size_t e = 0; e < r->metrics.epoch.size(); ++e)
            hm.values.push_back(r->metrics.act_std[l][e]);
        }
        hm.colorbar_label = "act std";
        p_.figure(svg::heatmap(hm), escape(r->id));
      }
    p_.html += "</div></details>";
  }

  void grads_section() {
    p_.html += "<h2 id=\"" + prefix_ + "grads\">Gradient norm per layer</h2>";
    bool any_grad = false;
    for (auto& r : s_.runs)
      for (auto& col : r.metrics.grad_norm)
        for (double v : col) any_grad |= svg::drawn(v, true);
    if (!any_grad) {
      p_.html +=
          "<p class=\"note\">No gradient norms in the runs' metrics.csv (the grad_norm_i "
          "columns are recorded with <code>--diagnostics grads</code>).</p>";
      return;
    }
    for (int d : chosen_) {
      p_.html += "<h3>depth " + std::to_string(d) + "</h3><div class=\"row\">";
      for (auto& a : acts_) {
        svg::LineChart c;
        c.title = a + ": weight-gradient norm";
        c.xlabel = "layer";
        c.ylabel = "gradient norm (log)";
        c.log_y = true;
        c.width = 460;
        c.height = 290;
        for (size_t k = 0; k < inits_.size(); ++k) {
          const SweepRunData* r = run(a, inits_[k], d);
          if (!r || r->metrics.layers() == 0 || r->metrics.epoch.empty()) continue;
          auto first =
              profile(inits_[k] + " (epoch " + svg::format_number(r->metrics.epoch.front()) + ")",
                      r->metrics.grad_norm, 0, svg::category_color(int(k)));
          first.dashed = true;
          first.width = 1.2;
          add(c, std::move(first));
          if (r->metrics.epoch.size() > 1)
            add(c,
                profile(inits_[k] + " (epoch " + svg::format_number(r->metrics.epoch.back()) + ")",
                        r->metrics.grad_norm, r->metrics.epoch.size() - 1,
                        svg::category_color(int(k))));
        }
        if (!c.series.empty())
          p_.figure(svg::line_chart(c),
                    "Frobenius norm of each layer's weight gradient: dashed at the first "
                    "recorded epoch, solid at the last. Falling towards the input: vanishing "
                    "gradients; rising: exploding.");
      }
      p_.html += "</div>";
    }
  }

  void he_factor_section() {
    // He initializers that differ only in their factor.
    std::map<std::string, std::vector<std::pair<double, std::string>>> families;
    for (auto& i : inits_) {
      InitSpec is = parse_init(i);
      if (is.name != "he_normal" && is.name != "he_uniform") continue;
      // The factor the initializer used: explicit, or gain(nonlinearity)^2 (2 for ReLU, 25/9
      // for tanh...), as models::init_model derives it.
      double factor = 2.0;
      try {
        factor = models::parse_init_string(i).he_factor();
      } catch (const std::exception&) {  // not an initializer this build knows: as written
        if (is.args.count("factor")) factor = std::strtod(is.args["factor"].c_str(), nullptr);
      }
      std::string rest = is.name;
      for (auto& [k, v] : is.args)
        if (k != "factor") rest += ":" + k + "=" + v;
      families[rest].emplace_back(factor, i);
    }
    std::erase_if(families, [](auto& f) { return f.second.size() < 2; });
    p_.html += "<h2 id=\"" + prefix_ + "he\">He factor comparison</h2>";
    if (families.empty()) {
      p_.html +=
          "<p class=\"note\">The sweep does not vary the He factor (sweep e.g. "
          "<code>--inits he_normal:factor=1,he_normal:factor=2,he_normal:factor=6</code>)."
          "</p>";
      return;
    }
    for (auto& [fam, members] : families) {
      std::sort(members.begin(), members.end());
      p_.html += "<h3>" + escape(fam) + "</h3><div class=\"row\">";
      for (auto& a : acts_) {
        svg::LineChart c;
        c.title = a + ": " + fam + " by factor";
        c.xlabel = "depth";
        c.ylabel = "final test accuracy %";
        c.ymin = 0;
        c.ymax = 100;
        for (size_t k = 0; k < members.size(); ++k) {
          svg::Series sr{"factor " + svg::format_number(members[k].first),
                         {},
                         {},
                         svg::category_color(int(k))};
          sr.markers = true;
          for (int d : depths_) {
            int runs = 0, div = 0;
            double v = final_acc(a, members[k].second, d, &runs, &div);
            sr.x.push_back(d);
            sr.y.push_back(std::isfinite(v) ? 100 * v : NAN);
          }
          c.series.push_back(sr);
        }
        p_.figure(svg::line_chart(c),
                  "Final test accuracy against depth per He factor "
                  "(variance = factor / fan).");
        int d = depths_.back();
        svg::LineChart sd;
        sd.title = a + ": act std per layer, depth " + std::to_string(d);
        sd.xlabel = "layer";
        sd.ylabel = "std (log)";
        sd.log_y = true;
        for (size_t k = 0; k < members.size(); ++k) {
          const SweepRunData* r = run(a, members[k].second, d);
          if (!r || r->metrics.layers() == 0 || r->metrics.epoch.empty()) continue;
          add(sd, profile("factor " + svg::format_number(members[k].first), r->metrics.act_std, 0,
                          svg::category_color(int(k))));
        }
        if (!sd.series.empty())
          p_.figure(svg::line_chart(sd),
                    "Post-activation std per layer after the first epoch (metrics.csv's first "
                    "row; the state at initialization is in each run's diagnostics/, with "
                    "<code>--diagnostics activations</code>): how each factor's signal "
                    "propagates with depth once training has started.");
      }
      p_.html += "</div>";
    }
  }

  // A diverged run has no final accuracy (its heatmap cell is blank): summary.csv's is that of
  // its last finished epoch, shown as such.
  static std::string final_cell(const SweepRunData& r) {
    if (r.status != "diverged") return pct(r.final_test_acc);
    return std::string(svg::kMissingValue) + " <span class=\"note\">(" +
           (r.epochs > 0 ? fmt::format("diverged after epoch {}; test accuracy at epoch {}: {}",
                                       r.epochs, r.epochs, pct(r.final_test_acc))
                         : std::string("diverged before finishing an epoch")) +
           ")</span>";
  }

  void runs_table() {
    p_.html += "<h2 id=\"runs\">Runs</h2><details><summary>" + std::to_string(s_.runs.size()) +
               " runs</summary><table><tr><th class=\"l\">run</th><th class=\"l\">activation</th>"
               "<th class=\"l\">init</th><th>depth</th><th>seed</th>" +
               (s_.variant_axes.empty() ? std::string()
                                        : "<th class=\"l\">" + escape(s_.variant_axes) + "</th>") +
               "<th class=\"l\">status</th>"
               "<th>final test acc</th><th>best test acc</th></tr>";
    for (auto& r : s_.runs)
      p_.html +=
          std::string("<tr") + (r.status == "diverged" ? " class=\"div\"" : "") +
          "><td class=\"l\">" + escape(r.id) + "</td><td class=\"l\">" + escape(r.activation) +
          "</td><td class=\"l\">" + escape(r.init) + "</td><td>" + std::to_string(r.depth) +
          "</td><td>" + std::to_string(r.seed) +
          (s_.variant_axes.empty() ? std::string() : "</td><td class=\"l\">" + escape(r.variant)) +
          "</td><td class=\"l\">" + escape(r.status) + "</td><td>" + final_cell(r) + "</td><td>" +
          pct(r.best_test_acc) + "</td></tr>";
    p_.html += "</table></details>";
  }

  const SweepData& s_;
  const SweepReportOptions& o_;
  std::string prefix_;
  Page p_;
  std::vector<std::string> acts_, inits_;
  std::vector<int> depths_, chosen_;
};

}  // namespace

bool is_sweep_dir(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "sweep.json") || fs::exists(fs::path(dir) / "summary.csv"))
    return true;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind("summary-", 0) == 0 && e.path().extension() == ".csv")
      return true;
  return false;
}

SweepData load_sweep(const std::string& dir) {
  SweepData s;
  s.dir = dir;
  s.name = fs::path(dir).filename().string();
  fs::path sj = fs::path(dir) / "sweep.json";
  if (fs::exists(sj)) {
    const auto j = io::read_json_file(sj.string());
    if (j.contains("name") && j["name"].is_string()) s.name = j["name"].get<std::string>();
  }
  std::vector<std::string> files;
  if (fs::exists(fs::path(dir) / "summary.csv")) {
    files.push_back((fs::path(dir) / "summary.csv").string());
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("summary-", 0) == 0 && e.path().extension() == ".csv")
        files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (!files.empty())
      s.notes.push_back("No summary.csv: read the shard summaries (run `gradlens sweep merge " +
                        dir + "` to join them).");
  }
  if (files.empty())
    throw std::runtime_error(dir +
                             ": no summary.csv (is it a sweep directory written by "
                             "`gradlens sweep`?)");
  std::set<std::string> seen;
  for (auto& path : files) {
    CsvTable t = read_csv(path);
    int cid = t.require("run"), ca = t.require("activation"), ci = t.require("init"),
        cd = t.require("depth"), cs = t.require("seed"), cst = t.require("status"),
        cf = t.require("final_test_acc"), cb = t.require("best_test_acc"), ce = t.require("epochs");
    // The grid's other axes: the columns between run and status beside the four above.
    std::vector<int> extra;
    for (int c = cid + 1; c < cst; ++c)
      if (c != ca && c != ci && c != cd && c != cs) extra.push_back(c);
    if (s.variant_axes.empty())
      for (int c : extra)
        s.variant_axes += (s.variant_axes.empty() ? "" : ", ") + t.header[size_t(c)];
    for (size_t r = 0; r < t.rows.size(); ++r) {
      SweepRunData run;
      run.id = t.rows[r][size_t(cid)];
      if (!seen.insert(run.id).second) continue;
      run.activation = t.rows[r][size_t(ca)];
      run.init = t.rows[r][size_t(ci)];
      run.depth = int(t.number(r, cd));
      run.seed = (long long)t.number(r, cs);
      run.status = t.rows[r][size_t(cst)];
      run.final_test_acc = t.number(r, cf);
      run.best_test_acc = t.number(r, cb);
      const double epochs = t.number(r, ce);
      run.epochs = std::isfinite(epochs) ? int(epochs) : 0;
      for (int c : extra) {
        std::string value = t.rows[r][size_t(c)];
        // The depth of --hidden is the depth column already: its widths are what varies
        // ("8", "8,8" and "8,8,8" make one set of figures over depth).
        if (t.header[size_t(c)] == "hidden") {
          std::string first, w;
          bool uniform = true;
          std::string list = value;  // summary.csv writes the list's commas as '|'
          std::replace(list.begin(), list.end(), '|', ',');
          std::stringstream ws(list);
          while (std::getline(ws, w, ',')) {
            w.erase(0, w.find_first_not_of(' '));
            if (first.empty()) first = w;
            uniform = uniform && w == first;
          }
          if (uniform) value = first;
        }
        run.variant += (run.variant.empty() ? "" : ", ") + t.header[size_t(c)] + "=" + value;
      }
      fs::path m = fs::path(dir) / "runs" / run.id / "metrics.csv";
      if (fs::exists(m))
        run.metrics = read_metrics(m.string());
      else
        s.notes.push_back("run " + run.id + ": no metrics.csv");
      s.runs.push_back(std::move(run));
    }
  }
  return s;
}

std::string render_sweep_report(const SweepData& sweep, const SweepReportOptions& options) {
  if (sweep.runs.empty())
    throw std::runtime_error(sweep.dir + ": summary.csv lists no finished runs yet");
  Report r(sweep, options);
  return r.render();
}

void write_sweep_report(const std::string& dir, const std::string& out,
                        const SweepReportOptions& options) {
  const std::string html = render_sweep_report(load_sweep(dir), options);
  io::write_file_atomic(out, html);
}

}  // namespace gl::analysis
