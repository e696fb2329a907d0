// capture.cpp: forward hooks on the MLP's taps copy each batch's layer output into a
// preallocated [n, width] tensor, so memory stays at one batch of intermediates.
#include "analysis/capture.h"

#include <fmt/core.h>

#include <cstring>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/io/fs.h"
#include "engine/io/tensor_io.h"

namespace gl::analysis {

std::vector<LayerRef> hidden_layers(const models::Network& model) {
  std::vector<LayerRef> out;
  for (auto& t : model.taps())
    out.push_back({fmt::format("h{}", t.layer), LayerRef::Kind::post, t.layer, t.units()});
  return out;
}

std::vector<LayerRef> resolve_layers(const models::MLP& model, const std::string& list) {
  if (list.empty() || list == "hidden") return hidden_layers(model);
  const auto& taps = model.taps();
  std::vector<LayerRef> all;
  all.push_back({"input", LayerRef::Kind::input, -1, model.config().in_features});
  for (auto& h : hidden_layers(model)) all.push_back(h);
  all.push_back({"logits", LayerRef::Kind::logits, -1, model.config().num_classes});
  if (list == "all") return all;
  std::vector<LayerRef> out;
  std::string valid = "input";
  for (auto& t : taps) valid += fmt::format(", h{}, h{}.pre", t.layer, t.layer);
  valid += ", logits";
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    std::string name =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? list.size() + 1 : comma + 1;
    bool found = false;
    for (auto& a : all)
      if (a.name == name) {
        out.push_back(a);
        found = true;
      }
    for (auto& t : taps)
      if (name == fmt::format("h{}.pre", t.layer)) {
        out.push_back({name, LayerRef::Kind::pre, t.layer, t.units()});
        found = true;
      }
    GL_CHECK(found, "--layers: no layer '{}' in this {}-hidden-layer MLP (layers: {})", name,
             taps.size(), valid);
    for (size_t k = 0; k + 1 < out.size(); ++k)
      GL_CHECK(out[k].name != out.back().name, "--layers: {} is listed twice", name);
  }
  return out;
}

std::vector<Tensor> capture(models::Network& model, const Tensor& images,
                            const std::vector<LayerRef>& layers, int64_t batch_size) {
  GL_CHECK(images.dim() == 2 && images.dtype() == DType::f32,
           "capture: expected f32 [n, features] images, got {}", images.str());
  const int64_t n = images.size(0);
  std::vector<Tensor> out;
  for (auto& l : layers) out.push_back(Tensor::empty({n, l.width}, DType::f32));
  int64_t row = 0;  // first row of the batch being run
  std::vector<std::pair<models::Module*, models::HookId>> hooks;
  auto copy_into = [&](size_t k, const Tensor& t) {
    // A model on a GPU: its outputs come back to the host here.
    Tensor c = t.to(Device::cpu()).contiguous();
    GL_CHECK(c.dim() == 2 && c.size(1) == layers[k].width,
             "capture: layer {} gave {}, expected {} features", layers[k].name, c.str(),
             layers[k].width);
    std::memcpy(out[k].data<float>() + row * layers[k].width, c.data<float>(),
                size_t(c.numel()) * sizeof(float));
  };
  for (size_t k = 0; k < layers.size(); ++k) {
    const auto& l = layers[k];
    if (l.kind == LayerRef::Kind::input || l.kind == LayerRef::Kind::logits) continue;
    const auto& tap = model.taps().at(static_cast<size_t>(l.hidden));
    models::Module* m = l.kind == LayerRef::Kind::pre ? tap.pre : tap.post;
    hooks.emplace_back(
        m, m->add_forward_hook([&, k](const models::Module&, const Tensor&, const Tensor& output) {
          copy_into(k, output);
        }));
  }
  const bool was_training = model.is_training();
  // The images go where the model's parameters are (host images, a model trained on a GPU).
  const auto params = model.parameters();
  const Device device = params.empty() ? images.device() : params.front().device();
  model.eval();
  try {
    NoGrad ng;
    for (row = 0; row < n; row += batch_size) {
      const int64_t rows = std::min(batch_size, n - row);
      Tensor x = images.narrow(0, row, rows).contiguous();
      if (x.device() != device) x = x.to(device);
      Tensor logits = model.forward(x);
      for (size_t k = 0; k < layers.size(); ++k) {
        if (layers[k].kind == LayerRef::Kind::input) copy_into(k, x);
        if (layers[k].kind == LayerRef::Kind::logits) copy_into(k, logits);
      }
    }
  } catch (...) {
    for (auto& [m, id] : hooks) m->remove_forward_hook(id);
    model.train(was_training);
    throw;
  }
  for (auto& [m, id] : hooks) m->remove_forward_hook(id);
  model.train(was_training);
  return out;
}

RunModel load_run_model(const std::string& dir, const std::string& data_dir) {
  namespace fs = std::filesystem;
  GL_CHECK(fs::is_directory(dir), "run directory '{}' does not exist", dir);
  const std::string weights = dir + "/model.safetensors";
  RunModel r;
  r.dir = dir;
  GL_CHECK(fs::exists(weights), "{}: no model.safetensors ({})", dir,
           train::missing_model_reason(dir));
  r.config = train::TrainConfig::from_run_dir(dir);
  GL_CHECK(r.config.model == "mlp", "{}: model '{}' is not supported by analyze (mlp only)", dir,
           r.config.model);
  r.data_dir = data_dir.empty() ? r.config.data_dir : data_dir;
  r.norm = data::parse_normalization(r.config.normalize);
  data::ImageDataset train_ds = data::load_split(r.config.dataset, r.data_dir, "train");
  if (r.config.limit_train > 0 && r.config.limit_train < train_ds.n) {
    // The run normalized with the statistics of the examples it trained on.
    const int64_t f = train_ds.channels * train_ds.height * train_ds.width;
    train_ds.images.resize(static_cast<size_t>(r.config.limit_train * f));
    train_ds.labels.resize(static_cast<size_t>(r.config.limit_train));
    train_ds.n = r.config.limit_train;
  }
  r.stats = data::pixel_stats(train_ds);
  models::MlpConfig mc;
  mc.in_features = train_ds.channels * train_ds.height * train_ds.width;
  mc.hidden = r.config.hidden_widths();
  mc.activation = parse_activation(r.config.activation);
  mc.leaky_slope = r.config.leaky_slope;
  mc.batchnorm = r.config.batchnorm;
  mc.bias_before_batchnorm = r.config.bias_before_batchnorm;
  mc.dropout = r.config.dropout;
  mc.num_classes = std::max(train_ds.num_classes, int64_t(2));
  r.model = models::build_mlp(mc);
  try {
    auto loaded = io::load_tensors(weights);
    NoGrad ng;
    models::require_finite(loaded);
    r.model->load_state_dict(loaded, true);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", weights, e.what()));
  }
  r.model->eval();
  return r;
}

void normalize_in_place(const RunModel& run, float* x, int64_t count) {
  if (run.norm != data::Normalization::standard) return;
  for (int64_t i = 0; i < count; ++i) x[i] = float((double(x[i]) - run.stats.mean) / run.stats.std);
}

ExampleSet select_examples(const RunModel& run, const ExampleQuery& q) {
  GL_CHECK(q.split == "train" || q.split == "test", "--split {}: expected train or test", q.split);
  data::ImageDataset ds = data::load_split(run.config.dataset, run.data_dir, q.split);
  ExampleSet s;
  s.split = q.split;
  s.channels = ds.channels;
  s.height = ds.height;
  s.width = ds.width;
  if (!q.indices.empty()) {
    for (int64_t i : q.indices)
      GL_CHECK(i >= 0 && i < ds.n, "{}: example {} is out of range (the {} split of {} has {})",
               q.indices_flag, i, q.split, run.config.dataset, ds.n);
    s.indices = q.indices;
  } else {
    GL_CHECK(q.cls < 0 || q.cls < ds.num_classes, "--class {}: {} has classes 0..{}", q.cls,
             run.config.dataset, ds.num_classes - 1);
    for (int64_t i = 0; i < ds.n; ++i)
      if (q.cls < 0 || ds.labels[size_t(i)] == q.cls) s.indices.push_back(i);
    GL_CHECK(q.count >= 0, "--examples {}: must be positive", q.count);
    GL_CHECK(q.count <= int64_t(s.indices.size()),
             "--examples {}: the {} split of {} has only {} examples{}", q.count, q.split,
             run.config.dataset, s.indices.size(),
             q.cls >= 0 ? fmt::format(" of class {}", q.cls) : std::string());
    if (q.count > 0) s.indices.resize(static_cast<size_t>(q.count));
  }
  const int64_t f = ds.channels * ds.height * ds.width;
  data::ImageDataset sub;
  sub.name = ds.name;
  sub.n = s.size();
  sub.channels = ds.channels;
  sub.height = ds.height;
  sub.width = ds.width;
  sub.num_classes = ds.num_classes;
  for (int64_t i : s.indices) {
    sub.images.insert(sub.images.end(), ds.images.begin() + i * f, ds.images.begin() + (i + 1) * f);
    sub.labels.push_back(ds.labels[size_t(i)]);
  }
  GL_CHECK(sub.n > 0, "no examples selected from the {} split", q.split);
  data::Loader loader(sub, run.norm, run.stats, 1000, false, 0);
  s.images = loader.all_images();
  s.labels = sub.labels;
  s.pixels = std::move(sub.images);
  return s;
}

}  // namespace gl::analysis
