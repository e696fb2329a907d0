// repr_report.cpp: renders RUN_DIR/analysis for the report. Large matrices are cut to their
// leading block (heatmaps of more than ~128 x 128 cells cost megabytes of SVG); scatters draw
// one small circle per example.
#include "analysis/repr_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "analysis/npy_read.h"
#include "analysis/svg.h"
#include "engine/io/json_file.h"

namespace gl::analysis {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using svg::escape;
using svg::format_number;

json read_json(const std::string& path) {
  return io::read_json_file(path);
}

// Class labels past this are not from a dataset gradlens trains on (the scatter legends would
// run to them).
constexpr int64_t kMaxClass = 1 << 16;

// `v` as an integer in [lo, hi]; `what` names where it came from for the error.
int64_t integer_in(const json& v, int64_t lo, int64_t hi, const std::string& path,
                   const std::string& what) {
  const double d = v.is_number() ? v.get<double>() : std::nan("");
  if (!(d >= double(lo) && d <= double(hi)) || d != std::floor(d))
    throw std::runtime_error(path + ": " + what + " must be an integer in [" + std::to_string(lo) +
                             ", " + std::to_string(hi) + "], got " + v.dump());
  return int64_t(d);
}

// j[key] as a list of at least `min_size` integers in [lo, hi].
std::vector<int64_t> integer_list(const json& j, const std::string& key, size_t min_size,
                                  int64_t lo, int64_t hi, const std::string& path) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_array())
    throw std::runtime_error(path + ": \"" + key + "\" must be a list of integers");
  const json& a = j.at(key);
  if (a.size() < min_size)
    throw std::runtime_error(path + ": \"" + key + "\" has " + std::to_string(a.size()) +
                             " entries, need " + std::to_string(min_size));
  std::vector<int64_t> out;
  for (size_t i = 0; i < a.size(); ++i)
    out.push_back(integer_in(a[i], lo, hi, path, key + "[" + std::to_string(i) + "]"));
  return out;
}

// j[key] as a number: absent or null (how NaN is written) -> NaN.
double number_or_nan(const json& j, const std::string& key, const std::string& path) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nan("");
  if (!j.at(key).is_number())
    throw std::runtime_error(path + ": key '" + key + "' must be a number, got " +
                             j.at(key).dump());
  return j.at(key).get<double>();
}
double number_or_nan(const json& v) {
  return v.is_number() ? v.get<double>() : std::nan("");
}

// The split the file's examples come from, as its "split" key records it: "train" or "test";
// "" when the file does not say. The captions name it: `gradlens analyze --split train` draws
// training images, which a caption saying "test images" would misreport.
std::string split_of(const json& j, const std::string& path) {
  if (!j.contains("split")) return "";
  const json& s = j.at("split");
  if (s != "train" && s != "test")
    throw std::runtime_error(path + ": \"split\" must be \"train\" or \"test\", got " + s.dump());
  return s.get<std::string>();
}

// " of the <split> split" for a caption, nothing when the split is not recorded.
std::string of_split(const std::string& split) {
  return split.empty() ? "" : " of the " + split + " split";
}

struct Out {
  std::string& html;
  int& figures;
  void figure(const std::string& body, const std::string& caption) {
    ++figures;
    html += "<figure>" + body + "<figcaption><b>Figure " + std::to_string(figures) + ".</b> " +
            caption + "</figcaption></figure>\n";
  }
  void panels_begin(int min_px) {
    html += "<div class=\"multiples\" style=\"grid-template-columns:repeat(auto-fill,minmax(" +
            std::to_string(min_px) + "px,1fr))\">";
  }
  void panel(const std::string& body, const std::string& caption) {
    html += "<figure>" + body +
            (caption.empty() ? "" : "<figcaption>" + caption + "</figcaption>") + "</figure>";
  }
  void panels_end(const std::string& caption) {
    ++figures;
    html += "</div><p style=\"font-size:12.5px\"><b>Figure " + std::to_string(figures) + ".</b> " +
            caption + "</p>\n";
  }
};

// Layer names sorted input < h0 < h0.pre ... < h10 < logits.
int64_t layer_rank(const std::string& name) {
  if (name == "input") return -1;
  if (name == "logits") return 1 << 30;
  std::smatch m;
  static const std::regex re("h([0-9]+)(\\.pre)?");
  if (std::regex_match(name, m, re))
    return m[1].length() > 8 ? int64_t{1} << 28 : std::stoll(m[1]) * 2 + (m[2].matched ? 0 : 1);
  return 1 << 29;
}

std::vector<std::string> files_matching(const std::string& dir, const std::regex& re) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (std::regex_match(n, re)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string corr_heatmap(const NpyArray& a, const std::string& title, const std::string& ra,
                         const std::string& rb) {
  const int64_t rows = a.dim(0), cols = a.dim(1), kr = std::min<int64_t>(rows, 128),
                kc = std::min<int64_t>(cols, 128);
  svg::Heatmap h;
  h.title = title;
  h.xlabel = rb + " unit";
  h.ylabel = ra + " unit";
  h.map = svg::ColorMap::Diverging;
  h.vmin = -1;
  h.vmax = 1;
  h.colorbar_label = "Pearson r";
  h.max_width = 420;
  for (int64_t i = 0; i < kr; ++i) h.row_labels.push_back(std::to_string(i));
  for (int64_t j = 0; j < kc; ++j) h.col_labels.push_back(std::to_string(j));
  for (int64_t i = 0; i < kr; ++i)
    for (int64_t j = 0; j < kc; ++j) h.values.push_back(a.values[size_t(i * cols + j)]);
  return svg::heatmap(h);
}

void corr_part(Out& o, const std::string& dir) {
  const bool has_means = fs::exists(dir + "/corr_means.json");
  auto final_files = files_matching(dir, std::regex("corr_(.+)_(.+)\\.npy"));
  if (!has_means && final_files.empty()) return;
  o.html += "<h3>Layer cross-correlation</h3>";
  if (has_means) {
    const std::string path = dir + "/corr_means.json";
    const json j = read_json(path);
    svg::LineChart c;
    c.title = "mean |Pearson r| between layers";
    c.xlabel = "epoch (state after E epochs)";
    c.ylabel = "mean |r|";
    const io::JsonReader r(j, path);
    const auto ep = r["epochs"].get<std::vector<double>>();
    double secs = 0;
    int k = 0;
    for (const auto& [pair, vals] : r["pairs"].members()) {
      if (!vals.json().is_array() || vals.size() != ep.size())
        throw std::runtime_error(path + ": pairs." + pair + " must be a list of " +
                                 std::to_string(ep.size()) + " values (one per epoch)");
      svg::Series s;
      s.name = pair;
      s.x = ep;
      for (auto& v : vals.json()) s.y.push_back(number_or_nan(v));
      s.markers = ep.size() < 30;
      s.dashed = pair.find('-') != std::string::npos &&
                 pair.substr(0, pair.find('-')) == pair.substr(pair.find('-') + 1);
      s.color = svg::category_color(k++);
      c.series.push_back(s);
    }
    for (double s : r.get("seconds", std::vector<double>{})) secs += s;
    o.figure(svg::line_chart(c),
             "Mean absolute Pearson correlation between the units of each pair of hidden layers, "
             "measured on " +
                 std::to_string(r.get<int64_t>("examples", 0)) +
                 " test examples at the start of every epoch (<code>--analyze corr</code>; dashed: "
                 "a layer with itself: its distinct pairs of units, the diagonal of 1s left out). "
                 "Total time spent: " +
                 format_number(secs) + " s.");
  }
  // Heatmaps: the analyze command's matrices, else the last epoch recorded in training.
  std::vector<std::pair<std::string, std::string>> mats;  // (path, "a-b")
  static const std::regex re(
      "corr_(input|logits|h[0-9]+(?:\\.pre)?)_(input|logits|h[0-9]+(?:\\.pre)?)\\.npy");
  std::string source = "gradlens analyze corr";
  for (auto& f : final_files) {
    std::smatch m;
    if (std::regex_match(f, m, re)) mats.emplace_back(dir + "/" + f, m[1].str() + "-" + m[2].str());
  }
  if (mats.empty() && fs::is_directory(dir + "/corr_epochs")) {
    int64_t last = -1;
    static const std::regex ere("e([0-9]+)_(.+)_(.+)\\.npy");
    auto fl = files_matching(dir + "/corr_epochs", ere);
    for (auto& f : fl) {
      std::smatch m;
      std::regex_match(f, m, ere);
      if (m[1].length() > 9)
        throw std::runtime_error(dir + "/corr_epochs/" + f + ": epoch " + m[1].str() +
                                 " is out of range");
      last = std::max<int64_t>(last, std::stoll(m[1]));
    }
    static const std::regex lre(
        "e([0-9]+)_(input|logits|h[0-9]+(?:\\.pre)?)_(input|logits|h[0-9]+(?:\\.pre)?)\\.npy");
    for (auto& f : fl) {
      std::smatch m;
      if (std::regex_match(f, m, lre) && std::stoll(m[1]) == last)
        mats.emplace_back(dir + "/corr_epochs/" + f, m[2].str() + "-" + m[3].str());
    }
    source = "epoch " + std::to_string(last) + " of training";
  }
  if (mats.empty()) return;
  std::sort(mats.begin(), mats.end(), [](auto& x, auto& y) {
    auto split = [](const std::string& s) {
      auto d = s.find('-');
      return std::make_pair(layer_rank(s.substr(0, d)), layer_rank(s.substr(d + 1)));
    };
    return split(x.second) < split(y.second);
  });
  o.panels_begin(300);
  for (auto& [path, pair] : mats) {
    NpyArray a = read_npy(path);
    if (a.shape.size() != 2) throw std::runtime_error(path + ": expected a 2-D matrix");
    auto d = pair.find('-');
    std::string note = a.dim(0) > 128 || a.dim(1) > 128 ? " (leading 128 units)" : "";
    o.panel(corr_heatmap(a, pair, pair.substr(0, d), pair.substr(d + 1)), escape(pair) + note);
  }
  o.panels_end("Pearson correlation between the units of layer pairs i &le; j (" + escape(source) +
               "). Blank rows/columns: units constant over the examples (dead), which have no "
               "correlation.");
}

std::vector<double> column(const NpyArray& a, int64_t c) {
  std::vector<double> v;
  const int64_t cols = a.dim(1);
  for (int64_t i = 0; i < a.dim(0); ++i) v.push_back(a.values[size_t(i * cols + c)]);
  return v;
}

void scatter_files(Out& o, const std::string& dir, const std::string& prefix, bool tsne) {
  auto files = files_matching(dir, std::regex(prefix + "_(.+)\\.npy"));
  std::sort(files.begin(), files.end(), [&](auto& x, auto& y) {
    return layer_rank(x.substr(prefix.size() + 1, x.size() - prefix.size() - 5)) <
           layer_rank(y.substr(prefix.size() + 1, y.size() - prefix.size() - 5));
  });
  if (files.empty()) return;
  o.panels_begin(360);
  std::string meta;
  for (auto& f : files) {
    const std::string layer = f.substr(prefix.size() + 1, f.size() - prefix.size() - 5);
    const std::string npath = dir + "/" + f;
    NpyArray a = read_npy(npath);
    if (a.shape.size() != 2 || a.dim(1) != 3)
      throw std::runtime_error(npath + ": expected [n, 3] rows (x, y, class)");
    std::vector<int> labels;
    const std::vector<double> classes = column(a, 2);
    for (size_t i = 0; i < classes.size(); ++i)
      labels.push_back(int(integer_in(classes[i], -1, kMaxClass - 1, npath,
                                      "row " + std::to_string(i) + ": the class")));
    std::string caption = escape(layer) + ", " + std::to_string(a.dim(0)) + " examples";
    const std::string jpath = dir + "/" + prefix + "_" + layer + ".json";
    std::string xl = tsne ? "t-SNE 1" : "PC 1", yl = tsne ? "t-SNE 2" : "PC 2";
    if (fs::exists(jpath)) {
      const json j = read_json(jpath);
      const io::JsonReader jr(j, jpath);
      // A value the file leaves out or null is left out of the caption and the axis labels.
      auto part = [](const std::string& before, double v, const std::string& after,
                     int significant = 3) {
        return std::isfinite(v) ? before + format_number(v, significant) + after : "";
      };
      if (tsne) {
        const std::string method = jr.get("method", std::string());
        if (!method.empty()) caption += ", " + escape(method);
        caption +=
            part(", KL ", number_or_nan(j, "kl_divergence", jpath), "") +
            part(", ", number_or_nan(j, "seconds", jpath), " s") +
            part(", trustworthiness(k=10) ", number_or_nan(j, "trustworthiness_k10", jpath), "", 4);
      } else {
        const json& r = jr["explained_variance_ratio"].json();
        if (r.is_array() && r.size() >= 2) {
          xl += part(" (", 100 * number_or_nan(r[0]), "%)");
          yl += part(" (", 100 * number_or_nan(r[1]), "%)");
        }
      }
    }
    o.panel(scatter_svg(layer, column(a, 0), column(a, 1), labels, xl, yl), caption);
  }
  o.panels_end(tsne ? "t-SNE of each layer's activations (perplexity-calibrated, Barnes-Hut above "
                      "1000 examples), coloured by true class. Trustworthiness: the share of each "
                      "point's 10 embedded neighbours that are true neighbours, rank-weighted."
                    : "Each layer's activations projected on their first two principal "
                      "components, coloured by true class; axis labels give the variance each "
                      "component explains.");
}

void pca_part(Out& o, const std::string& dir) {
  auto files = files_matching(dir, std::regex("pca_(.+)\\.json"));
  if (files.empty()) return;
  o.html += "<h3>PCA</h3>";
  svg::LineChart c;
  c.title = "cumulative explained variance";
  c.xlabel = "components";
  c.ylabel = "fraction of variance";
  c.ymin = 0;
  c.ymax = 1;
  std::sort(files.begin(), files.end(), [](auto& x, auto& y) {
    return layer_rank(x.substr(4, x.size() - 9)) < layer_rank(y.substr(4, y.size() - 9));
  });
  int k = 0;
  std::string summary;
  for (auto& f : files) {
    const std::string path = dir + "/" + f;
    const json j = read_json(path);
    const io::JsonReader r(j, path);
    svg::Series s;
    s.name = r.get("layer", f);
    double cum = 0;
    int64_t k90 = -1, idx = 0;
    const json& ratios = r["explained_variance_ratio"].json();
    if (!ratios.is_array())
      throw std::runtime_error(path + ": \"explained_variance_ratio\" must be a list of numbers");
    for (auto& v : ratios) {
      if (!v.is_number() && !v.is_null())
        throw std::runtime_error(
            path + ": \"explained_variance_ratio\" must be a list of numbers, got " + v.dump());
      cum += number_or_nan(v);
      ++idx;
      if (k90 < 0 && cum >= 0.9) k90 = idx;
      if (idx <= 64) {
        s.x.push_back(double(idx));
        s.y.push_back(cum);
      }
    }
    s.color = svg::category_color(k++);
    c.series.push_back(s);
    summary += (summary.empty() ? "" : ", ") + escape(s.name) + " " + std::to_string(k90);
  }
  c.hlines.push_back({0.9, "90%"});
  o.figure(svg::line_chart(c),
           "Cumulative share of activation variance explained by the leading "
           "principal components (first 64 shown). Components needed for 90%: " +
               summary + ".");
  scatter_files(o, dir, "pca", false);
}

std::vector<svg::GridImage> images_of(const NpyArray& a, int64_t first, int64_t count,
                                      bool signed_weights = false) {
  // [n, H, W] or [n, C, H, W] u8, or f4 weights [n, H*W] mapped symmetrically around grey.
  std::vector<svg::GridImage> out;
  const int64_t n = a.dim(0);
  int64_t h = 0, w = 0, c = 1;
  if (signed_weights) {
    const int64_t f = a.dim(1);
    h = w = int64_t(std::lround(std::sqrt(double(f))));
    if (h * w != f) return out;
  } else if (a.shape.size() == 3) {
    h = a.dim(1);
    w = a.dim(2);
  } else {
    c = a.dim(1);
    h = a.dim(2);
    w = a.dim(3);
  }
  const int64_t per = c * h * w;
  for (int64_t i = first; i < std::min(n, first + count); ++i) {
    svg::GridImage g;
    g.height = int(h);
    g.width = int(w);
    g.channels = int(c == 3 ? 3 : 1);
    double scale = 1.0;
    if (signed_weights) {
      double m = 1e-12;
      for (int64_t t = 0; t < per; ++t) m = std::max(m, std::abs(a.values[size_t(i * per + t)]));
      scale = 127.0 / m;
    }
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t ch = 0; ch < g.channels; ++ch) {
          double v = a.values[size_t(i * per + (ch * h + y) * w + x)];
          g.pixels.push_back(uint8_t(std::clamp(signed_weights ? 128 + v * scale : v, 0.0, 255.0)));
        }
    out.push_back(std::move(g));
  }
  return out;
}

void augment_figures(Out& o, const std::string& dir, const std::string& path, const json& j);

void augment_part(Out& o, const std::string& dir) {
  if (!fs::exists(dir + "/augment.json")) return;
  const std::string path = dir + "/augment.json";
  const json j = read_json(path);
  if (!j.is_object()) throw std::runtime_error(path + ": expected a JSON object");
  augment_figures(o, dir, path, j);
}

void augment_figures(Out& o, const std::string& dir, const std::string& path, const json& j) {
  const io::JsonReader r(j, path);
  o.html += "<h3>Augmentation invariance</h3>";
  // The augmented image and the reference images both come from this split.
  const std::string split = split_of(j, path);
  if (fs::exists(dir + "/augment_images.npy")) {
    auto imgs = images_of(read_npy(dir + "/augment_images.npy"), 0, 48);
    if (fs::exists(dir + "/augment_source.npy")) {
      NpyArray s = read_npy(dir + "/augment_source.npy");
      s.shape.insert(s.shape.begin(), 1);
      auto src = images_of(s, 0, 1);
      if (!src.empty()) {
        src[0].caption = "original";
        src[0].highlight = true;
        imgs.insert(imgs.begin(), src[0]);
      }
    }
    static const json no_options = json::object();
    const io::JsonReader opt =
        r.contains("options") ? r["options"] : io::JsonReader(no_options, path);
    o.figure(svg::image_grid(imgs, 14, 2),
             "Image " + std::to_string(r.get<int64_t>("index", 0)) + of_split(split) + " (class " +
                 std::to_string(r.get<int64_t>("label", 0)) + ") and its first augmentations of " +
                 std::to_string(r.get<int64_t>("augmentations", 0)) + ": rotation &plusmn;" +
                 format_number(opt.get("rotation_deg", 0.0)) + "&deg;, translation &plusmn;" +
                 format_number(100 * opt.get("translate", 0.0)) + "%, scale " +
                 format_number(opt.get("scale_min", 1.0)) + "&ndash;" +
                 format_number(opt.get("scale_max", 1.0)) + ", shear &plusmn;" +
                 format_number(opt.get("shear_deg", 0.0)) + "&deg;, noise &sigma; " +
                 format_number(opt.get("noise_std", 0.0)) + " (Philox seed " +
                 std::to_string(opt.get<uint64_t>("seed", 0)) + ").");
  }
  svg::BarChart b;
  b.title = "feature variance across augmentations / across the dataset";
  b.ylabel = "ratio";
  b.value_labels = true;
  svg::BarGroup mean{"mean", {}, svg::category_color(0)}, med{"median", {}, svg::category_color(1)};
  for (const io::JsonReader& l : r["layers"].elements()) {
    l.object();
    b.categories.push_back(l.get("name", std::string()));
    mean.values.push_back(number_or_nan(l.json(), "mean_ratio", path));
    med.values.push_back(number_or_nan(l.json(), "median_ratio", path));
  }
  b.groups = {mean, med};
  o.figure(svg::bar_chart(b),
           "Per unit, the variance of its activation over the augmentations of one image divided "
           "by its variance over " +
               std::to_string(r.get<int64_t>("reference_examples", 0)) + " images" +
               of_split(split) +
               "; mean and median over the layer's units (dead units excluded). Below "
               "1: the unit is more invariant to the augmentation than it is to the identity of "
               "the image.");
  auto feat = files_matching(dir, std::regex("augment_featcorr_(.+)\\.npy"));
  auto samp = files_matching(dir, std::regex("augment_samplecorr_(.+)\\.npy"));
  if (feat.empty() && samp.empty()) return;
  o.panels_begin(300);
  for (auto& f : feat) {
    std::string layer = f.substr(17, f.size() - 21);
    NpyArray a = read_npy(dir + "/" + f);
    if (a.shape.size() != 2) throw std::runtime_error(dir + "/" + f + ": expected a 2-D matrix");
    o.panel(corr_heatmap(a, layer + ": unit x unit", layer, layer),
            escape(layer) + ": feature-feature correlation");
  }
  for (auto& f : samp) {
    std::string layer = f.substr(19, f.size() - 23);
    NpyArray a = read_npy(dir + "/" + f);
    if (a.shape.size() != 2) throw std::runtime_error(dir + "/" + f + ": expected a 2-D matrix");
    auto svgtext = corr_heatmap(a, layer + ": augmentation x augmentation", layer, layer);
    o.panel(svgtext, escape(layer) + ": sample-sample correlation" +
                         (a.dim(0) > 128 ? " (first 128 augmentations)" : ""));
  }
  o.panels_end(
      "Correlation structure within a layer over the augmentations of one image: between "
      "units (feature-feature) and between augmented copies (sample-sample).");
}

// One layer's neurons_<layer>.json with its class means, checked against each other.
struct NeuronsFile {
  std::string path, layer, split;
  json j;
  NpyArray mean;  // [units, classes]
  int64_t units = 0, classes = 0;
  std::vector<int64_t> order, preferred;
};

NeuronsFile read_neurons(const std::string& dir, const std::string& f) {
  NeuronsFile n;
  n.path = dir + "/" + f;
  n.layer = f.substr(8, f.size() - 13);
  n.j = read_json(n.path);
  if (!n.j.is_object()) throw std::runtime_error(n.path + ": expected a JSON object");
  n.split = split_of(n.j, n.path);
  const std::string mpath = dir + "/neurons_classmean_" + n.layer + ".npy";
  n.mean = read_npy(mpath);
  if (n.mean.shape.size() != 2) throw std::runtime_error(mpath + ": expected [units, classes]");
  n.units = n.mean.dim(0);
  n.classes = n.mean.dim(1);
  n.order = integer_list(n.j, "order", 0, 0, n.units - 1, n.path);
  n.preferred = integer_list(n.j, "preferred", size_t(n.units), -1, n.classes - 1, n.path);
  if (!n.j.contains("selectivity") || !n.j.at("selectivity").is_array() ||
      n.j.at("selectivity").size() < size_t(n.units))
    throw std::runtime_error(n.path + ": \"selectivity\" must be a list of " +
                             std::to_string(n.units) + " values (one per unit)");
  return n;
}

void neurons_part(Out& o, const std::string& dir) {
  auto files = files_matching(dir, std::regex("neurons_(input|logits|h[0-9]+(?:\\.pre)?)\\.json"));
  if (files.empty()) return;
  std::sort(files.begin(), files.end(), [](auto& x, auto& y) {
    return layer_rank(x.substr(8, x.size() - 13)) < layer_rank(y.substr(8, y.size() - 13));
  });
  std::vector<NeuronsFile> layers;
  for (auto& f : files) layers.push_back(read_neurons(dir, f));
  // One split for every layer goes in the figure's caption; files from analyses of different
  // splits name theirs under each panel.
  bool one_split = true;
  for (const NeuronsFile& n : layers) one_split &= n.split == layers.front().split;
  bool capped = false;
  o.html += "<h3>Neurons</h3>";
  o.panels_begin(340);
  for (const NeuronsFile& n : layers) {
    const std::string& layer = n.layer;
    const int64_t units = n.units, classes = n.classes;
    std::vector<int64_t> preferred;
    for (int64_t u : n.order) preferred.push_back(n.preferred[size_t(u)]);
    std::vector<int64_t> order;
    for (size_t i : pick_per_class(preferred, 128)) order.push_back(n.order[i]);
    const size_t shown = order.size();
    capped |= shown < n.order.size();
    svg::Heatmap h;
    h.title = layer;
    h.xlabel = "unit (by preferred class, then selectivity)";
    h.ylabel = "class";
    h.colorbar_label = "mean activation";
    h.max_width = 420;
    for (int64_t c = 0; c < classes; ++c) h.row_labels.push_back(std::to_string(c));
    for (size_t i = 0; i < shown; ++i) h.col_labels.push_back(std::to_string(order[i]));
    for (int64_t c = 0; c < classes; ++c)
      for (size_t i = 0; i < shown; ++i)
        h.values.push_back(n.mean.values[size_t(order[i] * classes + c)]);
    double sel = 0;
    int64_t ns = 0;
    for (auto& v : n.j.at("selectivity"))
      if (v.is_number()) {
        sel += v.get<double>();
        ++ns;
      }
    o.panel(svg::heatmap(h),
            escape(layer) + ": " + std::to_string(shown) + " of " + std::to_string(units) +
                " units" +
                (shown < n.order.size() ? " (each preferred class in turn, most selective first)"
                                        : "") +
                ", mean selectivity " + format_number(ns ? sel / double(ns) : 0.0) +
                (one_split || n.split.empty() ? "" : ", " + n.split + " split"));
  }
  o.panels_end(
      "Mean activation of each unit (columns) over the images of each class (rows)" +
      (one_split ? of_split(layers.front().split) : std::string()) +
      ", units sorted by the class they prefer and then by class selectivity "
      "(&mu;<sub>max</sub> &minus; &mu;<sub>rest</sub>) / (|&mu;<sub>max</sub>| + "
      "|&mu;<sub>rest</sub>|)." +
      (capped ? " Layers with more than 128 units show 128, taken from each preferred class in "
                "turn (its most selective first), so that every class keeps its share."
              : ""));
  // Top activating images of the most selective units.
  for (const NeuronsFile& n : layers) {
    const std::string& layer = n.layer;
    const std::string path = dir + "/neurons_top_" + layer + ".npy";
    if (!fs::exists(path)) continue;
    NpyArray t = read_npy(path);  // [units, k, H, W]
    if (t.shape.size() != 4) throw std::runtime_error(path + ": expected [units, k, H, W]");
    const int64_t k = t.dim(1), units = std::min<int64_t>(t.dim(0), 8);
    if (units == 0) continue;
    if (k < 1) throw std::runtime_error(path + ": expected at least one image per unit");
    const auto top_units = integer_list(n.j, "top_units", size_t(units), 0, n.units - 1, n.path);
    const json& sel = n.j.at("selectivity");
    NpyArray flat = t;
    flat.shape = {t.dim(0) * k, t.dim(2), t.dim(3)};
    std::vector<svg::GridImage> imgs = images_of(flat, 0, units * k);
    for (int64_t u = 0; u < units; ++u) {
      const size_t unit = size_t(top_units[size_t(u)]);
      imgs[size_t(u * k)].caption =
          "u" + std::to_string(unit) + " c" + std::to_string(n.preferred[unit]);
      imgs[size_t(u * k)].highlight = true;
      for (int64_t r = 0; r < k; ++r)
        imgs[size_t(u * k + r)].tooltip =
            "unit " + std::to_string(unit) + ", rank " + std::to_string(r + 1) + ", selectivity " +
            (sel[unit].is_number() ? format_number(sel[unit].get<double>()) : "n/a");
    }
    o.figure(svg::image_grid(imgs, int(k), 1),
             escape(layer) + ": the " + std::to_string(k) + " images" + of_split(n.split) +
                 " that activate each of the " + std::to_string(units) +
                 " most class-selective units most strongly (one row per unit; first image "
                 "labelled with the unit and its preferred class).");
  }
  if (fs::exists(dir + "/neurons_weights_h0.npy")) {
    NpyArray w = read_npy(dir + "/neurons_weights_h0.npy");
    auto imgs = images_of(w, 0, 64, true);
    if (!imgs.empty()) {
      for (size_t i = 0; i < imgs.size(); ++i) imgs[i].tooltip = "unit " + std::to_string(i);
      o.figure(svg::image_grid(imgs, 16, 1),
               "Input weights of the first " + std::to_string(imgs.size()) + " of " +
                   std::to_string(w.dim(0)) +
                   " units of h0 drawn as images (grey 0, white positive, black negative; each "
                   "unit scaled to its own largest |w|).");
    }
  }
}

}  // namespace

std::vector<size_t> pick_per_class(const std::vector<int64_t>& cls, size_t max) {
  std::vector<size_t> out;
  if (cls.size() <= max) {
    for (size_t i = 0; i < cls.size(); ++i) out.push_back(i);
    return out;
  }
  // Each class's positions in display order; the units without a class form the last group.
  std::map<int64_t, std::vector<size_t>> groups;
  for (size_t i = 0; i < cls.size(); ++i)
    groups[cls[i] < 0 ? std::numeric_limits<int64_t>::max() : cls[i]].push_back(i);
  std::vector<size_t> next(groups.size(), 0);
  while (out.size() < max) {  // ends: more units than max remain to take
    size_t g = 0;
    for (auto& [c, positions] : groups) {
      if (out.size() == max) break;
      if (next[g] < positions.size()) out.push_back(positions[next[g]++]);
      ++g;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string scatter_svg(const std::string& title, const std::vector<double>& x,
                        const std::vector<double>& y, const std::vector<int>& labels,
                        const std::string& xlabel, const std::string& ylabel, int width,
                        int height) {
  const double left = 44, right = 70, top = 26, bottom = 38;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  bool any = false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) continue;
    if (!any) {
      x0 = x1 = x[i];
      y0 = y1 = y[i];
      any = true;
    }
    x0 = std::min(x0, x[i]);
    x1 = std::max(x1, x[i]);
    y0 = std::min(y0, y[i]);
    y1 = std::max(y1, y[i]);
  }
  if (x1 - x0 <= 0) x1 = x0 + 1;
  if (y1 - y0 <= 0) y1 = y0 + 1;
  const double pw = width - left - right, ph = height - top - bottom;
  auto px = [&](double v) { return left + (v - x0) / (x1 - x0) * pw; };
  auto py = [&](double v) { return top + ph - (v - y0) / (y1 - y0) * ph; };
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << width << " " << height
    << "\" font-family=\"sans-serif\" font-size=\"11\">";
  s << "<text x=\"" << width / 2 << "\" y=\"15\" text-anchor=\"middle\" font-weight=\"bold\">"
    << escape(title) << "</text>";
  s << "<g class=\"plot\" data-x-domain=\"" << x0 << "," << x1 << "\" data-y-domain=\"" << y0 << ","
    << y1 << "\"><rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\""
    << ph << "\" fill=\"none\" stroke=\"#ccc\"/>";
  const double r = x.size() > 3000 ? 1.1 : x.size() > 500 ? 1.8 : 2.6;
  // One path of tiny circles per class keeps the SVG small; the classes present, in order.
  std::map<int, std::vector<size_t>> by_class;
  for (size_t i = 0; i < x.size() && i < labels.size(); ++i) by_class[labels[i]].push_back(i);
  for (auto& [c, points] : by_class) {
    std::string color = c < 0 ? "#999" : svg::category_color(c);
    bool open = false;
    for (size_t i : points) {
      if (!std::isfinite(x[i]) || !std::isfinite(y[i])) continue;
      if (!open) {
        s << "<path fill=\"" << color << "\" fill-opacity=\"0.75\" data-class=\"" << c << "\" d=\"";
        open = true;
      }
      s << "M" << px(x[i]) - r << " " << py(y[i]) << "a" << r << " " << r << " 0 1 0 " << 2 * r
        << " 0a" << r << " " << r << " 0 1 0 " << -2 * r << " 0";
    }
    if (open) s << "\"/>";
  }
  s << "</g>";
  s << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 8 << "\" text-anchor=\"middle\">"
    << escape(xlabel) << "</text>";
  s << "<text transform=\"translate(14," << top + ph / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape(ylabel) << "</text>";
  int row = 0;
  for (auto& [c, points] : by_class) {
    if (c < 0) continue;
    double ly = top + 8 + row++ * 16;
    s << "<circle cx=\"" << width - right + 14 << "\" cy=\"" << ly << "\" r=\"4\" fill=\""
      << svg::category_color(c) << "\"/><text x=\"" << width - right + 24 << "\" y=\"" << ly + 4
      << "\">" << c << "</text>";
  }
  s << "</svg>";
  return s.str();
}

void representation_section(const std::string& run_dir, std::string& html, int& figures) {
  const std::string dir = run_dir + "/analysis";
  if (!fs::is_directory(dir)) return;
  Out o{html, figures};
  html += "<h3 id=\"representations\">Representations</h3>";
  corr_part(o, dir);
  pca_part(o, dir);
  if (!files_matching(dir, std::regex("tsne_(.+)\\.npy")).empty()) {
    html += "<h3>t-SNE</h3>";
    scatter_files(o, dir, "tsne", true);
  }
  augment_part(o, dir);
  neurons_part(o, dir);
}

}  // namespace gl::analysis
