// fused.cpp: the fused multi-MLP step and the group that drives Trainers in lockstep.
#include "train/fused.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>

#include "engine/ops.h"
#include "kernels/cpu/fp_env.h"

namespace gl::train {

std::string fused_step_unsupported(const TrainConfig& c) {
  if (c.model != "mlp") return "--model " + c.model + ": the fused step covers MLPs only";
  if (c.dropout > 0) return "--dropout: the fused step has no dropout";
  if (c.batchnorm) return "--batchnorm: the fused step has no batchnorm";
  return "";
}

std::string fused_group_key(const TrainConfig& c) {
  nlohmann::json j = {{"data", TrainData::key_of(c)}, {"model", c.model},
                      {"hidden", c.hidden_widths()},  {"threads", c.threads},
                      {"denormals", c.denormals},     {"fused", fused_step_unsupported(c).empty()}};
  if (c.model == "cnn") j["cnn"] = {c.channels, c.fc, c.kernel, c.pool};
  // One GEMM backend per process (set_cuda_gemm_algo): members on a GPU must agree on it.
  if (c.device != "cpu") j["gemm"] = c.gemm;
  return j.dump();
}

namespace {

// f(k) for every model k, in parallel over the models when there are threads to spare. The
// ops inside then run on one thread each, which changes none of their results (their
// arithmetic does not depend on the thread count).
// On a GPU the models go one after the other: each op is a launch on the one stream.
template <class F>
void for_each_model(std::size_t n, bool cuda, F&& f) {
  if (cuda || n < 2 || omp_get_max_threads() < 2 || omp_in_parallel()) {
    for (std::size_t k = 0; k < n; ++k) f(k);
    return;
  }
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < int64_t(n); ++k) {
    NoGrad ng;  // grad mode is per thread
    try {
      f(std::size_t(k));
    } catch (...) {
#pragma omp critical(gl_fused_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// The fused step layer by layer: on several threads each layer's GEMMs for all the models in
// one batched call (spread over the threads by sgemm_batched), the elementwise work in parallel
// over the models; on one thread (one model at a time, see models_one_after_another) each GEMM
// followed at once by what reads its output, and fetching what the next pieces read while it
// computes.
FusedStepResult fused_step_by_layer(const std::vector<models::Network*>& models,
                                    const Tensor& images, const Tensor& labels,
                                    const std::vector<models::SGD*>& sgd,
                                    const std::vector<char>& drop_grads) {
  NoGrad ng;
  const std::size_t n = models.size();  // sgd and drop_grads: checked by fused_mlp_step
  FusedStepResult r;
  if (n == 0) return r;
  const std::size_t depth = models[0]->taps().size();
  for (auto* m : models) {
    GL_CHECK(m->taps().size() == depth, "fused step: models of {} and {} hidden layers",
             m->taps().size(), depth);
    for (const auto& tap : m->taps())
      GL_CHECK(tap.linear && !tap.batchnorm && !tap.dropout,
               "fused step: hidden layer {} is not a Linear and an activation alone", tap.layer);
  }
  // Layer j < depth is hidden layer j; layer `depth` is the output Linear.
  auto linear_of = [&](std::size_t k, std::size_t j) -> const models::Linear& {
    return j < depth ? *models[k]->taps()[j].linear : models[k]->output_layer();
  };
  auto params = [&](std::size_t j, bool weight) {
    std::vector<Tensor> out;
    out.reserve(n);
    for (std::size_t k = 0; k < n; ++k)
      out.push_back(weight ? linear_of(k, j).weight() : linear_of(k, j).bias());
    return out;
  };

  // Forward, keeping each hidden layer's post-activation, and its pre-activation when the
  // activation's backward reads it (or, for GELU, the derivative computed with the forward
  // from the same Phi and phi, so the backward is one product), for backward. Every buffer is
  // released as soon as it has served, so the next one allocated reuses a block that is still in
  // cache (Storage keeps freed blocks for reuse), rather than a cold one.
  std::vector<std::vector<Tensor>> pre(depth), post(depth, std::vector<Tensor>(n)),
      deriv(depth, std::vector<Tensor>(n));
  std::vector<Tensor> h(n, images);
  // On one thread each model's GEMM is followed at once by the work that reads its output (its
  // activation; in the backward its weight step and activation backward), while the output and
  // the weights are still in cache; across threads, one batched call per layer spreads the GEMMs.
  // The same kernels run either way, so the results are the same.
  // On a GPU one batched launch per layer and pass (kernels::cuda::sgemm_tiled_batched), the
  // activations and their backward one launch per activation among the models
  // (activate_batched), the bias gradients one launch per layer (column_sums_batched) and the
  // losses with their gradients three (cross_entropy_and_grad_batched), each per 32 models: no
  // launch is one model's alone (but for the GEMMs under --gemm tf32 or cublas, one per model).
  const bool cuda = images.device().is_cuda();
  const bool one_by_one = !cuda && (omp_in_parallel() || omp_get_max_threads() < 2);
  // Hidden layer j's activation and slope of every model.
  auto activations = [&](std::size_t j) {
    std::pair<std::vector<ActivationKind>, std::vector<double>> a;
    for (auto* m : models) {
      a.first.push_back(m->taps()[j].post->activation());
      a.second.push_back(m->taps()[j].post->leaky_slope());
    }
    return a;
  };
  for (std::size_t j = 0; j < depth; ++j) {
    if (cuda) {
      pre[j] = linear_batched(h, params(j, true), params(j, false));
      const auto [kinds, slopes] = activations(j);
      post[j] = activate_batched(pre[j], kinds, slopes);
      for (std::size_t k = 0; k < n; ++k)  // kept only where the backward reads it
        if (!activation_backward_reads_input(kinds[k], slopes[k])) pre[j][k] = Tensor();
      h = post[j];
      continue;
    }
    if (one_by_one)
      pre[j].assign(n, Tensor());
    else
      pre[j] = linear_batched(h, params(j, true), params(j, false));
    for_each_model(n, cuda, [&](std::size_t k) {
      const models::Activation& act = *models[k]->taps()[j].post;
      // ReLU is applied in the GEMM's epilogue, in registers: no pre-activation buffer, no
      // second pass (steps 5-7% faster than with the pass, alternating the two every 10 steps
      // in one process). tanh and sigmoid stay a pass of their own: as a pass over each output
      // tile in the epilogue their steps ran 4-5% slower, measured the same way.
      const bool in_epilogue = act.activation() == ActivationKind::relu;
      if (one_by_one) {
        const models::Linear& lin = linear_of(k, j);
        // The next layer's weights come in meanwhile.
        prefetch_during_next_matmul(linear_of(k, j + 1).weight());
        if (in_epilogue) {
          post[j][k] = linear_activation(h[k], lin.weight(), lin.bias(), act.activation(),
                                         act.leaky_slope());
          return;
        }
        pre[j][k] = linear(h[k], lin.weight(), lin.bias());
      }
      // An activation whose backward reads the output only (tanh and sigmoid; ReLU too on the
      // batched path) overwrites the pre-activation: no fresh buffer to bring into cache (tanh
      // and sigmoid steps 2.5-4% faster, alternating with a fresh output every 10 steps in one
      // process).
      if (!activation_backward_reads_input(act.activation(), act.leaky_slope())) {
        post[j][k] = activate_in_place(pre[j][k], act.activation(), act.leaky_slope());
        pre[j][k] = Tensor();
        return;
      }
      // The others keep the pre-activation for the backward unless the derivative replaces it.
      std::tie(post[j][k], deriv[j][k]) =
          activate_with_derivative(pre[j][k], act.activation(), act.leaky_slope());
      if (deriv[j][k].defined()) pre[j][k] = Tensor();
    });
    h = post[j];
  }
  r.logits = linear_batched(h, params(depth, true), params(depth, false));
  h.clear();
  r.loss.resize(n);
  std::vector<Tensor> g(n);
  // Per model, the optimizer that steps each parameter once its gradient is known (a model
  // whose loss is not finite is left alone: its run stops at the divergence check).
  std::vector<models::SGD*> step_now(n, nullptr);
  // On a GPU the losses and their gradients are three launches per 32 models.
  if (cuda) std::tie(r.loss, g) = cross_entropy_and_grad_batched(r.logits, labels);
  for_each_model(n, cuda, [&](std::size_t k) {
    if (!cuda) std::tie(r.loss[k], g[k]) = cross_entropy_and_grad(r.logits[k], labels);
    if (!sgd.empty() && sgd[k] != nullptr && std::isfinite(r.loss[k].item())) step_now[k] = sgd[k];
  });
  // Backward, output layer first, as the tape walks it: dX = dY W (not for the input),
  // dW = dY^T X, db = the column sums of dY; then back through the activation.
  std::vector<std::vector<std::pair<Tensor, Tensor>>> grads(n);
  for (auto& gk : grads) gk.reserve(2 * (depth + 1));  // no regrowth (and heap churn) per layer
  // Steps entry q of grads[k]. The entries come in reverse parameters() order, which is the
  // optimizer's order (the Trainer builds it from model.parameters()): entry q is parameter
  // P - 1 - q.
  auto param_of_entry = [&](std::size_t k, std::size_t q) {
    return step_now[k]->params().size() - 1 - q;
  };
  auto step_entry = [&](std::size_t k, std::size_t q) {
    auto& [param, grad] = grads[k][q];
    const auto& ps = step_now[k]->params();
    const std::size_t i = param_of_entry(k, q);
    GL_CHECK(q < ps.size() && ps[i].impl() == param.impl(),
             "fused step: model {}'s optimizer does not hold its parameters in model order", k);
    param.set_grad(grad);
    step_now[k]->step_param(i);
    if (!drop_grads.empty() && drop_grads[k]) {
      param.set_grad(Tensor());
      grad = Tensor();
    }
  };
  for (std::size_t j = depth + 1; j-- > 0;) {
    std::vector<Tensor> dx(n), dw(n);
    if (!one_by_one) {
      if (j > 0) dx = matmul_batched(g, params(j, true));
      std::vector<Tensor> gt;
      gt.reserve(n);
      for (const Tensor& t : g) gt.push_back(t.t());
      dw = matmul_batched(gt, j > 0 ? post[j - 1] : std::vector<Tensor>(n, images));
    }
    // On a GPU the layer's bias gradients are one launch per 32 models.
    std::vector<Tensor> db(n);
    if (cuda) {
      std::vector<std::size_t> with_bias;
      std::vector<Tensor> gb;
      for (std::size_t k = 0; k < n; ++k)
        if (linear_of(k, j).bias().defined()) {
          with_bias.push_back(k);
          gb.push_back(g[k]);
        }
      const std::vector<Tensor> sums = column_sums_batched(gb);
      for (std::size_t i = 0; i < with_bias.size(); ++i) db[with_bias[i]] = sums[i];
    }
    for_each_model(n, cuda, [&](std::size_t k) {
      const models::Linear& lin = linear_of(k, j);
      if (one_by_one) {
        // While dX computes, the layer input dW reads; while dW computes, what the weight step
        // and the activation backward read, and the weights of the next layer's dX.
        const Tensor& input = j > 0 ? post[j - 1][k] : images;
        if (j > 0) {
          prefetch_during_next_matmul(input);
          dx[k] = matmul(g[k], lin.weight());
        }
        if (step_now[k] != nullptr) {  // the weight's entry comes after the bias's
          const std::size_t q = grads[k].size() + (lin.bias().defined() ? 1 : 0);
          if (q < step_now[k]->params().size())
            prefetch_during_next_matmul(step_now[k]->momentum_buffer(param_of_entry(k, q)));
        }
        if (j > 0) {
          prefetch_during_next_matmul(deriv[j - 1][k].defined() ? deriv[j - 1][k] : post[j - 1][k]);
          prefetch_during_next_matmul(linear_of(k, j - 1).weight());
        }
        dw[k] = matmul(g[k].t(), input);
      }
      const std::size_t first = grads[k].size();
      if (lin.bias().defined())
        grads[k].emplace_back(lin.bias(), cuda ? std::move(db[k]) : sum(g[k], {0}));
      grads[k].emplace_back(lin.weight(), dw[k]);
      // This layer's weights have served the forward and dX above: step them now.
      if (step_now[k] != nullptr)
        for (std::size_t q = first; q < grads[k].size(); ++q) step_entry(k, q);
      if (j > 0 && !cuda) {
        const models::Activation& act = *models[k]->taps()[j - 1].post;
        Tensor& d = deriv[j - 1][k];
        g[k] = d.defined() ? backward_from_derivative(dx[k], d)
                           : activate_backward(dx[k], pre[j - 1][k], post[j - 1][k],
                                               act.activation(), act.leaky_slope());
        dx[k] = Tensor();
        d = Tensor();
        pre[j - 1][k] = Tensor();  // layer j - 1's activations have served dW and this
        post[j - 1][k] = Tensor();
      }
    });
    if (j > 0 && cuda) {
      const auto [kinds, slopes] = activations(j - 1);
      g = activate_backward_batched(dx, pre[j - 1], post[j - 1], kinds, slopes);
      pre[j - 1].assign(n, Tensor());
      post[j - 1].assign(n, Tensor());
    }
  }
  for (auto& gk : grads) std::reverse(gk.begin(), gk.end());  // into parameters() order
  r.grads = std::move(grads);
  return r;
}

// On one thread: each model through its whole step before the next. A model's weights, momentum
// buffers and activations then stay in L2 or L3 from its forward to its backward; layer by layer
// across all the models (their sum far past L3 for deep ones) they came from memory twice per
// step. Each model's result is the same either way.
FusedStepResult models_one_after_another(const std::vector<models::Network*>& models,
                                         const Tensor& images, const Tensor& labels,
                                         const std::vector<models::SGD*>& sgd,
                                         const std::vector<char>& drop_grads) {
  FusedStepResult r;
  for (std::size_t k = 0; k < models.size(); ++k) {
    FusedStepResult one =
        fused_step_by_layer({models[k]}, images, labels,
                            sgd.empty() ? std::vector<models::SGD*>{} : std::vector{sgd[k]},
                            drop_grads.empty() ? std::vector<char>{} : std::vector{drop_grads[k]});
    r.logits.push_back(std::move(one.logits[0]));
    r.loss.push_back(std::move(one.loss[0]));
    r.grads.push_back(std::move(one.grads[0]));
  }
  return r;
}

}  // namespace

FusedStepResult fused_mlp_step(const std::vector<models::Network*>& models, const Tensor& images,
                               const Tensor& labels, const std::vector<models::SGD*>& sgd,
                               const std::vector<char>& drop_grads) {
  const std::size_t n = models.size();
  GL_CHECK(sgd.empty() || sgd.size() == n, "fused step: {} optimizers for {} models", sgd.size(),
           n);
  GL_CHECK(drop_grads.empty() || drop_grads.size() == n,
           "fused step: {} gradient flags for {} models", drop_grads.size(), n);
  GL_CHECK(!images.device().is_cuda() ||
               std::all_of(sgd.begin(), sgd.end(), [](models::SGD* o) { return o == nullptr; }),
           "fused step: on {} the optimizers step after the fused step (the loss would be read "
           "on the host every step to step inline)",
           images.device().str());
  if (images.device().is_cuda())
    return fused_step_by_layer(models, images, labels, sgd, drop_grads);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads < 2) return models_one_after_another(models, images, labels, sgd, drop_grads);
  if (n < std::size_t(threads)) return fused_step_by_layer(models, images, labels, sgd, drop_grads);
  // At least as many models as threads: each thread takes its share of the models through the
  // whole step (one model after another, on that thread), so the threads never wait for each
  // other between layers. The layer-by-layer schedule synchronizes the threads several times
  // per layer, which costs little on an idle machine and a lot on a busy one. The results are
  // the same either way.
  std::vector<FusedStepResult> parts(static_cast<std::size_t>(threads));
  std::exception_ptr error;
#pragma omp parallel num_threads(threads)
  {
    const std::size_t t = std::size_t(omp_get_thread_num()),
                      nt = std::size_t(omp_get_num_threads());
    try {
      const auto lo = std::ptrdiff_t(n * t / nt), hi = std::ptrdiff_t(n * (t + 1) / nt);
      parts[t] = models_one_after_another(
          std::vector<models::Network*>(models.begin() + lo, models.begin() + hi), images, labels,
          sgd.empty() ? std::vector<models::SGD*>{}
                      : std::vector<models::SGD*>(sgd.begin() + lo, sgd.begin() + hi),
          drop_grads.empty() ? std::vector<char>{}
                             : std::vector<char>(drop_grads.begin() + lo, drop_grads.begin() + hi));
    } catch (...) {
#pragma omp critical(gl_fused_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  FusedStepResult r;
  for (auto& p : parts) {
    for (std::size_t k = 0; k < p.logits.size(); ++k) {
      r.logits.push_back(std::move(p.logits[k]));
      r.loss.push_back(std::move(p.loss[k]));
      r.grads.push_back(std::move(p.grads[k]));
    }
  }
  return r;
}

FusedGroup::FusedGroup(const std::vector<TrainConfig>& configs) {
  GL_CHECK(!configs.empty(), "FusedGroup: no configurations");
  std::vector<TrainConfig> cfgs = configs;
  for (auto& c : cfgs) c.validate();
  const std::string key = fused_group_key(cfgs[0]);
  for (std::size_t i = 1; i < cfgs.size(); ++i)
    GL_CHECK(fused_group_key(cfgs[i]) == key,
             "FusedGroup: run {} ({}) cannot train with run 0 ({}): the data, the model's widths "
             "and the thread count must agree ({} vs {})",
             i, cfgs[i].out, cfgs[0].out, fused_group_key(cfgs[i]), key);
  fusable_ = fused_step_unsupported(cfgs[0]).empty();
  data_ = TrainData::load(cfgs[0]);
  for (auto& c : cfgs) {
    members_.push_back(std::make_unique<Trainer>(c, data_));
    members_.back()->step_progress_ = false;
  }
}

FusedGroup::~FusedGroup() = default;

std::vector<FusedGroup::Outcome> FusedGroup::run() {
  // The members share one process, and with it this mode (fused_group_key holds it).
  kernels::cpu::DenormalScope denormals(members_[0]->config().denormals == "flush");
  const std::size_t n = members_.size();
  std::vector<Outcome> out(n);
  std::vector<int64_t> first(n);
  int64_t lo = INT64_MAX, hi = 0;
  const data::Loader& loader = *data_->train;
  // A member that diverges leaves: its trainer (and callbacks) go first, then the marker.
  auto drop = [&](std::size_t i, const DivergedError& e) {
    const std::string dir = members_[i]->run_dir();
    out[i].history = members_[i]->history();
    out[i].diverged = e;
    members_[i].reset();
    write_diverged_marker(dir, e);
  };
  for (std::size_t i = 0; i < n; ++i) {
    try {
      first[i] = members_[i]->begin_run();  // a checkpoint that is not finite: diverged
    } catch (const DivergedError& e) {
      drop(i, e);
      continue;
    }
    lo = std::min(lo, first[i]);
    hi = std::max(hi, members_[i]->config().epochs);
  }
  for (int64_t epoch = lo; epoch <= hi; ++epoch) {
    std::vector<std::size_t> active;
    for (std::size_t i = 0; i < n; ++i)
      if (members_[i] && first[i] <= epoch && epoch <= members_[i]->config().epochs)
        active.push_back(i);
    if (active.empty()) continue;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i : active) members_[i]->begin_epoch(epoch);
    auto alive = [&] {
      return std::any_of(active.begin(), active.end(),
                         [&](std::size_t i) { return members_[i] != nullptr; });
    };
    for (int64_t b = 0; b < loader.num_batches() && alive(); ++b) {
      const data::Batch batch = loader.batch(b);
      std::vector<std::size_t> fused;
      std::vector<models::Network*> nets;
      std::vector<models::SGD*> sgd;
      std::vector<char> drop_grads;
      for (std::size_t i : active)
        if (fusable_ && members_[i] && !members_[i]->needs_tape(members_[i]->global_step() + 1)) {
          const int64_t step = members_[i]->global_step() + 1;
          fused.push_back(i);
          nets.push_back(&members_[i]->model());
          sgd.push_back(members_[i]->inline_sgd(step));
          drop_grads.push_back(sgd.back() != nullptr && !members_[i]->reads_grads(step));
        }
      if (fused.size() < 2) fused.clear();  // one model alone takes its own step
      FusedStepResult step;
      if (!fused.empty()) step = fused_mlp_step(nets, batch.images, batch.labels, sgd, drop_grads);
      for (std::size_t i : active) {
        if (!members_[i]) continue;
        auto it = std::find(fused.begin(), fused.end(), i);
        try {
          if (it != fused.end()) {
            const std::size_t k = std::size_t(it - fused.begin());
            members_[i]->apply_step(batch, b, step.logits[k], step.loss[k], step.grads[k],
                                    sgd[k] != nullptr);
            ++fused_steps_;
          } else {
            members_[i]->train_step(batch, b);
            ++tape_steps_;
          }
        } catch (const DivergedError& e) {
          drop(i, e);
        }
      }
    }
    // On a GPU the steps are queued: their sums are read (waiting for them) before the time is
    // taken. A member whose loss was not finite leaves here.
    for (std::size_t i : active) {
      if (!members_[i]) continue;
      try {
        members_[i]->collect_device_sums();
      } catch (const DivergedError& e) {
        drop(i, e);
      }
    }
    // Each member's epoch_time is its share of the group's training time.
    std::size_t trained = 0;
    for (std::size_t i : active) trained += members_[i] != nullptr;
    const double share =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
        double(std::max<std::size_t>(trained, 1));
    for (std::size_t i : active) {
      if (!members_[i]) continue;
      try {
        members_[i]->end_epoch(share);
      } catch (const DivergedError& e) {
        drop(i, e);
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    if (members_[i]) {
      members_[i]->end_run();
      out[i].history = members_[i]->history();
    }
  return out;
}

}  // namespace gl::train
