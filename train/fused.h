// fused.h: training several MLPs of one shape on the same batches in lockstep, in one process,
// with one batched GEMM per layer and pass for all of them (the way HFTA and vmap-style
// training batch the models of a grid), each model ending exactly where it ends trained alone.
//
// A FusedGroup drives its members' Trainers step by step over one shared TrainData (one copy
// of the datasets, one batch per step for every model). At each step the members whose
// callbacks do not need the tape (Callback::needs_tape) take the fused step: forward,
// cross-entropy and backward for all of them at once, outside the tape, each layer's
// X W^T, dY^T X and dY W of every model in one kernels::cpu::sgemm_batched call spread over
// the threads, the elementwise work per model (in parallel over the models) by the very
// functions the tape runs (activate, activate_backward, cross_entropy_and_grad, sum). With at
// least as many models as threads, each thread takes its share of the models through the whole
// step instead (no barrier between layers), and on one thread the models go one after the
// other, each through its whole step (its weights and activations stay in cache). Each
// batched entry is bit for bit the GEMM the tape would have called, so every model's loss,
// logits and .grad are bit for bit the tape's; from there each member's own Trainer code
// checks divergence, runs the callbacks and steps its own optimizer. Members that need the
// tape at a step (the diagnostics' recorded steps, unknown callbacks) take their own solo step.
// Evaluation, metrics.csv, checkpoints, resume and the run directory stay each Trainer's.
//
// On a GPU the batched GEMMs are kernels::cuda::sgemm_tiled_batched launches (the bits of lone
// calls), the activations and their backward one launch per activation among the models
// (activate_batched), the bias gradients one launch per layer (column_sums_batched), the losses
// and their gradients three (cross_entropy_and_grad_batched), all per 32 models and each entry
// the bits of the lone call; the optimizers step after the fused step (no inline stepping: that
// would read each loss on the host every step).
//
// What fuses: MLPs (CPU or GPU) without dropout or batchnorm, any activation, initializer,
// optimizer, learning rate or schedule; models trained in one group must share the data
// (TrainData::key) and the layer widths, and run at one thread count. Anything else
// (fused_step_unsupported) trains in the group one model at a time on the tape: still exact, just
// not faster.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace gl::train {

// Why a configuration cannot take fused steps ("" when it can): a CNN, dropout, batchnorm.
std::string fused_step_unsupported(const TrainConfig& config);

// Runs that may be trained in one FusedGroup have equal keys: the data (TrainData::key_of),
// the model and its widths, the thread count, and whether they take fused steps at all.
std::string fused_group_key(const TrainConfig& config);

// The loss, logits and parameter gradients of one step of several same-shape MLPs (no
// dropout, no batchnorm) on one batch, computed outside the tape: for each model, bit for bit
// what model.forward, cross_entropy and loss.backward() give (the first layer's input needs no
// gradient). Parameters are paired with their gradient in model.parameters() order.
struct FusedStepResult {
  std::vector<Tensor> logits, loss;
  std::vector<std::vector<std::pair<Tensor, Tensor>>> grads;
};
// sgd (CPU only; on a GPU empty or all null): per model, null or its optimizer
// (Trainer::inline_sgd): then each of its parameters is stepped (SGD::step_param) right after its
// gradient is known, while the gradient and the weights are still in cache, unless the model's loss
// is not finite; the caller then skips that optimizer step (Trainer::apply_step with stepped = true
// for a finite loss). drop_grads: per model (empty: none), whether its gradients may be released
// once stepped inline (no callback reads them this step, Trainer::reads_grads): the result then
// pairs its parameters with undefined gradients, and each gradient's buffer is reused while in
// cache.
FusedStepResult fused_mlp_step(const std::vector<models::Network*>& models, const Tensor& images,
                               const Tensor& labels, const std::vector<models::SGD*>& sgd = {},
                               const std::vector<char>& drop_grads = {});

class FusedGroup {
 public:
  // Builds one Trainer per configuration over one shared TrainData. Throws naming the first
  // configuration whose fused_group_key differs from the first one's.
  explicit FusedGroup(const std::vector<TrainConfig>& configs);
  ~FusedGroup();
  std::size_t size() const { return members_.size(); }
  // Member i, to attach callbacks to before run(); null once it has diverged.
  Trainer* trainer(std::size_t i) { return members_[i].get(); }

  struct Outcome {
    std::vector<EpochResult> history;       // every epoch (a resumed run's earlier ones too)
    std::optional<DivergedError> diverged;  // set when the member diverged
  };
  // Trains every member to its config.epochs (resuming those with config.resume from their
  // checkpoints; members may be at different epochs). A member whose loss diverges leaves the
  // group: its Trainer is destroyed (its callbacks write their files) and diverged.json is
  // written, as `gradlens train` leaves a diverged run; the others go on. Other errors
  // propagate.
  std::vector<Outcome> run();

  // Steps taken so far, summed over the members: fused, and one model at a time on the tape.
  int64_t fused_steps() const { return fused_steps_; }
  int64_t tape_steps() const { return tape_steps_; }

 private:
  std::shared_ptr<TrainData> data_;  // outlives every member
  std::vector<std::unique_ptr<Trainer>> members_;
  bool fusable_ = false;
  int64_t fused_steps_ = 0, tape_steps_ = 0;
};

}  // namespace gl::train
