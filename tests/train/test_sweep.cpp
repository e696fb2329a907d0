// test_sweep.cpp: sweep grid expansion (order and ids against nested loops), sharding (every
// N: disjoint shards whose union is the grid), spec files (JSON and TOML), and run states read
// back from hand-written run directories, and the cost of an epoch in the time estimate.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "engine/io/fs.h"
#include "tests/error_of.h"
#include "train/datasets.h"
#include "train/sweep.h"

namespace fs = std::filesystem;
using namespace gl::train;

namespace {

// A stand-in for the `gradlens train` flag parser: enough flags to build ids.
TrainFlagInfo fake_info() {
  TrainFlagInfo info;
  info.known = {"activation", "init",   "init-arg",  "depth",   "seed",        "width",
                "lr",         "epochs", "batchnorm", "threads", "diagnostics", "batch-size"};
  info.flags = {"batchnorm"};
  info.repeatable = {"init-arg"};
  info.parse = [](const std::vector<std::string>& args) {
    TrainConfig c;
    c.out = "x";
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--batchnorm") {
        c.batchnorm = true;
        continue;
      }
      const std::string& v = args.at(i + 1);
      ++i;
      if (a == "--activation")
        c.activation = v;
      else if (a == "--init")
        c.init = v;
      else if (a == "--init-arg")
        c.init_args[v.substr(0, v.find('='))] = v.substr(v.find('=') + 1);
      else if (a == "--depth")
        c.depth = std::stoll(v);
      else if (a == "--seed")
        c.seed = std::stoull(v);
      else if (a == "--width")
        c.width = std::stoll(v);
      else if (a == "--lr")
        c.lr = std::stod(v);
      else if (a == "--epochs")
        c.epochs = std::stoll(v);
    }
    return TrainFlagInfo::Parsed{c, ""};
  };
  return info;
}

SweepSpec small_spec() {
  SweepSpec s;
  s.set_axis("depth", {3, 1});  // given out of canonical order on purpose
  s.set_axis("seed", {0, 7});
  s.set_axis("activation", {"relu", "tanh", "gelu"});
  s.set_axis("init", {"he_normal", "orthogonal:gain=1.5", "he_normal:factor=6:mode=fan_out"});
  s.set_fixed("width", 16);
  return s;
}

}  // namespace

TEST(Sweep, ExpandOrderAndIdsMatchNestedLoops) {
  auto runs = expand_grid(small_spec(), fake_info());
  std::vector<std::string> expected;
  for (std::string a : {"relu", "tanh", "gelu"})
    for (std::string i : {"he_normal", "orthogonal_gain1.5", "he_normal_factor6_modefan_out"})
      for (int d : {3, 1})
        for (int s : {0, 7})
          expected.push_back(a + "-" + i + "-d" + std::to_string(d) + "-s" + std::to_string(s));
  ASSERT_EQ(runs.size(), expected.size());
  for (size_t k = 0; k < runs.size(); ++k) {
    EXPECT_EQ(runs[k].id, expected[k]);
    EXPECT_EQ(runs[k].index, k);
    EXPECT_EQ(runs[k].config.width, 16);
  }
  // Init arguments become --init-arg flags; the fixed width comes first.
  const auto& r = runs[8];  // relu, he_normal:factor=6:mode=fan_out, d3, s0
  EXPECT_EQ(r.config.init, "he_normal");
  EXPECT_EQ(r.config.init_args.at("factor"), "6");
  EXPECT_EQ(r.config.init_args.at("mode"), "fan_out");
  EXPECT_EQ(r.args.front(), "--width");
  // Deterministic: a second expansion gives the same runs.
  auto again = expand_grid(small_spec(), fake_info());
  for (size_t k = 0; k < runs.size(); ++k) EXPECT_EQ(again[k].args, runs[k].args);
}

TEST(Sweep, OtherAxesAddAStableHash) {
  SweepSpec s;
  s.set_axis("activation", {"relu"});
  s.set_axis("lr", {0.1, 0.01});
  auto runs = expand_grid(s, fake_info());
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_NE(runs[0].id, runs[1].id);
  EXPECT_EQ(runs[0].id.rfind("relu-he_normal-d2-s0-h", 0), 0u) << runs[0].id;
  EXPECT_DOUBLE_EQ(runs[0].config.lr, 0.1);
  // The hash depends on the value only, not on which other values the axis has.
  SweepSpec t;
  t.set_axis("activation", {"relu"});
  t.set_axis("lr", {0.01});
  EXPECT_EQ(expand_grid(t, fake_info())[0].id, runs[1].id);
}

TEST(Sweep, ShardsPartitionTheGridForEveryN) {
  auto runs = expand_grid(small_spec(), fake_info());
  for (int n = 1; n <= int(runs.size()) + 3; ++n) {
    std::multiset<std::string> seen;
    size_t largest = 0, smallest = runs.size();
    for (int k = 0; k < n; ++k) {
      auto part = shard_runs(runs, k, n);
      largest = std::max(largest, part.size());
      smallest = std::min(smallest, part.size());
      for (auto& r : part) seen.insert(r.id);
    }
    ASSERT_EQ(seen.size(), runs.size()) << "N=" << n;
    for (auto& r : runs) EXPECT_EQ(seen.count(r.id), 1u) << r.id << " N=" << n;
    EXPECT_LE(largest - smallest, 1u) << "N=" << n;  // balanced
  }
}

TEST(Sweep, BadShardsAndBadSpecs) {
  for (auto [k, n] : {std::pair{8, 8}, {-1, 2}, {1, 0}})
    EXPECT_THROW(shard_runs({}, k, n), gl::Error) << k << "/" << n;
  SweepSpec dup;
  dup.set_axis("activation", {"relu", "relu"});
  EXPECT_THROW(expand_grid(dup, fake_info()), gl::Error);
  SweepSpec unknown;
  unknown.set_axis("no-such-flag", {1});
  try {
    expand_grid(unknown, fake_info());
    ADD_FAILURE() << "no exception";
  } catch (const gl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--no-such-flag"), std::string::npos) << e.what();
  }
  SweepSpec both;
  both.set_axis("activation", {"relu"});
  both.fixed["activation"] = "tanh";
  EXPECT_THROW(expand_grid(both, fake_info()), gl::Error);
  EXPECT_THROW(SweepSpec::from_json("{\"grid\": {\"depth\": []}}", "s.json"), gl::Error);
  EXPECT_THROW(SweepSpec::from_json("{\"grdi\": {}}", "s.json"), gl::Error);
  EXPECT_THROW(SweepSpec::from_json("{", "s.json"), gl::Error);
  // The sweep sets --out and --resume for every run; --overwrite would contradict --resume and
  // fail each run once the sweep had started.
  for (const char* owned : {"out", "resume", "overwrite"}) {
    SweepSpec s;
    s.fixed[owned] = true;
    try {
      expand_grid(s, fake_info());
      ADD_FAILURE() << owned << ": no exception";
    } catch (const gl::Error& e) {
      EXPECT_NE(std::string(e.what()).find("set by the sweep"), std::string::npos) << e.what();
    }
  }
  // One flag named twice in a file (fixed and grid, or two spellings of one key) was once
  // settled silently by the last value.
  auto message = [](const std::string& text) {
    try {
      SweepSpec::from_json(text, "s.json");
    } catch (const gl::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no exception)");
  };
  EXPECT_NE(message(R"({"fixed": {"depth": 2}, "grid": {"depth": [1]}})")
                .find("--depth is both fixed and a grid axis"),
            std::string::npos);
  EXPECT_NE(message(R"({"grid": {"batch-size": [16], "batch_size": [32]}})")
                .find("grid.batch_size names --batch-size again"),
            std::string::npos);
  EXPECT_NE(message(R"({"fixed": {"batch-size": 16, "batch_size": 32}})")
                .find("fixed.batch_size names --batch-size again"),
            std::string::npos);
}

// Input that was once taken silently: a key given twice (the last one won), a list where the
// flag takes one value (unwrapped into repeated flags, the last one won) and a non-scalar init
// argument (flattened into text).
TEST(Sweep, KeysGivenTwiceAndListsOfOneValueFlagsAreRefused) {
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const gl::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no exception)");
  };
  auto spec = [&](const std::string& text) {
    return message([&] { expand_grid(SweepSpec::from_json(text, "s.json"), fake_info()); });
  };
  const std::vector<std::pair<std::string, std::string>> cases{
      {R"({"grid": {"lr": [0.1], "lr": [0.2]}})", "s.json: key \"lr\" is given twice"},
      {R"({"fixed": {"width": 8, "width": 9}})", "s.json: key \"width\" is given twice"},
      {R"({"name": "a", "name": "b"})", "s.json: key \"name\" is given twice"},
      {R"({"grid": {"init": [{"name": "normal", "std": 1, "std": 2}]}})",
       "s.json: key \"std\" is given twice"},
      {R"({"name": 5})", "s.json: \"name\" must be a string, got 5"},
      {R"({"grid": {"activation": [["relu"]]}})",
       "grid.activation: [\"relu\"] is a list, but --activation takes one value"},
      {R"({"fixed": {"width": [8]}})", "fixed.width: [8] is a list, but --width takes one value"},
      {R"({"grid": {"init": [{"name": "he_normal", "factor": [2]}]}})",
       "argument \"factor\" must be a string or a number, got [2]"},
      {R"({"grid": {"init": ["he_normal:factor=2:factor=3"]}})",
       "init 'he_normal:factor=2:factor=3': factor is given twice"}};
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text);
    const std::string got = spec(text);
    EXPECT_NE(got.find(want), std::string::npos) << got;
  }
  // A repeatable flag takes a list; keys repeated in different objects are fine.
  EXPECT_EQ(spec(R"({"fixed": {"init-arg": ["factor=2"]}, "grid": {"seed": [1, 2]}})"),
            "(no exception)");
  EXPECT_EQ(
      spec(R"({"grid": {"init": [{"name": "normal", "std": 1}, {"name": "normal", "std": 2}]}})"),
      "(no exception)");
}

TEST(Sweep, SpecFileRoundTripAndInitObjects) {
  auto s = SweepSpec::from_json(R"({"name": "t", "fixed": {"batch_size": 32, "batchnorm": true},
      "grid": {"seed": [1], "init": [{"name": "trunc_normal", "std": 0.02, "a": -0.04},
                                      "he_uniform:mode=fan_out:factor=1"],
               "activation": ["tanh"]}})",
                                "t.json");
  EXPECT_EQ(s.axes[0].first, "activation");
  EXPECT_EQ(s.axes[1].first, "init");
  EXPECT_EQ(s.axes[1].second[0], "trunc_normal:a=-0.04:std=0.02");
  EXPECT_EQ(s.axes[1].second[1], "he_uniform:factor=1:mode=fan_out");
  EXPECT_EQ(s.fixed["batch-size"], 32);
  auto back = SweepSpec::from_json(s.to_json().dump(), "back");
  EXPECT_EQ(back.to_json(), s.to_json());
  auto runs = expand_grid(s, fake_info());
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_TRUE(runs[0].config.batchnorm);
  EXPECT_EQ(runs[0].id, "tanh-trunc_normal_a-0.04_std0.02-d2-s1");
}

// The fenced block of `lang` in docs/sweeps.md's section on the sweep file.
static std::string sweep_doc_example(const std::string& lang) {
  std::ifstream f(std::string(GRADLENS_SOURCE_DIR) + "/docs/sweeps.md");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const size_t section = doc.find("## The sweep file");
  const size_t open = doc.find("```" + lang + "\n", section);
  const size_t close = doc.find("\n```\n", open);
  if (section == std::string::npos || open == std::string::npos || close == std::string::npos)
    return "";
  return doc.substr(open + lang.size() + 4, close + 1 - (open + lang.size() + 4));
}

TEST(Sweep, TomlSweepFileIsTheJsonOne) {
  const std::string json = sweep_doc_example("json"), toml = sweep_doc_example("toml");
  ASSERT_NE(json, "");
  ASSERT_NE(toml, "");
  const SweepSpec from_json = SweepSpec::from_json(json, "s.json");
  const SweepSpec from_toml = SweepSpec::from_toml(toml, "s.toml");
  EXPECT_EQ(from_toml.name, "he-factor");
  EXPECT_EQ(from_toml.to_json(), from_json.to_json());
  // The same grid: the same runs in the same order, with the same ids, flags and configs.
  const auto a = expand_grid(from_json, fake_info()), b = expand_grid(from_toml, fake_info());
  ASSERT_EQ(a.size(), 2u * 4 * 4 * 2);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].id);
    EXPECT_EQ(b[i].id, a[i].id);
    EXPECT_EQ(b[i].args, a[i].args);
    EXPECT_EQ(b[i].config.to_json(), a[i].config.to_json());
    EXPECT_EQ(ojson(b[i].params).dump(), ojson(a[i].params).dump());
  }
  EXPECT_EQ(a[0].id, "relu-he_normal_factor1-d5-s0");
  EXPECT_EQ(a[7].id, "relu-he_normal_factor1-d50-s1");
  EXPECT_EQ(a[20].id, "relu-he_normal_factor6-d20-s0");
  EXPECT_EQ(a[24].id, "relu-trunc_normal_a-0.04_b0.04_std0.02-d5-s0");

  // from_file reads by the name: .toml as TOML, anything else as JSON.
  std::string tmpl = (fs::temp_directory_path() / "gl_test_sweep_toml_XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  auto write_temp = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  EXPECT_EQ(SweepSpec::from_file(write_temp("s.toml", toml)).to_json(), from_json.to_json());
  EXPECT_EQ(SweepSpec::from_file(write_temp("s.json", json)).to_json(), from_json.to_json());
  const std::string toml_named_json =
      gl::testing::error_of([&] { SweepSpec::from_file(write_temp("toml.json", toml)); });
  EXPECT_NE(toml_named_json.find("toml.json: not valid JSON"), std::string::npos)
      << toml_named_json;
  fs::remove_all(dir);
}

TEST(Sweep, TomlSweepFileErrorsNameTheFileLineAndKey) {
  auto message = [](const std::string& text) {
    return gl::testing::error_of(
        [&] { expand_grid(SweepSpec::from_toml(text, "s.toml"), fake_info()); });
  };
  std::string toml = sweep_doc_example("toml");
  ASSERT_NE(toml.find("lr = 0.01\n"), std::string::npos);
  // The error docs/sweeps.md quotes.
  EXPECT_EQ(message(std::string(toml).replace(toml.find("lr = 0.01\n"), 10, "lr = 0.01 x\n")),
            "s.toml:5:11: expected the end of the line after the value of lr, got 'x'");
  EXPECT_EQ(message(toml + "seed = [2]\n"),
            "s.toml:16:1: key seed is given twice (first at 15:1); give it once");
  EXPECT_EQ(message(toml + "[fixed]\n"),
            "s.toml:16:1: table [fixed] is defined twice (first at 3:1)");
  const std::vector<std::pair<std::string, std::string>> cases{
      // Refused by the TOML reader, with the line and column.
      {"name = \"a\nb\"", "s.toml:1:8: unterminated string"},
      {"[grid]\nlr = [0.1, 1e]", "s.toml:2:12: invalid number '1e'"},
      {"[grid]\nwhen = [1979-05-27]", "s.toml:2:9: dates and times are not supported"},
      {"[[grid]]", "s.toml:1:1: arrays of tables ([[name]]) are not supported"},
      // Refused as in a JSON file, naming the key.
      {"[grid]\nlr = [0.1, inf]",
       "s.toml: grid.lr[1]: inf is not allowed in a sweep file (JSON has no such number)"},
      {"fixed.lr = nan", "s.toml: fixed.lr: nan is not allowed in a sweep file"},
      {"[grid]\nname = \"late\"", "s.toml: grid.name must be a non-empty array"},
      {"[fixed]\nbatch-size = 16\nbatch_size = 32",
       "s.toml: fixed.batch_size names --batch-size again"},
      {"[fixed]\nwidth = [8]", "sweep: fixed.width: [8] is a list, but --width takes one value"},
      {"nme = \"x\"", "s.toml: unknown key \"nme\""},
      {"[grid]\ninit = [{name = \"normal\", std = 1, std = 2}]",
       "s.toml:2:36: key std is given twice (first at 2:27)"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text);
    const std::string got = message(text);
    EXPECT_EQ(got.substr(0, want.size()), want);
  }
  // Dotted keys and inline tables write the same objects as [table] headers.
  const SweepSpec dotted = SweepSpec::from_toml(
      "fixed.width = 8\ngrid = {seed = [1, 2], init = [{name = \"normal\", std = 1}]}", "s.toml");
  const SweepSpec json = SweepSpec::from_json(
      R"({"fixed": {"width": 8}, "grid": {"seed": [1, 2], "init": [{"name": "normal", "std": 1}]}})",
      "s.json");
  EXPECT_EQ(dotted.to_json(), json.to_json());
}

// expand_grid refuses the spec: two of its runs would train the same configuration.
static void expect_same_configuration(const SweepSpec& spec) {
  try {
    expand_grid(spec, fake_info());
    ADD_FAILURE() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("would train the same configuration"), std::string::npos)
        << e.what();
  }
}

TEST(Sweep, InitArgumentsSpelledTwoWaysAreOneRun) {
  // factor=2.0 and factor=2 are one value: listing both is refused (it would train the same
  // model twice under two names). Each keeps its spelling in ids and sweep.json, so sweeps
  // written before this check resume under their own ids.
  SweepSpec s;
  s.set_axis("init", {"he_normal:factor=2.0:mode=fan_out"});
  EXPECT_EQ(s.axes[0].second[0], "he_normal:factor=2.0:mode=fan_out");
  SweepSpec twice;
  twice.set_axis("init", {"he_normal:factor=2", "he_normal:factor=2.0"});
  expect_same_configuration(twice);
  // A default written out, or a nonlinearity that gives the same factor, is the same draw.
  for (const char* alike :
       {"he_normal:factor=2", "he_normal:nonlinearity=relu", "he_normal:mode=fan_in:bias=zero"}) {
    SweepSpec d;
    d.set_axis("init", {"he_normal", alike});
    SCOPED_TRACE(alike);
    expect_same_configuration(d);
  }
  SweepSpec x;
  x.set_axis("init", {"xavier_normal", "xavier_normal:gain=1.0", "trunc_normal:a=-2"});
  EXPECT_THROW(expand_grid(x, fake_info()), std::exception);
  // Values that change the draws stay separate runs.
  SweepSpec apart;
  apart.set_axis("init", {"he_normal", "he_normal:factor=3", "he_normal:nonlinearity=tanh",
                          "he_normal:mode=fan_out", "he_uniform", "he_normal:bias=torch",
                          "trunc_normal", "trunc_normal:b=3", "normal:std=0.5", "orthogonal"});
  EXPECT_EQ(expand_grid(apart, fake_info()).size(), 10u);
}

TEST(Sweep, ValuesSpelledTwoWaysThatTrainAlikeAreRefused) {
  // "0.010" and 0.01 are two grid values (two ids) but one configuration: refused, naming both.
  SweepSpec s;
  s.set_axis("lr", {"0.010", 0.01});
  expect_same_configuration(s);
  s.set_axis("lr", {"0.02", 0.01});
  EXPECT_EQ(expand_grid(s, fake_info()).size(), 2u);
}

TEST(Sweep, ClassicGridIsTheIssueGrid) {
  auto s = SweepSpec::classic();
  auto runs = expand_grid(s, fake_info());
  EXPECT_EQ(runs.size(), 4u * 8u * 6u);
  EXPECT_EQ(runs.front().id, "relu-he_normal-d5-s0");
  EXPECT_EQ(runs.back().id, "gelu-trunc_normal-d50-s0");
  EXPECT_EQ(runs.front().config.width, 128);
  EXPECT_DOUBLE_EQ(runs.front().config.lr, 0.01);
}

TEST(Sweep, RunStateAndSummaryFromRunDirectories) {
  std::string tmpl = (fs::temp_directory_path() / "gl_test_sweep_XXXXXX").string();
  std::string dir = mkdtemp(tmpl.data());
  SweepSpec s;
  s.set_axis("activation", {"relu", "tanh", "gelu"});
  s.set_fixed("epochs", 3);
  auto runs = expand_grid(s, fake_info());
  auto write = [&](const SweepRun& r, const std::string& name, const std::string& text) {
    gl::io::ensure_dir(run_dir(dir, r));
    gl::io::write_file_atomic(run_dir(dir, r) + "/" + name, text);
  };
  const std::string head = "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time\n";
  // relu: finished, best accuracy at epoch 2.
  write(runs[0], "metrics.csv",
        head + "1,1,1,0.5,0.6,1.5\n2,1,1,0.6,0.8,1.5\n3,1,0.9,0.7,0.75,2\n");
  write(runs[0], "model.safetensors", "x");
  // tanh: two epochs of three, no model: partial, not in the summary.
  write(runs[1], "metrics.csv", head + "1,1,1,0.5,0.6,1\n2,1,1,0.6,0.8,1\n");
  // gelu: diverged in epoch 2.
  write(runs[2], "metrics.csv", head + "1,1,1,0.5,0.4,1\n");
  write(runs[2], "diverged.json", R"({"error": "loss became nan", "epoch": 2, "step": 9})");
  EXPECT_EQ(run_state(run_dir(dir, runs[0]), 3).status, RunStatus::Finished);
  EXPECT_EQ(run_state(run_dir(dir, runs[1]), 3).status, RunStatus::Partial);
  auto d = run_state(run_dir(dir, runs[2]), 3);
  EXPECT_EQ(d.status, RunStatus::Diverged);
  EXPECT_EQ(d.error, "loss became nan");
  EXPECT_EQ(run_state(dir + "/runs/none", 3).status, RunStatus::Pending);
  // A damaged diverged.json (not a JSON object) does not make a run diverged: it is resumed
  // (tanh, partial) or counted finished by its other files, never skipped as diverged.
  write(runs[1], "diverged.json", "{\"error\": \"loss bec");
  EXPECT_EQ(run_state(run_dir(dir, runs[1]), 3).status, RunStatus::Partial);
  write(runs[1], "diverged.json", "[1, 2]");
  EXPECT_EQ(run_state(run_dir(dir, runs[1]), 3).status, RunStatus::Partial);
  write(runs[0], "diverged.json", "");
  EXPECT_EQ(run_state(run_dir(dir, runs[0]), 3).status, RunStatus::Finished);
  fs::remove(run_dir(dir, runs[0]) + "/diverged.json");
  fs::remove(run_dir(dir, runs[1]) + "/diverged.json");
  std::string csv = summary_csv(dir, runs, {"activation"});
  std::vector<std::string> lines;
  std::stringstream ss(csv);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 3u) << csv;
  EXPECT_EQ(lines[0],
            "run,activation,init,depth,seed,status,diverged,epochs,final_test_acc,best_test_acc,"
            "best_epoch,final_train_acc,final_test_loss,total_time");
  EXPECT_EQ(lines[1],
            "relu-he_normal-d2-s0,relu,he_normal,2,0,finished,0,3,0.75,0.8,2,0.7,0.9,5.000");
  EXPECT_EQ(lines[2], "gelu-he_normal-d2-s0,gelu,he_normal,2,0,diverged,1,1,0.4,0.4,1,0.5,1,1.000");
  fs::remove_all(dir);
}

// The estimate's cost of an epoch counts the examples it trains: --limit-train of them, but no
// more than the split holds (a larger limit trains the whole split).
TEST(Sweep, EpochCostCountsTheExamplesTheEpochTrains) {
  std::string tmpl = (fs::temp_directory_path() / "gl_test_sweep_cost_XXXXXX").string();
  std::string dir = mkdtemp(tmpl.data());
  fs::create_directory_symlink(std::string(GRADLENS_TEST_DATA) + "/mnist-tiny", dir + "/mnist");
  const int64_t split = gl::data::split_size("mnist", dir, "train");
  EXPECT_EQ(split, gl::data::load_split("mnist", dir, "train").n);
  EXPECT_EQ(gl::data::split_size("mnist", dir, "test"),
            gl::data::load_split("mnist", dir, "test").n);
  // CIFAR-10 batches of 1 to 5 records and a test batch of 2 (label 0, black pixels).
  fs::create_directories(dir + "/cifar10");
  for (int b = 1; b <= 6; ++b)
    gl::io::write_file_atomic(
        dir + "/cifar10/" + (b <= 5 ? "data_batch_" + std::to_string(b) : "test_batch") + ".bin",
        std::string(size_t(b <= 5 ? b : 2) * 3073, '\0'));
  EXPECT_EQ(gl::data::split_size("cifar10", dir, "train"), 15);
  EXPECT_EQ(gl::data::load_split("cifar10", dir, "train").n, 15);
  EXPECT_EQ(gl::data::split_size("cifar10", dir, "test"), 2);
  EXPECT_THROW(gl::data::split_size("mnist", dir + "/nowhere", "train"), std::exception);

  TrainConfig c;
  c.hidden = {16};
  const double whole = epoch_cost(c, split);
  EXPECT_DOUBLE_EQ(whole, (784.0 * 16 + 16 * 10) * double(split));
  c.limit_train = split / 2;
  EXPECT_DOUBLE_EQ(epoch_cost(c, split), whole / 2);
  c.limit_train = split;
  EXPECT_DOUBLE_EQ(epoch_cost(c, split), whole);
  c.limit_train = 100000;
  EXPECT_DOUBLE_EQ(epoch_cost(c, split), whole);
  // A split of unknown size (0): the limit as given.
  EXPECT_DOUBLE_EQ(epoch_cost(c, 0), (784.0 * 16 + 16 * 10) * 100000);
  // A CIFAR-10 image is 3x32x32 inputs to the first layer.
  c.dataset = "cifar10";
  EXPECT_DOUBLE_EQ(epoch_cost(c, 0), (3072.0 * 16 + 16 * 10) * 100000);
  fs::remove_all(dir);
}

// A sweep file nested past 128 levels is refused naming the file and where (the checks walk the
// document recursively), in JSON and in TOML (dotted keys too); a value quoted in a message is
// shortened.
TEST(Sweep, DeeplyNestedSpecFilesAreRefusedNamingTheFile) {
  using gl::testing::error_of;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(error_of([&] { SweepSpec::from_json("{\"name\": " + deep + "}", "s.json"); }),
            "s.json:1:137: arrays and objects nested more than 128 deep");
  EXPECT_EQ(
      error_of([&] { SweepSpec::from_json("{\"grid\": {\"depth\": [" + deep + "]}}", "s.json"); }),
      "s.json:1:146: arrays and objects nested more than 128 deep");
  std::string dotted = "a";
  for (int k = 0; k < 50000; ++k) dotted += ".a";
  EXPECT_EQ(error_of([&] { SweepSpec::from_toml(dotted + " = 1", "s.toml"); }),
            "s.toml:1:257: tables, arrays and inline tables nested more than 128 deep");
  const std::string msg = error_of([] {
    SweepSpec::from_json("{\"name\": " + std::string(100, '[') + std::string(100, ']') + "}",
                         "s.json");
  });
  EXPECT_EQ(msg, "s.json: \"name\" must be a string, got " + std::string(76, '[') + " ...");
}

// An init value ending in ':' is refused, as --augment refuses "crop:".
TEST(Sweep, AnInitEndingInAColonIsRefused) {
  using gl::testing::error_of;
  for (const char* init : {"he_normal:", "he_normal:factor=2:"}) {
    SweepSpec s;
    EXPECT_EQ(error_of([&] { s.set_axis("init", {init}); }),
              std::string("sweep axis: init '") + init +
                  "' ends with a ':'; give NAME or NAME:KEY=VALUE[:KEY=VALUE...]");
  }
}

// diverged.json counts only with the fields the trainer writes: `{}` or a message without its
// epoch and step is damaged, and the run counts by its other files.
TEST(Sweep, ADivergedJsonWithoutTheTrainersFieldsIsDamaged) {
  const std::string dir =
      (fs::temp_directory_path() / ("gl_sweep_marker_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  auto write = [&](const std::string& text) { std::ofstream(dir + "/diverged.json") << text; };
  write(R"({"error": "loss became nan", "epoch": 2, "step": 9})");
  EXPECT_EQ(read_diverged_marker(dir), std::optional<std::string>("loss became nan"));
  for (const char* bad : {"{}", R"({"error": "loss became nan"})", R"({"epoch": 2, "step": 9})",
                          R"({"error": 1, "epoch": 2, "step": 9})"}) {
    write(bad);
    std::string damage;
    EXPECT_EQ(read_diverged_marker(dir, &damage), std::nullopt) << bad;
    EXPECT_NE(damage.find(dir + "/diverged.json: key '"), std::string::npos) << damage;
    EXPECT_EQ(run_state(dir, 1).status, RunStatus::Pending) << bad;
  }
  fs::remove_all(dir);
}

// --cuda-graph is refused by the configuration's own check, so a sweep refuses it before any
// run starts.
TEST(Sweep, CudaGraphIsRefusedByValidation) {
  using gl::testing::error_of;
  TrainConfig c;
  c.out = "x";
  c.cuda_graph = true;
  EXPECT_EQ(error_of([&] { c.validate(); }), "--cuda-graph needs --device cuda");
  c.device = "cuda";
  EXPECT_NE(error_of([&] { c.validate(); }).find("--cuda-graph: capturing the training step"),
            std::string::npos);
}
