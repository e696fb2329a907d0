// test_checkpoint_checks.cpp: --resume from a checkpoint whose optimizer state is incomplete or
// inconsistent with the run's steps, or whose values no training leaves (NaN, a negative
// variance or second moment, an f64 value beyond f32's range): refused with one line naming the
// tensor, exit 1, and no diverged.json (a sweep never retries a diverged run).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/io/tensor_io.h"
#include "tests/train/run_util.h"

namespace {

using namespace gl::testing;

std::vector<std::string> train_args(const std::string& out, int epochs,
                                    const std::vector<std::string>& extra) {
  std::vector<std::string> a{"train",      "--dataset",        "mnist",
                             "--data-dir", fixture_data_dir(), "--out",
                             out,          "--epochs",         std::to_string(epochs)};
  for (const char* f : {"--hidden", "16", "--batch-size", "64", "--no-progress", "--threads", "1"})
    a.emplace_back(f);
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// Rewrites the checkpoint of the run in `out` with edit() applied to its tensors.
void edit_checkpoint(const std::string& out,
                     const std::function<void(gl::io::NamedTensors&)>& edit) {
  const std::string path = out + "/checkpoint.safetensors";
  gl::io::SafetensorsFile f = gl::io::load_safetensors(path);
  gl::io::NamedTensors ts;
  for (const auto& b : f.tensors) ts.emplace_back(b.name, gl::io::from_buffer(b));
  edit(ts);
  gl::io::save_tensors(path, ts, f.metadata);
}

// Sets component 0 of tensor `name` to `value`.
void set_first(gl::io::NamedTensors& ts, const std::string& name, double value) {
  for (auto& [k, t] : ts)
    if (k == name) {
      std::vector<double> v = t.to_vector<double>();
      v[0] = value;
      t = gl::Tensor::from_vector(v, t.shape()).to(t.dtype());
      return;
    }
  FAIL() << "no tensor " << name;
}

class CheckpointChecks : public ::testing::Test {
 protected:
  // A run of one epoch with `flags`, its checkpoint edited, then resumed to two epochs: the
  // resume must be refused with one line holding every needle.
  void expect_refused(const std::vector<std::string>& flags,
                      const std::function<void(gl::io::NamedTensors&)>& edit,
                      const std::vector<std::string>& needles) {
    const std::string out = make_temp_dir("gl_ckpt_checks") + "/run";
    ProcResult first = run_gradlens(train_args(out, 1, flags));
    ASSERT_TRUE(first.exited && first.code == 0) << describe(first);
    edit_checkpoint(out, edit);
    auto resume = flags;
    resume.push_back("--resume");
    ProcResult r = run_gradlens(train_args(out, 2, resume));
    ASSERT_TRUE(r.exited) << describe(r);
    EXPECT_EQ(r.code, 1) << describe(r);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("checkpoint.safetensors: "), std::string::npos) << r.err;
    for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << n << "\n" << r.err;
    EXPECT_FALSE(fs::exists(out + "/diverged.json")) << "a corrupt checkpoint is no divergence";
  }
  static void remove_if(gl::io::NamedTensors& ts,
                        const std::function<bool(const std::string&)>& f) {
    std::erase_if(ts, [&](const auto& e) { return f(e.first); });
  }
};

const std::vector<std::string> kAdam{"--optimizer", "adam", "--lr", "0.001"};

TEST_F(CheckpointChecks, MissingOptimizerStateIsRefusedNotRestarted) {
  expect_refused(
      kAdam, [](auto& ts) { remove_if(ts, [](const auto& k) { return k.starts_with("optim."); }); },
      {"optimizer state 'optim.state.0.step' is missing", "Adam"});
  // SGD with momentum keeps a buffer for every parameter.
  expect_refused({},
                 [](auto& ts) {
                   remove_if(ts,
                             [](const auto& k) { return k == "optim.state.1.momentum_buffer"; });
                 },
                 {"optimizer state 'optim.state.1.momentum_buffer' is missing", "SGD"});
  expect_refused(kAdam,
                 [](auto& ts) {
                   remove_if(ts, [](const auto& k) { return k == "optim.state.2.exp_avg_sq"; });
                 },
                 {"'optim.state.2.exp_avg_sq' is missing"});
}

TEST_F(CheckpointChecks, AdamStepMustBeTheRunsStepCountAsAnI64Scalar) {
  auto replace_step = [](gl::Tensor t) {
    return [t](gl::io::NamedTensors& ts) {
      for (auto& [k, v] : ts)
        if (k == "optim.state.1.step") v = t;
    };
  };
  // The fixture's 800 training examples in batches of 64: 13 steps.
  expect_refused(kAdam, replace_step(gl::Tensor::full({}, 4611686018427387904.0, gl::DType::i64)),
                 {"'optim.state.1.step' = 4611686018427387904 is inconsistent with the 13 steps"});
  expect_refused(kAdam, replace_step(gl::Tensor::full({}, 16, gl::DType::f32)),
                 {"'optim.state.1.step' is inconsistent: f32 [], expected i64 []"});
  expect_refused(kAdam, replace_step(gl::Tensor::full({1}, 16, gl::DType::i64)),
                 {"'optim.state.1.step' is inconsistent: i64 [1], expected i64 []"});
  expect_refused(
      kAdam,
      [](auto& ts) {
        for (auto& [k, v] : ts)
          if (k == "optim.state.0.exp_avg") v = v.to(gl::DType::f64);
      },
      {"'optim.state.0.exp_avg' is inconsistent: f64 [16, 784], expected f32 [16, 784]"});
}

TEST_F(CheckpointChecks, StateTheOptimizerDoesNotKeepIsRefused) {
  // SGD without momentum keeps no buffers: its checkpoint legitimately has none, and one there
  // was not written by this run.
  expect_refused({"--momentum", "0"},
                 [](auto& ts) {
                   ts.emplace_back("optim.state.0.momentum_buffer", gl::Tensor::zeros({16, 784}));
                 },
                 {"'optim.state.0.momentum_buffer' is inconsistent", "keeps no such state"});
}

TEST_F(CheckpointChecks, SgdWithoutMomentumResumesBitExactly) {
  const std::string dir = make_temp_dir("gl_ckpt_nomomentum");
  const std::vector<std::string> flags{"--momentum", "0"};
  ProcResult full = run_gradlens(train_args(dir + "/full", 2, flags));
  ASSERT_TRUE(full.exited && full.code == 0) << describe(full);
  ProcResult cut = run_gradlens(train_args(dir + "/cut", 1, flags));
  ASSERT_TRUE(cut.exited && cut.code == 0) << describe(cut);
  auto resume = flags;
  resume.push_back("--resume");
  ProcResult resumed = run_gradlens(train_args(dir + "/cut", 2, resume));
  ASSERT_TRUE(resumed.exited && resumed.code == 0) << describe(resumed);
  EXPECT_EQ(read_text(dir + "/full/model.safetensors"), read_text(dir + "/cut/model.safetensors"));
}

TEST_F(CheckpointChecks, CorruptValuesAreRefusedNotADivergence) {
  expect_refused({}, [](auto& ts) { set_first(ts, "optim.state.0.momentum_buffer", NAN); },
                 {"corrupt checkpoint: 'optim.state.0.momentum_buffer' holds a non-finite value"});
  expect_refused(kAdam, [](auto& ts) { set_first(ts, "optim.state.0.exp_avg_sq", -1.0); },
                 {"corrupt checkpoint: 'optim.state.0.exp_avg_sq' holds a negative second moment"});
  expect_refused({}, [](auto& ts) { set_first(ts, "model.2.weight", INFINITY); },
                 {"corrupt checkpoint: 'model.2.weight' holds a non-finite value (inf"});
  expect_refused({"--batchnorm"}, [](auto& ts) { set_first(ts, "model.1.running_var", -2.0); },
                 {"corrupt checkpoint: 'model.1.running_var' holds a negative variance"});
  // An f64 value beyond f32's range loads as inf.
  expect_refused({},
                 [](auto& ts) {
                   for (auto& [k, v] : ts)
                     if (k == "model.0.weight") v = v.to(gl::DType::f64);
                   set_first(ts, "model.0.weight", 1e300);
                 },
                 {"corrupt checkpoint: 'model.0.weight'", "once converted to f32",
                  "f64 value there is beyond f32's range"});
}

}  // namespace
