// bench_optim_overhead.cpp: what `--analyze optim` (every step) costs a training epoch of the
// 784-128-128-10 MLP on CPU, beside (a) no callback and (b) the way a PyTorch user measures the
// same statistics: a callback that copies every gradient and weight to host arrays each step
// (`.cpu().numpy()`) and computes the statistics with one array pass per operation (numpy
// style, a temporary per operation).
//
// Two modes:
//   build/bench/bench_optim_overhead DATA_DIR [REPEATS=5] [THREADS=1]
//     in one process, runs alternate none / host copies / optim for REPEATS rounds after one
//     warm-up round; prints the medians of the epoch's training time (EpochResult epoch_time,
//     which excludes evaluation and file writing).
//   build/bench/bench_optim_overhead train DATASET DATA_DIR OUT EPOCHS THREADS none|host-copy|optim
//     one training run shaped like `gradlens train --dataset DATASET --hidden 128,128 --epochs
//     EPOCHS --threads THREADS --no-progress --out OUT` (every other flag at its default) with the
//     named callback: bench/bench_diagnostics.py times it as a whole process beside `gradlens
//     train`.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "analysis/optim_stats.h"
#include "train/trainer.h"

namespace {
using namespace gl;

// The statistics of analysis/optim_stats.h the way they are usually computed from host copies.
class HostCopyStats : public train::Callback {
 public:
  void on_after_backward(train::Trainer& t, int64_t) override {
    auto params = t.model().named_parameters();
    if (prev_g_.empty()) prev_g_.resize(params.size()), prev_w_.resize(params.size());
    double sink = 0;
    for (size_t k = 0; k < params.size(); ++k) {
      std::vector<float> g = params[k].second.grad().to_vector<float>();  // .cpu().numpy()
      std::vector<float> w = params[k].second.to_vector<float>();
      if (!prev_g_[k].empty()) {
        const size_t n = g.size();
        auto map = [n](auto f) {
          std::vector<float> out(n);
          for (size_t i = 0; i < n; ++i) out[i] = f(i);
          return out;
        };
        auto sum = [](const std::vector<float>& v) {
          double s = 0;
          for (float x : v) s += x;
          return s;
        };
        auto& pg = prev_g_[k];
        auto& pw = prev_w_[k];
        auto ag = map([&](size_t i) { return std::fabs(g[i]); });
        auto apg = map([&](size_t i) { return std::fabs(pg[i]); });
        auto zero = map([&](size_t i) { return float(ag[i] < 1e-7f); });
        auto small_prev = map([&](size_t i) { return float(apg[i] < 1e-5f); });
        auto retained = map([&](size_t i) { return small_prev[i] * float(ag[i] < 1e-5f); });
        auto flips = map([&](size_t i) { return float(g[i] * pg[i] < 0); });
        auto dw = map([&](size_t i) { return w[i] - pw[i]; });
        auto dg = map([&](size_t i) { return g[i] - pg[i]; });
        auto curv = map([&](size_t i) { return dw[i] * dg[i]; });
        auto lmin = map([&](size_t i) { return flips[i] * float(curv[i] > 0); });
        auto lmax = map([&](size_t i) { return flips[i] * float(curv[i] < 0); });
        auto dw2 = map([&](size_t i) { return dw[i] * dw[i]; });
        auto zdw2 = map([&](size_t i) { return float(apg[i] < 1e-7f) * dw2[i]; });
        if (ema_g_.size() <= k) ema_g_.resize(k + 1), ema_w_.resize(k + 1);
        if (ema_g_[k].empty()) ema_g_[k] = g, ema_w_[k] = w;
        ema_g_[k] = map([&](size_t i) { return 0.99f * ema_g_[k][i] + 0.01f * g[i]; });
        ema_w_[k] = map([&](size_t i) { return 0.99f * ema_w_[k][i] + 0.01f * w[i]; });
        auto eg2 = map([&](size_t i) { return ema_g_[k][i] * ema_g_[k][i]; });
        auto ew2 = map([&](size_t i) { return ema_w_[k][i] * ema_w_[k][i]; });
        sink += sum(zero) + sum(small_prev) + sum(retained) + sum(flips) + sum(lmin) + sum(lmax) +
                std::sqrt(sum(dw2)) + std::sqrt(sum(zdw2)) + std::sqrt(sum(eg2)) +
                std::sqrt(sum(ew2));
      }
      prev_g_[k] = std::move(g);
      prev_w_[k] = std::move(w);
    }
    sink_ += sink;
  }
  double sink_ = 0;

 private:
  std::vector<std::vector<float>> prev_g_, prev_w_, ema_g_, ema_w_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

train::TrainConfig mlp_config(const std::string& data, int64_t epochs, int threads) {
  train::TrainConfig cfg;  // the defaults of `gradlens train`
  cfg.data_dir = data;
  cfg.hidden = {128, 128};
  cfg.epochs = epochs;
  cfg.threads = threads;
  cfg.progress = false;
  return cfg;
}

void add_callback(train::Trainer& t, const std::string& kind) {
  if (kind == "host-copy")
    t.add_callback(std::make_shared<HostCopyStats>());
  else if (kind == "optim")
    t.add_callback(std::make_shared<analysis::OptimStatsCallback>());
  else if (kind != "none")
    throw Error(fmt::format("unknown callback '{}' (none, host-copy, optim)", kind));
}

int train_once(int argc, char** argv) {
  if (argc != 8) {
    fmt::print(stderr, "usage: {} train DATASET DATA_DIR OUT EPOCHS THREADS none|host-copy|optim\n",
               argv[0]);
    return 2;
  }
  train::TrainConfig cfg = mlp_config(argv[3], std::atoll(argv[5]), std::atoi(argv[6]));
  cfg.dataset = argv[2];
  cfg.out = argv[4];
  train::Trainer trainer(cfg);
  add_callback(trainer, argv[7]);
  auto h = trainer.run();
  fmt::print("test accuracy {:.2f}% after {} epochs\n", 100 * h.back().test_acc, h.back().epoch);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "train") {
    try {
      return train_once(argc, argv);
    } catch (const std::exception& e) {
      fmt::print(stderr, "bench_optim_overhead: {}\n", e.what());
      return 1;
    }
  }
  if (argc < 2) {
    fmt::print(stderr,
               "usage: {0} DATA_DIR [REPEATS=5] [THREADS=1]\n"
               "       {0} train DATASET DATA_DIR OUT EPOCHS THREADS none|host-copy|optim\n",
               argv[0]);
    return 2;
  }
  const std::string data = argv[1];
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  const char* names[3] = {"no callback", "host copies (PyTorch way)", "--analyze optim"};
  const char* kinds[3] = {"none", "host-copy", "optim"};
  std::vector<double> times[3];
  int64_t train_examples = 0, steps = 0;
  try {
    for (int rep = 0; rep <= repeats; ++rep) {
      for (int mode = 0; mode < 3; ++mode) {
        train::TrainConfig cfg = mlp_config(data, 1, threads);
        cfg.checkpoint_every = 0;
        cfg.out = fmt::format("/tmp/gl_bench_optim_{}_{}", ::getpid(), mode);
        train::Trainer trainer(cfg);
        add_callback(trainer, kinds[mode]);
        auto h = trainer.run();
        train_examples = trainer.train_loader().num_batches() * cfg.batch_size;
        steps = trainer.train_loader().num_batches();
        if (rep > 0) times[mode].push_back(h.back().epoch_time);  // round 0 warms up
        fmt::print(stderr, "round {} {}: {:.3f} s\n", rep, names[mode], h.back().epoch_time);
        std::filesystem::remove_all(cfg.out);
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_optim_overhead: {}\n", e.what());
    return 1;
  }
  double base = median(times[0]);
  std::ostringstream md;
  md << "| configuration | median epoch time (s) | vs no callback | all repeats (s) "
        "|\n|---|---|---|---|\n";
  for (int m = 0; m < 3; ++m) {
    std::string all;
    for (double t : times[m]) all += fmt::format("{}{:.3f}", all.empty() ? "" : ", ", t);
    md << fmt::format("| {} | {:.3f} | {:+.1f}% | {} |\n", names[m], median(times[m]),
                      100 * (median(times[m]) / base - 1), all);
  }
  fmt::print("{}", md.str());
  fmt::print("({} steps of {} examples per epoch, {} thread(s); medians of {} rounds)\n", steps,
             train_examples / std::max<int64_t>(steps, 1), threads, repeats);
  return 0;
}
