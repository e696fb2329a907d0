// optim_stats.cpp: the optimization-dynamics callback (see optim_stats.h for definitions and
// for how the passes run inside the optimizer's step). The passes are the vectorized kernels of
// kernels/cpu/optim_stats.h: signs and comparisons are taken on the float values themselves
// (never on products, which underflow for tiny gradients), so counts are exact and reproducible
// by a naive loop. A step allocates nothing but its record: parameters are read in place (CPU
// f32 contiguous) and the codes and moving averages are overwritten by the passes.
#include "analysis/optim_stats.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/npy.h"
#include "engine/io/safetensors.h"

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
  state_epoch_ = 0;
  const int64_t done = t.global_step() / std::max<int64_t>(t.train_loader().num_batches(), 1);
  if (done > 0 && opt_.write_files && !t.run_dir().empty())
    resume_from_files(t.run_dir() + "/optim", done);
}

namespace {
std::string state_file(int64_t epoch) {
  return fmt::format("state_epoch_{}.safetensors", epoch);
}
// The epochs of the state files in `dir` ("state_epoch_E.safetensors").
std::vector<std::pair<int64_t, std::string>> state_files(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    int64_t epoch = 0;
    char tail[32] = {};
    if (std::sscanf(name.c_str(), "state_epoch_%" SCNd64 "%31s", &epoch, tail) == 2 &&
        std::string(tail) == ".safetensors")
      out.emplace_back(epoch, e.path().string());
  }
  return out;
}
}  // namespace

void OptimStatsCallback::on_before_checkpoint(train::Trainer& t) {
  writer_.wait();
  if (!opt_.write_files || t.run_dir().empty()) return;
  const std::string dir = t.run_dir() + "/optim";
  io::ensure_dir(dir);
  nlohmann::json meta{{"epoch", epoch_},
                      {"snapshot_step", snapshot_step_},
                      {"observed_steps", observed_steps_},
                      {"params", nlohmann::json::array()}};
  std::vector<io::NamedBuffer> bufs;
  auto add = [&](const std::string& name, const char* dtype, const void* data, size_t bytes,
                 int64_t n) {
    io::NamedBuffer b{name, dtype, {n}, std::vector<uint8_t>(bytes)};
    if (bytes) std::memcpy(b.bytes.data(), data, bytes);
    bufs.push_back(std::move(b));
  };
  for (size_t k = 0; k < state_.size(); ++k) {
    const State& s = state_[k];
    meta["params"].push_back({{"name", names_[k]},
                              {"have_ema", s.have_ema},
                              {"small_prev", s.update.small_prev},
                              {"weight_diff_sq", s.update.weight_diff_sq},
                              {"zero_grad_weight_change_sq", s.update.zero_grad_weight_change_sq}});
    const auto n = int64_t(s.code.size());
    add(fmt::format("code.{}", k), "U8", s.code.data(), s.code.size(), n);
    add(fmt::format("ema_grad.{}", k), "F32", s.ema_grad.data(), s.ema_grad.size() * 4, n);
    add(fmt::format("ema_weight.{}", k), "F32", s.ema_weight.data(), s.ema_weight.size() * 4, n);
  }
  io::write_file_atomic(dir + "/" + state_file(epoch_),
                        io::serialize_safetensors(bufs, {{"gradlens.optim_state", meta.dump()}}));
  // The checkpoint about to be replaced may still need the state before this one.
  for (const auto& [epoch, path] : state_files(dir))
    if (epoch < state_epoch_ || epoch > epoch_) std::filesystem::remove(path);
  state_epoch_ = epoch_;
}

void OptimStatsCallback::resume_from_files(const std::string& dir, int64_t done) {
  const size_t P = names_.size(), S = kNumOptimStats;
  nlohmann::json j = nlohmann::json::object();  // optim.json of the run so far
  if (io::file_exists(dir + "/optim.json")) {
    // optim.json holds the settings the earlier records and averages were taken with: without
    // it they cannot be checked against this run's, and records of two settings would mix in
    // one file. So nothing of before is kept and the statistics start again at this epoch,
    // which leaves files that are true of the epochs they list.
    const std::string why = io::read_json_object_file(dir + "/optim.json", j);
    if (!why.empty()) {
      fmt::print(stderr,
                 "note: --analyze optim: {}; the optimization statistics, their moving averages "
                 "and the sign maps start again after epoch {}, and the files lose the earlier "
                 "epochs\n",
                 why, done);
      return;
    }
  }
  const io::JsonReader optim_json(j, dir + "/optim.json");
  // The run's statistics continue only under the settings they were taken with.
  {
    auto same = [&](const char* key, const char* flag, double now) {
      const double was = optim_json.get(key, now);
      GL_CHECK(was == now,
               "--resume: {}/optim.json was recorded with {} {}, now {}; resume with the same "
               "value (or train a new run)",
               dir, flag, was, now);
    };
    same("every", "--analyze-every", double(opt_.every));
    same("ema_decay", "--ema-decay", opt_.ema_decay);
    same("zero_threshold", "--zero-grad-threshold", opt_.zero_threshold);
    same("small_threshold", "the small-gradient threshold", opt_.small_threshold);
    same("sign_large_factor", "the sign map's large factor", opt_.sign_large_factor);
  }
  // Records and sign-map rows of the epochs done (later ones, from epochs past the
  // checkpoint, are trained again).
  if (io::file_exists(dir + "/stats.npy") && io::file_exists(dir + "/steps.npy")) {
    io::NpyArray st = io::load_npy(dir + "/stats.npy"), sp = io::load_npy(dir + "/steps.npy");
    GL_CHECK(st.dtype == "F64" && st.shape.size() == 3 && st.shape[1] == int64_t(P + 1) &&
                 st.shape[2] == int64_t(S) && sp.dtype == "F64" && sp.shape.size() == 2 &&
                 sp.shape[1] == 2 && sp.shape[0] == st.shape[0],
             "--resume: {}/stats.npy and steps.npy do not hold this model's records", dir);
    const auto* stats = reinterpret_cast<const double*>(st.bytes.data());
    const auto* steps = reinterpret_cast<const double*>(sp.bytes.data());
    for (int64_t r = 0; r < st.shape[0]; ++r) {
      if (steps[2 * r + 1] > double(done)) continue;
      OptimRecord rec;
      rec.step = int64_t(steps[2 * r]);
      rec.epoch = int64_t(steps[2 * r + 1]);
      rec.stats.resize(P + 1);
      for (size_t k = 0; k <= P; ++k)
        std::memcpy(rec.stats[k].data(), stats + (size_t(r) * (P + 1) + k) * S, S * 8);
      records_.push_back(std::move(rec));
    }
  }
  {
    const auto epochs = optim_json.get("sign_map_epochs", std::vector<int64_t>{});
    size_t keep = 0;
    while (keep < epochs.size() && epochs[keep] <= done) ++keep;
    bool ok = keep > 0;
    std::vector<std::vector<std::vector<int8_t>>> maps(P), zooms(P);
    for (size_t k = 0; k < P && ok; ++k)
      for (int zoom = 0; zoom < 2 && ok; ++zoom) {
        const std::string path = fmt::format("{}/sign_map_{}{}.npy", dir, k, zoom ? "_zoom" : "");
        if (!io::file_exists(path)) {
          ok = false;
          break;
        }
        io::NpyArray a = io::load_npy(path);
        if (a.dtype != "I32" || a.shape.size() != 2 || a.shape[0] < int64_t(keep)) {
          ok = false;
          break;
        }
        const auto* v = reinterpret_cast<const int32_t*>(a.bytes.data());
        auto& rows = zoom ? zooms[k] : maps[k];
        for (size_t r = 0; r < keep; ++r)
          rows.emplace_back(v + r * size_t(a.shape[1]), v + (r + 1) * size_t(a.shape[1]));
      }
    if (ok) {
      sign_maps_ = std::move(maps);
      sign_zooms_ = std::move(zooms);
      sign_epochs_.assign(epochs.begin(), epochs.begin() + std::ptrdiff_t(keep));
    }
  }
  // The moving averages, sign codes and the pending snapshot the next epoch starts from.
  const std::string path = dir + "/" + state_file(done);
  if (!io::file_exists(path)) {
    fmt::print(stderr,
               "--analyze optim: no {} (the run had no --analyze optim at that checkpoint, or "
               "was written by an older gradlens): its averages start again here\n",
               path);
    return;
  }
  io::SafetensorsFile f = io::load_safetensors(path);
  try {
    const char* const entry = "metadata gradlens.optim_state";
    GL_CHECK(f.metadata.count("gradlens.optim_state"), "no {}", entry);
    const nlohmann::json parsed = io::parse_json(f.metadata.at("gradlens.optim_state"), entry);
    const io::JsonReader meta(parsed, entry);
    GL_CHECK(meta["epoch"].get<int64_t>() == done && meta["params"].size() == P,
             "it is not the state of this model after epoch {}", done);
    snapshot_step_ = meta["snapshot_step"].get<int64_t>();
    observed_steps_ = meta["observed_steps"].get<int64_t>();
    for (size_t k = 0; k < P; ++k) {
      const io::JsonReader p = meta["params"][k];
      const std::string name = p["name"].get<std::string>();
      GL_CHECK(name == names_[k], "parameter {} is '{}', not '{}'", k, name, names_[k]);
      State& s = state_[k];
      s.have_ema = p["have_ema"].get<bool>();
      s.update.small_prev = p["small_prev"].get<int64_t>();
      s.update.weight_diff_sq = p["weight_diff_sq"].get<double>();
      s.update.zero_grad_weight_change_sq = p["zero_grad_weight_change_sq"].get<double>();
    }
    for (const auto& b : f.tensors) {
      size_t k = 0;
      char what[32] = {};
      GL_CHECK(std::sscanf(b.name.c_str(), "%31[a-z_].%zu", what, &k) == 2 && k < P,
               "unknown entry '{}'", b.name);
      State& s = state_[k];
      const std::string w = what;
      const size_t n = s.code.size();
      if (w == "code") {
        GL_CHECK(b.dtype == "U8" && b.bytes.size() == n, "'{}' has the wrong size", b.name);
        std::memcpy(s.code.data(), b.bytes.data(), n);
      } else if (w == "ema_grad" || w == "ema_weight") {
        GL_CHECK(b.dtype == "F32" && b.bytes.size() == n * 4, "'{}' has the wrong size", b.name);
        std::memcpy((w == "ema_grad" ? s.ema_grad : s.ema_weight).data(), b.bytes.data(), n * 4);
      } else {
        throw Error(fmt::format("unknown entry '{}'", b.name));
      }
    }
  } catch (const std::exception& e) {
    throw Error(fmt::format("--resume: {}: {}", path, e.what()));
  }
  state_epoch_ = done;
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
