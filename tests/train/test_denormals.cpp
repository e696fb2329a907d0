// test_denormals.cpp: --denormals reaches the arithmetic. A run (alone or in a FusedGroup)
// trains with subnormal floats flushed to zero by default, keeps them with --denormals keep, on
// the training thread and on its OpenMP threads, and leaves the mode it found when it ends; a
// group refuses members whose modes differ. The mode is read back from the arithmetic itself
// (1e-30f * 1e-10f is 0 when flushed, the subnormal 1e-40f when kept).
#include <gtest/gtest.h>
#include <omp.h>

#include <memory>
#include <vector>

#include "kernels/cpu/fp_env.h"
#include "tests/train/run_util.h"
#include "train/fused.h"

namespace {

using namespace gl;
using namespace gl::testing;

bool flushes_here() {
  volatile float a = 1e-30f, b = 1e-10f;
  return a * b == 0.0f;
}

// Records, at every step end, whether the training thread and each thread of a default-size
// OpenMP team flush subnormals (1) or keep them (0).
struct ModeProbe : train::Callback {
  std::vector<int> seen;
  void on_step_end(train::Trainer&, int64_t, double) override {
    seen.push_back(flushes_here() ? 1 : 0);
    std::vector<int> team(std::size_t(omp_get_max_threads()), -1);
#pragma omp parallel
    team[std::size_t(omp_get_thread_num())] = flushes_here() ? 1 : 0;
    seen.insert(seen.end(), team.begin(), team.end());
  }
  bool needs_tape(const train::Trainer&, int64_t) const override {
    return false;
  }
  bool reads_weights(const train::Trainer&, int64_t) const override {
    return false;
  }
  bool reads_grads(const train::Trainer&, int64_t) const override {
    return false;
  }
};

train::TrainConfig config(const std::string& out, const std::string& denormals) {
  train::TrainConfig c;
  c.dataset = "mnist";
  c.data_dir = fixture_data_dir();
  c.depth = 2;
  c.width = 16;
  c.activation = "tanh";
  c.batch_size = 64;
  c.epochs = 1;
  c.threads = 2;
  c.out = out;
  c.progress = false;
  c.denormals = denormals;
  return c;
}

class Denormals : public ::testing::TestWithParam<std::string> {};

TEST_P(Denormals, ARunTrainsInItsModeAndRestoresTheOneItFound) {
  if (!kernels::cpu::can_flush_denormals()) GTEST_SKIP() << "this build cannot switch the mode";
  const bool flush = GetParam() == "flush";
  const std::string dir = make_temp_dir("gl_denormals");
  for (bool before : {false, true}) {
    kernels::cpu::set_flush_denormals(before);
    auto probe = std::make_shared<ModeProbe>();
    train::Trainer t(config(dir + "/run" + std::to_string(before), GetParam()));
    t.add_callback(probe);
    t.run();
    ASSERT_FALSE(probe->seen.empty());
    EXPECT_EQ(probe->seen, std::vector<int>(probe->seen.size(), flush ? 1 : 0));
    EXPECT_EQ(flushes_here(), before);
  }
  kernels::cpu::set_flush_denormals(false);
}

TEST_P(Denormals, AFusedGroupTrainsInItsModeAndRestoresTheOneItFound) {
  if (!kernels::cpu::can_flush_denormals()) GTEST_SKIP() << "this build cannot switch the mode";
  const bool flush = GetParam() == "flush";
  const std::string dir = make_temp_dir("gl_denormals_fused");
  kernels::cpu::set_flush_denormals(!flush);
  std::vector<train::TrainConfig> cfgs{config(dir + "/a", GetParam()),
                                       config(dir + "/b", GetParam())};
  cfgs[1].init = "xavier_normal";
  train::FusedGroup group(cfgs);
  std::vector<std::shared_ptr<ModeProbe>> probes;
  for (std::size_t i = 0; i < group.size(); ++i) {
    probes.push_back(std::make_shared<ModeProbe>());
    group.trainer(i)->add_callback(probes.back());
  }
  group.run();
  for (const auto& p : probes) {
    ASSERT_FALSE(p->seen.empty());
    EXPECT_EQ(p->seen, std::vector<int>(p->seen.size(), flush ? 1 : 0));
  }
  EXPECT_EQ(flushes_here(), !flush);
  kernels::cpu::set_flush_denormals(false);
}

INSTANTIATE_TEST_SUITE_P(Modes, Denormals, ::testing::Values("flush", "keep"));

TEST(DenormalsConfig, UnknownModeIsRefusedNamingTheFlag) {
  train::TrainConfig c = config("/tmp/unused", "zero");
  try {
    c.validate();
    FAIL() << "--denormals zero was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--denormals: unknown mode 'zero' (flush, keep)"),
              std::string::npos)
        << e.what();
  }
}

TEST(DenormalsConfig, TheModeIsRecordedAndReadBack) {
  train::TrainConfig c = config("/tmp/unused", "keep");
  EXPECT_EQ(train::TrainConfig::from_json(c.to_json()).denormals, "keep");
  EXPECT_EQ(train::TrainConfig{}.denormals, "flush");  // the default
  EXPECT_EQ(train::TrainConfig::from_json("{}").denormals, "flush");
}

TEST(DenormalsConfig, AGroupRefusesMembersOfDifferentModes) {
  const std::string dir = make_temp_dir("gl_denormals_mixed");
  try {
    train::FusedGroup group({config(dir + "/a", "flush"), config(dir + "/b", "keep")});
    FAIL() << "a group of flush and keep members was built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot train with run 0"), std::string::npos) << e.what();
  }
}

}  // namespace
