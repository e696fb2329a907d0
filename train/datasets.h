// datasets.h: MNIST-style image classification splits read from IDX files, kept as raw u8
// pixels and i64 labels; normalization is the loader's job, using pixel_stats of the train split.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gl::data {

struct ImageDataset {
  std::string name;
  int64_t n = 0, channels = 0, height = 0, width = 0;
  std::vector<uint8_t> images;  // n x channels x height x width, row-major
  std::vector<int64_t> labels;  // n entries in [0, num_classes)
  int64_t num_classes = 0;
};

// Datasets load_split knows: "mnist", "fashion-mnist".
const std::vector<std::string>& known_datasets();

// Reads DIR/<dataset>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
// `split` is "train" or "test".
ImageDataset load_split(const std::string& dataset, const std::string& data_dir,
                        const std::string& split);

// Same, from an explicit directory holding the four standard file names.
ImageDataset load_split_from_dir(const std::string& dataset, const std::string& dir,
                                 const std::string& split);

// Mean and (population) standard deviation of all pixels scaled to [0, 1].
struct PixelStats {
  double mean = 0.0;
  double std = 0.0;
};
PixelStats pixel_stats(const ImageDataset& dataset);
// The statistics used to normalize a dataset: always those of its training split.
PixelStats train_pixel_stats(const std::string& dataset, const std::string& data_dir);

}  // namespace gl::data
