// corr_callback.cpp: the per-epoch layer cross-correlation callback. Its cost is one forward
// pass over `examples` test rows plus L(L+1)/2 small GEMMs; the time it takes is recorded
// in corr_means.json so its share of the epoch can be checked.
#include "analysis/corr_callback.h"

#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "analysis/capture.h"
#include "analysis/correlation.h"
#include "engine/io/fs.h"
#include "engine/io/tensor_io.h"

namespace gl::analysis {
namespace {

class CorrCallback : public train::Callback {
 public:
  explicit CorrCallback(CorrCallbackOptions o) : o_(o) {}

  void on_train_begin(train::Trainer& t) override {
    const std::string path = t.run_dir() + "/analysis/corr_means.json";
    // On resume keep the epochs already recorded.
    if (io::file_exists(path)) {
      auto bytes = io::read_file(path);
      try {
        state_ = nlohmann::json::parse(bytes.begin(), bytes.end());
      } catch (const std::exception&) {
        state_ = nlohmann::json();
      }
    }
  }
  void on_epoch_begin(train::Trainer& t, int64_t epoch) override { record(t, epoch - 1); }
  void on_train_end(train::Trainer& t) override { record(t, t.current_epoch()); }

 private:
  void record(train::Trainer& t, int64_t epoch) {
    auto t0 = std::chrono::steady_clock::now();
    auto& model = t.model();
    const Tensor& all = t.test_loader().all_images();
    const int64_t n = std::min(o_.examples, all.size(0));
    GL_CHECK(n >= 2, "--analyze corr: the test split has {} examples; need at least 2", n);
    auto layers = hidden_layers(model);
    auto acts = capture(model, all.narrow(0, 0, n), layers, 1000);
    if (!state_.is_object() || state_.value("examples", int64_t(-1)) != n) {
      state_ = nlohmann::json::object();
      state_["examples"] = n;
      state_["epochs"] = nlohmann::json::array();
      state_["pairs"] = nlohmann::json::object();
      state_["seconds"] = nlohmann::json::array();
    }
    auto& epochs = state_["epochs"];
    if (!epochs.empty() && epochs.back().get<int64_t>() >= epoch) return;  // already recorded
    nlohmann::json names = nlohmann::json::array();
    for (auto& l : layers) names.push_back(l.name);
    state_["layers"] = names;
    const std::string dir = t.run_dir() + "/analysis";
    io::ensure_dir(dir);
    if (o_.save_matrices) io::ensure_dir(dir + "/corr_epochs");
    for (size_t i = 0; i < layers.size(); ++i)
      for (size_t j = i; j < layers.size(); ++j) {
        auto c = pearson_cross(acts[i].data<float>(), n, layers[i].width, acts[j].data<float>(),
                               layers[j].width);
        const std::string key = layers[i].name + "-" + layers[j].name;
        state_["pairs"][key].push_back(mean_abs(c));
        if (o_.save_matrices) {
          std::vector<float> cf(c.begin(), c.end());
          io::save_npy(fmt::format("{}/corr_epochs/e{}_{}_{}.npy", dir, epoch, layers[i].name,
                                   layers[j].name),
                       Tensor::from_vector(cf, {layers[i].width, layers[j].width}));
        }
      }
    epochs.push_back(epoch);
    state_["seconds"].push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    io::write_file_atomic(dir + "/corr_means.json", state_.dump(1));
  }

  CorrCallbackOptions o_;
  nlohmann::json state_;
};

}  // namespace

std::shared_ptr<train::Callback> make_corr_callback(const CorrCallbackOptions& options) {
  return std::make_shared<CorrCallback>(options);
}

}  // namespace gl::analysis
