// test_fused.cpp: a FusedGroup trains each model exactly as it trains alone. The oracle is the
// solo Trainer on the same configuration: every file of the run directory must be
// byte-identical (metrics.csv without epoch_time; files holding times left out), for relu,
// tanh, sigmoid, leaky_relu, silu, gelu and gelu_tanh MLPs of several depths, groups of 3 to 8
// initializers, different optimizers, schedules and learning rates in one group, a last batch of
// one example, both step schedules at 1, 2 and 5 threads, diagnostics (whose recorded steps run on
// the tape), optimization statistics, correlations and TensorBoard, members that diverge, and
// members resumed from different epochs. Every case also counts the fused steps, so a group
// that quietly trained one model at a time would fail.
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>

#include "analysis/corr_callback.h"
#include "analysis/diagnostics.h"
#include "analysis/optim_stats.h"
#include "analysis/tensorboard.h"
#include "tests/cuda_devices.h"
#include "tests/train/run_util.h"
#include "train/fused.h"

namespace {

using namespace gl;
using namespace gl::testing;

train::TrainConfig config(const std::string& out, const std::string& init,
                          const std::string& activation, int64_t depth) {
  train::TrainConfig c;
  c.dataset = "mnist";
  c.data_dir = fixture_data_dir();
  c.depth = depth;
  c.width = 24;
  c.activation = activation;
  c.init = init;
  c.batch_size = 64;
  c.epochs = 2;
  c.seed = 3;
  c.lr = 0.05;
  c.out = out;
  c.progress = false;
  return c;
}

using Attach = std::function<void(train::Trainer&)>;

std::vector<train::EpochResult> train_alone(const train::TrainConfig& c, const Attach& attach) {
  std::vector<train::EpochResult> h;
  std::optional<train::DivergedError> diverged;
  {
    train::Trainer t(c);
    if (attach) attach(t);
    try {
      h = t.run();
    } catch (const train::DivergedError& e) {
      diverged = e;
    }
  }
  if (diverged) train::write_diverged_marker(c.out, *diverged);
  return h;
}

// Trains `configs` alone (into <out>-solo) and as one group (into <out>); returns the group.
std::unique_ptr<train::FusedGroup> train_both(std::vector<train::TrainConfig> configs,
                                              const Attach& attach = nullptr) {
  for (auto c : configs) {
    c.out += "-solo";
    train_alone(c, attach);
  }
  auto group = std::make_unique<train::FusedGroup>(configs);
  for (std::size_t i = 0; i < group->size(); ++i)
    if (attach) attach(*group->trainer(i));
  group->run();
  return group;
}

// Every file of the solo run's directory, byte for byte, except those that hold times: the
// checkpoint (its history has epoch_time), metrics.csv (compared without epoch_time), the
// correlation timings and TensorBoard's event files.
void expect_same_run(const std::string& solo, const std::string& fused) {
  auto files = [](const std::string& dir) {
    std::set<std::string> out;
    for (auto& e : fs::recursive_directory_iterator(dir)) {
      const std::string rel = fs::relative(e.path(), dir).string();
      if (e.is_regular_file() && rel != "checkpoint.safetensors" && rel != "metrics.csv" &&
          rel != "analysis/corr_means.json" && rel.rfind("tensorboard/", 0) != 0)
        out.insert(rel);
    }
    return out;
  };
  const auto names = files(solo);
  EXPECT_EQ(names, files(fused)) << solo << " vs " << fused;
  EXPECT_EQ(fs::exists(solo + "/diverged.json"), !names.count("model.safetensors")) << solo;
  for (const auto& f : names) {
    const std::string a = read_text(solo + "/" + f), b = read_text(fused + "/" + f);
    EXPECT_TRUE(a == b) << f << " differs between " << solo << " and " << fused;
  }
  const std::string ma = strip_epoch_time(read_text(solo + "/metrics.csv"));
  EXPECT_EQ(ma, strip_epoch_time(read_text(fused + "/metrics.csv"))) << fused;
  EXPECT_FALSE(ma.empty()) << solo;
}

std::vector<train::TrainConfig> inits(const std::string& dir, const std::string& activation,
                                      int64_t depth, const std::vector<std::string>& names) {
  std::vector<train::TrainConfig> out;
  for (const auto& n : names) out.push_back(config(dir + "/" + n, n, activation, depth));
  return out;
}

// A temporary directory removed with the test's last reference.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix) : path(make_temp_dir(prefix)) {}
  ~TempDir() { fs::remove_all(path); }
};

const std::vector<std::string> kAllInits{"he_normal",      "he_uniform",  "xavier_normal",
                                         "xavier_uniform", "normal",      "zero",
                                         "orthogonal",     "trunc_normal"};

}  // namespace

TEST(FusedGroup, ReluGroupsOfThreeAndFiveEqualTheirSoloRuns) {
  const TempDir dir("gl_fused_relu");
  for (int64_t depth : {1, 4}) {
    std::vector<std::string> names(kAllInits.begin(), kAllInits.begin() + (depth == 1 ? 3 : 5));
    auto cfgs = inits(dir.path + "/d" + std::to_string(depth), "relu", depth, names);
    auto group = train_both(cfgs);
    for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
    // 800 examples in batches of 64: 13 steps per epoch, all fused.
    EXPECT_EQ(group->fused_steps(), int64_t(names.size()) * 13 * 2);
    EXPECT_EQ(group->tape_steps(), 0);
  }
}

TEST(FusedGroup, BothSchedulesAtAnyThreadCountEqualTheSoloRuns) {
  // 1 thread: layer by layer, serially; 2 threads: each thread takes whole models through the
  // step; 5 threads (more than the 3 models): layer by layer, each batched GEMM cut into row
  // chunks over the threads.
  const int saved = omp_get_max_threads();
  const TempDir dir("gl_fused_threads");
  for (int threads : {1, 2, 5}) {
    auto cfgs = inits(dir.path + "/t" + std::to_string(threads), "tanh", 3,
                      {"orthogonal", "he_uniform", "xavier_normal"});
    for (auto& c : cfgs) {
      c.threads = threads;
      c.width = 100;  // GEMMs large enough to be cut into row chunks
    }
    auto group = train_both(cfgs);
    for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
    EXPECT_EQ(group->fused_steps(), 3 * 13 * 2);
  }
  omp_set_num_threads(saved);
}

TEST(FusedGroup, TanhGroupOfAllEightInitializersEqualsTheSoloRuns) {
  const TempDir dir("gl_fused_tanh");
  auto cfgs = inits(dir.path, "tanh", 3, kAllInits);
  for (auto& c : cfgs) c.batch_size = 47;  // 17 full batches and a last one of one example
  auto group = train_both(cfgs);
  for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
  EXPECT_EQ(group->fused_steps(), 8 * 18 * 2);
  // Different initializers must give different models, or the comparison proves little.
  EXPECT_NE(read_text(cfgs[0].out + "/model.safetensors"),
            read_text(cfgs[3].out + "/model.safetensors"));
}

TEST(FusedGroup, MixedOptimizersLearningRatesAndActivationsInOneGroup) {
  // The group only shares the data and the widths: each member keeps its own activation,
  // optimizer, schedule and learning rate.
  const TempDir dir("gl_fused_mixed");
  auto cfgs =
      inits(dir.path, "leaky_relu", 2,
            {"he_uniform", "xavier_normal", "orthogonal", "normal", "he_normal", "xavier_uniform"});
  cfgs[0].optimizer = "adam";
  cfgs[0].lr = 0.003;
  cfgs[1].optimizer = "adamw";
  cfgs[1].weight_decay = 0.01;
  cfgs[1].lr = 0.002;
  cfgs[2].lr_schedule = "cosine";
  cfgs[2].nesterov = true;
  cfgs[3].activation = "silu";
  cfgs[3].momentum = 0;
  // The activations with vectorized f32 kernels in both directions.
  cfgs[4].activation = "gelu";
  cfgs[5].activation = "gelu_tanh";
  for (auto& c : cfgs) {
    c.log_steps = true;
    c.hidden = {40, 16};
    c.epochs = 3;
  }
  auto group = train_both(cfgs);
  for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
  EXPECT_TRUE(fs::exists(cfgs[0].out + "/steps.csv"));
  EXPECT_EQ(group->fused_steps(), 6 * 13 * 3);
}

TEST(FusedGroup, CallbacksSeeWhatTheySeeAlone) {
  // Diagnostics record gradients at steps 5, 10, 13 (epoch end), 15, 20, 25, 26 of 26 through
  // tensor hooks: those steps run on the tape. The optimization statistics (every step, from
  // .grad), the layer correlations and TensorBoard never need it.
  const TempDir dir("gl_fused_callbacks");
  auto cfgs = inits(dir.path, "sigmoid", 2, {"xavier_uniform", "he_normal", "trunc_normal"});
  Attach attach = [](train::Trainer& t) {
    auto o = analysis::DiagnosticsOptions::parse("all");
    o.every = 5;
    t.add_callback(std::make_shared<analysis::DiagnosticsCallback>(o));
    t.add_callback(std::make_shared<analysis::OptimStatsCallback>(analysis::OptimStatsOptions{}));
    t.add_callback(analysis::make_corr_callback({}));
    t.add_callback(std::make_shared<analysis::tb::TensorBoardCallback>());
  };
  auto group = train_both(cfgs, attach);
  for (auto& c : cfgs) {
    expect_same_run(c.out + "-solo", c.out);
    for (const char* f : {"diagnostics/grad_steps.csv", "optim/stats.npy", "analysis/corr_epochs"})
      EXPECT_TRUE(fs::exists(c.out + "/" + f)) << f;
  }
  EXPECT_EQ(group->tape_steps(), 3 * 7);
  EXPECT_EQ(group->fused_steps(), 3 * (26 - 7));
}

// Reads every parameter's gradient after every step without the tape, weights untouched.
class GradReader : public train::Callback {
 public:
  explicit GradReader(bool declares_reads) : declares_reads_(declares_reads) {}
  void on_after_backward(train::Trainer& t, int64_t) override {
    double sum = 0;
    int64_t undefined = 0;
    for (const Tensor& p : t.model().parameters()) {
      if (!p.grad().defined()) {
        ++undefined;
        continue;
      }
      for (float v : p.grad().contiguous().to_vector<float>()) sum += double(v) * double(v);
    }
    sums.push_back(sum);
    undefined_grads.push_back(undefined);
  }
  bool needs_tape(const train::Trainer&, int64_t) const override { return false; }
  bool reads_weights(const train::Trainer&, int64_t) const override { return false; }
  bool reads_grads(const train::Trainer&, int64_t) const override { return declares_reads_; }
  std::vector<double> sums;
  std::vector<int64_t> undefined_grads;

 private:
  bool declares_reads_;
};

TEST(FusedGroup, GradientsAreKeptForCallbacksThatReadThemAndReleasedOtherwise) {
  // Every step is fused and SGD updates each layer inline. A callback that reads .grad sees,
  // step by step, exactly the gradients of the solo run; one that declares it does not read
  // them finds them released after the inline updates, and the runs end the same.
  const TempDir dir("gl_fused_grads");
  for (bool reads : {true, false}) {
    auto cfgs = inits(dir.path + (reads ? "/reads" : "/not"), "tanh", 3,
                      {"he_normal", "orthogonal", "xavier_uniform"});
    std::vector<std::shared_ptr<GradReader>> solo, fused;
    for (auto c : cfgs) {
      c.out += "-solo";
      solo.push_back(std::make_shared<GradReader>(reads));
      train_alone(c, [&](train::Trainer& t) { t.add_callback(solo.back()); });
    }
    train::FusedGroup group(cfgs);
    for (std::size_t i = 0; i < group.size(); ++i) {
      fused.push_back(std::make_shared<GradReader>(reads));
      group.trainer(i)->add_callback(fused.back());
    }
    group.run();
    EXPECT_EQ(group.fused_steps(), 3 * 13 * 2);
    for (std::size_t i = 0; i < cfgs.size(); ++i) {
      expect_same_run(cfgs[i].out + "-solo", cfgs[i].out);
      ASSERT_EQ(solo[i]->sums.size(), std::size_t(26));
      ASSERT_EQ(fused[i]->sums.size(), std::size_t(26));
      for (std::size_t s = 0; s < 26; ++s) {
        EXPECT_EQ(solo[i]->undefined_grads[s], 0) << s;
        if (reads) {
          EXPECT_EQ(fused[i]->undefined_grads[s], 0) << s;
          EXPECT_EQ(fused[i]->sums[s], solo[i]->sums[s]) << "model " << i << " step " << s;
        } else {
          // 4 Linear layers: 8 parameters, all released.
          EXPECT_EQ(fused[i]->undefined_grads[s], 8) << s;
        }
      }
    }
  }
}

TEST(FusedGroup, ADivergingMemberLeavesAndTheOthersGoOn) {
  const TempDir dir("gl_fused_diverge");
  auto cfgs = inits(dir.path, "relu", 2, {"he_normal", "xavier_uniform", "orthogonal"});
  cfgs[1].lr = 1e10;  // NaN loss within the first steps
  auto group = train_both(cfgs);
  EXPECT_TRUE(fs::exists(cfgs[1].out + "/diverged.json"));
  for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
  // When every member diverges the group ends early, each with its marker.
  auto all = inits(dir.path + "/all", "relu", 2, {"he_normal", "xavier_uniform"});
  for (auto& c : all) c.lr = 1e10;
  train_both(all);
  for (auto& c : all) expect_same_run(c.out + "-solo", c.out);
}

TEST(FusedGroup, MembersResumedFromDifferentEpochsEqualUninterruptedRuns) {
  const TempDir dir("gl_fused_resume");
  auto cfgs = inits(dir.path, "tanh", 2, {"he_normal", "xavier_normal", "zero"});
  for (auto& c : cfgs) {
    c.epochs = 3;
    c.resume = true;
  }
  // The uninterrupted oracle.
  for (auto c : cfgs) {
    c.out += "-solo";
    train_alone(c, nullptr);
  }
  // Member 0 trained 1 epoch and member 1 two epochs before; member 2 starts fresh.
  for (int i : {0, 1}) {
    auto c = cfgs[std::size_t(i)];
    c.epochs = i + 1;
    train_alone(c, nullptr);
  }
  train::FusedGroup group(cfgs);
  auto outcome = group.run();
  for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
  for (auto& o : outcome) EXPECT_EQ(o.history.size(), 3u);
  // Epoch 1: member 2 alone (a tape step each); epoch 2: members 0 and 2; epoch 3: all three.
  EXPECT_EQ(group.tape_steps(), 13);
  EXPECT_EQ(group.fused_steps(), 13 * 2 + 13 * 3);
}

TEST(FusedGroup, RefusesMembersThatCannotShareTheData) {
  const TempDir dir("gl_fused_refuse");
  auto cfgs = inits(dir.path, "relu", 2, {"he_normal", "xavier_uniform"});
  cfgs[1].seed = 4;  // another batch order
  try {
    train::FusedGroup g(cfgs);
    FAIL() << "a group over two batch orders was built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot train with run 0"), std::string::npos) << e.what();
  }
  cfgs[1].seed = cfgs[0].seed;
  cfgs[1].depth = 3;
  EXPECT_THROW(train::FusedGroup g(cfgs), Error);
  auto drop = inits(dir.path, "relu", 2, {"he_normal", "xavier_uniform"});
  for (auto& c : drop) c.dropout = 0.1;
  EXPECT_NE(train::fused_step_unsupported(drop[0]).find("--dropout"), std::string::npos);
  // Dropout models still train in a group, one at a time on the tape, exactly.
  auto group = train_both(drop);
  for (auto& c : drop) expect_same_run(c.out + "-solo", c.out);
  EXPECT_EQ(group->fused_steps(), 0);
  EXPECT_EQ(group->tape_steps(), 2 * 13 * 2);
}

// On a GPU: one batched GEMM launch per layer and pass for the group, the rest one model at a
// time; each member's run directory must be the bits of its solo run on the same GPU, with
// relu, tanh, sigmoid and gelu (whose backward reads the input), SGD and Adam, steps.csv, and a
// member that diverges (on a GPU a non-finite loss is caught at the epoch's end, alone or not).
TEST(FusedGroup, OnTheGpuEveryMemberEqualsItsSoloGpuRun) {
  const std::string why = gl::testing::missing_gpus(1);
  if (!why.empty()) GTEST_SKIP() << "GPU test skipped: " << why;
  const TempDir dir("gl_fused_gpu");
  auto cfgs = inits(dir.path, "relu", 3,
                    {"he_normal", "orthogonal", "xavier_uniform", "he_uniform", "normal"});
  cfgs[1].activation = "tanh";
  cfgs[2].activation = "sigmoid";
  cfgs[3].activation = "gelu";
  cfgs[3].optimizer = "adam";
  cfgs[3].lr = 0.003;
  cfgs[4].lr = 1e10;  // diverges in the first epoch
  for (auto& c : cfgs) {
    c.device = "cuda";
    c.width = 100;
    c.log_steps = true;
  }
  EXPECT_EQ(train::fused_step_unsupported(cfgs[0]), "");
  auto group = train_both(cfgs);
  for (auto& c : cfgs) expect_same_run(c.out + "-solo", c.out);
  EXPECT_TRUE(fs::exists(cfgs[4].out + "/diverged.json"));
  EXPECT_TRUE(fs::exists(cfgs[0].out + "/steps.csv"));
  // Four members through both epochs, the diverging one through its first.
  EXPECT_EQ(group->fused_steps(), 4 * 13 * 2 + 13);
  EXPECT_EQ(group->tape_steps(), 0);
  EXPECT_NE(read_text(cfgs[0].out + "/model.safetensors"),
            read_text(cfgs[1].out + "/model.safetensors"));
}
