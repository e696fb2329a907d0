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

// Datasets load_split knows: "mnist", "fashion-mnist", "cifar10".
const std::vector<std::string>& known_datasets();

// Reads DIR/<dataset>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (1x28x28), or for
// cifar10 DIR/cifar10/[cifar-10-batches-bin/]{data_batch_1..5,test_batch}.bin: records of one
// label byte and 3072 pixel bytes (the R, G and B 32x32 planes), 3x32x32 CHW.
// `split` is "train" or "test".
ImageDataset load_split(const std::string& dataset, const std::string& data_dir,
                        const std::string& split);

// The number of examples in a split as load_split would read it, from the labels file's header
// (IDX) or the files' sizes (CIFAR-10), without reading the images; throws like load_split when
// the files are missing.
int64_t split_size(const std::string& dataset, const std::string& data_dir,
                   const std::string& split);
// The file names of a CIFAR-10 split ("train": data_batch_1..5.bin, "test": test_batch.bin).
const std::vector<std::string>& cifar10_files(const std::string& split);
// Appends the records of one CIFAR-10 binary file; throws naming the file when its size is not
// a multiple of 3073 bytes or a label is not below 10.
void append_cifar10_file(const std::string& path, ImageDataset& out);

// Same, from an explicit directory holding the standard file names.
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
