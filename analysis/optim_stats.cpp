// optim_stats.cpp: the optimization-dynamics callback (see optim_stats.h for definitions and
// for how the passes run inside the optimizer's step). The passes are the vectorized kernels of
// kernels/cpu/optim_stats.h: signs and comparisons are taken on the float values themselves
// (never on products, which underflow for tiny gradients), so counts are exact and reproducible
// by a naive loop. A step allocates nothing but its record: parameters are read in place (CPU
// f32 contiguous) and the codes and moving averages are overwritten by the passes.
#include "analysis/optim_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/io/fs.h"
#include "engine/io/npy.h"

namespace gl::analysis {
namespace {

namespace kc = kernels::cpu;
static_assert(models::Optimizer::kObserveChunk % kc::kOptimBlock == 0,
              "an observed chunk must be whole blocks of the statistics' summation");

// The weights of the chunk being updated, from before_update to after_update (which run on the
// same thread).
thread_local std::vector<float> t_weight_before;

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
  const models::Optimizer& optimizer = t.optimizer();
  can_observe_ = opt_.observe_optimizer && optimizer.observes_steps();
  of_optimizer_.assign(optimizer.params().size(), -1);
  for (size_t j = 0; j < optimizer.params().size(); ++j)
    for (size_t k = 0; k < params_.size(); ++k)
      if (params_[k].same(optimizer.params()[j])) of_optimizer_[j] = int64_t(k);
  state_.assign(names_.size(), State{});
  for (size_t i = 0; i < names_.size(); ++i) {
    auto n = size_t(numels_[i]);
    auto blocks = size_t((numels_[i] + kc::kOptimBlock - 1) / kc::kOptimBlock);
    state_[i].code.assign(n, 0);
    state_[i].ema_grad.assign(n, 0.0f);
    state_[i].ema_weight.assign(n, 0.0f);
    state_[i].record_blocks.resize(blocks);
    state_[i].update_blocks.resize(blocks);
    state_[i].seen.assign(blocks, 0);
  }
  recording_ = snapshotting_ = observing_ = false;
  snapshot_step_ = -1;
  observed_steps_ = 0;
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
  recording_ = global_step % N == 0 && snapshot_step_ == global_step - 1;
  snapshotting_ = (global_step + 1) % N == 0;  // the next step is recorded
  if (recording_ || snapshotting_) begin_step(t, global_step);
  if (steps_in_epoch_ == batches_) sign_map_row(t);
}

kc::OptimStepParams OptimStatsCallback::kernel_params(const State& s) const {
  kc::OptimStepParams kp;
  kp.zero_threshold = float_threshold(opt_.zero_threshold);
  kp.small_threshold = float_threshold(opt_.small_threshold);
  kp.ema_keep = s.have_ema ? float(opt_.ema_decay) : 0.0f;
  kp.ema_new = s.have_ema ? 1.0f - float(opt_.ema_decay) : 1.0f;
  return kp;
}

// Decides per parameter how this step is measured; the separate passes measure now what comes
// before the update, and keep what the snapshot after it needs.
void OptimStatsCallback::begin_step(train::Trainer& t, int64_t step) {
  models::Optimizer& optimizer = t.optimizer();
  const bool fuse = can_observe_ && optimizer.step_observer() == nullptr;
  std::vector<bool> stepped(params_.size(), false);  // the optimizer steps it in this step
  for (size_t j = 0; j < of_optimizer_.size(); ++j)
    if (of_optimizer_[j] >= 0) stepped[size_t(of_optimizer_[j])] = true;
  observing_ = false;
  for (size_t k = 0; k < params_.size(); ++k) {
    State& s = state_[k];
    Tensor g = params_[k].grad();
    s.observed = fuse && stepped[k] && g.defined() && params_[k].dtype() == DType::f32;
    if (s.observed) {
      std::fill(s.seen.begin(), s.seen.end(), uint8_t(0));
      observing_ = true;
      continue;
    }
    Tensor w = host_f32(params_[k]);
    g = g.defined() ? host_f32(g) : Tensor::zeros(w.shape());
    const int64_t n = w.numel();
    if (recording_)
      s.record = kc::optim_record_pass(g.data<float>(), w.data<float>(), s.code.data(),
                                       s.ema_grad.data(), s.ema_weight.data(), n, kernel_params(s));
    if (snapshotting_) {
      s.grad = g;
      s.weight_before.assign(w.data<float>(), w.data<float>() + n);
    }
  }
  if (recording_) {
    current_ = OptimRecord{};
    current_.step = step;
    current_.epoch = epoch_;
  }
  if (observing_) {
    optimizer.set_step_observer(this);
    ++observed_steps_;
  }
}

OptimStatsCallback::State* OptimStatsCallback::observed_state(std::size_t param) {
  const int64_t k = param < of_optimizer_.size() ? of_optimizer_[param] : -1;
  return k >= 0 && state_[size_t(k)].observed ? &state_[size_t(k)] : nullptr;
}

namespace {
// f(offset in the chunk, block index, block length) for each block of the chunk [lo, lo + n).
template <class F>
void for_blocks(int64_t lo, int64_t n, F&& f) {
  for (int64_t off = 0; off < n; off += kc::kOptimBlock)
    f(off, size_t((lo + off) / kc::kOptimBlock), std::min(kc::kOptimBlock, n - off));
}
}  // namespace

void OptimStatsCallback::before_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                                       const float* w) {
  State* s = observed_state(param);
  if (s == nullptr) return;
  const kc::OptimStepParams kp = kernel_params(*s);
  for_blocks(lo, n, [&](int64_t off, size_t b, int64_t len) {
    if (recording_)
      s->record_blocks[b] = kc::optim_record_block(g + off, w + off, s->code.data() + lo + off,
                                                   s->ema_grad.data() + lo + off,
                                                   s->ema_weight.data() + lo + off, len, kp);
    s->seen[b] |= 1;
  });
  if (snapshotting_) t_weight_before.assign(w, w + n);
}

void OptimStatsCallback::after_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                                      const float* w) {
  State* s = observed_state(param);
  if (s == nullptr) return;
  const kc::OptimStepParams kp = kernel_params(*s);
  for_blocks(lo, n, [&](int64_t off, size_t b, int64_t len) {
    if (snapshotting_)
      s->update_blocks[b] = kc::optim_update_block(g + off, t_weight_before.data() + off, w + off,
                                                   s->code.data() + lo + off, len, kp);
    s->seen[b] |= 2;
  });
}

void OptimStatsCallback::on_step_end(train::Trainer& t, int64_t global_step, double) {
  if (!recording_ && !snapshotting_) return;
  models::Optimizer& optimizer = t.optimizer();
  if (observing_ && optimizer.step_observer() == this) optimizer.set_step_observer(nullptr);
  for (size_t k = 0; k < params_.size(); ++k) {
    const State& s = state_[k];
    if (!s.observed) continue;
    for (size_t b = 0; b < s.seen.size(); ++b)
      GL_CHECK(s.seen[b] == 3,
               "--analyze optim: the {} step did not report components {}.. of parameter '{}' "
               "to its observer",
               optimizer.kind(), int64_t(b) * kc::kOptimBlock, names_[k]);
  }
  // Block sums in block order, as the separate passes add them. The record takes the weight
  // differences of the snapshot before it, so it is made before this step's snapshot.
  if (recording_) {
    for (State& s : state_) {
      if (!s.observed) continue;
      s.record = {};
      for (const auto& r : s.record_blocks) s.record += r;
    }
    finish_record();
  }
  if (!snapshotting_) return;
  for (size_t k = 0; k < params_.size(); ++k) {
    State& s = state_[k];
    if (s.observed) {
      s.update = {};
      for (const auto& u : s.update_blocks) s.update += u;
    } else {
      Tensor w = host_f32(params_[k]);
      s.update = kc::optim_update_pass(s.grad.data<float>(), s.weight_before.data(),
                                       w.data<float>(), s.code.data(), w.numel(), kernel_params(s));
      s.grad = Tensor();
    }
  }
  snapshot_step_ = global_step;
}

// The record of this step from each parameter's sums: the counts and moving averages of this
// step, the weight differences of the update before it.
void OptimStatsCallback::finish_record() {
  auto& rec = current_;
  rec.stats.assign(params_.size() + 1, {});
  auto& total = rec.stats.back();
  total.fill(0.0);
  for (size_t k = 0; k < params_.size(); ++k) {
    State& s = state_[k];
    const kc::OptimRecordSums& r = s.record;
    auto& o = rec.stats[k];
    o[kZeroCount] = double(r.zero);
    o[kSmallPrevCount] = double(s.update.small_prev);
    o[kRetainedCount] = double(r.retained);
    o[kReleasedCount] = double(s.update.small_prev - r.retained);
    o[kSignFlipCount] = double(r.sign_flip);
    o[kLocalMinCount] = double(r.local_min);
    o[kLocalMaxCount] = double(r.local_max);
    o[kWeightDiffNorm] = s.update.weight_diff_sq;  // squared until the total is formed
    o[kZeroGradWeightChangeNorm] = s.update.zero_grad_weight_change_sq;
    o[kEmaGradNorm] = r.ema_grad_sq;
    o[kEmaWeightNorm] = r.ema_weight_sq;
    for (int st : {kZeroCount, kSmallPrevCount, kRetainedCount, kReleasedCount, kSignFlipCount,
                   kLocalMinCount, kLocalMaxCount, kWeightDiffNorm, kZeroGradWeightChangeNorm,
                   kEmaGradNorm, kEmaWeightNorm})
      total[st] += o[st];
    s.have_ema = true;
  }
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

void OptimStatsCallback::on_train_end(train::Trainer& t) {
  if (t.optimizer().step_observer() == this) t.optimizer().set_step_observer(nullptr);
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
