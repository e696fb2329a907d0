// datasets.cpp: loading MNIST and Fashion-MNIST splits from IDX files and CIFAR-10 from its
// binary batches, with consistency checks.
#include "train/datasets.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "engine/io/fs.h"
#include "train/idx.h"

namespace gl::data {
namespace {

constexpr int64_t kNumClasses = 10;
// A CIFAR-10 record: one label byte, then the R, G and B 32x32 planes.
constexpr std::size_t kCifarPixels = 3 * 32 * 32, kCifarRecord = 1 + kCifarPixels;

// Prefers the gzip file, then the uncompressed one; names both when neither exists.
std::string find_idx(const std::string& dir, const std::string& stem, const std::string& dataset) {
  std::string base = (std::filesystem::path(dir) / stem).string();
  if (io::file_exists(base + ".gz")) return base + ".gz";
  if (io::file_exists(base)) return base;
  for (const std::string& p : {base + ".gz", base})
    if (std::filesystem::exists(p))
      throw std::runtime_error(fmt::format("{}: '{}' is not a regular file", dataset, p));
  throw std::runtime_error(fmt::format(
      "{}: missing '{}.gz' (or '{}'); run `gradlens data fetch {}` to download or build it",
      dataset, base, base, dataset));
}

}  // namespace

const std::vector<std::string>& known_datasets() {
  static const std::vector<std::string> names{"mnist", "fashion-mnist", "cifar10"};
  return names;
}

// ------------------------------------------------------------------ CIFAR-10
const std::vector<std::string>& cifar10_files(const std::string& split) {
  static const std::vector<std::string> train{"data_batch_1.bin", "data_batch_2.bin",
                                              "data_batch_3.bin", "data_batch_4.bin",
                                              "data_batch_5.bin"};
  static const std::vector<std::string> test{"test_batch.bin"};
  if (split == "train") return train;
  if (split == "test") return test;
  throw std::runtime_error(
      fmt::format("cifar10: unknown split '{}' (expected 'train' or 'test')", split));
}

void append_cifar10_file(const std::string& path, ImageDataset& out) {
  std::vector<uint8_t> bytes = io::read_file(path);
  if (bytes.empty() || bytes.size() % kCifarRecord != 0)
    throw std::runtime_error(fmt::format(
        "'{}': {} bytes is not a whole number of CIFAR-10 records (1 label byte + 3072 pixel "
        "bytes = 3073 each); the file is truncated or not in the binary format",
        path, bytes.size()));
  const std::size_t records = bytes.size() / kCifarRecord;
  out.images.reserve(out.images.size() + records * kCifarPixels);
  for (std::size_t r = 0; r < records; ++r) {
    const uint8_t* rec = bytes.data() + r * kCifarRecord;
    if (rec[0] >= kNumClasses)
      throw std::runtime_error(fmt::format(
          "'{}': record {} has label {}, not below {} (byte offset {}); not a CIFAR-10 binary file",
          path, r, rec[0], kNumClasses, r * kCifarRecord));
    out.labels.push_back(rec[0]);
    out.images.insert(out.images.end(), rec + 1, rec + kCifarRecord);
  }
  out.n += int64_t(records);
}

namespace {

// The paths of the files of a CIFAR-10 split in `dir`; throws naming a missing one.
std::vector<std::string> cifar10_paths(const std::string& dir, const std::string& split) {
  // The official archive unpacks to cifar-10-batches-bin/; both layouts are accepted.
  std::string root = dir;
  const std::string nested = (std::filesystem::path(dir) / "cifar-10-batches-bin").string();
  if (!io::file_exists((std::filesystem::path(dir) / "test_batch.bin").string()) &&
      io::file_exists((std::filesystem::path(nested) / "test_batch.bin").string()))
    root = nested;
  std::vector<std::string> paths;
  for (const auto& f : cifar10_files(split)) {
    std::string path = (std::filesystem::path(root) / f).string();
    if (!io::file_exists(path))
      throw std::runtime_error(
          std::filesystem::exists(path)
              ? fmt::format("cifar10: '{}' is not a regular file", path)
              : fmt::format("cifar10: missing '{}'; run `gradlens data fetch cifar10` to "
                            "download it",
                            path));
    paths.push_back(path);
  }
  return paths;
}

// The start of the IDX file names of an MNIST-style split ("train", "t10k").
std::string idx_prefix(const std::string& dataset, const std::string& split) {
  if (split == "train") return "train";
  if (split == "test") return "t10k";
  throw std::runtime_error(
      fmt::format("{}: unknown split '{}' (expected 'train' or 'test')", dataset, split));
}

// DIR/<dataset> of a known dataset.
std::string dataset_dir(const std::string& dataset, const std::string& data_dir) {
  const auto& known = known_datasets();
  if (std::find(known.begin(), known.end(), dataset) == known.end())
    throw std::runtime_error(
        fmt::format("unknown dataset '{}' (known: mnist, fashion-mnist, cifar10)", dataset));
  return (std::filesystem::path(data_dir) / dataset).string();
}

}  // namespace

ImageDataset load_cifar10_from_dir(const std::string& dir, const std::string& split) {
  ImageDataset out;
  out.name = "cifar10";
  out.channels = 3;
  out.height = 32;
  out.width = 32;
  out.num_classes = kNumClasses;
  for (const auto& path : cifar10_paths(dir, split)) append_cifar10_file(path, out);
  return out;
}

ImageDataset load_split(const std::string& dataset, const std::string& data_dir,
                        const std::string& split) {
  return load_split_from_dir(dataset, dataset_dir(dataset, data_dir), split);
}

int64_t split_size(const std::string& dataset, const std::string& data_dir,
                   const std::string& split) {
  const std::string dir = dataset_dir(dataset, data_dir);
  int64_t n = 0;
  if (dataset == "cifar10") {
    for (const auto& path : cifar10_paths(dir, split))
      n += int64_t(std::filesystem::file_size(path) / kCifarRecord);
    return n;
  }
  const IdxArray labels =
      read_idx(find_idx(dir, idx_prefix(dataset, split) + "-labels-idx1-ubyte", dataset));
  return labels.dims.empty() ? 0 : labels.dims[0];
}

ImageDataset load_split_from_dir(const std::string& dataset, const std::string& dir,
                                 const std::string& split) {
  if (dataset == "cifar10") return load_cifar10_from_dir(dir, split);
  const std::string prefix = idx_prefix(dataset, split);
  std::string images_path = find_idx(dir, prefix + "-images-idx3-ubyte", dataset);
  std::string labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte", dataset);
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  if (images.dims.size() != 3)
    throw std::runtime_error(
        fmt::format("'{}': images must have 3 dimensions (n, rows, cols), "
                    "found {}",
                    images_path, images.dims.size()));
  if (labels.dims.size() != 1)
    throw std::runtime_error(fmt::format("'{}': labels must have 1 dimension, found {}",
                                         labels_path, labels.dims.size()));
  if (images.dims[0] != labels.dims[0])
    throw std::runtime_error(fmt::format("{} {}: '{}' holds {} images but '{}' holds {} labels",
                                         dataset, split, images_path, images.dims[0], labels_path,
                                         labels.dims[0]));
  ImageDataset out;
  out.name = dataset;
  out.n = images.dims[0];
  out.channels = 1;
  out.height = images.dims[1];
  out.width = images.dims[2];
  out.num_classes = kNumClasses;
  out.images = std::move(images.data);
  out.labels.resize(labels.data.size());
  for (size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= kNumClasses)
      throw std::runtime_error(fmt::format("'{}': label {} at index {} is not below {}",
                                           labels_path, labels.data[i], i, kNumClasses));
    out.labels[i] = labels.data[i];
  }
  return out;
}

PixelStats pixel_stats(const ImageDataset& dataset) {
  if (dataset.images.empty())
    throw std::runtime_error(fmt::format("{}: no pixels to compute statistics of", dataset.name));
  // A histogram makes the sums exact, whatever the dataset size.
  // Four interleaved histograms, so that runs of equal pixels do not wait on one counter.
  uint64_t part[4][256] = {};
  const uint8_t* px = dataset.images.data();
  const size_t total = dataset.images.size();
  size_t i = 0;
  for (; i + 4 <= total; i += 4) {
    ++part[0][px[i]];
    ++part[1][px[i + 1]];
    ++part[2][px[i + 2]];
    ++part[3][px[i + 3]];
  }
  for (; i < total; ++i) ++part[0][px[i]];
  uint64_t hist[256];
  for (int v = 0; v < 256; ++v) hist[v] = part[0][v] + part[1][v] + part[2][v] + part[3][v];
  double n = static_cast<double>(dataset.images.size());
  double mean = 0.0;
  for (int v = 0; v < 256; ++v) mean += static_cast<double>(hist[v]) * (v / 255.0);
  mean /= n;
  double var = 0.0;
  for (int v = 0; v < 256; ++v) {
    double d = v / 255.0 - mean;
    var += static_cast<double>(hist[v]) * d * d;
  }
  return {mean, std::sqrt(var / n)};
}

PixelStats train_pixel_stats(const std::string& dataset, const std::string& data_dir) {
  return pixel_stats(load_split(dataset, data_dir, "train"));
}

}  // namespace gl::data
