// loader.cpp: normalization once, shuffled index order per epoch, batch gathering.
#include "train/loader.h"

#include <cstring>
#include <numeric>

#include "engine/generator.h"
#include "engine/ops.h"

namespace gl::data {

Normalization parse_normalization(const std::string& s) {
  if (s == "raw") return Normalization::raw;
  if (s == "standard") return Normalization::standard;
  throw Error(fmt::format("unknown normalization '{}' (expected raw or standard)", s));
}
const char* normalization_name(Normalization n) {
  return n == Normalization::raw ? "raw" : "standard";
}

Loader::Loader(const ImageDataset& ds, Normalization norm, PixelStats stats, int64_t batch_size,
               bool shuffle, uint64_t seed, bool flat, Device device)
    : Loader(ds, std::vector<uint8_t>(ds.images), norm, stats, batch_size, shuffle, seed, flat,
             device) {}

Loader::Loader(ImageDataset&& ds, Normalization norm, PixelStats stats, int64_t batch_size,
               bool shuffle, uint64_t seed, bool flat, Device device)
    : Loader(ds, std::move(ds.images), norm, stats, batch_size, shuffle, seed, flat, device) {}

Loader::Loader(const ImageDataset& ds, std::vector<uint8_t>&& pixels, Normalization norm,
               PixelStats stats, int64_t batch_size, bool shuffle, uint64_t seed, bool flat,
               Device device)
    : device_(device),
      n_(ds.n),
      batch_size_(batch_size),
      shuffle_(shuffle),
      flat_(flat),
      seed_(seed) {
  GL_CHECK(batch_size > 0, "batch size must be positive, got {}", batch_size);
  GL_CHECK(ds.n > 0, "dataset {} is empty", ds.name);
  features_ = ds.channels * ds.height * ds.width;
  GL_CHECK(int64_t(pixels.size()) == ds.n * features_ && int64_t(ds.labels.size()) == ds.n,
           "dataset {}: {} pixels and {} labels for {} images of {}x{}x{}", ds.name, pixels.size(),
           ds.labels.size(), ds.n, ds.channels, ds.height, ds.width);
  sample_shape_ = {ds.channels, ds.height, ds.width};
  if (norm == Normalization::standard) {
    GL_CHECK(stats.std > 0, "standard normalization needs a positive std, got {}", stats.std);
    scale_ = 1.0 / (255.0 * stats.std);
    shift_ = -stats.mean / stats.std;
  }
  // Every pixel value maps through one table: the same float per value as computing it each
  // time, at a table lookup per pixel.
  for (int v = 0; v < 256; ++v) table_[v] = float(double(v) * scale_ + shift_);
  pixels_ = std::move(pixels);
  if (!shuffle_ || device_.is_cuda()) all_images();
  labels_ = Tensor::from_vector(ds.labels, {n_});
  if (device_.is_cuda()) {
    dev_images_ = images_.to(device_);
    dev_labels_ = labels_.to(device_);
  }
  start_epoch(0);
}

void Loader::set_augment(const ImageDataset& ds, const TrainAugment& a) {
  GL_CHECK(ds.n == n_ && ds.channels * ds.height * ds.width == features_,
           "set_augment: dataset {} does not match the loader's {} images", ds.name, n_);
  augment_ = a;
  channels_ = ds.channels;
  height_ = ds.height;
  width_ = ds.width;
}

void Loader::convert_rows(const int64_t* rows, int64_t count, float* dst) const {
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* src = pixels_.data() + (rows ? rows[i] : i) * features_;
    float* out = dst + i * features_;
    for (int64_t t = 0; t < features_; ++t) out[t] = table_[src[t]];
  }
}

const Tensor& Loader::all_images() const {
  if (!images_.defined()) {
    images_ = Tensor::empty({n_, features_}, DType::f32);
    convert_rows(nullptr, n_, images_.data<float>());
  }
  return images_;
}

void Loader::start_epoch(int64_t epoch) {
  epoch_ = epoch;
  order_.resize(std::size_t(n_));
  std::iota(order_.begin(), order_.end(), 0);
  if (shuffle_) {
    // One stream per epoch: (seed, epoch) names it, independent of what ran before.
    Generator g(seed_ * 0x9E3779B97F4A7C15ull + uint64_t(epoch) + 1);
    for (int64_t i = n_ - 1; i > 0; --i) std::swap(order_[i], order_[g.below(uint64_t(i + 1))]);
  }
  if (device_.is_cuda()) dev_order_ = Tensor::from_vector(order_, {n_}).to(device_);
}

Batch Loader::batch(int64_t b) const {
  GL_CHECK(b >= 0 && b < num_batches(), "batch {} out of range ({} batches)", b, num_batches());
  int64_t start = b * batch_size_, count = std::min(batch_size_, n_ - start);
  Batch out;
  out.indices.assign(order_.begin() + start, order_.begin() + start + count);
  if (augment_.any()) {
    // Augmented rows are built on the host (the warp is per image), then moved once.
    out.images = Tensor::empty({count, features_}, DType::f32);
    out.labels = Tensor::empty({count}, DType::i64);
    float* dst = out.images.data<float>();
    int64_t* ld = out.labels.data<int64_t>();
    const int64_t* ls = labels_.data<int64_t>();
    const float scale = float(scale_ * 255.0), shift = float(shift_);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) {
      const int64_t idx = out.indices[std::size_t(i)];
      float* row = dst + i * features_;
      augment_train_image(pixels_.data() + idx * features_, channels_, height_, width_, augment_,
                          uint64_t(epoch_ * n_ + idx), row);
      for (int64_t t = 0; t < features_; ++t) row[t] = row[t] * scale + shift;
      ld[i] = ls[idx];
    }
    if (device_.is_cuda()) {
      out.images = out.images.to(device_);
      out.labels = out.labels.to(device_);
    }
  } else if (device_.is_cuda()) {
    NoGrad ng;
    Tensor idx = dev_order_.narrow(0, start, count);
    out.images = index_select(dev_images_, 0, idx);
    out.labels = index_select(dev_labels_, 0, idx);
  } else if (!shuffle_) {
    // In order (evaluation): the batch is a view of consecutive rows, no copy.
    out.images = images_.narrow(0, start, count);
    out.labels = labels_.narrow(0, start, count);
  } else {
    out.images = Tensor::empty({count, features_}, DType::f32);
    out.labels = Tensor::empty({count}, DType::i64);
    convert_rows(out.indices.data(), count, out.images.data<float>());
    const int64_t* ls = labels_.data<int64_t>();
    int64_t* ld = out.labels.data<int64_t>();
    for (int64_t i = 0; i < count; ++i) ld[i] = ls[out.indices[std::size_t(i)]];
  }
  if (!flat_) {
    Shape s{count};
    s.insert(s.end(), sample_shape_.begin(), sample_shape_.end());
    out.images = out.images.view(s);
  }
  return out;
}

}  // namespace gl::data
