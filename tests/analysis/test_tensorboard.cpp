// test_tensorboard.cpp: CRC32C against published check values, the protobuf encoding round
// trip, corruption detection, and a real `gradlens train --tensorboard` run read back by our
// reader, by an independent Python reader (its own CRC and protobuf decoding) and, where it
// is installed, by TensorBoard's own event loader.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/tensorboard.h"
#include "analysis_fixture.h"
#include "engine/io/fs.h"

using namespace gl;
using namespace gl::analysis::tb;
using gl::testing_fixture::run_shell;
using gl::testing_fixture::ScratchDir;

namespace {

std::string python() {
  return run_shell("/usr/bin/python3 -c 'import json' >/dev/null 2>&1") == 0 ? "/usr/bin/python3"
                                                                              : "python3";
}

std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// The metrics.csv of a run as column -> values.
std::map<std::string, std::vector<double>> read_metrics(const std::string& path) {
  std::ifstream f(path);
  std::string header, line;
  std::getline(f, header);
  std::vector<std::string> cols;
  std::stringstream hs(header);
  for (std::string c; std::getline(hs, c, ',');) cols.push_back(c);
  std::map<std::string, std::vector<double>> out;
  while (std::getline(f, line)) {
    std::stringstream ls(line);
    size_t i = 0;
    for (std::string v; std::getline(ls, v, ','); ++i) out[cols.at(i)].push_back(std::stod(v));
  }
  return out;
}

struct TrainedRun {
  std::unique_ptr<ScratchDir> dir;
  std::string events;
};

TrainedRun& trained_run() {
  static TrainedRun r = [] {
    TrainedRun t;
    t.dir = std::make_unique<ScratchDir>("tb");
    std::string data = gl::testing_fixture::tiny_mnist_data_dir(*t.dir);
    std::string out = t.dir->str() + "/run";
    std::string cmd = std::string(GRADLENS_BINARY) + " train --data-dir " + data + " --out " +
                      out + " --hidden 32,16 --epochs 3 --limit-train 256 --batch-size 64 " +
                      "--no-progress --tensorboard >/dev/null 2>&1";
    EXPECT_EQ(run_shell(cmd), 0) << cmd;
    for (auto& e : std::filesystem::directory_iterator(out + "/tensorboard"))
      if (e.path().filename().string().find("tfevents") != std::string::npos)
        t.events = e.path().string();
    return t;
  }();
  return r;
}

}  // namespace

TEST(TensorBoard, Crc32cCheckValues) {
  // The CRC-32C check value of "123456789" and the iSCSI (RFC 3720 B.4) vectors.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32);
  for (int i = 0; i < 32; ++i) inc[size_t(i)] = uint8_t(i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
  // Continuing a CRC equals one pass over the concatenation.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
}

TEST(TensorBoard, EventRoundTrip) {
  Event e;
  e.wall_time = 1234.5;
  e.step = 300;  // a two-byte varint
  e.has_summary = true;
  e.values.push_back({"loss", 0.25f, std::nullopt});
  std::vector<float> v = {-1.0f, 0.0f, 0.5f, 2.0f, 2.0f};
  Histogram h = make_histogram(v.data(), v.size(), 3);
  e.values.push_back({"hist", std::nullopt, h});
  std::string bytes = encode_event(e);
  Event d = decode_event(bytes);
  EXPECT_EQ(d.wall_time, 1234.5);
  EXPECT_EQ(d.step, 300);
  ASSERT_EQ(d.values.size(), 2u);
  EXPECT_EQ(d.values[0].tag, "loss");
  EXPECT_EQ(*d.values[0].simple_value, 0.25f);
  ASSERT_TRUE(d.values[1].histo.has_value());
  const Histogram& g = *d.values[1].histo;
  EXPECT_EQ(g.min, -1.0);
  EXPECT_EQ(g.max, 2.0);
  EXPECT_EQ(g.num, 5.0);
  EXPECT_EQ(g.sum, 3.5);
  EXPECT_EQ(g.sum_squares, 9.25);
  EXPECT_EQ(g.bucket_limit, (std::vector<double>{0.0, 1.0, 2.0}));
  EXPECT_EQ(g.bucket, (std::vector<double>{2.0, 1.0, 2.0}));
  // Field 2 (step) = 300: key 0x10, varint 0xAC 0x02, right after the 9-byte wall_time.
  EXPECT_EQ(uint8_t(bytes[9]), 0x10);
  EXPECT_EQ(uint8_t(bytes[10]), 0xAC);
  EXPECT_EQ(uint8_t(bytes[11]), 0x02);
  EXPECT_THROW(decode_event(bytes.substr(0, bytes.size() - 3)), std::exception);
}

TEST(TensorBoard, TrainRunEventsMatchMetrics) {
  auto& r = trained_run();
  ASSERT_FALSE(r.events.empty());
  auto events = read_event_file(r.events);
  ASSERT_GE(events.size(), 1u + 3 * 2);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  auto metrics = read_metrics(r.dir->str() + "/run/metrics.csv");
  std::map<std::string, std::map<int64_t, float>> scalars;
  std::map<std::string, std::map<int64_t, Histogram>> histos;
  for (auto& e : events)
    for (auto& v : e.values) {
      if (v.simple_value) scalars[v.tag][e.step] = *v.simple_value;
      if (v.histo) histos[v.tag][e.step] = *v.histo;
    }
  for (auto& [col, values] : metrics) {
    if (col == "epoch") continue;
    ASSERT_TRUE(scalars.count(col)) << "no scalar for metrics.csv column " << col;
    for (size_t i = 0; i < values.size(); ++i)
      EXPECT_NEAR(scalars[col].at(int64_t(i + 1)), values[i], 1e-6 * std::fabs(values[i]) + 1e-6)
          << col;
  }
  // Activation histograms cover every test sample x unit; gradient histograms every weight.
  ASSERT_TRUE(histos.count("activations/layer0_post"));
  ASSERT_TRUE(histos.count("gradients/0.weight"));
  for (int64_t ep = 1; ep <= 3; ++ep) {
    const Histogram& a = histos["activations/layer0_post"].at(ep);
    EXPECT_EQ(a.num, 200.0 * 32);
    EXPECT_GE(a.min, 0.0);  // relu
    double total = 0;
    for (double c : a.bucket) total += c;
    EXPECT_EQ(total, a.num);
    const Histogram& g = histos["gradients/0.weight"].at(ep);
    EXPECT_EQ(g.num, 784.0 * 32);
    EXPECT_EQ(g.bucket.size(), g.bucket_limit.size());
    EXPECT_EQ(g.bucket_limit.back(), g.max);
  }
  EXPECT_TRUE(histos.count("activations/layer1_post"));
}

TEST(TensorBoard, CorruptionIsReportedWithOffset) {
  auto& r = trained_run();
  ASSERT_FALSE(r.events.empty());
  auto bytes = io::read_file(r.events);
  std::string bad = r.dir->str() + "/bad.tfevents";
  bytes[bytes.size() - 10] ^= 0x40;  // inside the last payload
  io::write_file_atomic(bad, std::span<const uint8_t>(bytes));
  try {
    read_event_file(bad);
    FAIL() << "corruption not detected";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("CRC mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.tfevents"), std::string::npos) << e.what();
  }
}

namespace {

void compare_with_json(const std::vector<Event>& ours, const nlohmann::json& theirs) {
  ASSERT_EQ(theirs.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto& t = theirs[i];
    EXPECT_EQ(t["wall_time"].get<double>(), ours[i].wall_time);
    EXPECT_EQ(t["step"].get<int64_t>(), ours[i].step);
    if (!ours[i].file_version.empty()) {
      EXPECT_EQ(t["file_version"], ours[i].file_version);
    }
    ASSERT_EQ(t["values"].size(), ours[i].values.size());
    for (size_t k = 0; k < ours[i].values.size(); ++k) {
      const auto& tv = t["values"][k];
      const auto& ov = ours[i].values[k];
      EXPECT_EQ(tv["tag"], ov.tag);
      if (ov.simple_value) {
        EXPECT_EQ(tv["simple_value"].get<float>(), *ov.simple_value) << ov.tag;
      }
      if (ov.histo) {
        const auto& th = tv["histo"];
        EXPECT_EQ(th["min"].get<double>(), ov.histo->min);
        EXPECT_EQ(th["max"].get<double>(), ov.histo->max);
        EXPECT_EQ(th["num"].get<double>(), ov.histo->num);
        EXPECT_EQ(th["sum"].get<double>(), ov.histo->sum);
        EXPECT_EQ(th["sum_squares"].get<double>(), ov.histo->sum_squares);
        EXPECT_EQ(th["bucket"].get<std::vector<double>>(), ov.histo->bucket);
        EXPECT_EQ(th["bucket_limit"].get<std::vector<double>>(), ov.histo->bucket_limit);
      }
    }
  }
}

}  // namespace

TEST(TensorBoard, IndependentPythonReaderAgrees) {
  auto& r = trained_run();
  ASSERT_FALSE(r.events.empty());
  if (run_shell(python() + " -c 'import struct, json' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no python3 to run the independent reader";
  std::string script = std::string(GRADLENS_SOURCE_DIR) + "/tests/analysis/tfevents_reader.py";
  std::string out = capture(python() + " " + script + " " + r.events);
  ASSERT_FALSE(out.empty()) << "the Python reader failed on " << r.events;
  compare_with_json(read_event_file(r.events), nlohmann::json::parse(out));
}

TEST(TensorBoard, TensorBoardItselfReadsTheFile) {
  auto& r = trained_run();
  ASSERT_FALSE(r.events.empty());
  if (run_shell(python() + " -c 'import tensorboard' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the tensorboard Python package is not installed; the independent reader "
                    "(IndependentPythonReaderAgrees) is the cross-check";
  std::string script = std::string(GRADLENS_SOURCE_DIR) + "/tests/analysis/tfevents_reader.py";
  std::string out = capture(python() + " " + script + " --tensorboard " + r.events);
  ASSERT_FALSE(out.empty());
  compare_with_json(read_event_file(r.events), nlohmann::json::parse(out));
}
