// custom_callback.cpp: how to add your own per-step statistic without touching the Trainer.
// A train::Callback sees the model after backward (gradients in .grad, before the optimizer
// step) and after the step; it may add metrics.csv columns at the end of each epoch.
// This one measures, for every weight matrix, ‖∇W‖ / ‖W‖ at every step, writes them to
// <out>/grad_weight_ratio.csv and adds the epoch's mean as a metrics.csv column.
//
//   ./build/examples/custom_callback data runs/custom     (after `gradlens data fetch mnist`)
#include <fmt/core.h>

#include <cmath>
#include <fstream>

#include "train/trainer.h"

namespace {

class GradWeightRatio : public gl::train::Callback {
 public:
  void on_train_begin(gl::train::Trainer& t) override {
    csv_.open(t.run_dir() + "/grad_weight_ratio.csv");
    csv_ << "step,param,ratio\n";
  }
  void on_epoch_begin(gl::train::Trainer&, int64_t) override { sum_ = 0, count_ = 0; }
  void on_after_backward(gl::train::Trainer& t, int64_t step) override {
    for (auto& [name, p] : t.model().named_parameters()) {
      if (p.dim() != 2 || !p.grad().defined()) continue;  // weight matrices only
      // A CPU f32 model: read the values in place, no copy.
      const float* w = p.data<float>();
      const float* g = p.grad().data<float>();
      double gg = 0, ww = 0;
      for (int64_t i = 0; i < p.numel(); ++i) gg += double(g[i]) * g[i], ww += double(w[i]) * w[i];
      double ratio = std::sqrt(gg) / std::sqrt(ww);
      csv_ << step << ',' << name << ',' << ratio << '\n';
      sum_ += ratio, ++count_;
    }
  }
  void on_epoch_end(gl::train::Trainer&, gl::train::EpochResult& r) override {
    r.extra.emplace_back("mean_grad_weight_ratio", count_ ? sum_ / double(count_) : NAN);
  }

 private:
  std::ofstream csv_;
  double sum_ = 0;
  int64_t count_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} DATA_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    gl::train::TrainConfig cfg;
    cfg.data_dir = argv[1];
    cfg.out = argv[2];
    cfg.hidden = {128, 128};
    cfg.epochs = 2;
    cfg.progress = false;
    gl::train::Trainer trainer(cfg);
    trainer.add_callback(std::make_shared<GradWeightRatio>());
    auto history = trainer.run();
    fmt::print("test accuracy {:.2f}%; per-step ratios in {}/grad_weight_ratio.csv\n",
               100 * history.back().test_acc, cfg.out);
  } catch (const std::exception& e) {
    fmt::print(stderr, "custom_callback: {}\n", e.what());
    return 1;
  }
}
