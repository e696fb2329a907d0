// diagnostics.cpp: the Diagnostics callback: hooks that reduce activations batch by batch
// during evaluation, gradient and update norms at recorded steps, and the diagnostics/ files.
#include "analysis/diagnostics.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/autograd.h"
#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/npy.h"
#include "kernels/cpu/stats.h"

namespace gl::analysis {

using json = nlohmann::json;
namespace kc = gl::kernels::cpu;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const char* kGroupNames[] = {"activations", "histograms", "units", "grads", "selectivity"};

bool relu_family(ActivationKind a) {
  return a == ActivationKind::relu || a == ActivationKind::leaky_relu ||
         a == ActivationKind::gelu || a == ActivationKind::gelu_tanh || a == ActivationKind::silu;
}
bool saturating(ActivationKind a) {
  return a == ActivationKind::tanh || a == ActivationKind::sigmoid;
}

// t as a contiguous f32 tensor on the host (t itself when it already is one).
Tensor host_f32(const Tensor& t) {
  Tensor h = t.detach().to(Device::cpu());
  return h.is_contiguous() && h.dtype() == DType::f32 ? h : h.contiguous().to(DType::f32);
}

// L2 (Frobenius) norm in double; NaN for an undefined tensor.
double l2(const Tensor& t) {
  if (!t.defined()) return kNaN;
  double s = 0;
  if (t.dtype() == DType::f32 && t.is_contiguous() && t.device().is_cpu()) {
    const float* p = t.data<float>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) s += double(p[i]) * double(p[i]);
  } else {
    for (double v : t.to_vector<double>()) s += v * v;
  }
  return std::sqrt(s);
}

std::string num(double v) {
  return std::isfinite(v) ? fmt::format("{:.9g}", v) : std::string("nan");
}

void add_u64_npy(io::AtomicWriteBatch& batch, const std::string& path,
                 const std::vector<uint64_t>& v, std::vector<int64_t> shape) {
  io::NpyArray a;
  a.dtype = "I64";
  a.shape = std::move(shape);
  a.bytes.resize(v.size() * 8);
  for (std::size_t i = 0; i < v.size(); ++i) {
    int64_t x = int64_t(v[i]);
    std::memcpy(a.bytes.data() + i * 8, &x, 8);
  }
  batch.add(path, io::serialize_npy(a));
}

template <class T>
void add_npy(io::AtomicWriteBatch& batch, const std::string& path, const char* dtype,
             const std::vector<T>& v, std::vector<int64_t> shape) {
  io::NpyArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.bytes.resize(v.size() * sizeof(T));
  std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
  batch.add(path, io::serialize_npy(a));
}

}  // namespace

// ------------------------------------------------------------------ options
std::string DiagnosticsOptions::groups() const {
  const bool on[] = {activations, histograms, units, grads, selectivity};
  std::string s;
  for (int i = 0; i < 5; ++i)
    if (on[i]) {
      if (!s.empty()) s += ',';
      s += kGroupNames[i];
    }
  return s.empty() ? "none" : s;
}

DiagnosticsOptions DiagnosticsOptions::parse(const std::string& list) {
  DiagnosticsOptions o;
  if (list == "all") return o;
  o.activations = o.histograms = o.units = o.grads = o.selectivity = false;
  if (list == "none") return o;
  bool* flag[] = {&o.activations, &o.histograms, &o.units, &o.grads, &o.selectivity};
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    bool found = false;
    for (int i = 0; i < 5; ++i)
      if (item == kGroupNames[i]) *flag[i] = found = true;
    if (item == "all") {
      for (bool* f : flag) *f = true;
      found = true;
    }
    GL_CHECK(found,
             "--diagnostics: unknown group '{}' in '{}' (valid: all, none, or a comma list of "
             "activations, histograms, units, grads, selectivity)",
             item, list);
  }
  return o;
}

double nice_ceil(double v) {
  if (!(v > 0) || !std::isfinite(v)) return 1.0;
  double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

// ------------------------------------------------------------------ state
struct DiagnosticsCallback::Side {
  // Per-class accumulators, [classes * units].
  std::vector<double> sum, sumsq;
  std::vector<float> mn, mx;
  std::vector<uint64_t> pos, gt;
  float threshold = 0;  // for count_abs_gt
  float lo = -1, hi = 1;
  bool ranged = false;
  std::vector<uint64_t> bins, outside;  // this pass
  std::vector<uint64_t> hist_rows,
      outside_rows;  // every recorded epoch, [epochs, bins] / [epochs, 3]
  // Values of the pass that fixes the ranges, kept to be binned once the ranges are known.
  std::vector<float> held;

  void init(int64_t entries, int nbins) {
    sum.resize(std::size_t(entries));
    sumsq.resize(std::size_t(entries));
    mn.resize(std::size_t(entries));
    mx.resize(std::size_t(entries));
    pos.resize(std::size_t(entries));
    gt.resize(std::size_t(entries));
    bins.assign(std::size_t(nbins), 0);
    outside.assign(3, 0);
  }
  kc::ColumnStatsAccum acc() {
    return {sum.data(), sumsq.data(), mn.data(), mx.data(), pos.data(), gt.data()};
  }
  void reset() {
    kc::column_stats_reset(acc(), int64_t(sum.size()));
    std::fill(bins.begin(), bins.end(), 0);
    std::fill(outside.begin(), outside.end(), 0);
  }
};

struct DiagnosticsCallback::Layer {
  int64_t index = 0, in = 0, units = 0;
  // Values per sample and unit: 1 for a Linear, H * W for a conv layer, whose units are its
  // channels and whose statistics reduce over N, H and W (set by the first recorded batch).
  int64_t positions = 1;
  ActivationKind act = ActivationKind::relu;
  double slope = 0.01;
  bool batchnorm = false;
  models::LayerTap tap;
  Side pre, post;
  // Gradients of the step being recorded.
  double act_grad = kNaN;
  std::vector<float> w_before;
  StepGrads last;  // the epoch's last recorded step
  double wg_sum = 0;
  int64_t wg_count = 0;
  bool have_last = false;
};

DiagnosticsCallback::DiagnosticsCallback(DiagnosticsOptions options) : opts_(std::move(options)) {
  GL_CHECK(opts_.every >= 0, "--diagnostics-every must be >= 0, got {}", opts_.every);
  GL_CHECK(opts_.saturation_threshold > 0 && opts_.saturation_threshold < 1,
           "--saturation-threshold must be in (0, 1), got {}", opts_.saturation_threshold);
  GL_CHECK(opts_.hist_bins >= 1, "diagnostics: hist_bins must be >= 1, got {}", opts_.hist_bins);
}

// The hooks reach the callback through token_, cleared here: the model may outlive the
// callback, and its hooks must then do nothing.
DiagnosticsCallback::~DiagnosticsCallback() {
  if (token_) *token_ = nullptr;
}

bool DiagnosticsCallback::is_recorded_step(int64_t step) const {
  if (step <= 0) return false;
  if (step % steps_per_epoch_ == 0) return true;
  return opts_.every > 0 && step % opts_.every == 0;
}

// ------------------------------------------------------------------ hooks
void DiagnosticsCallback::attach(train::Trainer& t) {
  trainer_ = &t;
  models::Network& m = t.model();
  classes_ = t.num_classes();
  steps_per_epoch_ = std::max<int64_t>(t.train_loader().num_batches(), 1);
  class_counts_.assign(std::size_t(classes_), 0);
  for (int64_t y : t.test_dataset().labels)
    if (y >= 0 && y < classes_) ++class_counts_[std::size_t(y)];
  GL_CHECK(!token_, "diagnostics: already attached to a trainer");
  token_ = std::make_shared<DiagnosticsCallback*>(this);
  auto token = token_;
  const auto& taps = m.taps();
  layers_.resize(taps.size());
  step_grads_.assign(taps.size(), {});
  const float thr = float(opts_.saturation_threshold);
  for (std::size_t i = 0; i < taps.size(); ++i) {
    const auto& tap = taps[i];
    Layer& l = layers_[i];
    l.index = int64_t(i);
    l.tap = tap;
    l.in = tap.fan_in();
    l.units = tap.units();
    l.act = tap.post->activation();
    l.slope = tap.post->leaky_slope();
    l.batchnorm = tap.batchnorm != nullptr;
    l.pre.init(classes_ * l.units, opts_.hist_bins);
    l.post.init(classes_ * l.units, opts_.hist_bins);
    // Saturation: |tanh| > thr is counted on the output; for sigmoid, |2 s - 1| > thr is
    // |z| > 2 atanh(thr) on the input. Elsewhere the count is of |x| > thr (unused).
    l.post.threshold = thr;
    l.pre.threshold =
        l.act == ActivationKind::sigmoid ? float(2 * std::atanh(opts_.saturation_threshold)) : thr;
    tap.pre->add_forward_hook([token, i](const models::Module&, const Tensor&, const Tensor& out) {
      DiagnosticsCallback* d = *token;
      if (d && d->recording_) d->record(d->layers_[i], false, out);
    });
    tap.post->add_forward_hook([token, i](const models::Module&, const Tensor&, const Tensor& out) {
      DiagnosticsCallback* d = *token;
      if (!d) return;
      if (d->recording_) {
        d->record(d->layers_[i], true, out);
        return;
      }
      // Training forward of the step about to run (global_step counts it after the forward).
      if (d->opts_.grads && out.requires_grad() && GradMode::enabled() &&
          d->is_recorded_step(d->trainer_->global_step() + 1)) {
        d->layers_[i].act_grad = kNaN;
        out.add_hook([token, i](const Tensor& g) {
          if (DiagnosticsCallback* dd = *token) dd->layers_[i].act_grad = l2(g);
          return Tensor();
        });
      }
    });
  }
}

void DiagnosticsCallback::record(Layer& l, bool post, const Tensor& device_out) {
  Side& s = post ? l.post : l.pre;
  // On a GPU (--device cuda) the statistics are taken on the host, in the evaluation passes
  // only: the activations copied per layer, the labels once per batch.
  const Tensor out = device_out.to(Device::cpu());
  const Tensor& batch_labels = trainer_->current_labels();
  if (!batch_labels.same(labels_seen_)) {
    labels_seen_ = batch_labels;
    labels_host_ = batch_labels.defined() ? batch_labels.to(Device::cpu()) : batch_labels;
  }
  const Tensor& labels = labels_host_;
  const bool conv = l.tap.is_conv();
  GL_CHECK((conv ? out.dim() == 4 : out.dim() == 2) && out.size(1) == l.units,
           "diagnostics: layer {} {}-activation has shape {}, expected [N, {}{}]", l.index,
           post ? "post" : "pre", out.str(), l.units, conv ? ", H, W" : "");
  GL_CHECK(labels.defined() && labels.numel() == out.size(0),
           "diagnostics: layer {}: {} labels for a batch of {}", l.index,
           labels.defined() ? labels.numel() : 0, out.size(0));
  // The evaluation forward keeps its outputs on the host, contiguous and f32: no copy.
  Tensor x = out;
  Tensor row_labels = labels;
  if (conv) {
    // Per channel: [N, C, H, W] -> [N * H * W, C] rows, each labelled by its image's class.
    const int64_t hw = out.size(2) * out.size(3);
    l.positions = hw;
    x = out.permute({0, 2, 3, 1}).reshape({-1, l.units});
    row_labels = labels.reshape({-1, 1}).expand({labels.numel(), hw}).contiguous().reshape({-1});
  }
  if (x.dtype() != DType::f32) x = x.to(DType::f32);
  if (!x.is_contiguous()) x = x.contiguous();
  const bool hist = hist_on_ && opts_.histograms;
  if (holding_) {
    const int64_t* y = row_labels.data<int64_t>();  // one label per row (conv: per position)
    const float* v = x.data<float>();
    int64_t rows = 0;
    for (int64_t r = 0; r < x.size(0); ++r) rows += y[r] >= 0 && y[r] < classes_;
    const int64_t bytes = rows * l.units * int64_t(sizeof(float));
    if (held_bytes_ + bytes > opts_.hold_limit_bytes) {
      // More than the estimate (a conv layer's positions are not known before its first
      // batch): the pass goes on for the moments alone, and a second pass bins.
      holding_ = false;
      for (auto& other : layers_)
        for (Side* sd : {&other.pre, &other.post}) std::vector<float>().swap(sd->held);
      held_bytes_ = 0;
    } else {
      for (int64_t r = 0; r < x.size(0); ++r)  // rows the histogram would count
        if (y[r] >= 0 && y[r] < classes_)
          s.held.insert(s.held.end(), v + r * l.units, v + (r + 1) * l.units);
      held_bytes_ += bytes;
      held_peak_ = std::max(held_peak_, held_bytes_);
    }
  }
  kc::HistogramAccum h{hist ? s.bins.data() : nullptr, s.outside.data()};
  kc::column_stats_histogram(x.data<float>(), row_labels.data<int64_t>(), x.size(0), l.units,
                             int(classes_), s.threshold, s.acc(), s.lo, s.hi, opts_.hist_bins, h);
}

void DiagnosticsCallback::reset_accumulators() {
  for (auto& l : layers_) {
    l.pre.reset();
    l.post.reset();
  }
}

// ------------------------------------------------------------------ summaries
DiagnosticsCallback::Moments DiagnosticsCallback::moments(int64_t layer, bool post,
                                                          int64_t cls) const {
  const Layer& l = layers_.at(std::size_t(layer));
  const Side& s = post ? l.post : l.pre;
  Moments m;
  double sum = 0, sq = 0;
  float mn = std::numeric_limits<float>::infinity(), mx = -mn;
  int64_t samples = 0;
  for (int64_t k = 0; k < classes_; ++k) {
    if (cls >= 0 && k != cls) continue;
    samples += class_counts_[std::size_t(k)];
    for (int64_t c = 0; c < l.units; ++c) {
      const std::size_t e = std::size_t(k * l.units + c);
      sum += s.sum[e];
      sq += s.sumsq[e];
      mn = std::min(mn, s.mn[e]);
      mx = std::max(mx, s.mx[e]);
    }
  }
  m.count = samples * l.units * l.positions;
  if (m.count == 0) return {kNaN, kNaN, float(kNaN), float(kNaN), 0};
  const double n = double(m.count);
  m.mean = sum / n;
  m.std = std::sqrt(std::max(0.0, sq / n - m.mean * m.mean));
  m.min = mn;
  m.max = mx;
  return m;
}

static std::vector<uint64_t> unit_counts(const std::vector<uint64_t>& v, int64_t classes,
                                         int64_t units) {
  std::vector<uint64_t> out(std::size_t(units), 0);
  for (int64_t k = 0; k < classes; ++k)
    for (int64_t c = 0; c < units; ++c) out[std::size_t(c)] += v[std::size_t(k * units + c)];
  return out;
}

std::vector<uint64_t> DiagnosticsCallback::unit_positive_counts(int64_t layer, bool post) const {
  const Layer& l = layers_.at(std::size_t(layer));
  return unit_counts(post ? l.post.pos : l.pre.pos, classes_, l.units);
}
std::vector<uint64_t> DiagnosticsCallback::unit_threshold_counts(int64_t layer, bool post) const {
  const Layer& l = layers_.at(std::size_t(layer));
  return unit_counts(post ? l.post.gt : l.pre.gt, classes_, l.units);
}
float DiagnosticsCallback::threshold(int64_t layer, bool post) const {
  const Layer& l = layers_.at(std::size_t(layer));
  return post ? l.post.threshold : l.pre.threshold;
}
std::pair<float, float> DiagnosticsCallback::hist_range(int64_t layer, bool post) const {
  const Layer& l = layers_.at(std::size_t(layer));
  return post ? std::pair(l.post.lo, l.post.hi) : std::pair(l.pre.lo, l.pre.hi);
}

void DiagnosticsCallback::choose_ranges() {
  const double H = opts_.headroom;
  for (auto& l : layers_) {
    Moments p = moments(l.index, false), q = moments(l.index, true);
    // The bulk (|mean| + 4 std), not the extremes: a few outliers at initialization would
    // otherwise squeeze every other value into a handful of bins.
    auto bulk = [](const Moments& m) {
      return std::min(std::max(std::fabs(double(m.min)), std::fabs(double(m.max))),
                      std::fabs(m.mean) + 4 * m.std);
    };
    double a = nice_ceil(H * bulk(p));
    l.pre.lo = float(-a);
    l.pre.hi = float(a);
    double top = nice_ceil(H * std::max(std::min(double(q.max), q.mean + 4 * q.std), 0.0));
    switch (l.act) {
      case ActivationKind::tanh:
        l.post.lo = -1, l.post.hi = 1;
        break;
      case ActivationKind::sigmoid:
        l.post.lo = 0, l.post.hi = 1;
        break;
      case ActivationKind::relu:
        l.post.lo = 0, l.post.hi = float(top);
        break;
      case ActivationKind::leaky_relu:
        l.post.lo = q.min < 0 ? float(-nice_ceil(-H * double(q.min))) : 0.0f;
        l.post.hi = float(top);
        break;
      case ActivationKind::gelu:
      case ActivationKind::gelu_tanh:
        l.post.lo = -0.2f, l.post.hi = float(top);
        break;  // min -0.17
      case ActivationKind::silu:
        l.post.lo = -0.3f, l.post.hi = float(top);
        break;  // min -0.28
      default: {
        double b = nice_ceil(H * bulk(q));
        l.post.lo = float(-b), l.post.hi = float(b);
      }
    }
    if (!(l.post.hi > l.post.lo)) l.post.hi = l.post.lo + 1;
    l.pre.ranged = l.post.ranged = true;
  }
}

void DiagnosticsCallback::finish_pass(int64_t epoch) {
  const double frac = opts_.saturated_min_fraction;
  int64_t samples = 0;
  for (int64_t c : class_counts_) samples += c;
  for (auto& l : layers_) {
    if (opts_.activations) {
      for (int post = 0; post < 2; ++post)
        for (int64_t k = -1; k < classes_; ++k) {
          Moments m = moments(l.index, post, k);
          act_rows_ +=
              fmt::format("{},{},{},{},{},{},{},{}\n", epoch, l.index, post ? "post" : "pre", k,
                          num(m.mean), num(m.std), num(m.min), num(m.max));
        }
    }
    if (opts_.units) {
      double dead = kNaN, sat = kNaN;
      if (relu_family(l.act)) {
        auto pos = unit_positive_counts(l.index, true);
        dead = double(std::count(pos.begin(), pos.end(), uint64_t(0))) / double(l.units);
      }
      if (saturating(l.act)) {
        auto gt = unit_threshold_counts(l.index, l.act == ActivationKind::tanh);
        int64_t n = 0;
        for (uint64_t g : gt) n += double(g) > frac * double(samples * l.positions);
        sat = double(n) / double(l.units);
      }
      unit_rows_ += fmt::format("{},{},{},{}\n", epoch, l.index, num(dead), num(sat));
    }
    if (opts_.histograms) {
      for (Side* s : {&l.pre, &l.post}) {
        s->hist_rows.insert(s->hist_rows.end(), s->bins.begin(), s->bins.end());
        s->outside_rows.insert(s->outside_rows.end(), s->outside.begin(), s->outside.end());
      }
    }
  }
  if (opts_.histograms) hist_epochs_.push_back(epoch);
}

// ------------------------------------------------------------------ files
void DiagnosticsCallback::write_files(int64_t epoch) {
  const std::string dir = trainer_->run_dir() + "/diagnostics";
  io::ensure_dir(dir);
  // One batch: every file stays atomically replaced, and the epoch pays for a few syncs instead
  // of two fsyncs per file.
  io::AtomicWriteBatch batch;
  json lj;
  lj["layers"] = json::array();
  for (auto& l : layers_)
    lj["layers"].push_back({{"name", fmt::format("{}{}", l.tap.is_conv() ? "conv" : "fc", l.index)},
                            {"kind", l.tap.is_conv() ? "conv2d" : "linear"},
                            {"in", l.in},
                            {"out", l.units},
                            {"activation", activation_name(l.act)},
                            {"batchnorm", l.batchnorm},
                            {"bias", l.tap.bias().defined()}});
  lj["epochs"] = hist_epochs_;
  if (opts_.activations)
    batch.add(dir + "/activations.csv", "epoch,layer,kind,class,mean,std,min,max\n" + act_rows_);
  if (opts_.units) {
    batch.add(dir + "/units.csv", "epoch,layer,dead_fraction,saturated_fraction\n" + unit_rows_);
    json dead = {{"epoch", epoch}, {"layers", json::array()}}, sat = dead;
    const double frac = opts_.saturated_min_fraction;
    int64_t samples = 0;
    for (int64_t c : class_counts_) samples += c;
    for (auto& l : layers_) {
      std::vector<int64_t> d, s;
      if (relu_family(l.act)) {
        auto pos = unit_positive_counts(l.index, true);
        for (int64_t c = 0; c < l.units; ++c)
          if (pos[std::size_t(c)] == 0) d.push_back(c);
      }
      if (saturating(l.act)) {
        auto gt = unit_threshold_counts(l.index, l.act == ActivationKind::tanh);
        for (int64_t c = 0; c < l.units; ++c)
          if (double(gt[std::size_t(c)]) > frac * double(samples * l.positions)) s.push_back(c);
      }
      dead["layers"].push_back(d);
      sat["layers"].push_back(s);
    }
    batch.add(dir + "/dead_units.json", dead.dump() + "\n");
    batch.add(dir + "/saturated_units.json", sat.dump() + "\n");
  }
  if (opts_.grads) {
    batch.add(dir + "/grads.csv",
              "epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,weight_norm,"
              "update_ratio,weight_grad_norm_mean\n" +
                  grad_rows_);
    batch.add(dir + "/grad_steps.csv",
              "step,epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,"
              "weight_norm,update_ratio\n" +
                  step_rows_);
  }
  const int64_t rows = int64_t(hist_epochs_.size());
  if (opts_.histograms && rows > 0) {
    for (auto& l : layers_)
      for (int post = 0; post < 2; ++post) {
        const Side& s = post ? l.post : l.pre;
        const std::string base = fmt::format("{}/hist_{}_{}", dir, l.index, post ? "post" : "pre");
        add_u64_npy(batch, base + ".npy", s.hist_rows, {rows, opts_.hist_bins});
        add_u64_npy(batch, base + "_outside.npy", s.outside_rows, {rows, 3});
        std::vector<double> edges(std::size_t(opts_.hist_bins + 1));
        for (int b = 0; b <= opts_.hist_bins; ++b)
          edges[std::size_t(b)] =
              double(s.lo) + (double(s.hi) - double(s.lo)) * b / opts_.hist_bins;
        add_npy(batch, base + "_edges.npy", "F64", edges, {opts_.hist_bins + 1});
      }
  }
  if (opts_.selectivity) {
    for (auto& l : layers_) {
      std::vector<float> sel(std::size_t(classes_ * l.units));
      for (int64_t k = 0; k < classes_; ++k)
        for (int64_t c = 0; c < l.units; ++c) {
          const std::size_t e = std::size_t(k * l.units + c);
          const int64_t n = class_counts_[std::size_t(k)] * l.positions;
          sel[e] =
              n > 0 ? float(l.post.sum[e] / double(n)) : std::numeric_limits<float>::quiet_NaN();
        }
      add_npy(batch, fmt::format("{}/selectivity_{}.npy", dir, l.index), "F32", sel,
              {classes_, l.units});
    }
  }
  // Last: it lists the epochs the histogram files hold, so it is renamed after them.
  batch.add(dir + "/layers.json", lj.dump(1) + "\n");
  writer_.submit(std::move(batch));  // written while training goes on; on_train_end waits
}

void DiagnosticsCallback::annotate_config(const std::string& run_dir) {
  const std::string path = run_dir + "/config.json";
  json j = json::object();
  if (io::file_exists(path)) {
    j = io::read_json_file(path);
    io::JsonReader(j, path).object();
  }
  j["diagnostics"] = {
      {"groups", opts_.groups()},
      {"every", opts_.every},
      {"saturation_threshold", opts_.saturation_threshold},
      {"saturated_min_fraction", opts_.saturated_min_fraction},
      {"hist_bins", opts_.hist_bins},
      {"layers", "hidden layers only (the output Linear is not counted)"},
      {"grad_norm", "Frobenius norm of the weight gradient at the last step of each epoch"},
      {"act_stats", "post-activation mean and std over every test sample and unit"}};
  io::write_file_atomic(path, j.dump(2) + "\n");
}

// ------------------------------------------------------------------ callbacks
void DiagnosticsCallback::on_train_begin(train::Trainer& t) {
  attach(t);
  annotate_config(t.run_dir());
  const int64_t done = t.global_step() / steps_per_epoch_;
  if (done > 0) {
    resume_from_files(t, done);
    return;
  }
  // Epoch 0, the state at initialization, in one evaluation pass: the histogram ranges depend
  // on the moments of the whole pass, so the values are held and binned after it (a second
  // pass when holding them would take more than hold_limit_bytes: estimated here from the
  // units, and checked batch by batch as the values arrive).
  recording_ = true;
  held_bytes_ = 0;
  if (opts_.histograms) {
    int64_t values = 0;
    for (auto& l : layers_) values += 2 * l.units;
    holding_ = double(values) * double(t.test_dataset().labels.size()) * sizeof(float) <=
               double(opts_.hold_limit_bytes);
    if (holding_)
      for (auto& l : layers_)
        for (Side* sd : {&l.pre, &l.post})
          sd->held.reserve(t.test_dataset().labels.size() * std::size_t(l.units));
    hist_on_ = false;
    reset_accumulators();
    t.evaluate(t.test_loader());
    choose_ranges();
    if (holding_) {
      holding_ = false;
      for (auto& l : layers_)
        for (Side* sd : {&l.pre, &l.post}) {
          kc::histogram(sd->held.data(), int64_t(sd->held.size()), sd->lo, sd->hi, opts_.hist_bins,
                        {sd->bins.data(), sd->outside.data()});
          std::vector<float>().swap(sd->held);
        }
    } else {
      hist_on_ = true;
      reset_accumulators();
      t.evaluate(t.test_loader());
    }
  } else {
    reset_accumulators();
    t.evaluate(t.test_loader());
  }
  hist_on_ = true;
  recording_ = false;
  finish_pass(0);
  if (opts_.grads)
    for (auto& l : layers_)
      grad_rows_ += fmt::format("0,{},nan,nan,nan,{},nan,nan\n", l.index, num(l2(l.tap.weight())));
  write_files(0);
}

void DiagnosticsCallback::on_after_backward(train::Trainer& t, int64_t step) {
  if (!opts_.grads || !is_recorded_step(step)) return;
  for (auto& l : layers_) {
    const Tensor& w = l.tap.weight();
    StepGrads g;
    g.step = step;
    g.epoch = (step - 1) / steps_per_epoch_ + 1;
    g.weight_grad = l2(w.grad());
    g.bias_grad = l.tap.bias().defined() ? l2(l.tap.bias().grad()) : kNaN;
    g.act_grad = l.act_grad;
    l.act_grad = kNaN;
    l.last = g;
    // Snapshot for the update ratio; the buffer is reused from step to step.
    const Tensor wc = host_f32(w);
    l.w_before.assign(wc.data<float>(), wc.data<float>() + wc.numel());
  }
  pending_update_ = true;
}

void DiagnosticsCallback::on_step_end(train::Trainer& t, int64_t step, double) {
  if (!pending_update_) return;
  pending_update_ = false;
  for (auto& l : layers_) {
    const Tensor wc = host_f32(l.tap.weight());
    const float* p = wc.data<float>();
    double d2 = 0, b2 = 0, a2 = 0;
    for (std::size_t i = 0; i < l.w_before.size(); ++i) {
      const double b = l.w_before[i], a = p[i];
      d2 += (a - b) * (a - b);
      b2 += b * b;
      a2 += a * a;
    }
    StepGrads& g = l.last;
    g.weight_norm = std::sqrt(a2);
    g.update_ratio = b2 > 0 ? std::sqrt(d2) / std::sqrt(b2) : kNaN;
    l.wg_sum += g.weight_grad;
    ++l.wg_count;
    l.have_last = true;
    step_grads_[std::size_t(l.index)].push_back(g);
    step_rows_ +=
        fmt::format("{},{},{},{},{},{},{},{}\n", g.step, g.epoch, l.index, num(g.weight_grad),
                    num(g.bias_grad), num(g.act_grad), num(g.weight_norm), num(g.update_ratio));
  }
}

void DiagnosticsCallback::on_evaluate_begin(train::Trainer&, int64_t) {
  reset_accumulators();
  recording_ = true;
  hist_on_ = true;
}

void DiagnosticsCallback::on_evaluate_end(train::Trainer&, int64_t epoch) {
  recording_ = false;
  finish_pass(epoch);
}

void DiagnosticsCallback::on_epoch_end(train::Trainer& t, train::EpochResult& r) {
  for (auto& l : layers_) {
    if (opts_.grads) {
      const StepGrads& g = l.last;
      const bool ok = l.have_last;
      grad_rows_ +=
          fmt::format("{},{},{},{},{},{},{},{}\n", r.epoch, l.index, num(ok ? g.weight_grad : kNaN),
                      num(ok ? g.bias_grad : kNaN), num(ok ? g.act_grad : kNaN),
                      num(ok ? g.weight_norm : l2(l.tap.weight())), num(ok ? g.update_ratio : kNaN),
                      num(l.wg_count ? l.wg_sum / double(l.wg_count) : kNaN));
    }
    Moments m = moments(l.index, true);
    r.extra.emplace_back(fmt::format("act_mean_{}", l.index), m.mean);
    r.extra.emplace_back(fmt::format("act_std_{}", l.index), m.std);
    r.extra.emplace_back(fmt::format("grad_norm_{}", l.index),
                         opts_.grads && l.have_last ? l.last.weight_grad : kNaN);
    l.wg_sum = 0;
    l.wg_count = 0;
    l.have_last = false;
  }
  write_files(r.epoch);
}

void DiagnosticsCallback::on_train_end(train::Trainer&) {
  writer_.wait();
}

// ------------------------------------------------------------------ resume
namespace {
// Rows of a CSV file written earlier whose first field (the epoch, or the step) passes `keep`.
std::string kept_rows(const std::string& path, const std::function<bool(double)>& keep) {
  if (!io::file_exists(path)) return "";
  auto bytes = io::read_file(path);
  std::stringstream ss(std::string(bytes.begin(), bytes.end()));
  std::string line, out;
  std::getline(ss, line);  // header
  while (std::getline(ss, line)) {
    if (line.empty()) continue;
    if (keep(std::strtod(line.c_str(), nullptr))) out += line + "\n";
  }
  return out;
}
}  // namespace

void DiagnosticsCallback::resume_from_files(train::Trainer& t, int64_t done) {
  const std::string dir = t.run_dir() + "/diagnostics";
  auto by_epoch = [done](double e) { return e <= double(done); };
  act_rows_ = kept_rows(dir + "/activations.csv", by_epoch);
  unit_rows_ = kept_rows(dir + "/units.csv", by_epoch);
  grad_rows_ = kept_rows(dir + "/grads.csv", by_epoch);
  const int64_t last_step = done * steps_per_epoch_;
  step_rows_ =
      kept_rows(dir + "/grad_steps.csv", [last_step](double s) { return s <= double(last_step); });
  // Histograms: rows of the epochs already done, and the ranges they were counted with.
  if (opts_.histograms && io::file_exists(dir + "/layers.json")) {
    const json lj = io::read_json_file(dir + "/layers.json");
    const auto epochs =
        io::JsonReader(lj, dir + "/layers.json").get("epochs", std::vector<int64_t>{});
    std::size_t keep = 0;
    while (keep < epochs.size() && epochs[keep] <= done) ++keep;
    bool ok = keep > 0;
    for (auto& l : layers_)
      for (int post = 0; post < 2 && ok; ++post) {
        Side& s = post ? l.post : l.pre;
        const std::string base = fmt::format("{}/hist_{}_{}", dir, l.index, post ? "post" : "pre");
        if (!io::file_exists(base + ".npy") || !io::file_exists(base + "_edges.npy")) {
          ok = false;
          break;
        }
        io::NpyArray h = io::load_npy(base + ".npy"), e = io::load_npy(base + "_edges.npy");
        if (h.dtype != "I64" || h.shape.size() != 2 || h.shape[1] != opts_.hist_bins ||
            h.shape[0] < int64_t(keep) || e.dtype != "F64" || e.shape.size() != 1) {
          ok = false;
          break;
        }
        s.hist_rows.resize(keep * std::size_t(opts_.hist_bins));
        std::memcpy(s.hist_rows.data(), h.bytes.data(), s.hist_rows.size() * 8);
        s.outside_rows.assign(keep * 3, 0);
        if (io::file_exists(base + "_outside.npy")) {
          io::NpyArray o = io::load_npy(base + "_outside.npy");
          if (o.bytes.size() >= s.outside_rows.size() * 8)
            std::memcpy(s.outside_rows.data(), o.bytes.data(), s.outside_rows.size() * 8);
        }
        double lo, hi;
        std::memcpy(&lo, e.bytes.data(), 8);
        std::memcpy(&hi, e.bytes.data() + e.bytes.size() - 8, 8);
        s.lo = float(lo), s.hi = float(hi);
        s.ranged = true;
      }
    if (ok) {
      hist_epochs_.assign(epochs.begin(), epochs.begin() + std::ptrdiff_t(keep));
      return;
    }
  }
  // No usable earlier histograms: fix the ranges from the current weights and start anew.
  if (opts_.histograms) {
    for (auto& l : layers_) {
      l.pre.hist_rows.clear(), l.post.hist_rows.clear();
      l.pre.outside_rows.clear(), l.post.outside_rows.clear();
    }
    hist_epochs_.clear();
    recording_ = true;
    hist_on_ = false;
    reset_accumulators();
    t.evaluate(t.test_loader());
    recording_ = false;
    choose_ranges();
  }
}

}  // namespace gl::analysis
