// capture.h: activation capture. Rebuilds a trained MLP from a run directory (config.json +
// model.safetensors), selects examples (a split, one class, explicit indices, a count) and
// records the outputs of chosen layers through forward hooks, streaming the examples in
// batches in eval mode without autograd.
//
// Layer names: "input" (the normalized pixels), "h<i>" (post-activation of hidden layer i),
// "h<i>.pre" (its pre-activation: the BatchNorm output when there is one, else the Linear),
// "logits" (the output layer).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "models/mlp.h"
#include "train/datasets.h"
#include "train/loader.h"
#include "train/trainer.h"

namespace gl::analysis {

struct LayerRef {
  std::string name;
  enum class Kind { input, pre, post, logits } kind = Kind::post;
  int64_t hidden = -1;  // hidden-layer index for pre/post
  int64_t width = 0;    // features
};

// Every hidden layer's post-activation, in order.
std::vector<LayerRef> hidden_layers(const models::Network& model);
// Comma-separated names; "" or "hidden": hidden_layers(); "all": input, every hidden
// post-activation, logits. Throws naming the layer and listing the valid names.
std::vector<LayerRef> resolve_layers(const models::MLP& model, const std::string& list);

// Outputs of `layers` for the rows of `images` ([n, features] normalized f32), one f32 [n, width]
// tensor per layer. The model is put in eval mode for the pass and restored afterwards.
std::vector<Tensor> capture(models::Network& model, const Tensor& images,
                            const std::vector<LayerRef>& layers, int64_t batch_size = 1000);

// A trained model rebuilt from its run directory.
struct RunModel {
  std::string dir;
  train::TrainConfig config;
  std::unique_ptr<models::MLP> model;
  data::Normalization norm = data::Normalization::raw;
  data::PixelStats stats;  // of the training split the run used
  std::string data_dir;
};
// data_dir: where the datasets are ("" = the run's own data_dir). Throws a one-line error naming
// the directory when config.json or model.safetensors is missing or does not fit.
RunModel load_run_model(const std::string& dir, const std::string& data_dir = "");

// Examples chosen from one split of the run's dataset.
struct ExampleSet {
  std::string split;
  std::vector<int64_t> indices;  // into the split
  std::vector<int64_t> labels;
  std::vector<uint8_t> pixels;  // [n, C*H*W] raw u8
  int64_t channels = 1, height = 0, width = 0;
  Tensor images;  // [n, C*H*W] f32, normalized as in training
  int64_t size() const { return int64_t(indices.size()); }
};
struct ExampleQuery {
  std::string split = "test";
  int64_t count = 0;                       // 0: all that match
  int64_t cls = -1;                        // only this class (-1: any)
  std::vector<int64_t> indices;            // explicit indices (overrides cls/count)
  const char* indices_flag = "--indices";  // the flag they came from, for errors
};
ExampleSet select_examples(const RunModel& run, const ExampleQuery& q);
// Normalizes raw [0, 1] floats the way the run's loader does.
void normalize_in_place(const RunModel& run, float* x, int64_t count);

}  // namespace gl::analysis
