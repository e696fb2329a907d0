// train_flags.cpp: flag definitions and their translation into a TrainConfig.
#include "tools/train_flags.h"

#include <fmt/core.h>

#include "tools/command.h"

namespace gl::tools {

void add_threads_flag(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "CPU threads (0: all cores)")
      ->transform(integer_in(0, train::TrainConfig::kMaxThreads, "0: all cores"))
      ->capture_default_str();
}

void add_limit_test_flag(CLI::App& app, int64_t& limit_test) {
  app.add_option("--limit-test", limit_test, "Use only the first N test examples")
      ->transform(integer_in(0, kInt64Max, "0: the whole split"))
      ->capture_default_str();
}

void add_train_flags(CLI::App& app, TrainFlags& f) {
  auto& c = f.cfg;
  f.app = &app;
  // --no-X flags set their setting false through a callback: the "--no-X{false}" spelling
  // works too but shows its "{false}" in --help.
  app.add_option("--dataset", c.dataset, "mnist, fashion-mnist or cifar10")->capture_default_str();
  app.add_option("--data-dir", c.data_dir,
                 "Directory holding <dataset>/ (see `gradlens data fetch`)")
      ->capture_default_str();
  app.add_option("--model", c.model,
                 "Model family: mlp, or cnn (conv stages of conv-[bn]-act-maxpool, then fc "
                 "layers; trains by default with --optimizer adam --lr 0.001 --batch-size 64 "
                 "--normalize standard)")
      ->capture_default_str();
  app.add_option("--channels", f.channels,
                 "cnn: output channels of each conv stage (default 32,64)")
      ->check(non_empty_list("32,64"));
  app.add_option("--fc", f.fc, "cnn: hidden fc widths after the convs (default 128; 0 for none)");
  app.add_option("--kernel", c.kernel, "cnn: square conv kernel, padding kernel/2")
      ->transform(integer_in(1, kInt64Max))
      ->capture_default_str();
  app.add_option("--pool", c.pool, "cnn: max-pool window and stride after each stage (0: none)")
      ->transform(integer_in(0, kInt64Max, "0: none"))
      ->capture_default_str();
  app.add_option("--hidden", f.hidden, "Hidden widths, e.g. 128,128 (overrides --depth/--width)")
      ->check(non_empty_list("128,128"));
  app.add_option("--depth", c.depth, "Number of hidden layers")
      ->transform(integer_in(1, train::TrainConfig::kMaxDepth))
      ->capture_default_str();
  app.add_option("--width", c.width, "Width of each hidden layer")
      ->transform(integer_in(1, kInt64Max))
      ->capture_default_str();
  app.add_option("--activation", c.activation,
                 "relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh, silu, identity (none: a linear "
                 "network)")
      ->capture_default_str();
  app.add_option("--leaky-slope", c.leaky_slope, "Negative slope of leaky_relu")
      ->capture_default_str();
  app.add_option("--init", c.init,
                 "he_normal, he_uniform, xavier_normal, xavier_uniform, normal, zero, orthogonal, "
                 "trunc_normal")
      ->capture_default_str();
  app.add_option("--init-arg", f.init_args,
                 "Initializer parameter key=value (repeatable): factor, mode, nonlinearity, "
                 "negative_slope (he_*); gain (xavier_*, orthogonal); mean, std (normal, "
                 "trunc_normal); a, b (trunc_normal); bias=zero|torch (any)");
  app.add_flag("--batchnorm", c.batchnorm,
               "BatchNorm1d after every hidden Linear (cnn: BatchNorm2d after every conv too)");
  app.add_flag("--bn-bias", c.bias_before_batchnorm,
               "With --batchnorm: keep the bias of each Linear / Conv2d that batch norm follows "
               "(by default they have none: batch norm subtracts the batch mean, so it would "
               "change nothing but rounding)");
  app.add_option("--dropout", c.dropout, "Dropout probability after every hidden activation")
      ->capture_default_str();
  app.add_option("--optimizer", c.optimizer, "sgd, adam or adamw")->capture_default_str();
  app.add_option("--lr", c.lr, "Learning rate")->capture_default_str();
  app.add_option(
         "--lr-schedule", c.lr_schedule,
         "constant, or cosine (per step from --lr toward 0: step t of T uses lr (1 + cos(pi "
         "(t-1)/T)) / 2)")
      ->capture_default_str();
  app.add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str();
  app.add_flag("--nesterov", c.nesterov, "Nesterov momentum (SGD)");
  app.add_option("--weight-decay", c.weight_decay,
                 "Weight decay (L2 for sgd and adam, decoupled for adamw)")
      ->capture_default_str();
  app.add_option("--beta1", c.beta1, "Adam/AdamW first-moment decay")->capture_default_str();
  app.add_option("--beta2", c.beta2, "Adam/AdamW second-moment decay")->capture_default_str();
  app.add_option("--adam-eps", c.adam_eps, "Adam/AdamW epsilon")->capture_default_str();
  app.add_option("--batch-size", c.batch_size, "Mini-batch size")
      ->transform(integer_in(1, kInt64Max))
      ->capture_default_str();
  app.add_option("--epochs", c.epochs,
                 fmt::format("Number of epochs (at most {})", train::TrainConfig::kMaxEpochs))
      ->transform(integer_in(1, train::TrainConfig::kMaxEpochs))
      ->capture_default_str();
  app.add_option("--seed", c.seed, "Seed of initialization, shuffling and dropout")
      ->transform(integer_in(0, std::numeric_limits<uint64_t>::max()))
      ->capture_default_str();
  app.add_option("--normalize", c.normalize,
                 "Input normalization: raw (x/255) or standard (z-score)")
      ->capture_default_str();
  app.add_option(
         "--augment", c.augment,
         "Training augmentation: none, or a comma list of affine, crop, flip, elastic, noise, "
         "each with optional parameters (affine:rotation=10:translate=0.08:scale_min=0.9:"
         "scale_max=1.1:shear=5, crop:pad=2, elastic:alpha=34:sigma=4, noise:std=0.05)")
      ->capture_default_str();
  add_threads_flag(app, c.threads);
  app.add_option("--denormals", c.denormals,
                 "Subnormal floats on the CPU: flush (to zero; much faster on cores that trap "
                 "them) or keep (IEEE gradual underflow)")
      ->capture_default_str();
  app.add_option("--out", c.out, "Run directory to write")->required();
  app.add_option("--checkpoint-every", c.checkpoint_every,
                 "Checkpoint every N epochs (0: only at the end)")
      ->transform(integer_in(0, kInt64Max, "0: only at the end"))
      ->capture_default_str();
  app.add_flag("--resume", c.resume, "Continue the run in --out from its last checkpoint");
  app.add_flag("--overwrite", f.overwrite,
               "Start over in a --out that is not empty: first remove the files a run writes "
               "(a new run refuses a non-empty --out without it, or --resume)")
      ->excludes("--resume");
  app.add_option("--load-weights", c.load_weights, "Start from weights in a .safetensors file");
  app.add_flag_callback(
      "--no-shuffle", [&c] { c.shuffle = false; }, "Keep the training order fixed");
  app.add_flag("--log-steps", c.log_steps, "Write steps.csv with the loss of every step");
  app.add_option("--device", c.device, "cpu (or cuda[:N] in CUDA builds)")->capture_default_str();
  app.add_option("--gemm", c.gemm,
                 "GEMM backend on CUDA: native (our kernel), cublas (reference) or tf32 (opt-in "
                 "tensor cores)")
      ->capture_default_str();
  app.add_flag("--cuda-graph", c.cuda_graph,
               "Capture the training step as a CUDA graph (not implemented: rejected)");
  app.add_option("--limit-train", c.limit_train, "Use only the first N training examples")
      ->transform(integer_in(0, kInt64Max, "0: the whole split"))
      ->capture_default_str();
  add_limit_test_flag(app, c.limit_test);
  app.add_flag_callback(
      "--no-progress", [&c] { c.progress = false; }, "No progress line on stderr");
  app.add_option("--diagnostics", f.diagnostics,
                 "all, none, or a comma list of: activations, histograms, units, grads, "
                 "selectivity")
      ->capture_default_str();
  app.add_option("--diagnostics-every", f.diagnostics_every,
                 "Also record gradient statistics every N steps (0: last step of each epoch)")
      ->transform(integer_in(0, kInt64Max, "0: the last step of each epoch"))
      ->capture_default_str();
  app.add_option("--saturation-threshold", f.saturation_threshold,
                 "A tanh/sigmoid unit is saturated beyond this fraction of its range")
      ->capture_default_str();
  add_analyze_flags(app, f);
  // CLI11 would say only "Could not convert: --lr = abc".
  for (CLI::Option* o : app.get_options())
    if (o->get_type_name() == "FLOAT") o->check(a_number());
}

train::TrainConfig TrainFlags::to_config() const {
  train::TrainConfig c = cfg;
  if (!hidden.empty()) c.hidden = train::parse_int_list(hidden, "--hidden");
  if (!channels.empty()) c.channels = train::parse_int_list(channels, "--channels");
  if (fc == "0")
    c.fc.clear();
  else if (!fc.empty())
    c.fc = train::parse_int_list(fc, "--fc");
  if (c.model == "cnn" && app) {
    auto unset = [this](const char* flag) { return app->count(flag) == 0; };
    if (unset("--optimizer")) c.optimizer = train::TrainConfig::kCnnOptimizer;
    if (unset("--lr")) c.lr = train::TrainConfig::kCnnLr;
    if (unset("--batch-size")) c.batch_size = train::TrainConfig::kCnnBatchSize;
    if (unset("--normalize")) c.normalize = train::TrainConfig::kCnnNormalize;
  }
  for (const auto& kv : init_args) {
    auto eq = kv.find('=');
    GL_CHECK(eq != std::string::npos && eq > 0, "--init-arg: expected key=value, got '{}'", kv);
    GL_CHECK(c.init_args.emplace(kv.substr(0, eq), kv.substr(eq + 1)).second,
             "--init-arg: {} is given twice", kv.substr(0, eq));
  }
  return c;
}

std::vector<std::string> TrainFlags::unused_flags(const train::TrainConfig& c) const {
  std::vector<std::string> notes;
  if (!app) return notes;
  auto given = [this](const char* flag) { return app->count(flag) > 0; };
  auto note = [&](std::initializer_list<const char*> flags, const std::string& why) {
    for (const char* f : flags)
      if (given(f)) notes.push_back(fmt::format("{} has no effect {}", f, why));
  };
  if (c.optimizer != "sgd")
    note({"--momentum", "--nesterov"}, "with --optimizer " + c.optimizer + " (SGD's settings)");
  else
    note({"--beta1", "--beta2", "--adam-eps"}, "with --optimizer sgd (Adam's settings)");
  if (c.activation != "leaky_relu") note({"--leaky-slope"}, "with --activation " + c.activation);
  if (c.model == "cnn")
    note({"--hidden", "--depth", "--width"}, "with --model cnn (its fc widths are --fc)");
  else
    note({"--channels", "--fc", "--kernel", "--pool"}, "with --model " + c.model);
  if (c.model != "cnn" && !hidden.empty())
    note({"--depth", "--width"}, "with --hidden (it gives the widths)");
  if (!c.batchnorm) note({"--bn-bias"}, "without --batchnorm");
  if (c.device == "cpu") note({"--gemm"}, "with --device cpu (it picks the CUDA GEMM)");
  if (diagnostics == "none")
    note({"--diagnostics-every", "--saturation-threshold"}, "without --diagnostics");
  else if (diagnostics != "all" && diagnostics.find("grads") == std::string::npos)
    note({"--diagnostics-every"}, "without the grads diagnostics");
  if (analyze.find("optim") == std::string::npos)
    note({"--analyze-every", "--zero-grad-threshold", "--ema-decay"}, "without --analyze optim");
  return notes;
}

}  // namespace gl::tools
