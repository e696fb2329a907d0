// eval.cpp: `gradlens eval`: the test loss and accuracy of trained weights. Either a run
// directory (`--run DIR`: the model, MLP or CNN, its activation, normalization, dataset and
// subnormal mode from DIR/config.json, the weights from DIR/model.safetensors or --weights), or
// bare MLP weights (`--weights FILE`: a gradlens model.safetensors, or one written from PyTorch
// with the same key layout), whose architecture is read from the tensor names and shapes; only
// the activation and the input normalization cannot be, and come from flags.
#include <fmt/core.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "engine/io/fs.h"
#include "engine/io/tensor_io.h"
#include "kernels/cpu/fp_env.h"
#include "tools/command.h"
#include "tools/train_flags.h"
#include "train/trainer.h"

namespace gl::tools {
namespace {

// Hidden widths, batchnorm (and whether the Linears before it have a bias) and whether Dropout
// modules sit between the layers, from the keys of an MLP state dict laid out as models/mlp.h
// describes.
void infer_architecture(const io::NamedTensors& tensors, const std::string& path,
                        train::TrainConfig& cfg) {
  std::map<int64_t, Shape> linear;  // module index -> weight shape
  std::set<int64_t> norms, biases;
  for (const auto& [name, t] : tensors) {
    auto dot = name.find('.');
    int64_t idx = -1;
    try {
      std::size_t used = 0;
      idx = std::stoll(name.substr(0, dot), &used);
      if (used != dot) idx = -1;
    } catch (const std::exception&) {
    }
    GL_CHECK(dot != std::string::npos && idx >= 0,
             "--weights {}: tensor '{}' is not named <layer index>.<parameter> like an MLP's", path,
             name);
    std::string param = name.substr(dot + 1);
    GL_CHECK(!(param == "weight" && t.dim() == 4),
             "--weights {}: tensor '{}' {} is a conv weight; `gradlens eval --weights` rebuilds "
             "MLPs only (evaluate a CNN run with --run DIR)",
             path, name, shape_str(t.shape()));
    if (param == "running_mean") norms.insert(idx);
    if (param == "bias") biases.insert(idx);
    if (param == "weight" && t.dim() == 2) {
      GL_CHECK(t.shape()[0] >= 1 && t.shape()[1] >= 1,
               "--weights {}: tensor '{}' {} is an empty Linear weight (a layer needs at least "
               "one input and one output)",
               path, name, shape_str(t.shape()));
      linear[idx] = t.shape();
    }
  }
  GL_CHECK(linear.size() >= 2, "--weights {}: found {} Linear weight(s); an MLP has at least 2",
           path, linear.size());
  cfg.hidden.clear();
  std::vector<int64_t> idx;
  for (auto& [i, s] : linear) {
    idx.push_back(i);
    cfg.hidden.push_back(s[0]);
  }
  cfg.hidden.pop_back();  // the last Linear is the classifier
  cfg.batchnorm = !norms.empty();
  // The first Linear says; a layout mixing both fails to load, naming the keys.
  cfg.bias_before_batchnorm = biases.count(idx[0]) > 0;
  int64_t stride = idx[1] - idx[0];
  int64_t extra = stride - 2 - (cfg.batchnorm ? 1 : 0);
  GL_CHECK(idx[0] == 0 && (extra == 0 || extra == 1),
           "--weights {}: Linear layers at module indices {} and {} do not match an MLP layout",
           path, idx[0], idx[1]);
  // Dropout only shifts the indices; evaluation never applies it.
  cfg.dropout = extra == 1 ? 0.5 : 0.0;
}

// The configuration the run in `dir` trained with, to evaluate `weights` (its model.safetensors
// when empty) on the CPU.
train::TrainConfig run_config(const std::string& dir, const std::string& weights) {
  namespace fs = std::filesystem;
  GL_CHECK(fs::is_directory(dir), "--run {}: {}", dir,
           fs::exists(dir) ? "not a directory (a run directory written by gradlens train)"
                           : "no such directory");
  train::TrainConfig c;
  try {
    c = train::TrainConfig::from_run_dir(dir);
  } catch (const std::exception& e) {
    throw Error(fmt::format("--run {}", e.what()));
  }
  c.load_weights = weights.empty() ? dir + "/model.safetensors" : weights;
  GL_CHECK(fs::exists(c.load_weights), "--run {}: no {} ({})", dir, c.load_weights,
           weights.empty() ? train::missing_model_reason(dir) : "no such file");
  c.device = "cpu";
  c.augment.clear();  // evaluation never augments; the check of the list is training's
  return c;
}

const RegisterCommand reg{
    "eval",
    "Evaluate trained weights on a dataset's test split: loss and accuracy (a run directory, "
    "MLP or CNN, or bare MLP weights)",
    [](CLI::App& sub) {
      auto cfg = std::make_shared<train::TrainConfig>();
      auto run = std::make_shared<std::string>();
      sub.add_option("--run", *run,
                     "Run directory written by gradlens train: its model (MLP or CNN) and "
                     "settings from config.json, its weights from model.safetensors (or "
                     "--weights)");
      sub.add_option("--weights", cfg->load_weights,
                     "Weights to evaluate (.safetensors; without --run an MLP in PyTorch "
                     "nn.Sequential key layout)");
      sub.add_option("--dataset", cfg->dataset, "mnist, fashion-mnist or cifar10")
          ->capture_default_str();
      sub.add_option("--data-dir", cfg->data_dir, "Directory holding <dataset>/")
          ->capture_default_str();
      sub.add_option("--activation", cfg->activation,
                     "Activation the weights were trained with: relu, leaky_relu, tanh, sigmoid, "
                     "gelu, gelu_tanh, silu")
          ->capture_default_str();
      sub.add_option("--leaky-slope", cfg->leaky_slope, "Negative slope of leaky_relu")
          ->capture_default_str();
      sub.add_option("--normalize", cfg->normalize,
                     "Input normalization used in training: raw (x/255) or standard (z-score "
                     "with the statistics of the training examples, see --limit-train)")
          ->capture_default_str();
      sub.add_option("--limit-train", cfg->limit_train,
                     "With --normalize standard: the statistics of the first N training "
                     "examples, as a run trained with --limit-train N used (0: the whole split)")
          ->capture_default_str()
          ->transform(integer_in(0, kInt64Max, "0: the whole split"));
      add_limit_test_flag(sub, cfg->limit_test);
      add_threads_flag(sub, cfg->threads);
      sub.add_option("--denormals", cfg->denormals,
                     "Subnormal floats on the CPU, as in training (its test figures come from "
                     "this mode): flush (to zero) or keep (IEEE gradual underflow)")
          ->capture_default_str();
      sub.callback([cfg, run, &sub]() {
        train::TrainConfig c = *cfg;
        if (!run->empty()) {
          // What the run's config.json says is not taken from flags as well.
          for (const char* f : {"--dataset", "--activation", "--leaky-slope", "--normalize",
                                "--denormals", "--limit-train"})
            GL_CHECK(sub.count(f) == 0,
                     "{}: with --run it comes from the run's config.json ({}/config.json)", f,
                     *run);
          c = run_config(*run, cfg->load_weights);
          if (sub.count("--data-dir") > 0) c.data_dir = cfg->data_dir;
          if (sub.count("--limit-test") > 0) c.limit_test = cfg->limit_test;
          if (sub.count("--threads") > 0) c.threads = cfg->threads;
        } else {
          GL_CHECK(!c.load_weights.empty(),
                   "give --run DIR (a run directory) or --weights FILE (MLP weights)");
          GL_CHECK(c.limit_train == 0 || c.normalize == "standard",
                   "--limit-train {} chooses the statistics of --normalize standard; with "
                   "--normalize {} it would change nothing",
                   c.limit_train, c.normalize);
          infer_architecture(io::load_tensors(c.load_weights), c.load_weights, c);
        }
        c.out = "(eval)";  // nothing is written: run() is never called
        c.evaluate_only = true;
        c.progress = false;
        // The trainer checks the flags (--denormals among them) and loads the weights; its
        // messages name train's --load-weights, which is --weights here.
        std::unique_ptr<train::Trainer> made;
        try {
          made = std::make_unique<train::Trainer>(c);
        } catch (const Error& e) {
          const std::string m = e.what(), train_flag = "--load-weights";
          if (m.rfind(train_flag, 0) != 0) throw;
          // The file came from --weights, or from the run directory.
          const bool own = !run->empty() && cfg->load_weights.empty();
          throw Error((own ? "--run " + *run + ":" : std::string("--weights")) +
                      m.substr(train_flag.size()));
        }
        train::Trainer& trainer = *made;
        // With --run the limits not given here are the run's, noted when it trained.
        for (const auto& [flag, n] : trainer.limit_notes())
          if (sub.count(flag) > 0) fmt::print(stderr, "gradlens eval: note: {}\n", n);
        // Evaluated in the subnormal mode training evaluated in, so the figures are the run's.
        kernels::cpu::DenormalScope denormals(c.denormals == "flush");
        auto [loss, pred] = trainer.evaluate(trainer.test_loader());
        const auto& truth = trainer.test_dataset().labels;
        int64_t correct = 0;
        for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == truth[i];
        // Finite weights can still overflow f32 on the way to the logits; a NaN loss is not a
        // result to report as one.
        GL_CHECK(std::isfinite(loss),
                 "the test loss is {}: the model's outputs are not finite on {}'s test images "
                 "(its weights are finite: e.g. too large for f32 arithmetic)",
                 std::isnan(loss) ? "nan"
                 : loss > 0       ? "inf"
                                  : "-inf",
                 c.dataset);
        fmt::print("{} test: loss {:.9g} accuracy {:.2f}% ({}/{})\n", c.dataset, loss,
                   100.0 * double(correct) / double(pred.size()), correct, pred.size());
      });
    }};

}  // namespace
}  // namespace gl::tools
