// test_run_data.cpp: how the report's loader reads a run's marker files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "analysis/run_data.h"

namespace {

namespace fs = std::filesystem;

bool has_note(const gl::analysis::RunData& r, const std::string& needle) {
  return std::any_of(r.notes.begin(), r.notes.end(),
                     [&](const std::string& n) { return n.find(needle) != std::string::npos; });
}

// diverged.json is written atomically: a well-formed one explains the run, a damaged one (not a
// JSON object) is named and ignored, as a sweep ignores it, rather than failing the report or
// calling the run diverged.
TEST(RunData, DivergedJsonWellFormedOrDamaged) {
  const fs::path d = fs::temp_directory_path() / ("gl_run_data_" + std::to_string(::getpid()));
  fs::create_directories(d);
  std::ofstream(d / "metrics.csv") << "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time\n"
                                      "1,1,1,0.5,0.5,1\n";
  std::ofstream(d / "diverged.json") << R"({"error": "loss became nan", "epoch": 2, "step": 9})";
  auto r = gl::analysis::load_run(d.string());
  EXPECT_TRUE(has_note(r, "diverged: loss became nan"));
  for (const char* bad : {"{\"err", "[1]", ""}) {
    std::ofstream(d / "diverged.json", std::ios::trunc) << bad;
    r = gl::analysis::load_run(d.string());
    EXPECT_FALSE(has_note(r, "diverged:")) << bad;
    EXPECT_TRUE(has_note(r, "diverged.json is damaged, ignored")) << bad;
  }
  fs::remove_all(d);
}

}  // namespace
