// corr_callback.cpp: the per-epoch layer cross-correlation callback. Per record: the hidden
// activations of the first `examples` test rows, every layer pair's Pearson matrix (each layer
// standardized once, one f64 GEMM per pair), the files.
//
// What keeps it cheap (bench/results/corr_overhead.md): the trainer's end-of-epoch evaluation
// already runs the first test batch (of at least 1000 rows, unshuffled) through the model in
// eval mode with exactly the weights the next epoch starts from, so on the CPU the callback
// copies those rows from forward hooks and makes the record for the next epoch's start right
// there, while they are in cache, instead of running its own forward pass; only the first
// record (before any evaluation) captures, and a record the evaluation could not make (a CUDA
// model, a shuffled or too small test batch) is made at the epoch start as before. The .npy
// and JSON files of a record go to disk as one atomic batch (one file-system sync) on a
// background thread, at most one record in flight; a write error surfaces at the next record
// or at the end of training.
#include "analysis/corr_callback.h"

#include <fmt/core.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "analysis/capture.h"
#include "analysis/correlation.h"
#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/npy.h"

namespace gl::analysis {
namespace {

class CorrCallback : public train::Callback {
 public:
  explicit CorrCallback(CorrCallbackOptions o) : o_(o) {}
  ~CorrCallback() override {
    try {
      finish_writes();
    } catch (const std::exception& e) {
      fmt::print(stderr, "--analyze corr: {}\n", e.what());
    }
  }

  void on_train_begin(train::Trainer& t) override {
    finish_writes();
    cached_epoch_ = -1;
    const std::string path = t.run_dir() + "/analysis/corr_means.json";
    // On resume keep the epochs already recorded.
    if (io::file_exists(path)) {
      // A file that is no JSON object starts again, and says so: the means of each epoch are
      // taken from that epoch's model alone and the file lists the epochs it holds, so a record
      // that restarts here is still true, it only lacks the epochs before the resumed one.
      const std::string why = io::read_json_object_file(path, state_);
      if (!why.empty())
        fmt::print(stderr,
                   "note: --analyze corr: {}; the layer correlations are recorded again from "
                   "epoch {} on, and the file loses the earlier epochs\n",
                   why, t.global_step() / std::max<int64_t>(t.train_loader().num_batches(), 1));
      // A record of other examples starts again; one that is kept must hold what record() reads
      // and appends to.
      if (state_.is_object()) {
        const io::JsonReader r(state_, path);
        r.get<int64_t>("examples", 0);
        r.get("epochs", std::vector<int64_t>{});
        r.get("seconds", std::vector<double>{});
        if (r.contains("pairs"))
          for (const auto& [pair, means] : r["pairs"].members()) means.array();
      }
    }
  }
  void on_epoch_begin(train::Trainer& t, int64_t epoch) override { record(t, epoch - 1); }
  void on_evaluate_begin(train::Trainer& t, int64_t epoch) override { start_hooks(t, epoch); }
  void on_evaluate_end(train::Trainer& t, int64_t epoch) override {
    if (stop_hooks(t)) record(t, epoch);
  }
  void on_before_checkpoint(train::Trainer&) override { finish_writes(); }
  // Its hooks live during evaluation passes only.
  bool needs_tape(const train::Trainer&, int64_t) const override { return false; }
  bool reads_weights(const train::Trainer&, int64_t) const override { return false; }
  bool reads_grads(const train::Trainer&, int64_t) const override { return false; }
  void on_train_end(train::Trainer& t) override {
    record(t, t.current_epoch());
    finish_writes();
  }

 private:
  int64_t examples(train::Trainer& t) const {
    return std::min(o_.examples, t.test_loader().all_images().size(0));
  }

  // During the evaluation after epoch `epoch`: copy the first rows of every hidden layer,
  // when the evaluation's batches are the test split in order on the host.
  void start_hooks(train::Trainer& t, int64_t epoch) {
    cached_epoch_ = -1;
    const auto& loader = t.test_loader();
    const int64_t n = examples(t);
    if (n < 2 || loader.device().is_cuda() || loader.batch_size() < n) return;
    const auto& order = loader.order();
    for (int64_t i = 0; i < n; ++i)
      if (order[size_t(i)] != i) return;
    auto& model = t.model();
    auto layers = hidden_layers(model);
    cache_.clear();
    rows_.assign(layers.size(), 0);
    for (size_t k = 0; k < layers.size(); ++k) {
      cache_.push_back(Tensor::empty({n, layers[k].width}, DType::f32));
      models::Module* m = model.taps().at(static_cast<size_t>(layers[k].hidden)).post;
      hooks_.emplace_back(
          m, m->add_forward_hook(
                 [this, k, n, &t](const models::Module&, const Tensor&, const Tensor& out) {
                   // Only the trainer's own evaluation batches (it sets their labels), not forward
                   // passes other callbacks may run around it.
                   if (rows_[k] >= n || !t.current_labels().defined()) return;
                   Tensor c = out.contiguous();
                   const int64_t take = std::min(n - rows_[k], c.size(0)), w = cache_[k].size(1);
                   GL_CHECK(c.dim() == 2 && c.size(1) == w,
                            "--analyze corr: layer gave {}, expected {} features", c.str(), w);
                   std::memcpy(cache_[k].data<float>() + rows_[k] * w, c.data<float>(),
                               size_t(take * w) * sizeof(float));
                   rows_[k] += take;
                 }));
    }
    hooked_epoch_ = epoch;
  }

  // True when the activations of the whole record were copied.
  bool stop_hooks(train::Trainer&) {
    for (auto& [m, id] : hooks_) m->remove_forward_hook(id);
    const bool complete =
        !hooks_.empty() && std::all_of(rows_.begin(), rows_.end(),
                                       [&](int64_t r) { return r >= cache_.front().size(0); });
    hooks_.clear();
    cached_epoch_ = complete ? hooked_epoch_ : -1;
    return complete;
  }

  void record(train::Trainer& t, int64_t epoch) {
    auto t0 = std::chrono::steady_clock::now();
    auto& model = t.model();
    const int64_t n = examples(t);
    GL_CHECK(n >= 2, "--analyze corr: the test split has {} examples; need at least 2", n);
    auto layers = hidden_layers(model);
    if (!state_.is_object() || state_.value("examples", int64_t(-1)) != n) {
      state_ = nlohmann::json::object();
      state_["examples"] = n;
      state_["epochs"] = nlohmann::json::array();
      state_["pairs"] = nlohmann::json::object();
      state_["seconds"] = nlohmann::json::array();
    }
    auto& epochs = state_["epochs"];
    if (!epochs.empty() && epochs.back().get<int64_t>() >= epoch) return;  // already recorded
    // The model after `epoch` epochs is the one the evaluation after that epoch ran.
    std::vector<Tensor> acts;
    if (cached_epoch_ == epoch && cache_.size() == layers.size())
      acts = cache_;
    else
      acts = capture(model, t.test_loader().all_images().narrow(0, 0, n), layers, 1000);
    cached_epoch_ = -1;
    std::vector<const float*> ptrs;
    std::vector<int64_t> widths;
    nlohmann::json names = nlohmann::json::array();
    for (size_t k = 0; k < layers.size(); ++k) {
      ptrs.push_back(acts[k].data<float>());
      widths.push_back(layers[k].width);
      names.push_back(layers[k].name);
    }
    state_["layers"] = names;
    auto mats = pearson_pairs(ptrs, n, widths);
    const std::string dir = t.run_dir() + "/analysis";
    io::AtomicWriteBatch files;
    size_t p = 0;
    for (size_t i = 0; i < layers.size(); ++i)
      for (size_t j = i; j < layers.size(); ++j, ++p) {
        const auto& c = mats[p];
        state_["pairs"][layers[i].name + "-" + layers[j].name].push_back(
            mean_abs(c, i == j ? layers[i].width : 0));
        if (o_.save_matrices) {
          io::NpyArray a;
          a.dtype = "F32";
          a.shape = {layers[i].width, layers[j].width};
          a.bytes.resize(c.size() * sizeof(float));
          float* f = reinterpret_cast<float*>(a.bytes.data());
          for (size_t q = 0; q < c.size(); ++q) f[q] = float(c[q]);
          files.add(fmt::format("{}/corr_epochs/e{}_{}_{}.npy", dir, epoch, layers[i].name,
                                layers[j].name),
                    io::serialize_npy(a));
        }
      }
    epochs.push_back(epoch);
    state_["seconds"].push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    io::ensure_dir(o_.save_matrices ? dir + "/corr_epochs" : dir);
    files.add(dir + "/corr_means.json", state_.dump(1));
    writer_.submit(std::move(files));  // after the previous record's files, in order
  }

  // Waits for the files of the last record; rethrows its error.
  void finish_writes() { writer_.wait(); }

  CorrCallbackOptions o_;
  nlohmann::json state_;
  // Activations copied during an evaluation, valid for the model after `cached_epoch_` epochs.
  std::vector<Tensor> cache_;
  std::vector<int64_t> rows_;
  std::vector<std::pair<models::Module*, models::HookId>> hooks_;
  int64_t cached_epoch_ = -1, hooked_epoch_ = -1;
  io::BackgroundWriter writer_;  // last member: destroyed (waited for) first
};

}  // namespace

std::shared_ptr<train::Callback> make_corr_callback(const CorrCallbackOptions& options) {
  return std::make_shared<CorrCallback>(options);
}

}  // namespace gl::analysis
