// test_bn_bias.cpp: whole `gradlens` runs of models with batch norm on the mnist-tiny fixture. A
// new run's Linear / Conv2d layers before batch norm have no bias (config.json says
// "bias_before_batchnorm": false) and every file downstream copes: the weights' keys, the
// diagnostics, the optimizer statistics, the report. A run directory written before that
// setting existed (config.json and checkpoint without the key, weights with those biases)
// still evaluates to its own figures, resumes and reports.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/io/safetensors.h"
#include "engine/io/tensor_io.h"
#include "tests/train/run_util.h"

namespace {

using namespace gl::testing;
using json = nlohmann::json;

std::vector<std::string> bn_args(const std::string& out, int epochs,
                                 const std::vector<std::string>& model,
                                 const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a{"train",
                             "--dataset",
                             "mnist",
                             "--data-dir",
                             fixture_data_dir(),
                             "--batchnorm",
                             "--batch-size",
                             "32",
                             "--seed",
                             "7",
                             "--epochs",
                             std::to_string(epochs),
                             "--threads",
                             "1",
                             "--no-progress",
                             "--log-steps",
                             "--out",
                             out};
  a.insert(a.end(), model.begin(), model.end());
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

void run_ok(const std::vector<std::string>& args) {
  ProcResult r = run_gradlens(args);
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
}

std::set<std::string> weight_keys(const std::string& run) {
  std::set<std::string> keys;
  for (const auto& [name, t] : gl::io::load_tensors(run + "/model.safetensors")) keys.insert(name);
  return keys;
}

// `keys` and the state-dict keys of a BatchNorm at each module index of `batchnorms`.
std::set<std::string> with_batchnorms(std::set<std::string> keys,
                                      std::initializer_list<const char*> batchnorms) {
  for (const char* bn : batchnorms)
    for (const char* k :
         {".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked"})
      keys.insert(std::string(bn) + k);
  return keys;
}

json read_json(const std::string& path) {
  return json::parse(read_text(path));
}

// The rows of a CSV file, each split at its commas (the header first).
std::vector<std::vector<std::string>> csv_rows(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream in(read_text(path));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    std::vector<std::string> cells;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
    if (line.back() == ',') cells.emplace_back();
    rows.push_back(cells);
  }
  return rows;
}

const std::vector<std::string> kMlp{"--hidden", "16,8"};
const std::vector<std::string> kCnn{"--model", "cnn", "--channels", "4", "--fc", "8"};

// The diagnostics of a batch-norm run: every file whole, the bias gradient norm of a layer
// without a bias `nan` (not measured) and one of a layer with a bias a number.
void expect_diagnostics_well_formed(const std::string& run, bool hidden_bias) {
  SCOPED_TRACE(run);
  const json layers = read_json(run + "/diagnostics/layers.json");
  ASSERT_EQ(layers["layers"].size(), 2u);
  for (const json& l : layers["layers"]) {
    EXPECT_EQ(l["batchnorm"], true) << l.dump();
    EXPECT_EQ(l["bias"], hidden_bias) << l.dump();
  }
  const auto grads = csv_rows(run + "/diagnostics/grads.csv");
  ASSERT_GT(grads.size(), 1u);
  EXPECT_EQ(grads[0], (std::vector<std::string>{"epoch", "layer", "weight_grad_norm",
                                                "bias_grad_norm", "act_grad_norm", "weight_norm",
                                                "update_ratio", "weight_grad_norm_mean"}));
  int trained_rows = 0;
  for (std::size_t r = 1; r < grads.size(); ++r) {
    const auto& row = grads[r];
    ASSERT_EQ(row.size(), grads[0].size()) << r;
    if (row[0] == "0") continue;  // initialization: no gradients yet
    ++trained_rows;
    const double wg = std::stod(row[2]), bg = std::stod(row[3]);
    EXPECT_TRUE(std::isfinite(wg) && wg > 0) << row[2];
    EXPECT_EQ(std::isnan(bg), !hidden_bias) << row[3];
  }
  EXPECT_EQ(trained_rows, 2 * std::stoi(grads.back()[0]));
  // metrics.csv: whole rows, every layer's gradient norm a number.
  const auto metrics = csv_rows(run + "/metrics.csv");
  ASSERT_GE(metrics.size(), 2u);
  for (std::size_t r = 1; r < metrics.size(); ++r) {
    ASSERT_EQ(metrics[r].size(), metrics[0].size()) << r;
    for (std::size_t c = 0; c < metrics[0].size(); ++c)
      if (metrics[0][c].rfind("grad_norm_", 0) == 0) {
        EXPECT_TRUE(std::isfinite(std::stod(metrics[r][c]))) << metrics[0][c];
      }
  }
  // The optimizer statistics name exactly the model's parameters: no bias that is not there.
  const json optim = read_json(run + "/optim/optim.json");
  std::set<std::string> params, weights = weight_keys(run);
  for (const json& p : optim["params"]) params.insert(p["name"].get<std::string>());
  for (const auto& k : weights)
    if (k.find("running_") == std::string::npos && k.find("num_batches") == std::string::npos) {
      EXPECT_EQ(params.count(k), 1u) << k;
    }
  for (const auto& p : params) EXPECT_EQ(weights.count(p), 1u) << p;
  ProcResult report = run_gradlens({"report", run});
  EXPECT_TRUE(report.exited && report.code == 0) << describe(report);
  EXPECT_FALSE(read_text(run + "/report.html").empty());
}

TEST(BnBias, BatchNormRunsHaveNoBiasBeforeItAndWellFormedDiagnostics) {
  const std::string dir = make_temp_dir("gl_bn_bias_new");
  const std::vector<std::string> diag{"--diagnostics", "all", "--analyze", "optim"};
  // MLP: 0 Linear, 1 BatchNorm1d, 2 ReLU, 3 Linear, 4 BatchNorm1d, 5 ReLU, 6 Linear.
  run_ok(bn_args(dir + "/mlp", 2, kMlp, diag));
  EXPECT_EQ(read_json(dir + "/mlp/config.json")["bias_before_batchnorm"], false);
  EXPECT_EQ(weight_keys(dir + "/mlp"),
            with_batchnorms({"0.weight", "3.weight", "6.weight", "6.bias"}, {"1", "4"}));
  expect_diagnostics_well_formed(dir + "/mlp", false);
  // Bare weights without those biases evaluate as an MLP with batch norm, to the run's figures.
  expect_eval_reproduces({"eval", "--weights", dir + "/mlp/model.safetensors", "--dataset", "mnist",
                          "--data-dir", fixture_data_dir(), "--threads", "1"},
                         dir + "/mlp");

  // CNN: 0 Conv2d, 1 BatchNorm2d, 2 ReLU, 3 MaxPool2d, 4 Flatten, 5 Linear, 6 BatchNorm1d,
  // 7 ReLU, 8 Linear.
  run_ok(bn_args(dir + "/cnn", 1, kCnn, diag));
  EXPECT_EQ(weight_keys(dir + "/cnn"),
            with_batchnorms({"0.weight", "5.weight", "8.weight", "8.bias"}, {"1", "6"}));
  expect_diagnostics_well_formed(dir + "/cnn", false);
  expect_eval_reproduces({"eval", "--run", dir + "/cnn", "--data-dir", fixture_data_dir()},
                         dir + "/cnn");

  // --bn-bias keeps them, and their gradient norms are measured.
  run_ok(
      bn_args(dir + "/kept", 1, kMlp, {"--bn-bias", "--diagnostics", "all", "--analyze", "optim"}));
  EXPECT_EQ(read_json(dir + "/kept/config.json")["bias_before_batchnorm"], true);
  EXPECT_EQ(weight_keys(dir + "/kept").count("0.bias"), 1u);
  EXPECT_EQ(weight_keys(dir + "/kept").count("3.bias"), 1u);
  expect_diagnostics_well_formed(dir + "/kept", true);
}

// Makes the run in `dir` look as if written before bias_before_batchnorm existed: its
// config.json and its checkpoint's configuration lose the key.
void drop_the_key(const std::string& dir) {
  json cfg = read_json(dir + "/config.json");
  ASSERT_EQ(cfg.erase("bias_before_batchnorm"), 1u);
  write_text(dir + "/config.json", cfg.dump(2) + "\n");
  const std::string ckpt = dir + "/checkpoint.safetensors";
  gl::io::SafetensorsFile f = gl::io::load_safetensors(ckpt);
  json saved = json::parse(f.metadata.at("gradlens.config"));
  ASSERT_EQ(saved.erase("bias_before_batchnorm"), 1u);
  f.metadata["gradlens.config"] = saved.dump(2) + "\n";
  gl::io::save_safetensors(ckpt, f.tensors, f.metadata);
}

TEST(BnBias, ARunFromBeforeTheSettingStillEvaluatesResumesAndReports) {
  const std::string dir = make_temp_dir("gl_bn_bias_old");
  // The older layout: a bias before each batch norm, in the weights and the checkpoint.
  run_ok(bn_args(dir + "/old", 1, kMlp, {"--bn-bias"}));
  drop_the_key(dir + "/old");
  EXPECT_EQ(weight_keys(dir + "/old").count("0.bias"), 1u);
  expect_eval_reproduces({"eval", "--run", dir + "/old", "--data-dir", fixture_data_dir()},
                         dir + "/old");
  expect_eval_reproduces({"eval", "--weights", dir + "/old/model.safetensors", "--dataset", "mnist",
                          "--data-dir", fixture_data_dir(), "--threads", "1"},
                         dir + "/old");
  ProcResult analyze = run_gradlens({"analyze", dir + "/old", "pca", "--examples", "50",
                                     "--data-dir", fixture_data_dir(), "--quiet"});
  EXPECT_TRUE(analyze.exited && analyze.code == 0) << describe(analyze);
  ProcResult report = run_gradlens({"report", dir + "/old"});
  EXPECT_TRUE(report.exited && report.code == 0) << describe(report);

  // Resumed with the flags it was started with (there was no --bn-bias then), it continues
  // with its biases, exactly as a run that kept them from the start.
  run_ok(bn_args(dir + "/old", 2, kMlp, {"--resume"}));
  run_ok(bn_args(dir + "/full", 2, kMlp, {"--bn-bias"}));
  expect_same_outputs(dir + "/full", dir + "/old");
  EXPECT_EQ(read_json(dir + "/old/config.json")["bias_before_batchnorm"], true);

  // A CNN run of the older layout evaluates to its own figures too.
  run_ok(bn_args(dir + "/old_cnn", 1, kCnn, {"--bn-bias"}));
  drop_the_key(dir + "/old_cnn");
  EXPECT_EQ(weight_keys(dir + "/old_cnn").count("0.bias"), 1u);
  expect_eval_reproduces({"eval", "--run", dir + "/old_cnn", "--data-dir", fixture_data_dir()},
                         dir + "/old_cnn");

  // Its weights given to a new run without --bn-bias: the error says what to add.
  ProcResult load = run_gradlens(
      bn_args(dir + "/load", 1, kMlp, {"--load-weights", dir + "/old/model.safetensors"}));
  ASSERT_TRUE(load.exited) << describe(load);
  EXPECT_NE(load.code, 0);
  EXPECT_NE(load.err.find("0.bias"), std::string::npos) << load.err;
  EXPECT_NE(load.err.find("--bn-bias"), std::string::npos) << load.err;
  run_ok(bn_args(dir + "/load", 1, kMlp,
                 {"--bn-bias", "--overwrite", "--load-weights", dir + "/old/model.safetensors"}));
}

}  // namespace
