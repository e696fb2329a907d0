// test_train_torch.cpp: `gradlens train` against PyTorch. The golden test trains the
// 784-128-128-10 ReLU MLP for 200 SGD-momentum steps from the same initial weights in the same
// batch order as tests/train/torch_golden.py and compares every step's loss and the final
// weights; the interop test moves weights both ways through safetensors files and checks that
// both sides measure the same test accuracy. Skipped when /usr/bin/python3 lacks torch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>
#include <sstream>

#include "engine/generator.h"
#include "engine/io/tensor_io.h"
#include "tests/train/run_util.h"

namespace {

using namespace gl::testing;

const char* kNoTorch = "/usr/bin/python3 cannot import torch and numpy: PyTorch oracle unavailable";

// PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), under PyTorch's key names.
gl::io::NamedTensors random_mlp(const std::vector<int64_t>& widths, uint64_t seed) {
  gl::Generator g(seed);
  gl::io::NamedTensors out;
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    int64_t in = widths[i], o = widths[i + 1];
    double bound = 1.0 / std::sqrt(double(in));
    std::vector<float> w(static_cast<std::size_t>(in * o)), b(static_cast<std::size_t>(o));
    for (auto& v : w) v = float((2 * g.uniform() - 1) * bound);
    for (auto& v : b) v = float((2 * g.uniform() - 1) * bound);
    std::string k = std::to_string(2 * i);
    out.emplace_back(k + ".weight", gl::Tensor::from_vector(w, {o, in}));
    out.emplace_back(k + ".bias", gl::Tensor::from_vector(b, {o}));
  }
  return out;
}

std::vector<double> steps_csv_losses(const std::string& path) {
  std::stringstream in(read_text(path));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "step,epoch,loss");
  std::vector<double> out;
  while (std::getline(in, line)) out.push_back(std::stod(line.substr(line.rfind(',') + 1)));
  return out;
}

// The last data row of metrics.csv as name -> value.
std::map<std::string, double> last_metrics(const std::string& path) {
  std::stringstream in(read_text(path));
  std::string header, line, last;
  std::getline(in, header);
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  std::map<std::string, double> out;
  std::stringstream hs(header), ls(last);
  std::string k, v;
  while (std::getline(hs, k, ',') && std::getline(ls, v, ',')) out[k] = std::stod(v);
  return out;
}

TEST(TrainGolden, SgdMomentumStepLossesAndWeightsMatchPyTorch) {
  if (!torch_available()) GTEST_SKIP() << kNoTorch;
  std::string dir = make_temp_dir("gl_golden");
  std::string init = dir + "/init.safetensors";
  gl::io::save_tensors(init, random_mlp({784, 128, 128, 10}, 2024));

  // 800 examples / batch 32 = 25 steps per epoch; 8 epochs = 200 steps.
  ProcResult g = run_gradlens({"train",
                               "--dataset",
                               "mnist",
                               "--data-dir",
                               fixture_data_dir(),
                               "--hidden",
                               "128,128",
                               "--activation",
                               "relu",
                               "--optimizer",
                               "sgd",
                               "--lr",
                               "0.05",
                               "--momentum",
                               "0.9",
                               "--batch-size",
                               "32",
                               "--epochs",
                               "8",
                               "--no-shuffle",
                               "--log-steps",
                               "--threads",
                               "1",
                               "--checkpoint-every",
                               "0",
                               "--no-progress",
                               "--load-weights",
                               init,
                               "--out",
                               dir + "/run"});
  ASSERT_TRUE(g.exited && g.code == 0) << describe(g);
  int rc = run_python(
      {std::string(GRADLENS_SOURCE_DIR) + "/tests/train/torch_golden.py", fixture_dir(), init,
       dir + "/torch", "--steps", "200", "--batch", "32", "--lr", "0.05", "--momentum", "0.9"},
      dir + "/torch.log");
  ASSERT_EQ(rc, 0) << read_text(dir + "/torch.log");

  // Per-step losses: |ours - torch| <= 1e-4 * |torch|.
  std::vector<double> ours = steps_csv_losses(dir + "/run/steps.csv");
  std::vector<double> ref = gl::io::load_npy_tensor(dir + "/torch/losses.npy").to_vector<double>();
  ASSERT_EQ(ours.size(), 200u);
  ASSERT_EQ(ref.size(), 200u);
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    double rel = std::abs(ours[i] - ref[i]) / std::abs(ref[i]);
    worst = std::max(worst, rel);
    EXPECT_LE(rel, 1e-4) << "step " << i + 1 << ": gradlens " << ours[i] << " torch " << ref[i];
  }
  // The run must actually learn, or matching losses would prove little.
  EXPECT_LT(ref.back(), 0.5 * ref.front());
  std::cout << "[ golden ] worst per-step relative loss difference " << worst << "\n";

  // Final weights, per tensor: max|ours - torch| <= 1e-4 * max|torch|.
  auto model = gl::io::load_tensors(dir + "/run/model.safetensors");
  ASSERT_EQ(model.size(), 6u);
  for (const auto& [name, t] : model) {
    auto a = t.to_vector<float>();
    auto b = gl::io::load_npy_tensor(dir + "/torch/" + name + ".npy").to_vector<float>();
    ASSERT_EQ(a.size(), b.size()) << name;
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double d = double(std::abs(a[i] - b[i]));  // a NaN counts as the largest
      diff = std::max(diff, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
      scale = std::max(scale, double(std::abs(b[i])));
    }
    EXPECT_LE(diff, 1e-4 * scale) << name << ": max |diff| " << diff << ", max |torch| " << scale;
    std::cout << "[ golden ] " << name << " max|diff|/max|torch| " << diff / scale << "\n";
  }
}

struct Scores {
  int correct = -1, total = -1;
  double loss = NAN;
};

Scores parse_python(const std::string& log, const std::string& tag) {
  std::smatch m;
  std::regex re(tag + R"( correct (\d+) total (\d+) loss (\S+))");
  Scores s;
  if (std::regex_search(log, m, re)) s = {std::stoi(m[1]), std::stoi(m[2]), std::stod(m[3])};
  return s;
}

// `gradlens eval` prints "... loss L accuracy P% (C/N)".
Scores parse_eval(const std::string& out) {
  std::smatch m;
  std::regex re(R"(loss (\S+) accuracy \S+% \((\d+)/(\d+)\))");
  Scores s;
  if (std::regex_search(out, m, re)) s = {std::stoi(m[2]), std::stoi(m[3]), std::stod(m[1])};
  return s;
}

TEST(TrainInterop, WeightsMoveBothWaysWithTheSameTestAccuracy) {
  if (!torch_available()) GTEST_SKIP() << kNoTorch;
  std::string dir = make_temp_dir("gl_interop");
  std::string data = fixture_data_dir();
  // gradlens -> PyTorch: a short shuffled run (non-trivial accuracy).
  ProcResult g = run_gradlens({"train", "--dataset", "mnist", "--data-dir", data, "--hidden",
                               "128,128", "--batch-size", "32", "--epochs", "2", "--lr", "0.05",
                               "--threads", "1", "--no-progress", "--out", dir + "/run"});
  ASSERT_TRUE(g.exited && g.code == 0) << describe(g);
  // PyTorch -> gradlens: weights trained and written by hand from Python, other widths.
  std::string torch_w = dir + "/torch.safetensors";
  int rc = run_python(
      {std::string(GRADLENS_SOURCE_DIR) + "/tests/train/torch_interop.py", fixture_dir(), "--eval",
       dir + "/run/model.safetensors", "--make", torch_w, "--hidden", "64,32", "--steps", "30"},
      dir + "/torch.log");
  std::string log = read_text(dir + "/torch.log");
  ASSERT_EQ(rc, 0) << log;

  Scores torch_on_ours = parse_python(log, "eval");
  ASSERT_EQ(torch_on_ours.total, 200) << log;
  auto m = last_metrics(dir + "/run/metrics.csv");
  EXPECT_EQ(std::lround(m["test_acc"] * 200), torch_on_ours.correct);
  EXPECT_NEAR(m["test_loss"], torch_on_ours.loss, 1e-5 * torch_on_ours.loss);
  EXPECT_GT(torch_on_ours.correct, 100) << "the gradlens run should have learned something";

  ProcResult e = run_gradlens({"eval", "--weights", dir + "/run/model.safetensors", "--dataset",
                               "mnist", "--data-dir", data, "--threads", "1"});
  ASSERT_TRUE(e.exited && e.code == 0) << describe(e);
  Scores ours_eval = parse_eval(e.out);
  EXPECT_EQ(ours_eval.correct, torch_on_ours.correct) << e.out;
  EXPECT_NEAR(ours_eval.loss, torch_on_ours.loss, 1e-5 * torch_on_ours.loss) << e.out;

  Scores torch_own = parse_python(log, "make");
  ASSERT_EQ(torch_own.total, 200) << log;
  EXPECT_GT(torch_own.correct, 60) << "the PyTorch weights should beat chance";
  ProcResult e2 = run_gradlens(
      {"eval", "--weights", torch_w, "--dataset", "mnist", "--data-dir", data, "--threads", "1"});
  ASSERT_TRUE(e2.exited && e2.code == 0) << describe(e2);
  Scores ours_on_torch = parse_eval(e2.out);
  EXPECT_EQ(ours_on_torch.correct, torch_own.correct) << e2.out;
  EXPECT_EQ(ours_on_torch.total, 200) << e2.out;
  EXPECT_NEAR(ours_on_torch.loss, torch_own.loss, 1e-5 * torch_own.loss) << e2.out;

  // The same file through `train --load-weights`: a step of lr 1e-30 leaves every f32 weight
  // as it was, so the epoch's test accuracy is the loaded weights'.
  ProcResult t =
      run_gradlens({"train",         "--dataset",      "mnist",    "--data-dir", data,
                    "--hidden",      "64,32",          "--epochs", "1",          "--lr",
                    "1e-30",         "--momentum",     "0",        "--threads",  "1",
                    "--no-progress", "--load-weights", torch_w,    "--out",      dir + "/loaded"});
  ASSERT_TRUE(t.exited && t.code == 0) << describe(t);
  auto lm = last_metrics(dir + "/loaded/metrics.csv");
  EXPECT_EQ(std::lround(lm["test_acc"] * 200), torch_own.correct);
}

}  // namespace
