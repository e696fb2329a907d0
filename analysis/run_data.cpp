// run_data.cpp: the run-directory loader. Each reader checks the columns it needs so that a
// file written by a different version fails with the file name, not a wrong figure.
#include "analysis/run_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <stdexcept>

#include "analysis/csv_read.h"
#include "engine/io/json_file.h"
#include "train/trainer.h"

namespace gl::analysis {
namespace fs = std::filesystem;
namespace {

std::vector<double> column(const CsvTable& t, const std::string& name, bool required = true) {
  int c = required ? t.require(name) : t.column(name);
  std::vector<double> out;
  if (c < 0) return out;
  for (size_t r = 0; r < t.rows.size(); ++r) out.push_back(t.number(r, c));
  return out;
}

// Layer indices and class numbers past these are not from a gradlens run (they would size the
// report's tables): refused with the file and line.
constexpr int kMaxLayer = 1 << 16, kMaxClass = 1 << 16;

// Column c of row r: an integer in [lo, hi].
int as_int(const CsvTable& t, size_t r, int c, int lo, int hi) {
  double v = t.number(r, c);
  if (!std::isfinite(v) || v != std::floor(v))
    throw std::runtime_error(t.path + ":" + std::to_string(t.line_numbers[r]) + ": column '" +
                             t.header[c] + "' must be an integer");
  if (v < lo || v > hi)
    throw std::runtime_error(t.path + ":" + std::to_string(t.line_numbers[r]) + ": column '" +
                             t.header[c] + "' must be in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "], got " + t.rows[r][c]);
  return static_cast<int>(v);
}
int as_layer(const CsvTable& t, size_t r, int c) {
  return as_int(t, r, c, 0, kMaxLayer);
}

// The layer number in a name such as hist_<layer>_post.npy or act_mean_<layer>; `where` names
// the file (and column) for the error.
int layer_in_name(const std::string& where, const std::string& digits) {
  if (digits.size() > 6 || std::stoi(digits) > kMaxLayer)
    throw std::runtime_error(where + ": layer " + digits + " is out of range (at most " +
                             std::to_string(kMaxLayer) + ")");
  return std::stoi(digits);
}

nlohmann::json read_json(const fs::path& p) {
  return io::read_json_file(p.string());
}

Metrics load_metrics(const fs::path& p) {
  CsvTable t = read_csv(p.string());
  Metrics m;
  m.epoch = column(t, "epoch");
  m.train_loss = column(t, "train_loss");
  m.test_loss = column(t, "test_loss");
  m.train_acc = column(t, "train_acc");
  m.test_acc = column(t, "test_acc");
  m.epoch_time = column(t, "epoch_time", false);
  const int layers = per_layer_columns(t.header, t.path);
  auto fill = [&](std::vector<std::vector<double>>& dst, const std::string& prefix) {
    dst.assign(layers, std::vector<double>(t.rows.size(), NAN));
    for (int i = 0; i < layers; ++i) {
      auto col = column(t, prefix + std::to_string(i), false);
      if (!col.empty()) dst[i] = col;
    }
  };
  if (layers > 0) {
    fill(m.act_mean, "act_mean_");
    fill(m.act_std, "act_std_");
    fill(m.grad_norm, "grad_norm_");
  }
  return m;
}

Image to_image(const NpyArray& a, int64_t i) {
  Image im;
  const bool chw = a.shape.size() == 4;
  const int64_t c = chw ? a.shape[1] : 1, h = a.shape[chw ? 2 : 1], w = a.shape[chw ? 3 : 2];
  im.height = static_cast<int>(h);
  im.width = static_cast<int>(w);
  im.channels = c == 3 ? 3 : 1;
  im.pixels.resize(static_cast<size_t>(h * w * im.channels));
  const int64_t base = i * c * h * w;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < im.channels; ++k) {
        double v = a.values[static_cast<size_t>(base + k * h * w + y * w + x)];
        im.pixels[static_cast<size_t>((y * w + x) * im.channels + k)] =
            static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
  return im;
}

std::vector<std::vector<int64_t>> unit_lists(const fs::path& p, std::optional<double>& epoch) {
  const auto j = read_json(p);
  if (!j.is_object() || !j.contains("layers"))
    throw std::runtime_error(p.string() +
                             ": expected {\"epoch\": E, \"layers\": [[unit, ...], ...]}");
  const io::JsonReader r(j, p.string());
  if (r.contains("epoch")) epoch = r["epoch"].get<double>();
  return r["layers"].get<std::vector<std::vector<int64_t>>>();
}

Diagnostics load_diagnostics(const fs::path& d, RunData& run) {
  Diagnostics g;
  if (fs::exists(d / "layers.json")) {
    const auto j = read_json(d / "layers.json");
    const io::JsonReader r(j, (d / "layers.json").string());
    for (const io::JsonReader& l : r["layers"].elements()) {
      LayerInfo li;
      li.name = l.get("name", std::string());
      li.kind = l.get("kind", std::string());
      li.activation = l.get("activation", std::string());
      li.in = l.get("in", int64_t{0});
      li.out = l.get("out", int64_t{0});
      g.layers.push_back(li);
    }
    g.epochs = r.get("epochs", std::vector<double>{});
  }
  if (fs::exists(d / "activations.csv")) {
    CsvTable t = read_csv((d / "activations.csv").string());
    int ce = t.require("epoch"), cl = t.require("layer"), ck = t.require("kind"),
        cc = t.require("class"), cm = t.require("mean"), cs = t.require("std"),
        cmin = t.require("min"), cmax = t.require("max");
    for (size_t r = 0; r < t.rows.size(); ++r) {
      ActivationRow a;
      a.epoch = t.number(r, ce);
      a.layer = as_layer(t, r, cl);
      const std::string& k = t.rows[r][ck];
      if (k != "pre" && k != "post")
        throw std::runtime_error(t.path + ":" + std::to_string(t.line_numbers[r]) +
                                 ": column 'kind' must be pre or post, got '" + k + "'");
      a.post = k == "post";
      a.cls = as_int(t, r, cc, -1, kMaxClass);
      a.mean = t.number(r, cm), a.std = t.number(r, cs), a.min = t.number(r, cmin),
      a.max = t.number(r, cmax);
      g.activations.push_back(a);
    }
  }
  if (fs::exists(d / "units.csv")) {
    CsvTable t = read_csv((d / "units.csv").string());
    int ce = t.require("epoch"), cl = t.require("layer"), cd = t.require("dead_fraction"),
        cs = t.require("saturated_fraction");
    for (size_t r = 0; r < t.rows.size(); ++r)
      g.units.push_back({t.number(r, ce), as_layer(t, r, cl), t.number(r, cd), t.number(r, cs)});
  }
  if (fs::exists(d / "grads.csv")) {
    CsvTable t = read_csv((d / "grads.csv").string());
    int ce = t.require("epoch"), cl = t.require("layer");
    int cw = t.column("weight_grad_norm"), cb = t.column("bias_grad_norm"),
        ca = t.column("act_grad_norm"), cn = t.column("weight_norm"), cu = t.column("update_ratio");
    auto get = [&](size_t r, int c) { return c < 0 ? NAN : t.number(r, c); };
    for (size_t r = 0; r < t.rows.size(); ++r)
      g.grads.push_back({t.number(r, ce), as_layer(t, r, cl), get(r, cw), get(r, cb), get(r, ca),
                         get(r, cn), get(r, cu)});
  }
  // Histograms: hist_<layer>_<pre|post>.npy with edges in hist_<layer>_<pre|post>_edges.npy.
  static const std::regex hist_name(R"(hist_(\d+)_(pre|post)\.npy)");
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(d)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (auto& p : files) {
    std::smatch sm;
    const std::string fname = p.filename().string();
    if (std::regex_match(fname, sm, hist_name)) {
      LayerHistogram h;
      h.layer = layer_in_name(p.string(), sm[1]);
      h.post = sm[2] == "post";
      NpyArray counts = read_npy(p.string());
      if (counts.shape.size() != 2)
        throw std::runtime_error(p.string() + ": expected counts of shape [epochs, bins]");
      fs::path ep = d / ("hist_" + std::string(sm[1]) + "_" + std::string(sm[2]) + "_edges.npy");
      if (!fs::exists(ep))
        throw std::runtime_error(p.string() + ": missing edges file " + ep.filename().string());
      NpyArray edges = read_npy(ep.string());
      const int64_t rows = counts.shape[0], bins = counts.shape[1];
      const bool shared = edges.shape.size() == 1 && edges.shape[0] == bins + 1;
      const bool per_row =
          edges.shape.size() == 2 && edges.shape[0] == rows && edges.shape[1] == bins + 1;
      if (!shared && !per_row)
        throw std::runtime_error(ep.string() + ": edges must have shape [" +
                                 std::to_string(bins + 1) + "] or [" + std::to_string(rows) + ", " +
                                 std::to_string(bins + 1) + "]");
      for (int64_t r = 0; r < rows; ++r)
        h.counts.emplace_back(counts.values.begin() + r * bins,
                              counts.values.begin() + (r + 1) * bins);
      for (int64_t r = 0; r < (shared ? 1 : rows); ++r)
        h.edges.emplace_back(edges.values.begin() + r * (bins + 1),
                             edges.values.begin() + (r + 1) * (bins + 1));
      fs::path op = d / ("hist_" + std::string(sm[1]) + "_" + std::string(sm[2]) + "_outside.npy");
      if (fs::exists(op)) {
        NpyArray out = read_npy(op.string());
        if (out.shape.size() != 2 || out.shape[0] != rows || out.shape[1] != 3)
          throw std::runtime_error(op.string() + ": expected shape [" + std::to_string(rows) +
                                   ", 3] (below, above, NaN per histogram row)");
        for (int64_t r = 0; r < rows; ++r)
          h.outside.emplace_back(out.values.begin() + r * 3, out.values.begin() + (r + 1) * 3);
      }
      g.histograms.push_back(std::move(h));
    }
    static const std::regex sel_name(R"(selectivity_(\d+)\.npy)");
    if (std::regex_match(fname, sm, sel_name)) {
      NpyArray a = read_npy(p.string());
      if (a.shape.size() != 2)
        throw std::runtime_error(p.string() + ": expected shape [classes, units]");
      g.selectivity.emplace_back(layer_in_name(p.string(), sm[1]), std::move(a));
    }
  }
  std::sort(g.histograms.begin(), g.histograms.end(), [](auto& a, auto& b) {
    return std::pair(a.layer, a.post) < std::pair(b.layer, b.post);
  });
  std::sort(g.selectivity.begin(), g.selectivity.end(),
            [](auto& a, auto& b) { return a.first < b.first; });
  if (fs::exists(d / "dead_units.json"))
    g.dead_units = unit_lists(d / "dead_units.json", g.units_epoch);
  if (fs::exists(d / "saturated_units.json"))
    g.saturated_units = unit_lists(d / "saturated_units.json", g.units_epoch);
  if (g.epochs.empty() && !g.histograms.empty()) {
    std::set<double> seen;
    for (auto& a : g.activations) seen.insert(a.epoch);
    if (seen.size() == g.histograms.front().counts.size())
      g.epochs.assign(seen.begin(), seen.end());
    else
      for (size_t i = 0; i < g.histograms.front().counts.size(); ++i)
        g.epochs.push_back(static_cast<double>(i));
  }
  (void)run;
  return g;
}

}  // namespace

int per_layer_columns(const std::vector<std::string>& header, const std::string& path) {
  static const std::regex per_layer(R"((act_mean|act_std|grad_norm)_(\d+))");
  int layers = 0;
  for (auto& h : header) {
    std::smatch sm;
    if (std::regex_match(h, sm, per_layer))
      layers = std::max(layers, layer_in_name(path + ": column " + h, sm[2]) + 1);
  }
  return layers;
}

RunData load_run(const std::string& dir, size_t max_images) {
  const fs::path d(dir);
  if (!fs::exists(d)) throw std::runtime_error("run directory '" + dir + "' does not exist");
  if (!fs::is_directory(d)) throw std::runtime_error("'" + dir + "' is not a directory");
  // gradlens train writes metrics.csv when its first epoch ends: a run stopped before then has
  // config.json without it, and no epoch to show.
  const bool has_metrics = fs::exists(d / "metrics.csv");
  if (!has_metrics && !fs::exists(d / "config.json"))
    throw std::runtime_error("run directory '" + dir + "' has no metrics.csv");
  RunData run;
  run.dir = dir;
  run.name = fs::weakly_canonical(d).filename().string();
  if (run.name.empty()) run.name = dir;
  if (has_metrics) run.metrics = load_metrics(d / "metrics.csv");
  if (fs::exists(d / "config.json")) {
    run.config = read_json(d / "config.json");
    if (!run.config.is_object())
      throw std::runtime_error((d / "config.json").string() + ": expected a JSON object");
  } else {
    run.notes.push_back("no config.json");
  }
  if (!has_metrics) run.notes.push_back("no metrics.csv");
  // diverged.json is said first: it explains what else is missing. A damaged one does not make
  // the run diverged, as in a sweep.
  std::string damage;
  if (std::optional<std::string> why = train::read_diverged_marker(d.string(), &damage)) {
    run.diverged = true;
    run.notes.insert(run.notes.begin(),
                     "diverged: " + (why->empty() ? std::string("see diverged.json") : *why));
  } else if (!damage.empty())
    run.notes.push_back("diverged.json is damaged, ignored (" + damage + ")");
  if (fs::exists(d / "per_class.csv")) {
    CsvTable t = read_csv((d / "per_class.csv").string());
    int cc = t.require("class"), ca = t.require("accuracy"), cp = t.require("precision"),
        cr = t.require("recall"), cf = t.require("f1"), cs = t.require("support");
    for (size_t r = 0; r < t.rows.size(); ++r)
      run.per_class.push_back({as_int(t, r, cc, 0, kMaxClass), t.number(r, ca), t.number(r, cp),
                               t.number(r, cr), t.number(r, cf), t.number(r, cs)});
  } else {
    run.notes.push_back("no per_class.csv");
  }
  if (fs::exists(d / "confusion.csv")) {
    CsvTable t = read_csv((d / "confusion.csv").string());
    const size_t k = t.header.size() - 1;
    if (t.rows.size() != k)
      throw std::runtime_error(t.path + ": expected a " + std::to_string(k) + "x" +
                               std::to_string(k) + " matrix, got " + std::to_string(t.rows.size()) +
                               " rows");
    for (size_t r = 0; r < t.rows.size(); ++r) {
      std::vector<double> row;
      for (size_t c = 1; c <= k; ++c) row.push_back(t.number(r, static_cast<int>(c)));
      run.confusion.push_back(std::move(row));
    }
  } else {
    run.notes.push_back("no confusion.csv");
  }
  if (fs::exists(d / "misclassified.csv")) {
    CsvTable t = read_csv((d / "misclassified.csv").string());
    int ci = t.require("index"), ct = t.require("true"), cp = t.require("pred");
    for (size_t r = 0; r < t.rows.size(); ++r)
      run.misclassified.push_back({static_cast<int64_t>(t.number(r, ci)),
                                   as_int(t, r, ct, 0, kMaxClass), as_int(t, r, cp, 0, kMaxClass)});
    if (fs::exists(d / "misclassified_images.npy")) {
      const std::string p = (d / "misclassified_images.npy").string();
      NpyArray a = read_npy(p);
      if (a.shape.size() != 3 && a.shape.size() != 4)
        throw std::runtime_error(p + ": expected shape [n, H, W] or [n, C, H, W]");
      if (a.shape.size() == 4 && a.shape[1] != 1 && a.shape[1] != 3)
        throw std::runtime_error(p + ": expected 1 or 3 channels, got " +
                                 std::to_string(a.shape[1]));
      if (a.shape[0] != static_cast<int64_t>(run.misclassified.size()))
        throw std::runtime_error(p + ": has " + std::to_string(a.shape[0]) +
                                 " images but misclassified.csv has " +
                                 std::to_string(run.misclassified.size()) + " rows");
      run.misclassified_images_total = a.shape[0];
      for (int64_t i = 0; i < a.shape[0] && static_cast<size_t>(i) < max_images; ++i)
        run.misclassified_images.push_back(to_image(a, i));
    }
  }
  if (fs::is_directory(d / "diagnostics"))
    run.diagnostics = load_diagnostics(d / "diagnostics", run);
  return run;
}

}  // namespace gl::analysis
