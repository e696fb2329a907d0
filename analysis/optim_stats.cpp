// optim_stats.cpp: the optimization-dynamics callback (see optim_stats.h for definitions). The
// per-parameter pass is the vectorized kernel of kernels/cpu/optim_stats.h: signs and
// comparisons are taken on the float values themselves (never on products, which underflow for
// tiny gradients), so counts are exact and reproducible by a naive loop. A step allocates
// nothing but its record: parameters are read in place (CPU f32 contiguous) and the snapshots
// and moving averages are overwritten by the same pass.
#include "analysis/optim_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/io/fs.h"
#include "engine/io/npy.h"
#include "kernels/cpu/optim_stats.h"

namespace gl::analysis {
namespace {

// A CPU f32 contiguous view of `t` (copies only for other devices, dtypes or layouts).
Tensor host_f32(const Tensor& t) {
  Tensor h = t;
  if (!h.device().is_cpu()) h = h.to(Device::cpu());
  if (h.dtype() != DType::f32) h = h.to(DType::f32);
  if (!h.is_contiguous()) h = h.contiguous();
  return h;
}

// The float f with (x < f) == (double(x) < t) for every float x: comparisons in the float
// loop then count exactly what a double-precision reference counts.
float float_threshold(double t) {
  float f = float(t);
  if (double(f) < t) f = std::nextafter(f, INFINITY);
  return f;
}

double frac(double num, double den) {
  return den > 0 ? num / den : std::nan("");
}

void save_f64(io::AtomicWriteBatch& batch, const std::string& path, const std::vector<double>& v,
              std::vector<int64_t> shape) {
  io::NpyArray a;
  a.dtype = "F64";
  a.shape = std::move(shape);
  a.bytes.resize(v.size() * sizeof(double));
  std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
  batch.add(path, io::serialize_npy(a));
}

void save_i32(io::AtomicWriteBatch& batch, const std::string& path, const std::vector<int32_t>& v,
              std::vector<int64_t> shape) {
  io::NpyArray a;
  a.dtype = "I32";
  a.shape = std::move(shape);
  a.bytes.resize(v.size() * sizeof(int32_t));
  std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
  batch.add(path, io::serialize_npy(a));
}

}  // namespace

const char* optim_stat_name(int stat) {
  static const char* names[kNumOptimStats] = {"zero_count",
                                              "small_prev_count",
                                              "released_count",
                                              "retained_count",
                                              "sign_flip_count",
                                              "local_min_count",
                                              "local_max_count",
                                              "zero_fraction",
                                              "released_fraction",
                                              "retained_fraction",
                                              "sign_flip_fraction",
                                              "weight_diff_norm",
                                              "zero_grad_weight_change_norm",
                                              "ema_grad_norm",
                                              "ema_weight_norm"};
  GL_CHECK(stat >= 0 && stat < kNumOptimStats, "optim_stat_name: no statistic {}", stat);
  return names[stat];
}

std::vector<int8_t> downsample_codes(const std::vector<int8_t>& codes, int64_t width) {
  const int64_t n = int64_t(codes.size());
  if (width <= 0 || width >= n) return codes;
  std::vector<int8_t> out(static_cast<size_t>(width));
  for (int64_t b = 0; b < width; ++b) {
    int64_t lo = b * n / width, hi = (b + 1) * n / width;
    int64_t c[4] = {0, 0, 0, 0};  // large, positive-small, negative-small, zero
    for (int64_t i = lo; i < hi; ++i) {
      int8_t v = codes[size_t(i)];
      c[v == kSignLarge ? 0 : v == kSignPositiveSmall ? 1 : v == kSignNegativeSmall ? 2 : 3]++;
    }
    static const int8_t order[4] = {kSignLarge, kSignPositiveSmall, kSignNegativeSmall, kSignZero};
    int best = 0;
    for (int k = 1; k < 4; ++k)
      if (c[k] > c[best]) best = k;
    out[size_t(b)] = order[best];
  }
  return out;
}

OptimStatsCallback::OptimStatsCallback(OptimStatsOptions options) : opt_(options) {
  GL_CHECK(opt_.every >= 1, "--analyze-every must be >= 1, got {}", opt_.every);
  GL_CHECK(opt_.zero_threshold > 0 && std::isfinite(opt_.zero_threshold),
           "--zero-grad-threshold must be a positive number, got {}", opt_.zero_threshold);
  GL_CHECK(opt_.small_threshold > 0 && std::isfinite(opt_.small_threshold),
           "optim stats: small-gradient threshold must be positive, got {}", opt_.small_threshold);
  GL_CHECK(opt_.ema_decay >= 0 && opt_.ema_decay < 1, "--ema-decay must be in [0, 1), got {}",
           opt_.ema_decay);
}

void OptimStatsCallback::on_train_begin(train::Trainer& t) {
  names_.clear();
  numels_.clear();
  params_.clear();
  for (auto& [name, p] : t.model().named_parameters()) {
    names_.push_back(name);
    numels_.push_back(p.numel());
    params_.push_back(p);  // the optimizer holds the same handles: they stay the parameters
  }
  state_.assign(names_.size(), State{});
  for (size_t i = 0; i < names_.size(); ++i) {
    auto n = size_t(numels_[i]);
    state_[i].prev_grad.assign(n, 0.0f);
    state_[i].prev_weight.assign(n, 0.0f);
    state_[i].ema_grad.assign(n, 0.0f);
    state_[i].ema_weight.assign(n, 0.0f);
  }
  records_.clear();
  sign_maps_.assign(names_.size(), {});
  sign_zooms_.assign(names_.size(), {});
  sign_epochs_.clear();
}

void OptimStatsCallback::on_epoch_begin(train::Trainer& t, int64_t epoch) {
  steps_in_epoch_ = 0;
  batches_ = t.train_loader().num_batches();
  epoch_ = epoch;
}

void OptimStatsCallback::on_after_backward(train::Trainer& t, int64_t global_step) {
  ++steps_in_epoch_;
  const int64_t N = opt_.every;
  if (global_step % N == 0)
    record(t, global_step, true);
  else if (N > 1 && (global_step + 1) % N == 0)
    record(t, global_step, false);  // snapshot for the next record
  if (steps_in_epoch_ == batches_) sign_map_row(t);
}

void OptimStatsCallback::record(train::Trainer& t, int64_t step, bool full) {
  const auto& params = params_;
  OptimRecord rec;
  rec.step = step;
  rec.epoch = epoch_;
  rec.stats.assign(params.size() + 1, {});
  auto& total = rec.stats.back();
  total.fill(0.0);
  bool complete = true;
  for (size_t k = 0; k < params.size(); ++k) {
    Tensor w = host_f32(params[k]);
    Tensor g = params[k].grad();
    g = g.defined() ? host_f32(g) : Tensor::zeros(w.shape());
    auto& s = state_[k];
    const int64_t n = w.numel();
    if (!full || !s.have_prev) {
      std::memcpy(s.prev_grad.data(), g.data<float>(), size_t(n) * sizeof(float));
      std::memcpy(s.prev_weight.data(), w.data<float>(), size_t(n) * sizeof(float));
      s.have_prev = true;
      complete = false;
      continue;
    }
    kernels::cpu::OptimStepParams kp;
    kp.zero_threshold = float_threshold(opt_.zero_threshold);
    kp.small_threshold = float_threshold(opt_.small_threshold);
    kp.ema_keep = s.have_ema ? float(opt_.ema_decay) : 0.0f;
    kp.ema_new = s.have_ema ? 1.0f - float(opt_.ema_decay) : 1.0f;
    const kernels::cpu::OptimStepSums r = kernels::cpu::optim_step_stats(
        g.data<float>(), w.data<float>(), s.prev_grad.data(), s.prev_weight.data(),
        s.ema_grad.data(), s.ema_weight.data(), n, kp);
    s.have_ema = true;
    auto& o = rec.stats[k];
    o[kZeroCount] = double(r.zero);
    o[kSmallPrevCount] = double(r.small_prev);
    o[kRetainedCount] = double(r.retained);
    o[kReleasedCount] = double(r.small_prev - r.retained);
    o[kSignFlipCount] = double(r.sign_flip);
    o[kLocalMinCount] = double(r.local_min);
    o[kLocalMaxCount] = double(r.local_max);
    o[kWeightDiffNorm] = r.weight_diff_sq;  // squared until the total is formed
    o[kZeroGradWeightChangeNorm] = r.zero_grad_weight_change_sq;
    o[kEmaGradNorm] = r.ema_grad_sq;
    o[kEmaWeightNorm] = r.ema_weight_sq;
    for (int st : {kZeroCount, kSmallPrevCount, kRetainedCount, kReleasedCount, kSignFlipCount,
                   kLocalMinCount, kLocalMaxCount, kWeightDiffNorm, kZeroGradWeightChangeNorm,
                   kEmaGradNorm, kEmaWeightNorm})
      total[st] += o[st];
  }
  if (!complete) return;  // the first step (or a snapshot step) has nothing to compare with
  double all = 0;
  for (auto n : numels_) all += double(n);
  for (size_t k = 0; k < rec.stats.size(); ++k) {
    auto& o = rec.stats[k];
    double n = k < numels_.size() ? double(numels_[k]) : all;
    for (int st : {kWeightDiffNorm, kZeroGradWeightChangeNorm, kEmaGradNorm, kEmaWeightNorm})
      o[st] = std::sqrt(o[st]);
    o[kZeroFraction] = frac(o[kZeroCount], n);
    o[kSignFlipFraction] = frac(o[kSignFlipCount], n);
    o[kReleasedFraction] = frac(o[kReleasedCount], o[kSmallPrevCount]);
    o[kRetainedFraction] = frac(o[kRetainedCount], o[kSmallPrevCount]);
  }
  records_.push_back(std::move(rec));
}

void OptimStatsCallback::sign_map_row(train::Trainer& t) {
  const auto& params = params_;
  for (size_t k = 0; k < params.size() && k < sign_maps_.size(); ++k) {
    Tensor gt = params[k].grad();
    if (!gt.defined()) gt = Tensor::zeros(params[k].shape());
    Tensor g = host_f32(gt);
    const float* gp = g.data<float>();
    const int64_t n = g.numel();
    double mean_abs = 0;
    for (int64_t i = 0; i < n; ++i) mean_abs += std::fabs(double(gp[i]));
    mean_abs /= double(std::max<int64_t>(n, 1));
    const double large = opt_.sign_large_factor * mean_abs;
    std::vector<int8_t> codes(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      codes[size_t(i)] = sign_code(gp[i], large > 0 ? large : INFINITY);
    sign_zooms_[k].emplace_back(codes.begin(),
                                codes.begin() + std::min<int64_t>(n, opt_.sign_map_zoom));
    sign_maps_[k].push_back(downsample_codes(codes, opt_.sign_map_width));
  }
  sign_epochs_.push_back(epoch_);
}

void OptimStatsCallback::on_epoch_end(train::Trainer& t, train::EpochResult&) {
  // Serialized now, written while the next epoch trains.
  if (opt_.write_files && !t.run_dir().empty()) writer_.submit(files(t.run_dir() + "/optim"));
}

void OptimStatsCallback::on_train_end(train::Trainer&) {
  writer_.wait();
}

void OptimStatsCallback::write(const std::string& dir) const {
  files(dir).commit();
}

io::AtomicWriteBatch OptimStatsCallback::files(const std::string& dir) const {
  io::ensure_dir(dir);
  io::AtomicWriteBatch batch;  // synced together: a few syncs per epoch, not 2 per file
  const size_t P = names_.size(), S = kNumOptimStats, R = records_.size();
  std::vector<double> stats;
  stats.reserve(R * (P + 1) * S);
  std::vector<double> steps;
  for (auto& r : records_) {
    steps.push_back(double(r.step));
    steps.push_back(double(r.epoch));
    for (auto& row : r.stats) stats.insert(stats.end(), row.begin(), row.end());
  }
  save_f64(batch, dir + "/stats.npy", stats, {int64_t(R), int64_t(P + 1), int64_t(S)});
  save_f64(batch, dir + "/steps.npy", steps, {int64_t(R), 2});

  nlohmann::json j;
  j["every"] = opt_.every;
  j["zero_threshold"] = opt_.zero_threshold;
  j["small_threshold"] = opt_.small_threshold;
  j["ema_decay"] = opt_.ema_decay;
  j["sign_large_factor"] = opt_.sign_large_factor;
  j["steps_per_epoch"] = batches_;
  j["stats"] = nlohmann::json::array();
  for (size_t s = 0; s < S; ++s) j["stats"].push_back(optim_stat_name(int(s)));
  j["params"] = nlohmann::json::array();
  for (size_t k = 0; k < P; ++k) {
    nlohmann::json p{{"name", names_[k]}, {"numel", numels_[k]}};
    if (k < sign_maps_.size() && !sign_maps_[k].empty()) {
      std::vector<int32_t> m, z;
      for (auto& row : sign_maps_[k]) m.insert(m.end(), row.begin(), row.end());
      for (auto& row : sign_zooms_[k]) z.insert(z.end(), row.begin(), row.end());
      std::string base = fmt::format("sign_map_{}", k);
      save_i32(batch, dir + "/" + base + ".npy", m,
               {int64_t(sign_maps_[k].size()), int64_t(sign_maps_[k][0].size())});
      save_i32(batch, dir + "/" + base + "_zoom.npy", z,
               {int64_t(sign_zooms_[k].size()), int64_t(sign_zooms_[k][0].size())});
      p["sign_map"] = base + ".npy";
      p["sign_map_zoom"] = base + "_zoom.npy";
    }
    j["params"].push_back(p);
  }
  j["sign_map_epochs"] = sign_epochs_;
  // Per-epoch means of every statistic over the epoch's records (NaN-free mean; null if none).
  j["epochs"] = nlohmann::json::array();
  for (size_t i = 0; i < R;) {
    size_t e = i;
    while (e < R && records_[e].epoch == records_[i].epoch) ++e;
    nlohmann::json ej{{"epoch", records_[i].epoch}, {"records", e - i}};
    for (size_t s = 0; s < S; ++s) {
      nlohmann::json col = nlohmann::json::array();
      for (size_t k = 0; k <= P; ++k) {
        double sum = 0;
        int64_t cnt = 0;
        for (size_t r = i; r < e; ++r) {
          double v = records_[r].stats[k][s];
          if (std::isfinite(v)) sum += v, ++cnt;
        }
        col.push_back(cnt ? nlohmann::json(sum / double(cnt)) : nlohmann::json(nullptr));
      }
      ej["mean"][optim_stat_name(int(s))] = col;
    }
    j["epochs"].push_back(ej);
    i = e;
  }
  batch.add(dir + "/optim.json", j.dump(1));  // last: it names the arrays
  return batch;
}

}  // namespace gl::analysis
