// trainer.h: the training loop. Epochs of shuffled mini-batches, evaluation on the test split
// every epoch, per-epoch wall time, a live progress line, checkpoints written atomically every
// N epochs, and resume that ends on the same weights bit for bit as an uninterrupted run.
// Diagnostics attach from outside through Callback (and module hooks); the Trainer knows
// nothing of analysis/.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/generator.h"
#include "models/cnn.h"
#include "models/mlp.h"
#include "models/optim.h"
#include "train/loader.h"
#include "train/metrics.h"

namespace gl::train {

struct TrainConfig {
  // A Trainer built only to evaluate (`gradlens eval`; not saved in config.json): it never
  // trains, so the training-only checks (batch norm's batch sizes) do not apply.
  bool evaluate_only = false;
  std::string dataset = "mnist";
  std::string data_dir = "data";
  std::string model = "mlp";    // mlp | cnn
  std::vector<int64_t> hidden;  // explicit widths; else depth x width
  // CNN (--model cnn): conv stage channels, hidden fc widths, square kernel (padding
  // kernel / 2) and the max-pool window after each stage (0: none).
  std::vector<int64_t> channels{32, 64};
  std::vector<int64_t> fc{128};
  int64_t kernel = 3;
  int64_t pool = 2;
  int64_t depth = 2;
  int64_t width = 128;
  std::string activation = "relu";
  double leaky_slope = 0.01;
  std::string init = "he_normal";
  std::map<std::string, std::string> init_args;
  bool batchnorm = false;
  // --bn-bias: with batchnorm, the Linear / Conv2d layers before it keep their bias
  // (models::hidden_layer_bias). A config.json or checkpoint without this key was written
  // before the choice existed, when they always had one: it reads as true.
  bool bias_before_batchnorm = false;
  double dropout = 0.0;
  std::string optimizer = "sgd";  // sgd | adam | adamw
  double lr = 0.01;
  // constant | cosine (per step from lr toward 0, Trainer::apply_lr_schedule)
  std::string lr_schedule = "constant";
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  int64_t batch_size = 128;
  int64_t epochs = 10;
  uint64_t seed = 0;
  std::string normalize = "raw";  // raw | standard
  std::string augment = "none";   // training augmentation list (data::parse_train_augment)
  int threads = 0;                // 0: OpenMP default
  std::string out;                // run directory
  int64_t checkpoint_every = 1;   // epochs; 0 disables
  bool resume = false;
  std::string load_weights;
  bool shuffle = true;
  bool log_steps = false;
  std::string device = "cpu";
  std::string gemm = "native";  // CUDA GEMM backend: native | cublas | tf32
  // Subnormal floats on the CPU while training: flush (to zero, kernels/cpu/fp_env.h) | keep.
  std::string denormals = "flush";
  bool cuda_graph = false;  // capture the step as a CUDA graph (not implemented: rejected)
  int64_t limit_train = 0;  // use only the first N training examples (0: all)
  int64_t limit_test = 0;
  bool progress = true;

  void validate() const;  // throws gl::Error naming the flag
  // The upper bounds of the settings that have one, for validate() and the command line.
  static constexpr int64_t kMaxDepth = 10000;
  static constexpr int kMaxThreads = 1024;
  // The step counter (epochs x steps per epoch) and the cosine schedule's length stay far
  // inside int64 for any split.
  static constexpr int64_t kMaxEpochs = 1000000;
  // The training defaults of --model cnn where they differ from the MLP's: applied by the
  // command line to the flags a user did not give.
  static constexpr const char* kCnnOptimizer = "adam";
  static constexpr double kCnnLr = 0.001;
  static constexpr int64_t kCnnBatchSize = 64;
  static constexpr const char* kCnnNormalize = "standard";
  std::vector<int64_t> hidden_widths() const;
  std::string to_json() const;
  // Throws naming `source` (a file) and the setting when a setting has the wrong type.
  static TrainConfig from_json(const std::string& text, const std::string& source = "");
  // The configuration a run directory's config.json holds, to rebuild its model; throws naming
  // the file when it is missing (not a run directory written by gradlens train), not a
  // configuration, or lacks a key that decides the model or its inputs (docs/run_directory.md
  // lists them; the others take their defaults).
  static TrainConfig from_run_dir(const std::string& dir);

  // A setting in which a configuration written as to_json writes it (a run's config.json, a
  // checkpoint's) differs from this one: the key and both values as JSON text, shortened for a
  // message ("(unset)" where `saved` lacks the key).
  struct Difference {
    std::string key, saved, now;
  };
  // The first setting outside `ignored` in which the JSON object `saved` differs from this
  // configuration, or nullopt. A setting added after `saved` was written (gemm, augment,
  // lr_schedule, denormals), which it lacks, counts as its default.
  std::optional<Difference> difference_from(const nlohmann::json& saved,
                                            std::initializer_list<std::string_view> ignored) const;
};

struct EpochResult {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, test_loss = 0, train_acc = 0, test_acc = 0, epoch_time = 0;
  // Extra metrics.csv columns added by callbacks, in order.
  std::vector<std::pair<std::string, double>> extra;
};

class Trainer;

// Hook points for diagnostics. All are called on the training thread.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer&) {}
  virtual void on_epoch_begin(Trainer&, int64_t /*epoch*/) {}
  // After backward, before the optimizer step: gradients are in .grad.
  virtual void on_after_backward(Trainer&, int64_t /*global_step*/) {}
  // After the optimizer step.
  virtual void on_step_end(Trainer&, int64_t /*global_step*/, double /*loss*/) {}
  // Around the evaluation pass over the test split (model in eval mode, no grad). During it,
  // Trainer::current_labels() holds the labels of the batch being evaluated.
  virtual void on_evaluate_begin(Trainer&, int64_t /*epoch*/) {}
  virtual void on_evaluate_end(Trainer&, int64_t /*epoch*/) {}
  // May append columns to result.extra (the same names every epoch).
  virtual void on_epoch_end(Trainer&, EpochResult& /*result*/) {}
  // Right before the trainer writes a checkpoint: whatever a run resumed from that checkpoint
  // reads back (files written in the background) must be on disk when this returns.
  virtual void on_before_checkpoint(Trainer&) {}
  virtual void on_train_end(Trainer&) {}
  // Whether training step `global_step` must run on the autograd tape: true when the callback
  // reads that step through module forward hooks or tensor gradient hooks. A FusedGroup
  // (train/fused.h) computes the steps no callback needs the tape for outside it, for several
  // models at once: their training forward calls no module hooks, while the loss, every
  // parameter's .grad and every callback call are what the tape gives. Default: always.
  virtual bool needs_tape(const Trainer&, int64_t /*global_step*/) const { return true; }
  // Whether the callback reads the parameters around training step `global_step`'s update (in
  // on_after_backward or on_step_end). When no callback does, a FusedGroup may update each
  // parameter as soon as its gradient is known (SGD only; the result is the same). Default:
  // always.
  virtual bool reads_weights(const Trainer&, int64_t /*global_step*/) const { return true; }
  // Whether the callback reads the parameters' .grad at training step `global_step` (in
  // on_after_backward or on_step_end). When no callback does and the parameters were updated
  // inline, a FusedGroup releases each gradient right after its update, and .grad is left
  // undefined after that step. Default: always.
  virtual bool reads_grads(const Trainer&, int64_t /*global_step*/) const { return true; }
};

// Thrown when the loss becomes NaN or infinite; the run directory records it.
class DivergedError : public Error {
 public:
  DivergedError(const std::string& msg, int64_t epoch, int64_t step)
      : Error(msg), epoch(epoch), step(step) {}
  int64_t epoch, step;
};

// What a configuration trains and is evaluated on: the datasets and their loaders. Trainers
// whose configurations have the same key() may share one (a FusedGroup's members do).
struct TrainData {
  std::string key;                       // key(config) of the configuration it was loaded for
  data::ImageDataset train_ds, test_ds;  // train_ds.images is empty: `train` holds the pixels
  std::unique_ptr<data::Loader> train, test;
  int64_t num_classes = 10;

  // Loads the datasets named by a validated configuration onto its device.
  static std::shared_ptr<TrainData> load(const TrainConfig& config);
  // Every field that decides the data, its order and its batches (dataset, limits,
  // normalization, augmentation, batch size, shuffling, seed, model kind, device).
  static std::string key_of(const TrainConfig& config);
};

class FusedGroup;

class Trainer {
 public:
  // data: shared datasets and loaders with key TrainData::key_of(config) (null: load them).
  explicit Trainer(TrainConfig config, std::shared_ptr<TrainData> data = nullptr);
  ~Trainer();
  void add_callback(std::shared_ptr<Callback> cb) { callbacks_.push_back(std::move(cb)); }
  // Runs (or resumes) training to config.epochs; returns every epoch's result.
  std::vector<EpochResult> run();

  const TrainConfig& config() const { return cfg_; }
  models::Network& model() { return *model_; }
  models::Optimizer& optimizer() { return *opt_; }
  const data::Loader& train_loader() const { return *data_->train; }
  const data::Loader& test_loader() const { return *data_->test; }
  const data::ImageDataset& test_dataset() const { return data_->test_ds; }
  const std::vector<EpochResult>& history() const { return history_; }
  // {flag, note} for --limit-train and --limit-test when above the size of their split, which is
  // then used whole: "--limit-train 100000 is more than the 60000 examples of mnist's training
  // split: all 60000 are used".
  std::vector<std::pair<std::string, std::string>> limit_notes() const;
  // Whether some callback needs the autograd tape for training step `global_step`.
  bool needs_tape(int64_t global_step) const;
  // The optimizer when training step `global_step` may update each parameter as soon as its
  // gradient is known (on the CPU: SGD stepping parameters alone, a constant learning rate, no
  // callback reading the weights around that step); else null.
  models::SGD* inline_sgd(int64_t global_step);
  // Whether any callback reads the gradients at this step (Callback::reads_grads).
  bool reads_grads(int64_t global_step) const;
  const std::string& run_dir() const { return cfg_.out; }
  int64_t global_step() const { return global_step_; }
  int64_t current_epoch() const { return epoch_; }
  const Tensor& current_labels() const { return current_labels_; }
  int64_t num_classes() const { return num_classes_; }
  // Evaluates the model on a loader: mean loss, predictions (in loader order, unshuffled).
  std::pair<double, std::vector<int64_t>> evaluate(const data::Loader& loader);
  void apply_lr_schedule();  // sets the optimizer's lr for the coming step

 private:
  friend class FusedGroup;
  // run() in pieces, so that a FusedGroup can drive several trainers in lockstep.
  // Resumes or starts the run and calls on_train_begin; returns the first epoch to train
  // (past config.epochs when every epoch is done).
  int64_t begin_run();
  void begin_epoch(int64_t epoch);
  // One training step on the tape over `batch` (number b of the epoch).
  void train_step(const data::Batch& batch, int64_t b);
  // One training step whose loss, logits and parameter gradients were computed outside the
  // tape: from the divergence check on, exactly what train_step does after loss.backward().
  // stepped: the parameters were already updated (inline_sgd), so the optimizer step is skipped.
  void apply_step(const data::Batch& batch, int64_t b, const Tensor& logits, const Tensor& loss,
                  const std::vector<std::pair<Tensor, Tensor>>& grads, bool stepped = false);
  // Evaluation, callbacks, metrics.csv, checkpoint. train_time < 0: measured from the epoch's
  // start.
  void end_epoch(double train_time = -1);
  void end_run();  // final outputs, on_train_end
  // On a GPU, train_step and apply_step end here: the optimizer steps, and the loss and
  // correct count are summed on the device (no host synchronization).
  void finish_step_cuda(const data::Batch& batch, int64_t b, const Tensor& loss,
                        const Tensor& logits);
  // On a GPU, the epoch's sums read once (a synchronization); throws DivergedError when the loss
  // was not finite. Does nothing when they were read already, or on the CPU.
  void collect_device_sums();
  void count_step(double loss, int64_t b);  // the global step; throws DivergedError
  void finish_step(const data::Batch& batch, int64_t b, double loss, const Tensor& logits,
                   bool stepped = false);

  void save_checkpoint(int64_t epoch, const std::vector<EpochResult>& history);
  int64_t load_checkpoint(std::vector<EpochResult>& history);
  void write_metrics(const std::vector<EpochResult>& history);
  void write_final_outputs(const std::vector<int64_t>& predictions);

  TrainConfig cfg_;
  std::shared_ptr<TrainData> data_;
  std::unique_ptr<models::Network> model_;
  std::unique_ptr<models::Optimizer> opt_;
  Generator dropout_gen_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  std::vector<std::pair<int64_t, double>> step_losses_;  // (global step, loss)
  int64_t global_step_ = 0, epoch_ = 0, num_classes_ = 10;
  Device device_;
  Tensor current_labels_;
  // The run in progress.
  std::vector<EpochResult> history_;
  std::vector<int64_t> final_pred_;
  double total_time_ = 0;
  int64_t timed_epochs_ = 0;
  bool tty_ = false;
  bool step_progress_ = true;  // the per-step progress line (off in a FusedGroup)
  struct EpochState {
    std::chrono::steady_clock::time_point t0, last_print;
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    Tensor dev_loss, dev_correct;                       // on a GPU, read by collect_device_sums
    std::vector<std::pair<int64_t, Tensor>> dev_steps;  // --log-steps on a GPU
  } ep_;
};

// Writes <out>/diverged.json for a run that diverged (after its Trainer, and the files its
// callbacks still had to write, are gone), so a sweep records it as diverged, not failed.
void write_diverged_marker(const std::string& out, const DivergedError& e);
// Reads <out>/diverged.json: its error message, or nullopt when the file is absent or damaged.
// It is written atomically, so one that is not a JSON object with the error, epoch and step
// write_diverged_marker writes was damaged afterwards (or written by hand) and says nothing: the
// run does not count as diverged (`damage`, when given, gets why; empty when the file is
// absent).
std::optional<std::string> read_diverged_marker(const std::string& out,
                                                std::string* damage = nullptr);

// Why the run in `dir` has no model.safetensors, for an error message: that it diverged (its
// diverged.json and what that says), else that a run writes the file when its training ends.
std::string missing_model_reason(const std::string& dir);

// Parses "128,128" into widths; throws naming the flag on a bad entry.
std::vector<int64_t> parse_int_list(const std::string& s, const char* flag);

}  // namespace gl::train
