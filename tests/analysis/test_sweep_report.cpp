// test_sweep_report.cpp: what the sweep report's numbers and labels say, on a synthetic
// SweepData (no run directories: the figures that need metrics are left out).
#include <gtest/gtest.h>

#include <string>

#include "analysis/sweep_report.h"

namespace {

using namespace gl::analysis;

SweepRunData make_run(const std::string& act, const std::string& init, int depth, long long seed,
                      const std::string& status, double acc) {
  SweepRunData r;
  r.activation = act;
  r.init = init;
  r.depth = depth;
  r.seed = seed;
  r.status = status;
  r.final_test_acc = r.best_test_acc = acc;
  r.id = act + "-" + init + "-d" + std::to_string(depth) + "-s" + std::to_string(seed);
  return r;
}

// A diverged run keeps its last finished epoch's accuracy in summary.csv: it is neither the
// sweep's best run nor part of a cell's mean, and a cell says how many of its seeds diverged.
// An He initializer's factor is the one it used (gain(nonlinearity)^2 when not given), and a
// sweep of several seeds says which figures average them.
TEST(SweepReport, DivergedSeedsHeFactorsAndSeedsAreStated) {
  SweepData s;
  s.dir = "sw";
  s.name = "test";
  const std::string tanh_he = "he_normal:nonlinearity=tanh", tanh_he1 = tanh_he + ":factor=1";
  s.runs = {make_run("relu", tanh_he, 2, 0, "finished", 0.40),
            make_run("relu", tanh_he, 2, 1, "diverged", 0.99),
            make_run("relu", tanh_he1, 2, 0, "diverged", 0.98),
            make_run("relu", tanh_he1, 2, 1, "diverged", 0.97),
            make_run("relu", tanh_he, 4, 0, "finished", 0.50),
            make_run("relu", tanh_he, 4, 1, "finished", 0.60),
            make_run("relu", tanh_he1, 4, 0, "finished", 0.30),
            make_run("relu", tanh_he1, 4, 1, "finished", 0.20)};
  const std::string html = render_sweep_report(s, {});
  // The best run is the finished one at 60%, not a diverged one.
  EXPECT_NE(html.find("<b>60.00%</b>"), std::string::npos) << html.substr(0, 2000);
  EXPECT_NE(html.find("<b>relu-" + tanh_he + "-d4-s1</b>"), std::string::npos);
  EXPECT_EQ(html.find("<b>99.00%</b>"), std::string::npos);
  // Cells: seed 1 diverged at depth 2; both seeds of the factor-1 initializer diverged there.
  EXPECT_NE(html.find(tanh_he + ", depth 2: 40% (mean of 1 seed; 1 of 2 diverged)"),
            std::string::npos);
  EXPECT_NE(html.find(tanh_he1 + ", depth 2: diverged</title>"), std::string::npos);
  EXPECT_NE(html.find(tanh_he + ", depth 4: 55% (mean of 2 seeds)"), std::string::npos);
  // tanh's He factor is 25/9, not 2.
  EXPECT_NE(html.find("factor 2.78"), std::string::npos);
  EXPECT_EQ(html.find("factor 2<"), std::string::npos);
  EXPECT_NE(html.find("2 seeds: final accuracies"), std::string::npos);
}

}  // namespace
