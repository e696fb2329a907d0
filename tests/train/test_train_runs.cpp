// test_train_runs.cpp: whole `gradlens train` runs on the mnist-tiny fixture. Determinism (same
// seed and flags give byte-identical outputs, also across thread counts) and resume (a run cut
// after epoch k, by stopping it or by SIGKILL, then --resume, ends byte-identical to an
// uninterrupted run), with dropout and with Adam.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/io/npy.h"
#include "engine/io/tensor_io.h"
#include "tests/train/run_util.h"
#include "train/trainer.h"

namespace {

using namespace gl::testing;

std::vector<std::string> train_args(const std::string& out, int epochs,
                                    const std::vector<std::string>& extra,
                                    const std::string& seed = "7",
                                    const std::string& batch = "32") {
  std::vector<std::string> a{"train",
                             "--dataset",
                             "mnist",
                             "--data-dir",
                             fixture_data_dir(),
                             "--hidden",
                             "64,32",
                             "--batch-size",
                             "32",
                             "--seed",
                             seed,
                             "--epochs",
                             std::to_string(epochs),
                             "--log-steps",
                             "--no-progress",
                             "--out",
                             out};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

void train_ok(const std::vector<std::string>& args) {
  ProcResult r = run_gradlens(args);
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
}

TEST(TrainRuns, SameSeedAndFlagsGiveIdenticalRuns) {
  std::string dir = make_temp_dir("gl_determinism");
  std::vector<std::string> flags{"--dropout", "0.2", "--threads", "1"};
  train_ok(train_args(dir + "/a", 3, flags));
  train_ok(train_args(dir + "/b", 3, flags));
  expect_same_outputs(dir + "/a", dir + "/b");
  // Another seed must change the weights, or the comparison above would prove nothing.
  train_ok(train_args(dir + "/c", 3, flags, "8"));
  EXPECT_NE(read_text(dir + "/a/model.safetensors"), read_text(dir + "/c/model.safetensors"));
}

TEST(TrainRuns, ThreadCountDoesNotChangeTheRun) {
  std::string dir = make_temp_dir("gl_threads");
  train_ok(train_args(dir + "/t1", 3, {"--dropout", "0.2", "--threads", "1"}));
  train_ok(train_args(dir + "/t2", 3, {"--dropout", "0.2", "--threads", "2"}));
  expect_same_outputs(dir + "/t1", dir + "/t2");
}

struct ResumeCase {
  const char* name;
  std::vector<std::string> flags;
};

class TrainResume : public ::testing::TestWithParam<ResumeCase> {};

// DIR/full trained 4 epochs; DIR/cut trained 2, then resumed to 4; their outputs compared.
void cut_and_resume(const std::string& dir, const std::vector<std::string>& flags) {
  train_ok(train_args(dir + "/full", 4, flags));
  train_ok(train_args(dir + "/cut", 2, flags));
  auto resume = flags;
  resume.push_back("--resume");
  train_ok(train_args(dir + "/cut", 4, resume));
  expect_same_outputs(dir + "/full", dir + "/cut");
}

TEST_P(TrainResume, StoppedAfterEpochKThenResumedEqualsUninterrupted) {
  cut_and_resume(make_temp_dir("gl_resume"), GetParam().flags);
}

INSTANTIATE_TEST_SUITE_P(
    Optimizers, TrainResume,
    ::testing::Values(
        ResumeCase{"sgd", {"--threads", "1"}},
        ResumeCase{"sgd_dropout", {"--dropout", "0.3", "--threads", "1"}},
        ResumeCase{"sgd_augment",
                   {"--augment", "affine,crop,flip,elastic,noise", "--threads", "1"}},
        // Its metrics.csv holds nan (grad_norm_i, not recorded), which the
        // checkpoint's history keeps as null.
        ResumeCase{"activation_stats", {"--diagnostics", "activations", "--threads", "1"}},
        ResumeCase{"adam_dropout",
                   {"--optimizer", "adam", "--lr", "0.001", "--dropout", "0.2", "--threads", "1"}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(TrainResumeKill, SigkillAfterFirstCheckpointThenResumeEqualsUninterrupted) {
  std::string dir = make_temp_dir("gl_kill");
  // Small batches make each epoch long enough to land the kill mid-run.
  const int epochs = 12;
  // With a cosine schedule and augmentation: both depend on the step and epoch only.
  std::vector<std::string> flags{"--optimizer", "adam",       "--lr",          "0.001",
                                 "--dropout",   "0.2",        "--lr-schedule", "cosine",
                                 "--augment",   "crop,noise", "--threads",     "1"};
  train_ok(train_args(dir + "/full", epochs, flags, "7", "4"));

  pid_t pid = spawn_gradlens(train_args(dir + "/cut", epochs, flags, "7", "4"), dir + "/cut.out",
                             dir + "/cut.err");
  const std::string ckpt = dir + "/cut/checkpoint.safetensors";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (!fs::exists(ckpt) && std::chrono::steady_clock::now() < deadline &&
         waitpid(pid, &status, WNOHANG) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_TRUE(fs::exists(ckpt)) << "no checkpoint within 60 s: " << read_text(dir + "/cut.err");
  kill(pid, SIGKILL);
  ProcResult killed = wait_proc(pid, dir + "/cut.out", dir + "/cut.err");
  ASSERT_FALSE(killed.exited) << "the run finished before the kill; make it longer\n"
                              << describe(killed);
  ASSERT_EQ(killed.signal, SIGKILL);
  EXPECT_FALSE(fs::exists(dir + "/cut/model.safetensors")) << "the run had already finished";

  auto resume = flags;
  resume.push_back("--resume");
  train_ok(train_args(dir + "/cut", epochs, resume, "7", "4"));
  expect_same_outputs(dir + "/full", dir + "/cut");
}

}  // namespace

TEST(TrainConfigJson, RoundTripsAndRefusesNumbersThatAreNotWhole) {
  gl::train::TrainConfig c;
  c.hidden = {300, 100};
  c.epochs = 7;
  c.lr = 0.125;
  c.init_args = {{"factor", "6"}};
  const gl::train::TrainConfig back = gl::train::TrainConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.hidden, (std::vector<int64_t>{300, 100}));
  // A new run's layers before batch norm have no bias; a configuration written before the
  // setting existed (no key) describes layers that had one.
  EXPECT_FALSE(back.bias_before_batchnorm);
  EXPECT_TRUE(gl::train::TrainConfig::from_json("{}").bias_before_batchnorm);
  // A width of 1e30 once became INT64_MIN on its way to an integer, 2.5 epochs two epochs.
  auto error_of = [](const std::string& text) {
    try {
      gl::train::TrainConfig::from_json(text);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(R"({"hidden": [16, 1e30]})").find("'hidden[1]': expected a whole number from"),
            std::string::npos);
  // A whole number written as a float (a hand edit, Python's json) is taken.
  EXPECT_EQ(gl::train::TrainConfig::from_json(R"({"epochs": 3.0, "hidden": [8.0, 4]})").epochs, 3);
  EXPECT_NE(error_of(R"({"epochs": 2.5})").find("'epochs': expected a whole number, got 2.5"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"epochs": "3"})").find("'epochs'"), std::string::npos);
  // An unsigned seed takes its whole range, and nothing below it.
  EXPECT_EQ(gl::train::TrainConfig::from_json(R"({"seed": 18446744073709551615})").seed,
            18446744073709551615ull);
  EXPECT_NE(error_of(R"({"seed": -1})").find("'seed': expected a whole number from 0"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"hidden": 16})").find("'hidden': expected an array"), std::string::npos);
  EXPECT_NE(error_of(R"({"lr": "fast"})").find("'lr'"), std::string::npos);
}

// The losses of steps trained without --log-steps were never recorded: a run resumed with it
// writes steps.csv from the first step it trains, and a note says where the file starts.
TEST(TrainRuns, LogStepsOnAResumedRunNotesWhereStepsCsvStarts) {
  const std::string dir = make_temp_dir("gl_log_steps");
  const std::string out = dir + "/run";
  auto steps_rows = [&] {
    std::stringstream steps(read_text(out + "/steps.csv"));
    std::vector<std::string> rows;
    for (std::string line; std::getline(steps, line);) rows.push_back(line);
    return rows;
  };
  std::vector<std::string> first = train_args(out, 1, {"--threads", "1"});
  std::erase(first, std::string("--log-steps"));
  train_ok(first);
  ASSERT_FALSE(fs::exists(out + "/steps.csv"));
  ProcResult resumed = run_gradlens(train_args(out, 2, {"--threads", "1", "--resume"}));
  ASSERT_TRUE(resumed.exited && resumed.code == 0) << describe(resumed);
  // 800 training digits in batches of 32: 25 steps an epoch.
  EXPECT_EQ(resumed.err,
            "note: --log-steps on a resumed run: steps.csv starts at step 26; the run's first 25 "
            "steps were trained without --log-steps\n");
  std::vector<std::string> rows = steps_rows();
  ASSERT_EQ(rows.size(), 26u);
  EXPECT_EQ(rows[0], "step,epoch,loss");
  EXPECT_EQ(rows[1].rfind("26,2,", 0), 0u) << rows[1];
  EXPECT_EQ(rows[25].rfind("50,2,", 0), 0u) << rows[25];
  // Resumed once more, the file still lacks the first epoch's steps.
  ProcResult again = run_gradlens(train_args(out, 3, {"--threads", "1", "--resume"}));
  ASSERT_TRUE(again.exited && again.code == 0) << describe(again);
  EXPECT_EQ(again.err,
            "note: --log-steps on a resumed run: steps.csv has no rows for 25 of the run's first "
            "50 steps, which were trained without --log-steps\n");
  rows = steps_rows();
  ASSERT_EQ(rows.size(), 51u);
  EXPECT_EQ(rows[1].rfind("26,2,", 0), 0u) << rows[1];
  EXPECT_EQ(rows[50].rfind("75,3,", 0), 0u) << rows[50];
}

TEST(TrainRuns, ANewRunRefusesANonEmptyOutAndOverwriteStartsOver) {
  // An old run's leftovers (its diagnostics of other layers) must not be read as the new run's.
  std::string dir = make_temp_dir("gl_overwrite");
  const std::string out = dir + "/run";
  train_ok(train_args(out, 1, {"--diagnostics", "all", "--threads", "1"}));
  ASSERT_TRUE(fs::exists(out + "/diagnostics"));
  auto again_args = train_args(out, 1, {"--threads", "1"});
  again_args[6] = "16";  // --hidden 16
  ProcResult again = run_gradlens(again_args);
  ASSERT_TRUE(again.exited) << describe(again);
  EXPECT_EQ(again.code, 1) << describe(again);
  EXPECT_NE(again.err.find("not empty"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_TRUE(fs::exists(out + "/diagnostics")) << "a refused run must not touch the directory";
  write_text(out + "/notes.txt", "mine");
  auto fresh = train_args(out, 1, {"--threads", "1", "--overwrite"});
  fresh[6] = "16";  // --hidden 16
  train_ok(fresh);
  EXPECT_FALSE(fs::exists(out + "/diagnostics")) << "the old run's diagnostics were kept";
  EXPECT_EQ(read_text(out + "/notes.txt"), "mine") << "--overwrite removes a run's files only";
  ProcResult both = run_gradlens(train_args(out, 1, {"--overwrite", "--resume"}));
  EXPECT_TRUE(both.exited && both.code != 0) << describe(both);
}

TEST(TrainRuns, ResumeMendsMetricsCsvAndKeepsItsColumnsWhole) {
  std::string dir = make_temp_dir("gl_resume_metrics");
  const std::string out = dir + "/run";
  train_ok(train_args(out, 2, {"--threads", "1"}));
  const std::string whole = read_text(out + "/metrics.csv");
  // A damaged metrics.csv of a finished run is written again from the checkpoint.
  write_text(out + "/metrics.csv", whole.substr(0, whole.find('\n') + 1));
  train_ok(train_args(out, 2, {"--threads", "1", "--resume"}));
  EXPECT_EQ(read_text(out + "/metrics.csv"), whole);
  // Resumed with diagnostics on: their columns for the earlier epochs are nan, every row whole.
  train_ok(train_args(out, 3, {"--threads", "1", "--resume", "--diagnostics", "all"}));
  std::istringstream lines(read_text(out + "/metrics.csv"));
  std::string line;
  std::vector<std::string> rows;
  while (std::getline(lines, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 4u);
  auto fields = [](const std::string& s) { return std::count(s.begin(), s.end(), ',') + 1; };
  EXPECT_NE(rows[0].find("act_mean_0"), std::string::npos) << rows[0];
  for (const auto& r : rows) EXPECT_EQ(fields(r), fields(rows[0])) << r;
  EXPECT_NE(rows[1].find(",nan"), std::string::npos) << rows[1];
  EXPECT_EQ(rows[3].find("nan"), std::string::npos) << rows[3];
}

TEST(TrainRuns, AModelThatIsNoLongerFiniteIsADivergedRun) {
  // With batch norm a huge step leaves NaN or inf in the running statistics while the training
  // loss (ReLU maps NaN to 0) can stay finite: the run diverged all the same.
  std::string dir = make_temp_dir("gl_nonfinite");
  ProcResult r =
      run_gradlens(train_args(dir + "/bn", 2, {"--batchnorm", "--lr", "1e6", "--threads", "1"}));
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.code, 3) << describe(r);
  EXPECT_TRUE(fs::exists(dir + "/bn/diverged.json"));
  EXPECT_FALSE(fs::exists(dir + "/bn/model.safetensors"));

  // A checkpoint holding a NaN (written before that rule, or altered) is refused on --resume as
  // corrupt, naming the tensor, instead of training on or recording a divergence.
  const std::string out = dir + "/nan";
  train_ok(train_args(out, 1, {"--threads", "1"}));
  const std::string ckpt = out + "/checkpoint.safetensors";
  gl::io::SafetensorsFile f = gl::io::load_safetensors(ckpt);
  gl::io::NamedTensors ts;
  for (const auto& b : f.tensors) ts.emplace_back(b.name, gl::io::from_buffer(b));
  for (auto& [name, t] : ts)
    if (name == "model.0.weight") {
      auto v = t.to_vector<float>();
      v[5] = -std::nanf("");  // the sign of a NaN is not printed
      t = gl::Tensor::from_vector(v, t.shape());
    }
  gl::io::save_tensors(ckpt, ts, f.metadata);
  ProcResult bad = run_gradlens(train_args(out, 2, {"--threads", "1", "--resume"}));
  ASSERT_TRUE(bad.exited) << describe(bad);
  EXPECT_EQ(bad.code, 1) << describe(bad);
  EXPECT_NE(bad.err.find("corrupt checkpoint: 'model.0.weight'"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("non-finite"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("(nan at flat index 5"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(out + "/diverged.json"));
}

TEST(TrainRuns, ResumedRunWritesTheOptimFilesOfAnUninterruptedOne) {
  // --analyze optim keeps moving averages and sign codes across steps and epochs: a run cut
  // after epoch 2 and resumed ends with the same optim/ files, byte for byte.
  for (const char* opt : {"sgd", "adam"}) {
    SCOPED_TRACE(opt);
    std::string dir = make_temp_dir("gl_resume_optim");
    std::vector<std::string> flags{"--analyze", "optim", "--threads", "1", "--optimizer", opt};
    if (std::string(opt) == "adam") flags.insert(flags.end(), {"--lr", "0.001"});
    cut_and_resume(dir, flags);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir + "/full/optim"))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    ASSERT_GE(names.size(), 4u);
    std::vector<std::string> cut;
    for (const auto& e : fs::directory_iterator(dir + "/cut/optim"))
      cut.push_back(e.path().filename().string());
    std::sort(cut.begin(), cut.end());
    EXPECT_EQ(names, cut);
    for (const auto& n : names)
      EXPECT_TRUE(read_text(dir + "/full/optim/" + n) == read_text(dir + "/cut/optim/" + n))
          << "optim/" << n << " differs";
  }
  // Resumed under other analysis settings, the statistics would mix two rules: refused.
  std::string dir = make_temp_dir("gl_resume_optim_flags");
  train_ok(train_args(dir + "/r", 1, {"--analyze", "optim", "--threads", "1"}));
  const std::string config = read_text(dir + "/r/config.json");
  ProcResult r = run_gradlens(train_args(
      dir + "/r", 2, {"--analyze", "optim", "--threads", "1", "--resume", "--ema-decay", "0.5"}));
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("--ema-decay"), std::string::npos) << r.err;
  // The refused resume leaves the run as it was: config.json still says what it trained.
  EXPECT_EQ(read_text(dir + "/r/config.json"), config);
}

// A damaged corr_means.json or optim.json on --resume: the resumed run says so, naming the file
// and why, and starts that analysis again at the resumed epoch; the training and the files it
// writes are those of an uninterrupted run from there on.
TEST(TrainRuns, ResumeNotesADamagedAnalysisFileAndStartsItAgain) {
  using nlohmann::json;
  const std::string dir = make_temp_dir("gl_resume_damaged");
  const std::vector<std::string> flags{"--analyze", "optim,corr", "--threads", "1"};
  train_ok(train_args(dir + "/full", 4, flags));
  train_ok(train_args(dir + "/cut", 2, flags));
  const std::string corr = dir + "/cut/analysis/corr_means.json";
  const std::string optim = dir + "/cut/optim/optim.json";
  const std::string whole = read_text(corr);
  write_text(corr, whole.substr(0, whole.size() / 2));
  write_text(optim, "[1, 2]");
  auto resume = flags;
  resume.push_back("--resume");
  ProcResult r = run_gradlens(train_args(dir + "/cut", 4, resume));
  ASSERT_TRUE(r.exited && r.code == 0) << describe(r);
  EXPECT_NE(r.err.find("note: --analyze corr: " + corr + ": invalid JSON: "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("the layer correlations are recorded again from epoch 2 on"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("note: --analyze optim: " + optim + ": expected an object, got [1,2]"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("start again after epoch 2"), std::string::npos) << r.err;
  expect_same_outputs(dir + "/full", dir + "/cut");
  // The layer correlations of epochs 2 to 4 are those of the uninterrupted run.
  const json full_corr = json::parse(read_text(dir + "/full/analysis/corr_means.json"));
  const json cut_corr = json::parse(read_text(corr));
  EXPECT_EQ(cut_corr["epochs"], json::parse("[2, 3, 4]"));
  ASSERT_EQ(full_corr["epochs"], json::parse("[0, 1, 2, 3, 4]"));
  ASSERT_FALSE(full_corr["pairs"].empty());
  for (const auto& [pair, means] : full_corr["pairs"].items()) {
    ASSERT_TRUE(cut_corr["pairs"].contains(pair)) << pair;
    EXPECT_EQ(cut_corr["pairs"][pair], json(std::vector<json>(means.begin() + 2, means.end())))
        << pair;
  }
  // The optimization statistics start with epoch 3, in optim.json and in the arrays it names.
  const json cut_optim = json::parse(read_text(optim));
  std::vector<int64_t> epochs;
  for (const auto& e : cut_optim["epochs"]) epochs.push_back(e["epoch"].get<int64_t>());
  EXPECT_EQ(epochs, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(cut_optim["sign_map_epochs"], json::parse("[3, 4]"));
  const gl::io::NpyArray steps = gl::io::load_npy(dir + "/cut/optim/steps.npy");
  ASSERT_EQ(steps.shape.size(), 2u);
  ASSERT_GT(steps.shape[0], 0);
  const auto* step = reinterpret_cast<const double*>(steps.bytes.data());
  EXPECT_EQ(step[1], 3.0) << "the first record's epoch";
  ProcResult report = run_gradlens({"report", dir + "/cut"});
  EXPECT_TRUE(report.exited && report.code == 0) << describe(report);
}

TEST(TrainRuns, OverwriteRemovesNothingUntilTheNewRunIsChecked) {
  std::string dir = make_temp_dir("gl_overwrite_late");
  const std::string out = dir + "/run";
  train_ok(train_args(out, 1, {"--threads", "1"}));
  write_text(out + "/notes.tmpl", "mine");
  // A new run that fails its checks leaves the old one whole.
  ProcResult bad = run_gradlens(
      train_args(out, 1, {"--threads", "1", "--overwrite", "--batchnorm", "--limit-train", "129"}));
  ASSERT_TRUE(bad.exited) << describe(bad);
  EXPECT_NE(bad.code, 0) << describe(bad);
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  train_ok(train_args(out, 1, {"--threads", "1", "--overwrite"}));
  EXPECT_EQ(read_text(out + "/notes.tmpl"), "mine") << "only a run's files are removed";
}
