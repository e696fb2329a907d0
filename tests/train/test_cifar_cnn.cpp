// test_cifar_cnn.cpp: the CIFAR-10 binary loader on small generated files in the real format
// (record = 1 label byte + 3072 pixel bytes), its validation errors, and whole `gradlens train
// --model cnn` runs on 1x28x28 (the mnist-tiny fixture) and 3x32x32 (generated CIFAR-10) data.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/train/run_util.h"
#include "train/datasets.h"

namespace {

using namespace gl::testing;

// Record r of file f: label (r * 7 + f) % 10, pixel p = (r * 31 + p * 3 + f) % 256.
std::vector<uint8_t> cifar_records(int file, int records, int label_override = -1) {
  std::vector<uint8_t> bytes;
  for (int r = 0; r < records; ++r) {
    bytes.push_back(
        uint8_t(label_override >= 0 && r == records - 1 ? label_override : (r * 7 + file) % 10));
    for (int p = 0; p < 3072; ++p) bytes.push_back(uint8_t((r * 31 + p * 3 + file) % 256));
  }
  return bytes;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  write_text(path, std::string(b.begin(), b.end()));
}

// DIR/cifar10/{data_batch_1..5,test_batch}.bin with `per_file` records each.
std::string make_cifar(int per_file, const std::string& sub = "") {
  std::string root = make_temp_dir("gl_cifar");
  std::string dir = root + "/cifar10" + sub;
  fs::create_directories(dir);
  for (int f = 1; f <= 5; ++f)
    write_bytes(dir + "/data_batch_" + std::to_string(f) + ".bin", cifar_records(f, per_file));
  write_bytes(dir + "/test_batch.bin", cifar_records(0, per_file));
  return root;
}

std::string load_error(const std::string& root, const std::string& split) {
  try {
    gl::data::load_split("cifar10", root, split);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Cifar10, LoadsRecordsInFileOrderAsChw) {
  std::string root = make_cifar(3);
  auto train = gl::data::load_split("cifar10", root, "train");
  EXPECT_EQ(train.n, 15);
  EXPECT_EQ(train.channels, 3);
  EXPECT_EQ(train.height, 32);
  EXPECT_EQ(train.width, 32);
  EXPECT_EQ(train.num_classes, 10);
  ASSERT_EQ(train.images.size(), std::size_t(15 * 3072));
  for (int f = 1; f <= 5; ++f)
    for (int r = 0; r < 3; ++r) {
      std::size_t i = std::size_t((f - 1) * 3 + r);
      EXPECT_EQ(train.labels[i], (r * 7 + f) % 10);
      // Pixel (channel 2, row 5, col 9) sits at plane offset 2 * 1024 + 5 * 32 + 9.
      int p = 2 * 1024 + 5 * 32 + 9;
      EXPECT_EQ(train.images[i * 3072 + std::size_t(p)], uint8_t((r * 31 + p * 3 + f) % 256));
    }
  auto test = gl::data::load_split("cifar10", root, "test");
  EXPECT_EQ(test.n, 3);
  // The official archive's folder name is accepted too.
  std::string nested = make_cifar(2, "/cifar-10-batches-bin");
  EXPECT_EQ(gl::data::load_split("cifar10", nested, "train").n, 10);
}

TEST(Cifar10, CorruptFilesGiveOneLineErrorsNamingTheFile) {
  std::string root = make_cifar(2);
  std::string bad = root + "/cifar10/data_batch_3.bin";
  auto truncated = cifar_records(3, 2);
  truncated.pop_back();
  write_bytes(bad, truncated);
  std::string e = load_error(root, "train");
  EXPECT_NE(e.find("data_batch_3.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("6145 bytes is not a whole number of CIFAR-10 records"), std::string::npos) << e;
  EXPECT_NE(e.find("3073"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;

  write_bytes(bad, cifar_records(3, 2, /*label_override=*/10));
  e = load_error(root, "train");
  EXPECT_NE(e.find("record 1 has label 10, not below 10"), std::string::npos) << e;

  write_bytes(bad, {});
  EXPECT_NE(load_error(root, "train").find("0 bytes"), std::string::npos);

  fs::remove(root + "/cifar10/test_batch.bin");
  e = load_error(root, "test");
  EXPECT_NE(e.find("test_batch.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("gradlens data fetch cifar10"), std::string::npos) << e;
}

TEST(Cifar10, FetchOfflineExplainsWhereTheFilesGo) {
  std::string root = make_temp_dir("gl_cifar_fetch");
  ProcResult r = run_gradlens({"data", "fetch", "cifar10", "--offline", "--data-dir", root});
  EXPECT_TRUE(r.exited && r.code != 0) << describe(r);
  EXPECT_NE(r.err.find("only available by download"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("test_batch.bin"), std::string::npos) << r.err;
}

double last_test_acc(const std::string& run) {
  std::string m = read_text(run + "/metrics.csv");
  auto lines = std::vector<std::string>();
  std::size_t start = 0;
  while (start < m.size()) {
    std::size_t end = m.find('\n', start);
    if (end == std::string::npos) end = m.size();
    if (end > start) lines.push_back(m.substr(start, end - start));
    start = end + 1;
  }
  // epoch,train_loss,test_loss,train_acc,test_acc,...
  std::string last = lines.back();
  std::size_t p = 0;
  for (int i = 0; i < 4; ++i) p = last.find(',', p) + 1;
  return std::stod(last.substr(p, last.find(',', p) - p));
}

TEST(TrainCnn, LearnsMnistTinyWithEveryOption) {
  std::string out = make_temp_dir("gl_cnn_run");
  ProcResult r = run_gradlens({"train", "--model", "cnn", "--dataset", "mnist", "--data-dir",
                               fixture_data_dir(), "--channels", "8,16", "--fc", "32", "--epochs",
                               "3", "--seed", "3", "--no-progress", "--out", out});
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
  EXPECT_GT(last_test_acc(out), 0.5);  // 10 classes: chance is 0.1
  std::string cfg = read_text(out + "/config.json");
  EXPECT_NE(cfg.find("\"model\": \"cnn\""), std::string::npos);
  EXPECT_NE(cfg.find("\"optimizer\": \"adam\""), std::string::npos) << cfg;  // CNN defaults
  EXPECT_NE(cfg.find("\"lr\": 0.001"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("\"batch_size\": 64"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("\"normalize\": \"standard\""), std::string::npos) << cfg;
  // `gradlens eval` rebuilds MLPs only and says so for a CNN's weights.
  r = run_gradlens({"eval", "--weights", out + "/model.safetensors", "--dataset", "mnist",
                    "--data-dir", fixture_data_dir()});
  EXPECT_TRUE(r.exited && r.code != 0) << describe(r);
  EXPECT_NE(r.err.find("tensor '0.weight' [8, 1, 3, 3] is a conv weight"), std::string::npos)
      << r.err;
  // BatchNorm, another activation and initializer, dropout, no pooling, a given lr.
  std::string out2 = make_temp_dir("gl_cnn_run_bn");
  r = run_gradlens({"train",
                    "--model",
                    "cnn",
                    "--dataset",
                    "mnist",
                    "--data-dir",
                    fixture_data_dir(),
                    "--channels",
                    "4",
                    "--fc",
                    "16",
                    "--pool",
                    "0",
                    "--batchnorm",
                    "--activation",
                    "tanh",
                    "--init",
                    "xavier_uniform",
                    "--dropout",
                    "0.1",
                    "--lr",
                    "0.02",
                    "--epochs",
                    "1",
                    "--no-progress",
                    "--diagnostics",
                    "all",
                    "--out",
                    out2});
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
  EXPECT_NE(read_text(out2 + "/config.json").find("\"lr\": 0.02"), std::string::npos);
  // Diagnostics of the conv layer are per channel: 4 units, tanh outputs within [-1, 1].
  std::string layers = read_text(out2 + "/diagnostics/layers.json");
  EXPECT_NE(layers.find("\"conv2d\""), std::string::npos) << layers;
  EXPECT_NE(layers.find("\"out\": 4"), std::string::npos) << layers;
  std::string acts = read_text(out2 + "/diagnostics/activations.csv");
  std::size_t row = acts.find("\n1,0,post,-1,");  // epoch 1, layer 0, all classes
  ASSERT_NE(row, std::string::npos) << acts;
  std::string line = acts.substr(row + 1, acts.find('\n', row + 1) - row - 1);
  std::vector<double> v;
  std::size_t p = 0;
  for (int i = 0; i < 8; ++i) {
    std::size_t q = line.find(',', p);
    if (i >= 4) v.push_back(std::stod(line.substr(p, q - p)));
    p = q + 1;
  }
  EXPECT_GE(v[2], -1.0);  // min
  EXPECT_LE(v[3], 1.0);   // max
  EXPECT_GT(v[1], 0.0);   // std
}

TEST(TrainCnn, TrainsOnThreeChannel32x32Images) {
  std::string root = make_cifar(40);
  std::string out = make_temp_dir("gl_cnn_cifar");
  ProcResult r = run_gradlens({"train", "--model", "cnn", "--dataset", "cifar10", "--data-dir",
                               root, "--channels", "4,8", "--fc", "16", "--epochs", "1",
                               "--no-progress", "--out", out});
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
  EXPECT_NE(r.out.find("cifar10: test accuracy"), std::string::npos) << r.out;
  // Every training augmentation on 3-channel images feeds [B, 3, 32, 32] batches to the CNN.
  std::string aug = make_temp_dir("gl_cnn_cifar_aug");
  r = run_gradlens({"train", "--model", "cnn", "--dataset", "cifar10", "--data-dir", root,
                    "--channels", "4", "--fc", "8", "--epochs", "1", "--augment",
                    "affine,crop,flip,elastic,noise", "--no-progress", "--out", aug});
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
}

TEST(TrainCnn, BadConfigurationsGiveOneLineErrors) {
  std::string out = make_temp_dir("gl_cnn_bad");
  auto err = [&](std::vector<std::string> extra) {
    std::vector<std::string> a{"train",
                               "--model",
                               "cnn",
                               "--dataset",
                               "mnist",
                               "--data-dir",
                               fixture_data_dir(),
                               "--epochs",
                               "1",
                               "--no-progress",
                               "--out",
                               out};
    a.insert(a.end(), extra.begin(), extra.end());
    ProcResult r = run_gradlens(a);
    EXPECT_TRUE(r.exited && r.code != 0) << describe(r);
    return r.err;
  };
  // Five 2x2 poolings shrink 28x28 to 0x0.
  std::string e = err({"--channels", "4,4,4,4,4,4"});
  EXPECT_NE(e.find("too small for conv stage"), std::string::npos) << e;
  e = err({"--kernel", "0"});
  EXPECT_NE(e.find("--kernel: expected an integer from 1 to"), std::string::npos) << e;
  e = err({"--analyze", "corr"});
  EXPECT_NE(e.find("--analyze corr"), std::string::npos) << e;
  e = err({"--channels", "4,x"});
  EXPECT_NE(e.find("--channels"), std::string::npos) << e;
}

}  // namespace
