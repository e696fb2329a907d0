// trainer.cpp: the epoch loop, evaluation, checkpoints and the run directory's files.
#include "train/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>
#include <utility>
#include <vector>

#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/tensor_io.h"
#include "engine/ops.h"
#include "kernels/cpu/fp_env.h"
#include "kernels/kernels.h"
#include "models/init.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "engine/cuda/ops_cuda.h"
#include "kernels/cuda/runtime.h"
#endif

namespace gl::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<int64_t> parse_int_list(const std::string& s, const char* flag) {
  std::vector<int64_t> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      std::size_t used = 0;
      long long v = std::stoll(item, &used);
      GL_CHECK(used == item.size(), "");
      out.push_back(v);
    } catch (const std::exception&) {
      throw Error(fmt::format("{}: '{}' is not a comma-separated list of integers", flag, s));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// ------------------------------------------------------------------ config
std::vector<int64_t> TrainConfig::hidden_widths() const {
  if (!hidden.empty()) return hidden;
  return std::vector<int64_t>(std::size_t(std::max<int64_t>(depth, 0)), width);
}

void TrainConfig::validate() const {
  GL_CHECK(model == "mlp" || model == "cnn", "--model: unknown model '{}' (available: mlp, cnn)",
           model);
  if (model == "cnn") {
    GL_CHECK(!channels.empty(), "--channels: give at least one conv stage, e.g. 32,64");
    for (int64_t c : channels)
      GL_CHECK(c >= 1, "--channels: every channel count must be at least 1, got {}", c);
    for (int64_t w : fc) GL_CHECK(w >= 1, "--fc: every width must be at least 1, got {}", w);
    GL_CHECK(kernel >= 1, "--kernel must be at least 1, got {}", kernel);
    GL_CHECK(pool >= 0, "--pool must be >= 0, got {}", pool);
  }
  GL_CHECK(!hidden.empty() || (depth >= 1 && depth <= kMaxDepth),
           "--depth must be in [1, {}], got {}", kMaxDepth, depth);
  GL_CHECK(hidden.size() <= std::size_t(kMaxDepth), "--hidden: at most {} widths, got {}",
           kMaxDepth, hidden.size());
  GL_CHECK(hidden.empty() ? width >= 1 : true, "--width must be at least 1, got {}", width);
  for (int64_t w : hidden) GL_CHECK(w >= 1, "--hidden: every width must be at least 1, got {}", w);
  GL_CHECK(batch_size >= 1, "--batch-size must be at least 1, got {}", batch_size);
  GL_CHECK(epochs >= 1 && epochs <= kMaxEpochs, "--epochs must be in [1, {}], got {}", kMaxEpochs,
           epochs);
  // The optimizers step f32 parameters with these values rounded to f32: a value that is 0 or
  // infinite there would not train (or would read as a divergence).
  auto f32_finite = [](double v) { return std::isfinite(float(v)); };
  GL_CHECK(lr > 0 && f32_finite(lr),
           "--lr must be a positive number within f32's range (below about 3.4e38), got {}", lr);
  GL_CHECK(float(lr) > 0,
           "--lr {} is 0 in f32 (the smallest positive f32 is about 1.4e-45): the weights would "
           "never change",
           lr);
  GL_CHECK(momentum >= 0 && momentum < 1, "--momentum must be in [0, 1), got {}", momentum);
  GL_CHECK(weight_decay >= 0 && f32_finite(weight_decay),
           "--weight-decay must be a number >= 0 within f32's range (below about 3.4e38), got {}",
           weight_decay);
  GL_CHECK(beta1 >= 0 && beta1 < 1, "--beta1 must be in [0, 1), got {}", beta1);
  GL_CHECK(beta2 >= 0 && beta2 < 1, "--beta2 must be in [0, 1), got {}", beta2);
  GL_CHECK(adam_eps > 0 && f32_finite(adam_eps),
           "--adam-eps must be a positive number within f32's range (below about 3.4e38), got {}",
           adam_eps);
  GL_CHECK(
      f32_finite(leaky_slope),
      "--leaky-slope must be a number within f32's range (below about 3.4e38 in magnitude), got {}",
      leaky_slope);
  GL_CHECK(dropout >= 0 && dropout < 1, "--dropout must be in [0, 1), got {}", dropout);
  GL_CHECK(optimizer == "sgd" || optimizer == "adam" || optimizer == "adamw",
           "--optimizer: unknown optimizer '{}' (sgd, adam, adamw)", optimizer);
  // Refused here, not when the device is set up, so that a sweep refuses it before any run.
  GL_CHECK(!cuda_graph || device.rfind("cuda", 0) == 0, "--cuda-graph needs --device cuda");
  GL_CHECK(!cuda_graph,
           "--cuda-graph: capturing the training step as a CUDA graph is not implemented yet; run "
           "without --cuda-graph");
  GL_CHECK(checkpoint_every >= 0, "--checkpoint-every must be >= 0, got {}", checkpoint_every);
  GL_CHECK(threads >= 0 && threads <= kMaxThreads,
           "--threads must be in [0, {}] (0: all cores), got {}", kMaxThreads, threads);
  GL_CHECK(limit_train >= 0, "--limit-train must be >= 0 (0: the whole split), got {}",
           limit_train);
  GL_CHECK(limit_test >= 0, "--limit-test must be >= 0 (0: the whole split), got {}", limit_test);
  GL_CHECK(!nesterov || optimizer != "sgd" || momentum > 0,
           "--nesterov needs --momentum above 0 (got {})", momentum);
  GL_CHECK(!out.empty(), "--out: a run directory is required");
  const auto& known = data::known_datasets();
  GL_CHECK(std::find(known.begin(), known.end(), dataset) != known.end(),
           "--dataset: unknown dataset '{}' (known: mnist, fashion-mnist, cifar10)", dataset);
  // The parsers' messages name the bad value; the prefix names the flag it came from.
  auto flag = [](const char* name, const auto& parse) {
    try {
      parse();
    } catch (const std::exception& e) {
      throw Error(fmt::format("{}: {}", name, e.what()));
    }
  };
  flag("--normalize", [&] { data::parse_normalization(normalize); });
  GL_CHECK(lr_schedule == "constant" || lr_schedule == "cosine",
           "--lr-schedule: unknown schedule '{}' (constant, cosine)", lr_schedule);
  flag("--augment", [&] { data::parse_train_augment(augment); });
  flag("--activation", [&] { parse_activation(activation); });
  flag(init_args.empty() ? "--init" : "--init/--init-arg",
       [&] { models::parse_init(init, init_args); });
  flag("--device", [&] { Device::parse(device); });
  flag("--gemm", [&] { parse_cuda_gemm_algo(gemm); });
  GL_CHECK(denormals == "flush" || denormals == "keep",
           "--denormals: unknown mode '{}' (flush, keep)", denormals);
}

std::string TrainConfig::to_json() const {
  json j;
  j["dataset"] = dataset;
  j["data_dir"] = data_dir;
  j["model"] = model;
  j["hidden"] = hidden_widths();
  j["channels"] = channels;
  j["fc"] = fc;
  j["kernel"] = kernel;
  j["pool"] = pool;
  j["activation"] = activation;
  j["leaky_slope"] = leaky_slope;
  j["init"] = init;
  j["init_args"] = init_args;
  j["batchnorm"] = batchnorm;
  j["bias_before_batchnorm"] = bias_before_batchnorm;
  j["dropout"] = dropout;
  j["optimizer"] = optimizer;
  j["lr"] = lr;
  j["lr_schedule"] = lr_schedule;
  j["momentum"] = momentum;
  j["nesterov"] = nesterov;
  j["weight_decay"] = weight_decay;
  j["beta1"] = beta1;
  j["beta2"] = beta2;
  j["adam_eps"] = adam_eps;
  j["batch_size"] = batch_size;
  j["epochs"] = epochs;
  j["seed"] = seed;
  j["normalize"] = normalize;
  j["augment"] = data::parse_train_augment(augment).str();
  j["threads"] = threads;
  j["checkpoint_every"] = checkpoint_every;
  j["load_weights"] = load_weights;
  j["shuffle"] = shuffle;
  j["log_steps"] = log_steps;
  j["device"] = device;
  j["gemm"] = gemm;
  j["denormals"] = denormals;
  j["limit_train"] = limit_train;
  j["limit_test"] = limit_test;
  return j.dump(2) + "\n";
}

namespace {

// The settings of a configuration document; an error names the document's file and the key.
TrainConfig config_from(const io::JsonReader& j) {
  if (!j.json().is_object())
    j.fail(fmt::format("a training configuration is a JSON object of settings, not {}",
                       j.json().type_name()));
  TrainConfig c;
  auto get = [&j](const char* k, auto& v) { v = j.get(k, v); };
  get("dataset", c.dataset);
  get("data_dir", c.data_dir);
  get("model", c.model);
  get("hidden", c.hidden);
  get("channels", c.channels);
  get("fc", c.fc);
  get("kernel", c.kernel);
  get("pool", c.pool);
  get("activation", c.activation);
  get("leaky_slope", c.leaky_slope);
  get("init", c.init);
  get("init_args", c.init_args);
  get("batchnorm", c.batchnorm);
  c.bias_before_batchnorm = true;  // absent: written when those layers always had a bias
  get("bias_before_batchnorm", c.bias_before_batchnorm);
  get("dropout", c.dropout);
  get("optimizer", c.optimizer);
  get("lr", c.lr);
  get("lr_schedule", c.lr_schedule);
  get("momentum", c.momentum);
  get("nesterov", c.nesterov);
  get("weight_decay", c.weight_decay);
  get("beta1", c.beta1);
  get("beta2", c.beta2);
  get("adam_eps", c.adam_eps);
  get("batch_size", c.batch_size);
  get("epochs", c.epochs);
  get("seed", c.seed);
  get("normalize", c.normalize);
  get("augment", c.augment);
  get("threads", c.threads);
  get("checkpoint_every", c.checkpoint_every);
  get("load_weights", c.load_weights);
  get("shuffle", c.shuffle);
  get("log_steps", c.log_steps);
  get("device", c.device);
  get("gemm", c.gemm);
  get("denormals", c.denormals);
  get("limit_train", c.limit_train);
  get("limit_test", c.limit_test);
  return c;
}

}  // namespace

TrainConfig TrainConfig::from_json(const std::string& text, const std::string& source) {
  const json j = io::parse_json(text, source);
  return config_from(io::JsonReader(j, source));
}

std::optional<TrainConfig::Difference> TrainConfig::difference_from(
    const json& saved, std::initializer_list<std::string_view> ignored) const {
  const json now = json::parse(to_json());
  for (auto& [k, v] : now.items()) {
    if (std::find(ignored.begin(), ignored.end(), k) != ignored.end()) continue;
    if (!saved.contains(k) && ((k == "gemm" && v == "native") || (k == "augment" && v == "none") ||
                               (k == "lr_schedule" && v == "constant") || k == "denormals" ||
                               (k == "bias_before_batchnorm" && v == true)))
      continue;  // written before these flags existed
    if (!saved.contains(k) || saved[k] != v)
      return Difference{k, saved.contains(k) ? io::json_text(saved[k]) : "(unset)",
                        io::json_text(v)};
  }
  return std::nullopt;
}

TrainConfig TrainConfig::from_run_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  GL_CHECK(io::file_exists(path),
           "{}: no config.json (not a run directory written by gradlens train)", dir);
  const json j = io::read_json_file(path);
  const TrainConfig c = config_from(io::JsonReader(j, path));
  TrainConfig checked = c;  // config.json holds no --out: the run is the directory
  if (checked.out.empty()) checked.out = dir;
  try {
    checked.validate();  // its messages name the flag the setting came from
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  // The settings that decide the model and how its inputs are prepared have no default here: a
  // run rebuilt with another activation or normalization would be evaluated as another model.
  // (The settings added later keep the value runs had before them: bias_before_batchnorm,
  // denormals.)
  auto require = [&](const char* key, const char* decides) {
    GL_CHECK(j.contains(key), "{}: missing key '{}' (it decides {}; gradlens train writes it)",
             path, key, decides);
  };
  require("model", "the kind of model");
  require("dataset", "the data the model reads");
  require("activation", "the model's activation");
  if (c.activation == "leaky_relu") require("leaky_slope", "leaky_relu's negative slope");
  require("batchnorm", "the model's layers");
  require("dropout", "the model's layers");
  if (c.model == "cnn") {
    for (const char* k : {"channels", "fc", "kernel", "pool"}) require(k, "the CNN's layers");
  } else {
    require("hidden", "the MLP's widths");
  }
  require("normalize", "the normalization of the inputs");
  if (c.normalize == "standard")
    require("limit_train", "the training examples whose statistics normalize the inputs");
  return c;
}

namespace {

// Whether the run in `dir`, to be resumed, was started before bias_before_batchnorm existed
// (its config.json, written with its checkpoints' configuration, lacks the key): its layers
// before batch norm have a bias, and its checkpoint holds them.
bool run_predates_bias_choice(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!io::file_exists(dir + "/checkpoint.safetensors") || !io::file_exists(path)) return false;
  try {
    const json j = io::read_json_file(path);
    return j.is_object() && !j.contains("bias_before_batchnorm");
  } catch (const std::exception&) {
    return false;  // the checkpoint's own configuration decides (load_checkpoint)
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Trainer::limit_notes() const {
  std::vector<std::pair<std::string, std::string>> notes;
  auto check = [&](const char* flag, int64_t limit, int64_t size, const char* split) {
    if (limit > size)
      notes.emplace_back(flag, fmt::format("{} {} is more than the {} examples of {}'s {} split: "
                                           "all {} are used",
                                           flag, limit, size, cfg_.dataset, split, size));
  };
  check("--limit-train", cfg_.limit_train, data_->train->size(), "training");
  check("--limit-test", cfg_.limit_test, data_->test->size(), "test");
  return notes;
}

// ------------------------------------------------------------------ schedule
void Trainer::apply_lr_schedule() {
  if (cfg_.lr_schedule != "cosine") return;
  // Step t of T (t = 0 for the first step) uses lr * (1 + cos(pi t / T)) / 2: a function of the
  // global step alone, so a resumed run continues on the same curve.
  const double total = double(cfg_.epochs * data_->train->num_batches());
  const double t = double(global_step_ - 1);
  opt_->set_lr(cfg_.lr * 0.5 * (1.0 + std::cos(std::numbers::pi * std::min(t / total, 1.0))));
}

// ------------------------------------------------------------------ setup
namespace {
data::ImageDataset truncate(data::ImageDataset ds, int64_t limit) {
  if (limit <= 0 || limit >= ds.n) return ds;
  int64_t f = ds.channels * ds.height * ds.width;
  ds.images.resize(std::size_t(limit * f));
  ds.labels.resize(std::size_t(limit));
  ds.n = limit;
  return ds;
}

std::string fmt_duration(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", int(s / 60), int(s) % 60);
  return fmt::format("{}h{:02d}m", int(s / 3600), int(s / 60) % 60);
}
}  // namespace

std::string TrainData::key_of(const TrainConfig& c) {
  json j = {{"dataset", c.dataset},
            {"data_dir", c.data_dir},
            {"limit_train", c.limit_train},
            {"limit_test", c.limit_test},
            {"normalize", c.normalize},
            {"augment", data::parse_train_augment(c.augment).str()},
            {"batch_size", c.batch_size},
            {"shuffle", c.shuffle},
            {"seed", c.seed},
            {"flat", c.model == "mlp"},
            {"device", c.device}};
  return j.dump();
}

std::shared_ptr<TrainData> TrainData::load(const TrainConfig& cfg) {
  auto d = std::make_shared<TrainData>();
  d->key = key_of(cfg);
  const Device dev = Device::parse(cfg.device);
  d->train_ds = truncate(data::load_split(cfg.dataset, cfg.data_dir, "train"), cfg.limit_train);
  d->test_ds = truncate(data::load_split(cfg.dataset, cfg.data_dir, "test"), cfg.limit_test);
  const data::ImageDataset &tr = d->train_ds, &te = d->test_ds;
  GL_CHECK(tr.channels == te.channels && tr.height == te.height && tr.width == te.width,
           "{} in {}: the training images are {}x{}x{} (channels x height x width) but the test "
           "images are {}x{}x{}; both splits must come from one dataset",
           cfg.dataset, cfg.data_dir, tr.channels, tr.height, tr.width, te.channels, te.height,
           te.width);
  d->num_classes = std::max(d->train_ds.num_classes, int64_t(2));
  data::Normalization norm = data::parse_normalization(cfg.normalize);
  data::PixelStats stats = data::pixel_stats(d->train_ds);
  const bool flat = cfg.model == "mlp";  // a CNN takes [B, C, H, W] batches
  // The loader takes the training pixels (nothing else reads them): train_ds keeps its shape
  // and labels.
  d->train = std::make_unique<data::Loader>(std::move(d->train_ds), norm, stats, cfg.batch_size,
                                            cfg.shuffle, cfg.seed, flat, dev);
  data::TrainAugment aug = data::parse_train_augment(cfg.augment);
  aug.seed = cfg.seed;
  d->train->set_augment(d->train_ds, aug);
  d->test = std::make_unique<data::Loader>(
      d->test_ds, norm, stats, std::max<int64_t>(cfg.batch_size, 1000), false, cfg.seed, flat, dev);
  return d;
}

Trainer::Trainer(TrainConfig config, std::shared_ptr<TrainData> data)
    : cfg_(std::move(config)), data_(std::move(data)), dropout_gen_(0) {
  cfg_.validate();
  Device dev = Device::parse(cfg_.device);
  if (dev.is_cuda()) {
#if defined(GRADLENS_HAVE_CUDA)
    int count = kernels::cuda::device_count();
    GL_CHECK(count > 0,
             "--device {}: no CUDA device is available (no GPU or driver found); use "
             "--device cpu",
             cfg_.device);
    GL_CHECK(dev.index < count, "--device {}: only {} CUDA device(s) are available", cfg_.device,
             count);
    GL_CUDA_CHECK(cudaSetDevice(dev.index));
    set_cuda_gemm_algo(parse_cuda_gemm_algo(cfg_.gemm));
#else
    throw Error(fmt::format("--device {}: this gradlens was built without CUDA; use --device cpu",
                            cfg_.device));
#endif
  }
  if (cfg_.resume && run_predates_bias_choice(cfg_.out)) cfg_.bias_before_batchnorm = true;
  device_ = dev;
  if (cfg_.threads > 0) omp_set_num_threads(cfg_.threads);
  if (!data_) data_ = TrainData::load(cfg_);
  GL_CHECK(data_->key == TrainData::key_of(cfg_),
           "Trainer: the shared data was loaded for {}, but this run ({}) needs {}", data_->key,
           cfg_.out, TrainData::key_of(cfg_));
  const data::ImageDataset& train_ds = data_->train_ds;
  num_classes_ = data_->num_classes;
  // Batch norm in training needs two examples per batch (the MLP's, and the CNN's fc layers').
  const int64_t n_train = data_->train->size();
  const bool trains = !cfg_.evaluate_only;
  GL_CHECK(!trains || !cfg_.batchnorm || cfg_.batch_size >= 2,
           "--batchnorm needs --batch-size 2 or more (batch norm normalizes over the batch)");
  GL_CHECK(!trains || !cfg_.batchnorm || n_train % cfg_.batch_size != 1,
           "--batchnorm: the last batch of each epoch would hold 1 example ({} training examples, "
           "--batch-size {}), and batch norm needs at least 2 to normalize over; change "
           "--batch-size{}",
           n_train, cfg_.batch_size, cfg_.limit_train > 0 ? " or --limit-train" : "");

  auto common = [this](auto& c) {  // settings shared by the MLP and CNN builders
    c.activation = parse_activation(cfg_.activation);
    c.leaky_slope = cfg_.leaky_slope;
    c.batchnorm = cfg_.batchnorm;
    c.bias_before_batchnorm = cfg_.bias_before_batchnorm;
    c.dropout = cfg_.dropout;
    c.num_classes = num_classes_;
  };
  if (cfg_.model == "cnn") {
    models::CnnConfig cc;
    common(cc);
    cc.in_channels = train_ds.channels;
    cc.height = train_ds.height;
    cc.width = train_ds.width;
    cc.channels = cfg_.channels;
    cc.fc = cfg_.fc;
    cc.kernel = cfg_.kernel;
    cc.pool = cfg_.pool;
    try {
      model_ = models::build_cnn(cc);
    } catch (const Error& e) {
      throw Error(fmt::format("--model cnn on {} ({}x{}x{} images): {}", cfg_.dataset,
                              cc.in_channels, cc.height, cc.width, e.what()));
    }
  } else {
    models::MlpConfig mc;
    common(mc);
    mc.in_features = train_ds.channels * train_ds.height * train_ds.width;
    mc.hidden = cfg_.hidden_widths();
    try {
      model_ = models::build_mlp(mc);
    } catch (const Error& e) {  // e.g. out of memory for the widths asked for
      std::string widths = std::to_string(mc.in_features);
      for (int64_t w : mc.hidden) widths += "-" + std::to_string(w);
      throw Error(fmt::format("--hidden / --depth / --width: the MLP {}-{} cannot be built: {}",
                              widths, mc.num_classes, e.what()));
    }
  }
  Generator init_gen(cfg_.seed);
  models::init_model(*model_, models::parse_init(cfg_.init, cfg_.init_args), init_gen);
  dropout_gen_ = Generator(cfg_.seed ^ 0xD1B54A32D192ED03ull);
  for (auto& [name, m] : model_->named_modules())
    if (auto* d = dynamic_cast<models::Dropout*>(m)) d->set_generator(&dropout_gen_);
  if (!cfg_.load_weights.empty()) {
    io::NamedTensors loaded;
    try {
      loaded = io::load_tensors(cfg_.load_weights);
    } catch (const std::exception& e) {
      throw Error(fmt::format("--load-weights: {}", e.what()));
    }
    try {
      NoGrad ng;
      models::require_finite(loaded);
      model_->load_state_dict(loaded, true);
      models::require_finite_loaded(loaded, model_->state_dict());
    } catch (const Error& e) {
      // Weights whose layers before batch norm have a bias, as every run's did before --bn-bias.
      const bool bn_bias = !cfg_.evaluate_only && cfg_.batchnorm && !cfg_.bias_before_batchnorm &&
                           std::string(e.what()).find(".bias") != std::string::npos;
      throw Error(fmt::format("--load-weights {}: {}{}", cfg_.load_weights, e.what(),
                              bn_bias ? " (for weights with a bias before each batch norm, add "
                                        "--bn-bias)"
                                      : ""));
    }
  }
  // Initialized (and loaded) on the host, so a seed gives the same weights on every device.
  if (dev.is_cuda()) model_->to(dev);
  auto params = model_->parameters();
  if (cfg_.optimizer == "sgd") {
    models::SgdOptions o;
    o.lr = cfg_.lr;
    o.momentum = cfg_.momentum;
    o.nesterov = cfg_.nesterov;
    o.weight_decay = cfg_.weight_decay;
    opt_ = std::make_unique<models::SGD>(params, o);
  } else {
    models::AdamOptions o;
    o.lr = cfg_.lr;
    o.beta1 = cfg_.beta1;
    o.beta2 = cfg_.beta2;
    o.eps = cfg_.adam_eps;
    o.weight_decay = cfg_.weight_decay;
    opt_ = std::make_unique<models::Adam>(params, o, cfg_.optimizer == "adamw");
  }
}

Trainer::~Trainer() = default;

// ------------------------------------------------------------------ evaluation
std::pair<double, std::vector<int64_t>> Trainer::evaluate(const data::Loader& loader) {
  NoGrad ng;
  model_->eval();
  double loss_sum = 0;
  std::vector<int64_t> pred;
  pred.reserve(std::size_t(loader.size()));
  if (device_.is_cuda()) {  // sums and predictions stay on the device until the end
    Tensor dev_loss = Tensor::zeros({}, DType::f64, device_);
    std::vector<Tensor> dev_pred;
    for (int64_t b = 0; b < loader.num_batches(); ++b) {
      data::Batch batch = loader.batch(b);
      current_labels_ = batch.labels;
      Tensor logits = model_->forward(batch.images);
      Tensor loss = cross_entropy(logits, batch.labels).to(DType::f64);
      dev_loss = add(dev_loss, mul(loss, double(batch.labels.numel())));
      dev_pred.push_back(argmax(logits, 1));
    }
    loss_sum = dev_loss.item();
    pred = concat(dev_pred, 0).to_vector<int64_t>();
    current_labels_ = Tensor();
    model_->train();
    return {loss_sum / double(loader.size()), pred};
  }
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    data::Batch batch = loader.batch(b);
    current_labels_ = batch.labels;
    Tensor logits = model_->forward(batch.images);
    loss_sum += cross_entropy(logits, batch.labels).item() * double(batch.labels.numel());
    auto am = argmax(logits, 1).to_vector<int64_t>();
    pred.insert(pred.end(), am.begin(), am.end());
  }
  current_labels_ = Tensor();
  model_->train();
  return {loss_sum / double(loader.size()), pred};
}

// ------------------------------------------------------------------ files
void Trainer::write_metrics(const std::vector<EpochResult>& history) {
  // The columns of every epoch (a run resumed with other diagnostics has epochs with and
  // without some); an epoch without a column has nan there.
  std::vector<std::string> cols;
  for (const auto& r : history)
    for (auto& [k, v] : r.extra)
      if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
  std::string s = "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time";
  for (const auto& k : cols) s += "," + k;
  s += "\n";
  for (const auto& r : history) {
    s += fmt::format("{},{:.9g},{:.9g},{:.9g},{:.9g},{:.6f}", r.epoch, r.train_loss, r.test_loss,
                     r.train_acc, r.test_acc, r.epoch_time);
    for (const auto& k : cols) {
      auto it =
          std::find_if(r.extra.begin(), r.extra.end(), [&](const auto& e) { return e.first == k; });
      s += it == r.extra.end() ? std::string(",nan") : fmt::format(",{:.9g}", it->second);
    }
    s += "\n";
  }
  io::write_file_atomic(cfg_.out + "/metrics.csv", s);
  if (cfg_.log_steps) {
    std::string st = "step,epoch,loss\n";
    int64_t per_epoch = data_->train->num_batches();
    for (auto& [step, loss] : step_losses_)
      st += fmt::format("{},{},{:.9g}\n", step, (step - 1) / per_epoch + 1, loss);
    io::write_file_atomic(cfg_.out + "/steps.csv", st);
  }
}

void Trainer::save_checkpoint(int64_t epoch, const std::vector<EpochResult>& history) {
  io::NamedTensors t;
  for (auto& [k, v] : model_->state_dict()) t.emplace_back("model." + k, v.to(Device::cpu()));
  for (auto& [k, v] : opt_->state_dict()) t.emplace_back("optim." + k, v.to(Device::cpu()));
  std::vector<double> sl;
  for (auto& [step, loss] : step_losses_) {
    sl.push_back(double(step));
    sl.push_back(loss);
  }
  t.emplace_back("trainer.step_losses", Tensor::from_vector(sl, {int64_t(step_losses_.size()), 2}));
  json h = json::array();
  for (const auto& r : history) {
    json e = {{"epoch", r.epoch},         {"train_loss", r.train_loss},
              {"test_loss", r.test_loss}, {"train_acc", r.train_acc},
              {"test_acc", r.test_acc},   {"epoch_time", r.epoch_time}};
    json extra = json::array();
    for (auto& [k, v] : r.extra) extra.push_back({k, v});
    e["extra"] = extra;
    h.push_back(e);
  }
  std::map<std::string, std::string> meta{
      {"format", "pt"},
      {"gradlens.epoch", std::to_string(epoch)},
      {"gradlens.global_step", std::to_string(global_step_)},
      {"gradlens.dropout_offset", std::to_string(dropout_gen_.offset())},
      {"gradlens.history", h.dump()},
      {"gradlens.config", cfg_.to_json()}};
  io::save_tensors(cfg_.out + "/checkpoint.safetensors", t, meta);
}

int64_t Trainer::load_checkpoint(std::vector<EpochResult>& history) {
  std::string path = cfg_.out + "/checkpoint.safetensors";
  io::SafetensorsFile f = io::load_safetensors(path);
  auto meta = [&](const char* k) {
    auto it = f.metadata.find(k);
    GL_CHECK(it != f.metadata.end(), "{}: not a gradlens checkpoint (no {})", path, k);
    return it->second;
  };
  // A JSON entry of the metadata, and where an error in it is.
  auto meta_json = [&](const char* k) {
    const std::string where = fmt::format("{}: metadata {}", path, k);
    return std::make_pair(io::parse_json(meta(k), where), where);
  };
  // The checkpoint must come from the same configuration (epochs may grow).
  const auto [saved, saved_where] = meta_json("gradlens.config");
  io::JsonReader(saved, saved_where).object();
  // The cosine schedule spans all epochs: changing their number would bend the curve already
  // followed.
  if (cfg_.lr_schedule == "cosine" && saved.contains("epochs") && saved["epochs"] != cfg_.epochs)
    throw Error(fmt::format(
        "--resume: --lr-schedule cosine spans the run's {} epochs; resume it with --epochs {} "
        "(now {})",
        io::json_text(saved["epochs"]), io::json_text(saved["epochs"]), cfg_.epochs));
  if (auto d = cfg_.difference_from(saved, {"epochs", "threads", "checkpoint_every", "log_steps"}))
    throw Error(
        fmt::format("--resume: the run in {} was started with {}={}, now {}={}; use the "
                    "same flags or another --out",
                    cfg_.out, d->key, d->saved, d->key, d->now));
  io::NamedTensors model_state, opt_state;
  for (const auto& b : f.tensors) {
    Tensor t = io::from_buffer(b);
    if (b.name.rfind("model.", 0) == 0)
      model_state.emplace_back(b.name.substr(6), t);
    else if (b.name.rfind("optim.", 0) == 0)
      opt_state.emplace_back(b.name.substr(6), t);
    else if (b.name == "trainer.step_losses") {
      auto v = t.to_vector<double>();
      step_losses_.clear();
      for (std::size_t i = 0; i + 1 < v.size(); i += 2)
        step_losses_.emplace_back(int64_t(v[i]), v[i + 1]);
    }
  }
  // Whole numbers in the metadata, at least `lo`.
  auto meta_int = [&](const char* k, int64_t lo) {
    const std::string v = meta(k);
    int64_t x = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    GL_CHECK(ec == std::errc() && end == v.data() + v.size() && x >= lo,
             "{}: metadata {}='{}' is not a whole number of at least {}", path, k, v, lo);
    return x;
  };
  global_step_ = meta_int("gradlens.global_step", 0);
  dropout_gen_.set_state(dropout_gen_.seed(), uint64_t(meta_int("gradlens.dropout_offset", 0)));
  history.clear();
  // JSON has no NaN: the history's NaN (a diagnostics column not recorded that epoch, such as
  // grad_norm_i with --diagnostics activations) was written as null, and reads back as NaN.
  auto number = [](const io::JsonReader& v) {
    return v.json().is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>();
  };
  const auto [saved_history, history_where] = meta_json("gradlens.history");
  for (const io::JsonReader& e : io::JsonReader(saved_history, history_where).elements()) {
    EpochResult r;
    r.epoch = e["epoch"].get<int64_t>();
    r.train_loss = number(e["train_loss"]);
    r.test_loss = number(e["test_loss"]);
    r.train_acc = number(e["train_acc"]);
    r.test_acc = number(e["test_acc"]);
    r.epoch_time = number(e["epoch_time"]);
    for (const io::JsonReader& x : e["extra"].elements())
      r.extra.emplace_back(x[0].get<std::string>(), number(x[1]));
    history.push_back(r);
  }
  const int64_t done = meta_int("gradlens.epoch", 1);
  GL_CHECK(int64_t(history.size()) == done,
           "{}: metadata gradlens.epoch={} but gradlens.history holds {} epochs", path, done,
           history.size());
  for (int64_t i = 0; i < done; ++i)
    GL_CHECK(history[std::size_t(i)].epoch == i + 1,
             "{}: metadata gradlens.history: entry {} is epoch {}, expected {}", path, i,
             history[std::size_t(i)].epoch, i + 1);
  GL_CHECK(global_step_ == done * data_->train->num_batches(),
           "{}: metadata gradlens.global_step={} does not match {} epochs of {} steps", path,
           global_step_, done, data_->train->num_batches());
  // The optimizer state those steps leave, whole: a missing buffer would restart it silently.
  try {
    opt_->check_state_after(opt_state, global_step_, "optim.");
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  {
    NoGrad ng;
    model_->load_state_dict(model_state, true);
  }
  opt_->load_state_dict(opt_state);
  // A run ends as diverged before it checkpoints a value that is not finite: one found here
  // was altered since (or written before that rule), and is refused rather than trained on
  // (ReLU maps NaN to 0) or recorded as a divergence that a sweep would never retry.
  auto prefixed = [](const char* prefix, const io::NamedTensors& state) {
    io::NamedTensors out;
    for (const auto& [k, v] : state) out.emplace_back(prefix + k, v);
    return out;
  };
  try {
    models::require_finite_loaded(prefixed("model.", model_state),
                                  prefixed("model.", model_->state_dict()));
    models::require_finite_loaded(prefixed("optim.", opt_state),
                                  prefixed("optim.", opt_->state_dict()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: corrupt checkpoint: {}", path, e.what()));
  }
  // Fewer epochs than the checkpoint holds would leave its later epochs in metrics.csv and the
  // weights while config.json says otherwise.
  GL_CHECK(cfg_.epochs >= done,
           "--resume: the run in {} has trained {} epochs; --epochs {} is fewer (give --epochs {} "
           "or more)",
           cfg_.out, done, cfg_.epochs, done);
  return done;
}

void Trainer::write_final_outputs(const std::vector<int64_t>& pred) {
  const data::ImageDataset& test_ds = data_->test_ds;
  const auto& truth = test_ds.labels;
  ClassificationReport r = classification_report(truth, pred, num_classes_);
  io::write_file_atomic(cfg_.out + "/per_class.csv", per_class_csv(r));
  io::write_file_atomic(cfg_.out + "/confusion.csv", confusion_csv(r));
  io::write_file_atomic(cfg_.out + "/misclassified.csv", misclassified_csv(r, truth, pred));
  int64_t hw = test_ds.height * test_ds.width * test_ds.channels;
  std::vector<uint8_t> img;
  img.reserve(r.misclassified.size() * std::size_t(hw));
  for (int64_t i : r.misclassified)
    img.insert(img.end(), test_ds.images.begin() + i * hw, test_ds.images.begin() + (i + 1) * hw);
  Shape s{int64_t(r.misclassified.size())};
  if (test_ds.channels > 1) s.push_back(test_ds.channels);
  s.push_back(test_ds.height);
  s.push_back(test_ds.width);
  io::save_npy(cfg_.out + "/misclassified_images.npy", Tensor::from_vector(img, s));
  io::NamedTensors weights;
  for (auto& [k, v] : model_->state_dict()) weights.emplace_back(k, v.to(Device::cpu()));
  io::save_tensors(cfg_.out + "/model.safetensors", weights, {{"format", "pt"}});
}

// ------------------------------------------------------------------ the loop
std::vector<EpochResult> Trainer::run() {
  kernels::cpu::DenormalScope denormals(cfg_.denormals == "flush");
  for (int64_t epoch = begin_run(); epoch <= cfg_.epochs; ++epoch) {
    begin_epoch(epoch);
    const data::Loader& loader = *data_->train;
    for (int64_t b = 0; b < loader.num_batches(); ++b) train_step(loader.batch(b), b);
    end_epoch();
  }
  end_run();
  return history_;
}

bool Trainer::needs_tape(int64_t global_step) const {
  for (const auto& cb : callbacks_)
    if (cb->needs_tape(*this, global_step)) return true;
  return false;
}

int64_t Trainer::begin_run() {
  io::ensure_dir(cfg_.out);
  history_.clear();
  final_pred_.clear();
  total_time_ = 0;
  timed_epochs_ = 0;
  int64_t start_epoch = 0;
  // A killed run leaves the temporaries of its last writes; resuming, nothing else writes here.
  if (cfg_.resume)
    io::remove_stale_temporaries(cfg_.out, {"diagnostics", "analysis", "optim", "tensorboard"});
  // What a refused resume puts back (below): the run's config.json and metrics.csv as they were.
  std::vector<std::pair<std::string, std::vector<uint8_t>>> before;
  for (const char* f : {"/config.json", "/metrics.csv"})
    if (cfg_.resume && io::file_exists(cfg_.out + f))
      before.emplace_back(cfg_.out + f, io::read_file(cfg_.out + f));
  if (cfg_.resume && io::file_exists(cfg_.out + "/checkpoint.safetensors")) {
    start_epoch = load_checkpoint(history_);
    // metrics.csv as the checkpoint has it (a damaged file is mended; epochs after the
    // checkpoint, to be trained again, leave it).
    write_metrics(history_);
    if (cfg_.progress)
      fmt::print(stderr, "resuming {} from epoch {} (step {})\n", cfg_.out, start_epoch,
                 global_step_);
    // The checkpoint holds the losses of the steps trained with --log-steps only.
    const int64_t unlogged = global_step_ - int64_t(step_losses_.size());
    if (cfg_.log_steps && unlogged > 0 && step_losses_.empty())
      fmt::print(stderr,
                 "note: --log-steps on a resumed run: steps.csv starts at step {}; the run's first "
                 "{} steps were trained without --log-steps\n",
                 global_step_ + 1, global_step_);
    else if (cfg_.log_steps && unlogged > 0)
      fmt::print(stderr,
                 "note: --log-steps on a resumed run: steps.csv has no rows for {} of the run's "
                 "first {} steps, which were trained without --log-steps\n",
                 unlogged, global_step_);
  } else if (cfg_.resume && cfg_.progress) {
    fmt::print(stderr, "no checkpoint in {}: starting from the beginning\n", cfg_.out);
  }
  // config.json now describes this run; a callback that refuses to resume (other analysis
  // settings than the run's) leaves the run's own files as they were, and its message stands.
  io::write_file_atomic(cfg_.out + "/config.json", cfg_.to_json());
  try {
    for (auto& cb : callbacks_) cb->on_train_begin(*this);
  } catch (...) {
    for (const auto& [path, bytes] : before) try {
        io::write_file_atomic(path, bytes);
      } catch (...) {
      }
    throw;
  }
  tty_ = cfg_.progress && isatty(2);
  return start_epoch + 1;
}

void Trainer::begin_epoch(int64_t epoch) {
  epoch_ = epoch;
  ep_ = EpochState{};
  ep_.t0 = ep_.last_print = std::chrono::steady_clock::now();
  if (device_.is_cuda()) {
    ep_.dev_loss = Tensor::zeros({}, DType::f64, device_);
    ep_.dev_correct = Tensor::zeros({}, DType::i64, device_);
  }
  data_->train->start_epoch(epoch - 1);
  for (auto& cb : callbacks_) cb->on_epoch_begin(*this, epoch);
  model_->train();
}

void Trainer::train_step(const data::Batch& batch, int64_t b) {
  current_labels_ = batch.labels;
  Tensor logits = model_->forward(batch.images);
  Tensor loss = cross_entropy(logits, batch.labels);
  if (device_.is_cuda()) {
    ++global_step_;
    opt_->zero_grad();
    loss.backward();
    finish_step_cuda(batch, b, loss, logits);
    return;
  }
  double lv = loss.item();
  count_step(lv, b);
  opt_->zero_grad();
  loss.backward();
  finish_step(batch, b, lv, logits);
}

void Trainer::apply_step(const data::Batch& batch, int64_t b, const Tensor& logits,
                         const Tensor& loss, const std::vector<std::pair<Tensor, Tensor>>& grads,
                         bool stepped) {
  current_labels_ = batch.labels;
  if (device_.is_cuda()) {
    GL_CHECK(!stepped, "apply_step: on {} the optimizer steps here", device_.str());
    ++global_step_;
    opt_->zero_grad();
    for (const auto& [param, grad] : grads) param.set_grad(grad);
    finish_step_cuda(batch, b, loss, logits);
    return;
  }
  double lv = loss.item();
  count_step(lv, b);
  opt_->zero_grad();
  for (const auto& [param, grad] : grads) param.set_grad(grad);
  finish_step(batch, b, lv, logits, stepped);
}

bool Trainer::reads_grads(int64_t global_step) const {
  for (const auto& cb : callbacks_)
    if (cb->reads_grads(*this, global_step)) return true;
  return false;
}

models::SGD* Trainer::inline_sgd(int64_t global_step) {
  // On a GPU the step would read the loss on the host to leave a diverged model alone.
  if (device_.is_cuda() || cfg_.lr_schedule != "constant") return nullptr;
  auto* sgd = dynamic_cast<models::SGD*>(opt_.get());
  if (sgd == nullptr || !sgd->steps_params_alone()) return nullptr;
  for (const auto& cb : callbacks_)
    if (cb->reads_weights(*this, global_step)) return nullptr;
  return sgd;
}

void Trainer::count_step(double lv, int64_t b) {
  ++global_step_;
  if (!std::isfinite(lv)) {
    write_metrics(history_);
    throw DivergedError(fmt::format("loss became {} at epoch {} step {} (global step {}); "
                                    "the run diverged (try a lower --lr)",
                                    message_value(lv), epoch_, b + 1, global_step_),
                        epoch_, global_step_);
  }
}

void Trainer::finish_step(const data::Batch& batch, int64_t b, double lv, const Tensor& logits,
                          bool stepped) {
  for (auto& cb : callbacks_) cb->on_after_backward(*this, global_step_);
  apply_lr_schedule();
  if (!stepped) opt_->step();
  for (auto& cb : callbacks_) cb->on_step_end(*this, global_step_, lv);
  int64_t bs = batch.labels.numel();
  ep_.loss_sum += lv * double(bs);
  {
    auto am = argmax(logits.detach(), 1).to_vector<int64_t>();
    const int64_t* l = batch.labels.data<int64_t>();
    for (int64_t i = 0; i < bs; ++i) ep_.correct += am[i] == l[i];
  }
  ep_.seen += bs;
  if (cfg_.log_steps) step_losses_.emplace_back(global_step_, lv);
  const int64_t nb = data_->train->num_batches();
  auto now = std::chrono::steady_clock::now();
  if (tty_ && step_progress_ &&
      (std::chrono::duration<double>(now - ep_.last_print).count() > 0.2 || b + 1 == nb)) {
    ep_.last_print = now;
    double el = std::chrono::duration<double>(now - ep_.t0).count();
    double per_epoch =
        timed_epochs_ ? total_time_ / double(timed_epochs_) : el / double(b + 1) * double(nb);
    double eta = per_epoch * double(cfg_.epochs - epoch_) + el / double(b + 1) * double(nb - b - 1);
    int bar = int(20.0 * double(b + 1) / double(nb));
    fmt::print(stderr, "\repoch {}/{} [{}{}] {}/{} loss {:.4f} acc {:.2f}%  ETA {}   ", epoch_,
               cfg_.epochs, std::string(std::size_t(bar), '#'),
               std::string(std::size_t(20 - bar), '.'), b + 1, nb, ep_.loss_sum / double(ep_.seen),
               100.0 * double(ep_.correct) / double(ep_.seen), fmt_duration(eta));
  }
}

void Trainer::finish_step_cuda(const data::Batch& batch, int64_t b, const Tensor& loss,
                               const Tensor& logits) {
  // The loss sum and correct count accumulate on the device and are read once, after the epoch
  // (collect_device_sums); a non-finite loss is therefore caught at the epoch's end.
  for (auto& cb : callbacks_) cb->on_after_backward(*this, global_step_);
  apply_lr_schedule();
  opt_->step();
  // Callbacks take the loss as a number: only then is it read every step.
  double lv = callbacks_.empty() ? std::nan("") : loss.item();
  for (auto& cb : callbacks_) cb->on_step_end(*this, global_step_, lv);
  int64_t bs = batch.labels.numel();
  {
    NoGrad ng;
    ep_.dev_loss = add(ep_.dev_loss, mul(loss.detach().to(DType::f64), double(bs)));
#if defined(GRADLENS_HAVE_CUDA)
    cuda_ops::count_correct(logits.detach(), batch.labels, ep_.dev_correct);
#endif
  }
  ep_.seen += bs;
  if (cfg_.log_steps) ep_.dev_steps.emplace_back(global_step_, loss.detach());
  const int64_t nb = data_->train->num_batches();
  auto now = std::chrono::steady_clock::now();
  if (tty_ && step_progress_ &&
      (std::chrono::duration<double>(now - ep_.last_print).count() > 0.2 || b + 1 == nb)) {
    ep_.last_print = now;
    int bar = int(20.0 * double(b + 1) / double(nb));
    fmt::print(stderr, "\repoch {}/{} [{}{}] {}/{}   ", epoch_, cfg_.epochs,
               std::string(std::size_t(bar), '#'), std::string(std::size_t(20 - bar), '.'), b + 1,
               nb);
  }
}

void Trainer::collect_device_sums() {
  if (!ep_.dev_loss.defined()) return;  // read already (or not a GPU run)
  ep_.loss_sum = ep_.dev_loss.item();
  ep_.correct = int64_t(ep_.dev_correct.item());
  for (auto& [step, t] : ep_.dev_steps) step_losses_.emplace_back(step, t.item());
  ep_.dev_loss = ep_.dev_correct = Tensor();
  ep_.dev_steps.clear();
  if (!std::isfinite(ep_.loss_sum)) {
    write_metrics(history_);
    throw DivergedError(
        fmt::format("loss became {} during epoch {} (by global step {}); the "
                    "run diverged (try a lower --lr)",
                    message_value(ep_.loss_sum / double(ep_.seen)), epoch_, global_step_),
        epoch_, global_step_);
  }
}

void Trainer::end_epoch(double train_time) {
  collect_device_sums();  // on a GPU: waits for the epoch's steps to finish
  // The epoch's training time (a fused group passes each member's share of its steps).
  if (train_time < 0)
    train_time = std::chrono::duration<double>(std::chrono::steady_clock::now() - ep_.t0).count();
  const int64_t epoch = epoch_;
  current_labels_ = Tensor();
  // A finite training loss does not make a finite model: batch norm's running statistics and
  // the optimizer's moment buffers never enter the training loss. A parameter or buffer that is
  // no longer finite ends the run as diverged, before it is evaluated or saved.
  auto state = model_->state_dict();
  for (auto& [name, t] : opt_->state_dict()) state.emplace_back("optimizer " + name, t);
  try {
    models::require_finite(state);
  } catch (const Error& e) {
    write_metrics(history_);
    throw DivergedError(fmt::format("{} after epoch {} (global step {}; the loss stayed finite); "
                                    "the run diverged (try a lower --lr)",
                                    e.what(), epoch, global_step_),
                        epoch, global_step_);
  }
  for (auto& cb : callbacks_) cb->on_evaluate_begin(*this, epoch);
  auto [test_loss, pred] = evaluate(*data_->test);
  for (auto& cb : callbacks_) cb->on_evaluate_end(*this, epoch);
  EpochResult r;
  r.epoch = epoch;
  r.train_loss = ep_.loss_sum / double(ep_.seen);
  r.train_acc = double(ep_.correct) / double(ep_.seen);
  r.test_loss = test_loss;
  int64_t tc = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) tc += pred[i] == data_->test_ds.labels[i];
  r.test_acc = double(tc) / double(pred.size());
  r.epoch_time = train_time;
  for (auto& cb : callbacks_) cb->on_epoch_end(*this, r);
  history_.push_back(r);
  total_time_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - ep_.t0).count();
  ++timed_epochs_;
  write_metrics(history_);
  bool last = epoch == cfg_.epochs;
  if ((cfg_.checkpoint_every > 0 && epoch % cfg_.checkpoint_every == 0) || last) {
    // A checkpoint says epochs 1..epoch are done: the callbacks' files for them go first.
    for (auto& cb : callbacks_) cb->on_before_checkpoint(*this);
    save_checkpoint(epoch, history_);
  }
  if (last) final_pred_ = pred;
  if (cfg_.progress) {
    double eta = total_time_ / double(timed_epochs_) * double(cfg_.epochs - epoch);
    fmt::print(
        stderr,
        "{}epoch {}/{}  train loss {:.4f} acc {:.2f}%  test loss {:.4f} acc {:.2f}%  {:.2f}s{}\n",
        tty_ && step_progress_ ? "\r" : "", epoch, cfg_.epochs, r.train_loss, 100 * r.train_acc,
        r.test_loss, 100 * r.test_acc, train_time,
        last ? std::string("          ") : fmt::format("  ETA {}   ", fmt_duration(eta)));
  }
}

void Trainer::end_run() {
  if (final_pred_.empty()) final_pred_ = evaluate(*data_->test).second;  // resumed after the end
  write_final_outputs(final_pred_);
  for (auto& cb : callbacks_) cb->on_train_end(*this);
}

void write_diverged_marker(const std::string& out, const DivergedError& e) {
  json j = {{"error", e.what()}, {"epoch", e.epoch}, {"step", e.step}};
  io::write_file_atomic(out + "/diverged.json", j.dump(2) + "\n");
}

std::optional<std::string> read_diverged_marker(const std::string& out, std::string* damage) {
  const std::string path = out + "/diverged.json";
  std::string why;
  if (!io::file_exists(path)) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) why = "not a regular file";
  } else {
    try {
      const json j = io::read_json_file(path);
      // What write_diverged_marker writes: an object without them was not written by it.
      const io::JsonReader marker(j, path);
      std::string error = marker["error"].get<std::string>();
      marker["epoch"].get<int64_t>();
      marker["step"].get<int64_t>();
      return error;
    } catch (const std::exception& e) {
      why = e.what();
    }
  }
  if (damage) *damage = why;
  return std::nullopt;
}

std::string missing_model_reason(const std::string& dir) {
  if (std::optional<std::string> error = read_diverged_marker(dir))
    return fmt::format("the run diverged ({}/diverged.json: {}), so it has no trained weights", dir,
                       error->empty() ? "it gives no message" : *error);
  return "a run writes model.safetensors when its training ends";
}

}  // namespace gl::train
