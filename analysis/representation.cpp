// representation.cpp: glue between capture, the statistics (correlation, PCA, t-SNE, neuron
// views, augmentation variance) and the files of RUN_DIR/analysis.
#include "analysis/representation.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/correlation.h"
#include "analysis/neurons.h"
#include "analysis/pca.h"
#include "engine/io/fs.h"
#include "engine/io/tensor_io.h"

namespace gl::analysis {
namespace {

using json = nlohmann::json;

std::string out_dir(const RunModel& run) {
  std::string d = run.dir + "/analysis";
  io::ensure_dir(d);
  return d;
}

void save_f32(const std::string& path, const std::vector<double>& v, const Shape& shape) {
  std::vector<float> f(v.begin(), v.end());
  io::save_npy(path, Tensor::from_vector(f, shape));
}

// NaN-free JSON numbers: NaN becomes null.
json num(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

void log(const AnalyzeOptions& o, const std::string& s) {
  if (!o.quiet) fmt::print("{}\n", s);
}

struct Captured {
  ExampleSet ex;
  std::vector<LayerRef> layers;
  std::vector<Tensor> acts;
};

Captured capture_for(RunModel& run, const AnalyzeOptions& o, int64_t default_count) {
  Captured c;
  ExampleQuery q = o.examples;
  if (q.count == 0 && q.indices.empty() && q.cls < 0) q.count = default_count;
  if (q.count == 0 && q.indices.empty() && q.cls >= 0) q.count = 0;  // all of the class
  c.layers = resolve_layers(*run.model, o.layers);
  // Clamp the default (not an explicit --examples) to what the split has.
  if (o.examples.count == 0 && q.indices.empty()) {
    ExampleQuery all = q;
    all.count = 0;
    c.ex = select_examples(run, all);
    if (q.count > 0 && q.count < c.ex.size()) {
      q.count = std::min<int64_t>(q.count, c.ex.size());
      c.ex = select_examples(run, q);
    }
  } else {
    c.ex = select_examples(run, q);
  }
  c.acts = capture(*run.model, c.ex.images, c.layers, o.batch_size);
  return c;
}

void save_activations(const RunModel& run, const AnalyzeOptions& o, const Captured& c,
                      const std::string& dir) {
  if (!o.save_activations) return;
  for (size_t k = 0; k < c.layers.size(); ++k)
    io::save_npy(dir + "/activations_" + c.layers[k].name + ".npy", c.acts[k]);
  io::save_npy(dir + "/activations_labels.npy",
               Tensor::from_vector(c.ex.labels, {int64_t(c.ex.labels.size())}));
  io::save_npy(dir + "/activations_indices.npy",
               Tensor::from_vector(c.ex.indices, {int64_t(c.ex.indices.size())}));
  (void)run;
}

// [n, 3] rows (x, y, class): one file carries a labelled 2-D scatter.
void save_scatter(const std::string& path, const std::vector<double>& xy, int64_t stride,
                  const std::vector<int64_t>& labels) {
  const int64_t n = int64_t(labels.size());
  std::vector<float> v(static_cast<size_t>(3 * n));
  for (int64_t i = 0; i < n; ++i) {
    v[size_t(3 * i)] = float(xy[size_t(i * stride)]);
    v[size_t(3 * i + 1)] = float(xy[size_t(i * stride + 1)]);
    v[size_t(3 * i + 2)] = float(labels[size_t(i)]);
  }
  io::save_npy(path, Tensor::from_vector(v, {n, 3}));
}

}  // namespace

void analyze_corr(RunModel& run, const AnalyzeOptions& o) {
  auto c = capture_for(run, o, 1000);
  const std::string dir = out_dir(run);
  save_activations(run, o, c, dir);
  const int64_t n = c.ex.size();
  json j;
  j["examples"] = n;
  j["split"] = c.ex.split;
  j["layers"] = json::array();
  for (auto& l : c.layers) j["layers"].push_back(l.name);
  j["pairs"] = json::object();
  for (size_t a = 0; a < c.layers.size(); ++a)
    for (size_t b = a; b < c.layers.size(); ++b) {
      auto m = pearson_cross(c.acts[a].data<float>(), n, c.layers[a].width, c.acts[b].data<float>(),
                             c.layers[b].width);
      const std::string key = c.layers[a].name + "-" + c.layers[b].name;
      const double mr = mean_abs(m, a == b ? c.layers[a].width : 0);
      j["pairs"][key] = num(mr);
      save_f32(dir + "/corr_" + c.layers[a].name + "_" + c.layers[b].name + ".npy", m,
               {c.layers[a].width, c.layers[b].width});
      log(o, fmt::format("corr {}: mean |r| {:.4f} over {} examples", key, mr, n));
    }
  io::write_file_atomic(dir + "/corr.json", j.dump(1));
}

void analyze_pca(RunModel& run, const AnalyzeOptions& o) {
  auto c = capture_for(run, o, 10000);
  const std::string dir = out_dir(run);
  save_activations(run, o, c, dir);
  const int64_t n = c.ex.size();
  for (size_t k = 0; k < c.layers.size(); ++k) {
    const auto& l = c.layers[k];
    auto r = pca(c.acts[k].data<float>(), n, l.width, std::min(o.pca_components, l.width));
    json j;
    j["layer"] = l.name;
    j["examples"] = n;
    j["split"] = c.ex.split;
    j["explained_variance"] = r.explained_variance;
    j["explained_variance_ratio"] = r.explained_variance_ratio;
    io::write_file_atomic(dir + "/pca_" + l.name + ".json", j.dump());
    if (r.components >= 2)
      save_scatter(dir + "/pca_" + l.name + ".npy", r.projection, r.components, c.ex.labels);
    double two = r.explained_variance_ratio[0] + (l.width > 1 ? r.explained_variance_ratio[1] : 0);
    log(o, fmt::format("pca {}: first 2 components explain {:.1f}% of the variance", l.name,
                       100 * two));
  }
}

void analyze_tsne(RunModel& run, const AnalyzeOptions& o) {
  auto c = capture_for(run, o, 10000);
  const std::string dir = out_dir(run);
  save_activations(run, o, c, dir);
  const int64_t n = c.ex.size();
  for (size_t k = 0; k < c.layers.size(); ++k) {
    const auto& l = c.layers[k];
    TsneOptions to = o.tsne;
    to.verbose = !o.quiet && to.verbose;
    auto r = tsne(c.acts[k].data<float>(), n, l.width, to);
    json j;
    j["layer"] = l.name;
    j["examples"] = n;
    j["split"] = c.ex.split;
    j["method"] = r.method;
    j["perplexity"] = to.perplexity;
    j["iterations"] = to.iterations;
    j["theta"] = to.theta;
    j["kl_divergence"] = num(r.kl_divergence);
    j["seconds"] = r.seconds;
    j["seconds_affinities"] = r.seconds_affinities;
    if (o.trustworthiness && n > 21) {
      double t = trustworthiness(c.acts[k].data<float>(), n, l.width, r.embedding.data(), 2, 10);
      j["trustworthiness_k10"] = t;
      log(o, fmt::format(
                 "tsne {}: {} examples, {} in {:.1f} s, KL {:.3f}, trustworthiness(k=10) {:.4f}",
                 l.name, n, r.method, r.seconds, r.kl_divergence, t));
    } else {
      log(o, fmt::format("tsne {}: {} examples, {} in {:.1f} s, KL {:.3f}", l.name, n, r.method,
                         r.seconds, r.kl_divergence));
    }
    io::write_file_atomic(dir + "/tsne_" + l.name + ".json", j.dump(1));
    save_scatter(dir + "/tsne_" + l.name + ".npy", r.embedding, 2, c.ex.labels);
  }
}

std::vector<double> variance_ratio(const float* aug, int64_t m, const float* data, int64_t n,
                                   int64_t d) {
  auto var = [d](const float* x, int64_t rows) {
    std::vector<double> mean(static_cast<size_t>(d), 0.0), v(static_cast<size_t>(d), 0.0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < d; ++j) mean[j] += x[i * d + j];
    for (auto& q : mean) q /= double(rows);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < d; ++j) v[j] += std::pow(x[i * d + j] - mean[j], 2);
    for (auto& q : v) q /= double(rows - 1);
    return v;
  };
  GL_CHECK(m >= 2 && n >= 2, "variance ratio: need 2 or more rows ({} augmentations, {} examples)",
           m, n);
  auto va = var(aug, m), vd = var(data, n);
  std::vector<double> r(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) r[j] = vd[j] > 0 ? va[j] / vd[j] : std::nan("");
  return r;
}

void analyze_augment(RunModel& run, const AnalyzeOptions& o) {
  GL_CHECK(o.augmentations >= 2, "--augmentations {}: need at least 2", o.augmentations);
  ExampleQuery one;
  one.split = o.examples.split;
  one.indices = {o.augment_index};
  one.indices_flag = "--image";
  ExampleSet src = select_examples(run, one);
  const int64_t f = src.channels * src.height * src.width, m = o.augmentations;
  Tensor aug;
  std::vector<uint8_t> aug_u8;
  try {
    aug = Tensor::empty({m, f}, DType::f32);
    aug_u8.resize(static_cast<size_t>(m * f));
  } catch (const std::exception& e) {  // gl::Error from the allocator, std::bad_alloc
    throw Error(
        fmt::format("--augmentations {}: {} augmented {}-value images do not fit in "
                    "memory ({})",
                    m, m, f, e.what()));
  }
  for (int64_t a = 0; a < m; ++a) {
    float* dst = aug.data<float>() + a * f;
    data::augment_image(src.pixels.data(), src.channels, src.height, src.width, o.augment,
                        uint64_t(a), dst);
    for (int64_t t = 0; t < f; ++t) aug_u8[size_t(a * f + t)] = uint8_t(std::lround(dst[t] * 255));
    normalize_in_place(run, dst, f);
  }
  auto layers = resolve_layers(*run.model, o.layers);
  auto acts = capture(*run.model, aug, layers, o.batch_size);
  ExampleQuery ref;
  ref.split = o.examples.split;
  ExampleSet all = select_examples(run, ref);
  ref.count = std::min(o.augment_reference, all.size());
  ExampleSet refset = select_examples(run, ref);
  auto ref_acts = capture(*run.model, refset.images, layers, o.batch_size);

  const std::string dir = out_dir(run);
  json j;
  j["split"] = src.split;
  j["index"] = o.augment_index;
  j["label"] = src.labels[0];
  j["augmentations"] = m;
  j["reference_examples"] = refset.size();
  j["options"] = {{"rotation_deg", o.augment.rotation_deg},
                  {"translate", o.augment.translate},
                  {"scale_min", o.augment.scale_min},
                  {"scale_max", o.augment.scale_max},
                  {"shear_deg", o.augment.shear_deg},
                  {"noise_std", o.augment.noise_std},
                  {"seed", o.augment.seed}};
  j["layers"] = json::array();
  for (size_t k = 0; k < layers.size(); ++k) {
    const auto& l = layers[k];
    auto r =
        variance_ratio(acts[k].data<float>(), m, ref_acts[k].data<float>(), refset.size(), l.width);
    std::vector<double> fin;
    for (double v : r)
      if (std::isfinite(v)) fin.push_back(v);
    std::sort(fin.begin(), fin.end());
    double mean = 0;
    for (double v : fin) mean += v;
    mean = fin.empty() ? std::nan("") : mean / double(fin.size());
    double median = fin.empty() ? std::nan("") : fin[fin.size() / 2];
    j["layers"].push_back({{"name", l.name},
                           {"units", l.width},
                           {"mean_ratio", num(mean)},
                           {"median_ratio", num(median)},
                           {"undefined_units", int64_t(r.size() - fin.size())}});
    save_f32(dir + "/augment_ratio_" + l.name + ".npy", r, {l.width});
    // Intra-layer structure under augmentation, for the first and the last layer.
    if (k == 0 || k + 1 == layers.size()) {
      save_f32(dir + "/augment_featcorr_" + l.name + ".npy",
               feature_correlation(acts[k].data<float>(), m, l.width), {l.width, l.width});
      if (l.width >= 2)
        save_f32(dir + "/augment_samplecorr_" + l.name + ".npy",
                 sample_correlation(acts[k].data<float>(), m, l.width), {m, m});
    }
    log(o, fmt::format("augment {}: variance across {} augmentations / across the dataset: mean "
                       "{:.3f}, median {:.3f}",
                       l.name, m, mean, median));
  }
  const int64_t shown = std::min<int64_t>(m, 64);
  std::vector<uint8_t> first(aug_u8.begin(), aug_u8.begin() + shown * f);
  io::save_npy(dir + "/augment_images.npy",
               Tensor::from_vector(first, {shown, src.channels, src.height, src.width}));
  std::vector<uint8_t> orig(src.pixels.begin(), src.pixels.end());
  io::save_npy(dir + "/augment_source.npy",
               Tensor::from_vector(orig, {src.channels, src.height, src.width}));
  io::write_file_atomic(dir + "/augment.json", j.dump(1));
}

void analyze_neurons(RunModel& run, const AnalyzeOptions& o) {
  auto c = capture_for(run, o, 10000);
  const std::string dir = out_dir(run);
  const int64_t n = c.ex.size(), f = c.ex.channels * c.ex.height * c.ex.width;
  const int64_t classes = run.model->config().num_classes;
  for (size_t k = 0; k < c.layers.size(); ++k) {
    const auto& l = c.layers[k];
    auto s =
        neuron_stats(c.acts[k].data<float>(), n, l.width, c.ex.labels.data(), classes, o.top_k);
    auto order = display_order(s);
    // Most selective units get their top images saved.
    std::vector<int64_t> by_sel(static_cast<size_t>(l.width));
    for (int64_t u = 0; u < l.width; ++u) by_sel[size_t(u)] = u;
    std::stable_sort(by_sel.begin(), by_sel.end(),
                     [&](int64_t a, int64_t b) { return s.selectivity[a] > s.selectivity[b]; });
    by_sel.resize(static_cast<size_t>(std::min(o.top_units, l.width)));
    std::vector<uint8_t> imgs;
    for (int64_t u : by_sel)
      for (int64_t r = 0; r < s.k; ++r) {
        int64_t row = s.top[size_t(u * s.k + r)];
        imgs.insert(imgs.end(), c.ex.pixels.begin() + row * f, c.ex.pixels.begin() + (row + 1) * f);
      }
    json j;
    j["layer"] = l.name;
    j["examples"] = n;
    j["split"] = c.ex.split;
    j["classes"] = classes;
    j["order"] = order;
    j["preferred"] = s.preferred;
    json sel = json::array();
    for (double v : s.selectivity) sel.push_back(num(v));
    j["selectivity"] = sel;
    j["top_units"] = by_sel;
    json top = json::array();
    for (int64_t u : by_sel) {
      json row = json::array();
      for (int64_t r = 0; r < s.k; ++r)
        row.push_back(c.ex.indices[size_t(s.top[size_t(u * s.k + r)])]);
      top.push_back(row);
    }
    j["top_indices"] = top;
    io::write_file_atomic(dir + "/neurons_" + l.name + ".json", j.dump());
    save_f32(dir + "/neurons_classmean_" + l.name + ".npy", s.class_mean, {l.width, classes});
    io::save_npy(dir + "/neurons_top_" + l.name + ".npy",
                 Tensor::from_vector(imgs, {int64_t(by_sel.size()), s.k, c.ex.height, c.ex.width}));
    double mean_sel = 0;
    for (double v : s.selectivity) mean_sel += v;
    log(o, fmt::format("neurons {}: {} units, mean class selectivity {:.3f}", l.name, l.width,
                       mean_sel / double(l.width)));
  }
  // First-layer weights, each unit's row as an image.
  const auto& w = run.model->taps().at(0).linear->weight();
  io::save_npy(dir + "/neurons_weights_h0.npy", w.contiguous().clone());
}

}  // namespace gl::analysis
