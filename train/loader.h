// loader.h: batches of a dataset as tensors. Pixels are converted to f32 through one table with
// the chosen normalization ("raw": x/255; "standard": (x/255 - mean)/std with the training split's
// statistics); each epoch's order is a Philox-seeded Fisher-Yates shuffle of (seed, epoch), so
// any epoch's batches can be recomputed exactly on resume. The last partial batch is kept.
// A shuffled loader on the host keeps the raw bytes and converts each batch's rows as it gathers
// them (a quarter of the memory, no f32 copy of the whole split to build); an in-order loader
// converts the whole split once, so its batches are views.
// On a CUDA device the normalized dataset is uploaded once, each epoch's order once per
// epoch, and batches are gathered on the device (no host copy per step).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "train/augment.h"
#include "train/datasets.h"

namespace gl::data {

enum class Normalization { raw, standard };
Normalization parse_normalization(const std::string& s);  // "raw" | "standard"
const char* normalization_name(Normalization n);

struct Batch {
  Tensor images;                 // f32 [B, C*H*W] (flat) or [B, C, H, W]
  Tensor labels;                 // i64 [B]
  std::vector<int64_t> indices;  // dataset indices of the rows
};

class Loader {
 public:
  // stats: the mean/std used for Normalization::standard (ignored for raw).
  Loader(const ImageDataset& ds, Normalization norm, PixelStats stats, int64_t batch_size,
         bool shuffle, uint64_t seed, bool flat = true, Device device = {});
  // The same, taking ds's pixels rather than copying them (ds.images is left empty; the other
  // fields of ds stay as they were).
  Loader(ImageDataset&& ds, Normalization norm, PixelStats stats, int64_t batch_size, bool shuffle,
         uint64_t seed, bool flat = true, Device device = {});
  Device device() const { return device_; }
  int64_t size() const { return n_; }
  // Rounded up without n + batch_size - 1, which overflows for a batch size near INT64_MAX.
  int64_t num_batches() const { return n_ / batch_size_ + (n_ % batch_size_ != 0); }
  int64_t batch_size() const { return batch_size_; }
  // Augments every training batch from now on: sample `i` of epoch `e` is image i transformed
  // by augmentation number e * size() + i (then normalized), so epochs differ and any batch
  // can be recomputed exactly on resume. ds must be the dataset the loader was built from.
  void set_augment(const ImageDataset& ds, const TrainAugment& a);
  const TrainAugment& augment() const { return augment_; }
  // Starts epoch `epoch` (0-based): fixes its order.
  void start_epoch(int64_t epoch);
  Batch batch(int64_t i) const;
  const std::vector<int64_t>& order() const { return order_; }
  // All normalized images [N, features] on the host (shares memory; used by analysis). A
  // shuffled loader converts them on the first call.
  const Tensor& all_images() const;
  const Tensor& all_labels() const { return labels_; }

 private:
  Loader(const ImageDataset& ds, std::vector<uint8_t>&& pixels, Normalization norm,
         PixelStats stats, int64_t batch_size, bool shuffle, uint64_t seed, bool flat,
         Device device);
  void convert_rows(const int64_t* rows, int64_t count, float* dst) const;
  mutable Tensor images_;  // every image normalized; built on demand for a shuffled loader
  Tensor labels_;
  Device device_;
  Tensor dev_images_, dev_labels_, dev_order_;  // on device_ when it is a CUDA device
  int64_t n_, batch_size_, features_;
  Shape sample_shape_;
  bool shuffle_, flat_;
  uint64_t seed_;
  std::vector<int64_t> order_;
  int64_t epoch_ = 0;
  double scale_ = 1.0 / 255.0, shift_ = 0.0;  // normalized = pixel * scale_ + shift_
  float table_[256];                          // normalized value of each pixel value
  TrainAugment augment_;
  std::vector<uint8_t> pixels_;  // the raw images
  int64_t channels_ = 1, height_ = 0, width_ = 0;
};

}  // namespace gl::data
