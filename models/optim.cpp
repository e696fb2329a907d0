// optim.cpp: SGD and Adam/AdamW steps as single fused loops over each parameter's raw data.
// The arithmetic follows torch.optim's single-tensor path operation by operation, in the
// parameter's dtype with the scalars rounded to it, so results track PyTorch's closely.
// This file is compiled with -fno-math-errno (CMakeLists.txt): v >= 0 in Adam, so sqrt never
// sets errno, and without the flag GCC keeps a scalar errno path that stops the fused loop
// from vectorizing. With a StepObserver (optim.h) the loop of an f32 parameter runs chunk by
// chunk between the observer's calls (on several threads for large parameters); the loops take
// their scalars by value so that they vectorize either way.
#include "models/optim.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <type_traits>

#include "engine/autograd.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "models/cuda/optim_cuda.h"
#endif

namespace gl::models {

namespace {
template <class F>
void dispatch(DType d, F&& f) {
  if (d == DType::f32)
    f(float{});
  else
    f(double{});
}

// Observed chunks of parameters at least this large run on several threads.
constexpr int64_t kObserveParallelMin = int64_t(1) << 16;

// Runs update(lo, hi) over the n components of parameter i: in one call, or, for an f32
// parameter with an observer, chunk by chunk between the observer's calls (StepObserver).
template <class T, class Update>
void observed_update(StepObserver* observer, std::size_t i, const T* g, const T* w, int64_t n,
                     Update&& update) {
  if constexpr (std::is_same_v<T, float>) {
    if (observer != nullptr) {
      const int64_t chunk = Optimizer::kObserveChunk, chunks = (n + chunk - 1) / chunk;
      auto one = [&](int64_t c) {
        const int64_t lo = c * chunk, len = std::min(chunk, n - lo);
        observer->before_update(i, lo, len, g + lo, w + lo);
        update(lo, lo + len);
        observer->after_update(i, lo, len, g + lo, w + lo);
      };
      if (n >= kObserveParallelMin && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) one(c);
      } else {
        for (int64_t c = 0; c < chunks; ++c) one(c);
      }
      return;
    }
  }
  update(0, n);
}

// The update loops over components [lo, hi), their scalars passed by value: the loops
// vectorize (nothing they store can alias a scalar), whether called once or per chunk.
template <class T>
inline __attribute__((always_inline)) void sgd_range(T* p, const T* g, int64_t lo, int64_t hi, T wd,
                                                     T neg_lr) {
  for (int64_t k = lo; k < hi; ++k) {
    T d = g[k] + wd * p[k];
    p[k] = p[k] + neg_lr * d;
  }
}

template <class T>
inline __attribute__((always_inline)) void sgd_momentum_range(T* p, const T* g, T* buf, int64_t lo,
                                                              int64_t hi, T wd, T mom, T damp1,
                                                              T neg_lr, bool first, bool nesterov) {
  for (int64_t k = lo; k < hi; ++k) {
    T d = g[k] + wd * p[k];
    T b = first ? d : buf[k] * mom + damp1 * d;
    buf[k] = b;
    T step = nesterov ? d + mom * b : b;
    p[k] = p[k] + neg_lr * step;
  }
}

template <class T>
struct AdamScalars {
  T b1, b2, one_b1, one_b2, eps, neg_step, bcs, l2, shrink;
  bool decay_first;
};

template <class T>
inline __attribute__((always_inline)) void adam_range(T* p, const T* g, T* m, T* v, int64_t lo,
                                                      int64_t hi, const AdamScalars<T> c) {
  const T b1 = c.b1, b2 = c.b2, one_b1 = c.one_b1, one_b2 = c.one_b2, eps = c.eps,
          neg_step = c.neg_step, bcs = c.bcs, l2 = c.l2, shrink = c.shrink;
  const bool decay_first = c.decay_first;
  for (int64_t k = lo; k < hi; ++k) {
    T w = decay_first ? p[k] * shrink : p[k];
    T gk = g[k] + l2 * w;
    T mk = m[k] * b1 + one_b1 * gk;
    T vk = v[k] * b2 + one_b2 * (gk * gk);
    m[k] = mk;
    v[k] = vk;
    T denom = std::sqrt(vk) / bcs + eps;
    p[k] = w + neg_step * (mk / denom);
  }
}

// The f32 loops (the overloads the steps call for float), cloned for AVX-512 and AVX2 and picked
// at load time. This file is compiled without FP contraction, so every clone rounds exactly like
// the baseline loop: the same bits on any CPU.
#define GL_OPTIM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
GL_OPTIM_CLONES void sgd_range(float* p, const float* g, int64_t lo, int64_t hi, float wd,
                               float neg_lr) {
  sgd_range<float>(p, g, lo, hi, wd, neg_lr);
}
GL_OPTIM_CLONES void sgd_momentum_range(float* p, const float* g, float* buf, int64_t lo,
                                        int64_t hi, float wd, float mom, float damp1, float neg_lr,
                                        bool first, bool nesterov) {
  sgd_momentum_range<float>(p, g, buf, lo, hi, wd, mom, damp1, neg_lr, first, nesterov);
}
GL_OPTIM_CLONES void adam_range(float* p, const float* g, float* m, float* v, int64_t lo,
                                int64_t hi, const AdamScalars<float> c) {
  adam_range<float>(p, g, m, v, lo, hi, c);
}
#undef GL_OPTIM_CLONES

// "state.<i>.<field>" -> (i, field); throws naming the key otherwise.
std::pair<std::size_t, std::string> parse_state_key(const std::string& opt, const std::string& key,
                                                    std::size_t nparams) {
  GL_CHECK(key.rfind("state.", 0) == 0, "{}.load_state_dict: unexpected key '{}'", opt, key);
  auto dot = key.find('.', 6);
  GL_CHECK(dot != std::string::npos, "{}.load_state_dict: unexpected key '{}'", opt, key);
  std::string idx = key.substr(6, dot - 6);
  GL_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos,
           "{}.load_state_dict: unexpected key '{}'", opt, key);
  std::size_t i = std::stoul(idx);
  GL_CHECK(i < nparams, "{}.load_state_dict: key '{}' names parameter {} of {}", opt, key, i,
           nparams);
  return {i, key.substr(dot + 1)};
}

void check_state_shape(const std::string& opt, const std::string& key, const Tensor& t,
                       const Tensor& param) {
  GL_CHECK(t.defined() && t.shape() == param.shape(),
           "{}.load_state_dict: shape mismatch for '{}': checkpoint has {}, parameter has {}", opt,
           key, t.defined() ? shape_str(t.shape()) : "undefined", shape_str(param.shape()));
}

Tensor fresh_copy(const Tensor& src, const Tensor& like) {
  Tensor t = Tensor::empty(like.shape(), like.dtype(), like.device());
  t.copy_(src);
  return t;
}
}  // namespace

// ---------------------------------------------------------------- base
Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)) {
  set_lr(lr);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    GL_CHECK(p.defined(), "optimizer: parameter {} is undefined", i);
    if (p.device().is_cuda() || params_[0].device().is_cuda()) {
#if defined(GRADLENS_HAVE_CUDA)
      GL_CHECK(p.device() == params_[0].device() && p.dtype() == DType::f32 && p.is_contiguous(),
               "optimizer: parameter {} ({} on {}) must be a contiguous f32 tensor on {} like "
               "parameter 0",
               i, p.str(), p.device().str(), params_[0].device().str());
#else
      throw Error(
          fmt::format("optimizer: parameter {} is on {}, but this gradlens was built "
                      "without CUDA",
                      i, p.device().str()));
#endif
    } else {
      GL_CHECK(is_floating(p.dtype()) && p.is_contiguous(),
               "optimizer: parameter {} ({}) must be a contiguous floating CPU tensor", i, p.str());
    }
    for (std::size_t j = 0; j < i; ++j)
      GL_CHECK(!params_[j].same(p), "optimizer: parameter {} is the same tensor as parameter {}", i,
               j);
  }
}

void Optimizer::set_lr(double lr) {
  GL_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate {} must be finite and >= 0", lr);
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

Tensor Optimizer::grad_of(std::size_t i) const {
  const Tensor& p = params_[i];
  Tensor g = p.grad();
  if (!g.defined()) return g;
  GL_CHECK(g.shape() == p.shape(), "{}: gradient {} for parameter {} {}", kind(), g.str(), i,
           p.str());
  if (g.dtype() != p.dtype()) g = g.to(p.dtype());
  return g.is_contiguous() ? g : g.contiguous();
}

void Optimizer::check_state_after(const NamedTensors& state, int64_t steps,
                                  const std::string& prefix) const {
  std::map<std::string, const Tensor*> given;
  for (const auto& [key, t] : state)
    GL_CHECK(given.emplace(key, &t).second, "optimizer state '{}{}' appears twice", prefix, key);
  for (const StateEntry& e : state_after(steps)) {
    auto it = given.find(e.key);
    GL_CHECK(it != given.end(),
             "optimizer state '{}{}' is missing ({} keeps it for every parameter once it has "
             "stepped, and the run has taken {} steps)",
             prefix, e.key, kind(), steps);
    const Tensor& t = *it->second;
    GL_CHECK(t.defined() && t.dtype() == e.dtype && t.shape() == e.shape,
             "optimizer state '{}{}' is inconsistent: {} {}, expected {} {}", prefix, e.key,
             t.defined() ? dtype_name(t.dtype()) : "undefined",
             t.defined() ? shape_str(t.shape()) : "", dtype_name(e.dtype), shape_str(e.shape));
    if (e.count) {
      const int64_t count = t.to_vector<int64_t>()[0];
      GL_CHECK(count == *e.count,
               "optimizer state '{}{}' = {} is inconsistent with the {} steps the run has taken",
               prefix, e.key, count, *e.count);
    }
    given.erase(it);
  }
  GL_CHECK(given.empty(),
           "optimizer state '{}{}' is inconsistent: {} with these settings keeps "
           "no such state",
           prefix, given.empty() ? "" : given.begin()->first, kind());
}

std::vector<Tensor> Optimizer::device_grads() const {
  std::vector<Tensor> grads;
  std::size_t missing = params_.size();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    grads.push_back(grad_of(i));
    if (!grads.back().defined() && missing == params_.size()) missing = i;
  }
  if (missing == params_.size()) return grads;
  for (const Tensor& g : grads)
    GL_CHECK(!g.defined(),
             "{}: on {} every parameter must have a gradient in a step (all parameters step in "
             "one launch), but parameter {} ({}) has none",
             kind(), params_[0].device().str(), missing, params_[missing].str());
  return {};
}

// ---------------------------------------------------------------- SGD
SGD::SGD(std::vector<Tensor> params, const SgdOptions& options)
    : Optimizer(std::move(params), options.lr), opt_(options) {
  GL_CHECK(options.momentum >= 0, "SGD: momentum {} must be >= 0", options.momentum);
  GL_CHECK(options.weight_decay >= 0, "SGD: weight_decay {} must be >= 0", options.weight_decay);
  GL_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
           "SGD: nesterov needs momentum > 0 and dampening 0 (momentum {}, dampening {})",
           options.momentum, options.dampening);
  momentum_.resize(params_.size());
}

void SGD::step() {
  NoGrad no_grad;
  if (on_device()) {
#if defined(GRADLENS_HAVE_CUDA)
    std::vector<Tensor> grads = device_grads();
    if (grads.empty()) return;
    bool first = false;
    if (opt_.momentum != 0 && !momentum_[0].defined()) {
      for (std::size_t i = 0; i < params_.size(); ++i)
        momentum_[i] = Tensor::zeros(params_[i].shape(), DType::f32, params_[i].device());
      stepper_.reset();
      first = true;
    }
    if (!stepper_)
      stepper_ = std::make_shared<cuda::DeviceStepper>(
          params_, opt_.momentum != 0 ? momentum_ : std::vector<Tensor>{}, std::vector<Tensor>{});
    stepper_->load_grads(grads);
    stepper_->sgd(opt_, lr_, first ? 1 : 2);  // only "first step or not" matters to SGD
#endif
    return;
  }
  for (std::size_t i = 0; i < params_.size(); ++i) step_param(i);
}

void SGD::step_param(std::size_t i) {
  NoGrad no_grad;
  GL_CHECK(!on_device(), "SGD::step_param: parameters on a CUDA device step all at once");
  GL_CHECK(i < params_.size(), "SGD::step_param: parameter {} of {}", i, params_.size());
  Tensor g = grad_of(i);
  if (!g.defined()) return;
  const Tensor& p = params_[i];
  bool first = false;
  if (opt_.momentum != 0 && !momentum_[i].defined()) {
    momentum_[i] = Tensor::empty(p.shape(), p.dtype());
    first = true;
  }
  int64_t n = p.numel();
  dispatch(p.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* pp = static_cast<T*>(p.raw_data());
    const T* gp = static_cast<const T*>(g.raw_data());
    const T wd = T(opt_.weight_decay), mom = T(opt_.momentum), damp1 = T(1.0 - opt_.dampening),
            neg_lr = T(-lr_);
    if (opt_.momentum == 0) {
      observed_update(observer_, i, gp, pp, n,
                      [&](int64_t lo, int64_t hi) { sgd_range(pp, gp, lo, hi, wd, neg_lr); });
      return;
    }
    T* buf = static_cast<T*>(momentum_[i].raw_data());
    const bool nesterov = opt_.nesterov;
    observed_update(observer_, i, gp, pp, n, [&](int64_t lo, int64_t hi) {
      sgd_momentum_range(pp, gp, buf, lo, hi, wd, mom, damp1, neg_lr, first, nesterov);
    });
  });
}

NamedTensors SGD::state_dict() const {
  NamedTensors out;
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (momentum_[i].defined())
      out.emplace_back(fmt::format("state.{}.momentum_buffer", i), momentum_[i].clone());
  return out;
}

std::vector<Optimizer::StateEntry> SGD::state_after(int64_t steps) const {
  std::vector<StateEntry> out;
  if (opt_.momentum == 0 || steps == 0) return out;
  for (std::size_t i = 0; i < params_.size(); ++i)
    out.push_back({fmt::format("state.{}.momentum_buffer", i), params_[i].dtype(),
                   params_[i].shape(), std::nullopt});
  return out;
}

void SGD::load_state_dict(const NamedTensors& state) {
  std::vector<Tensor> next(params_.size());
  for (const auto& [key, t] : state) {
    auto [i, field] = parse_state_key("SGD", key, params_.size());
    GL_CHECK(field == "momentum_buffer", "SGD.load_state_dict: unexpected key '{}'", key);
    check_state_shape("SGD", key, t, params_[i]);
    next[i] = fresh_copy(t, params_[i]);
  }
  if (on_device()) {
    bool any = false, all = true;
    for (const Tensor& t : next) {
      any = any || t.defined();
      all = all && t.defined();
    }
    GL_CHECK(!any || all,
             "SGD.load_state_dict: on {} momentum buffers are needed for every "
             "parameter or none",
             params_[0].device().str());
  }
  momentum_ = std::move(next);
  stepper_.reset();  // the table holds the old buffers' addresses
}

// ---------------------------------------------------------------- Adam / AdamW
Adam::Adam(std::vector<Tensor> params, const AdamOptions& options, bool decoupled)
    : Optimizer(std::move(params), options.lr), opt_(options), decoupled_(decoupled) {
  const char* name = decoupled ? "AdamW" : "Adam";
  GL_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
           "{}: betas ({}, {}) must lie in [0, 1)", name, options.beta1, options.beta2);
  GL_CHECK(options.eps >= 0, "{}: eps {} must be >= 0", name, options.eps);
  GL_CHECK(options.weight_decay >= 0, "{}: weight_decay {} must be >= 0", name,
           options.weight_decay);
  steps_.assign(params_.size(), 0);
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
}

void Adam::step() {
  NoGrad no_grad;
  if (on_device()) {
#if defined(GRADLENS_HAVE_CUDA)
    std::vector<Tensor> grads = device_grads();
    if (grads.empty()) return;
    if (!exp_avg_[0].defined()) {
      for (std::size_t i = 0; i < params_.size(); ++i) {
        exp_avg_[i] = Tensor::zeros(params_[i].shape(), DType::f32, params_[i].device());
        exp_avg_sq_[i] = Tensor::zeros(params_[i].shape(), DType::f32, params_[i].device());
      }
      stepper_.reset();
    }
    for (std::size_t i = 0; i < params_.size(); ++i) {
      ++steps_[i];
      GL_CHECK(steps_[i] == steps_[0],
               "{}: on {} every parameter must be at the same step "
               "(parameter {} at {}, parameter 0 at {})",
               kind(), params_[0].device().str(), i, steps_[i], steps_[0]);
    }
    if (!stepper_) stepper_ = std::make_shared<cuda::DeviceStepper>(params_, exp_avg_, exp_avg_sq_);
    stepper_->load_grads(grads);
    stepper_->adam(opt_, lr_, decoupled_, steps_[0]);
#endif
    return;
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(i);
    if (!g.defined()) continue;
    const Tensor& p = params_[i];
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = Tensor::zeros(p.shape(), p.dtype());
      exp_avg_sq_[i] = Tensor::zeros(p.shape(), p.dtype());
    }
    int64_t t = ++steps_[i];
    double bc1 = 1.0 - std::pow(opt_.beta1, double(t));
    double bc2 = 1.0 - std::pow(opt_.beta2, double(t));
    double step_size = lr_ / bc1;
    double bc2_sqrt = std::sqrt(bc2);
    int64_t n = p.numel();
    dispatch(p.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* pp = static_cast<T*>(p.raw_data());
      const T* gp = static_cast<const T*>(g.raw_data());
      T* m = static_cast<T*>(exp_avg_[i].raw_data());
      T* v = static_cast<T*>(exp_avg_sq_[i].raw_data());
      AdamScalars<T> c;
      c.b1 = T(opt_.beta1);
      c.b2 = T(opt_.beta2);
      c.one_b1 = T(1.0 - opt_.beta1);
      c.one_b2 = T(1.0 - opt_.beta2);
      c.eps = T(opt_.eps);
      c.neg_step = T(-step_size);
      c.bcs = T(bc2_sqrt);
      c.l2 = decoupled_ ? T(0) : T(opt_.weight_decay);
      c.shrink = T(1.0 - lr_ * opt_.weight_decay);
      c.decay_first = decoupled_ && opt_.weight_decay != 0;
      observed_update(observer_, i, gp, pp, n,
                      [&](int64_t lo, int64_t hi) { adam_range(pp, gp, m, v, lo, hi, c); });
    });
  }
}

NamedTensors Adam::state_dict() const {
  NamedTensors out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;
    out.emplace_back(fmt::format("state.{}.step", i),
                     Tensor::full({}, double(steps_[i]), DType::i64));
    out.emplace_back(fmt::format("state.{}.exp_avg", i), exp_avg_[i].clone());
    out.emplace_back(fmt::format("state.{}.exp_avg_sq", i), exp_avg_sq_[i].clone());
  }
  return out;
}

std::vector<Optimizer::StateEntry> Adam::state_after(int64_t steps) const {
  std::vector<StateEntry> out;
  if (steps == 0) return out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    out.push_back({fmt::format("state.{}.step", i), DType::i64, Shape{}, steps});
    out.push_back({fmt::format("state.{}.exp_avg", i), p.dtype(), p.shape(), std::nullopt});
    out.push_back({fmt::format("state.{}.exp_avg_sq", i), p.dtype(), p.shape(), std::nullopt});
  }
  return out;
}

void Adam::load_state_dict(const NamedTensors& state) {
  const std::string name = kind();
  std::size_t n = params_.size();
  std::vector<int64_t> steps(n, 0);
  std::vector<Tensor> m(n), v(n);
  std::vector<int> seen(n, 0);
  for (const auto& [key, t] : state) {
    auto [i, field] = parse_state_key(name, key, n);
    if (field == "step") {
      GL_CHECK(t.defined() && t.numel() == 1, "{}.load_state_dict: '{}' must be a scalar", name,
               key);
      double s = t.item();
      GL_CHECK(s >= 1 && s == std::floor(s), "{}.load_state_dict: '{}' = {} is not a step count",
               name, key, s);
      steps[i] = int64_t(s);
      seen[i] |= 1;
    } else if (field == "exp_avg" || field == "exp_avg_sq") {
      check_state_shape(name, key, t, params_[i]);
      (field == "exp_avg" ? m : v)[i] = fresh_copy(t, params_[i]);
      seen[i] |= field == "exp_avg" ? 2 : 4;
    } else {
      throw Error(fmt::format("{}.load_state_dict: unexpected key '{}'", name, key));
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    GL_CHECK(seen[i] == 0 || seen[i] == 7,
             "{}.load_state_dict: parameter {} needs step, exp_avg and exp_avg_sq together", name,
             i);
  steps_ = std::move(steps);
  exp_avg_ = std::move(m);
  exp_avg_sq_ = std::move(v);
  stepper_.reset();  // the table holds the old buffers' addresses
}

}  // namespace gl::models
