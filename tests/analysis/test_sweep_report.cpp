// test_sweep_report.cpp: what the sweep report's numbers and labels say, on a synthetic
// SweepData (no run directories: the figures that need metrics are left out) and on small sweep
// directories written here.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>

#include "analysis/sweep_report.h"
#include "analysis_fixture.h"

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

// An activation whose every run diverged has an accuracy-against-depth chart that says so, not
// one that says it has no data.
TEST(SweepReport, ADepthChartOfDivergedRunsSaysSo) {
  SweepData s;
  s.dir = "sw";
  s.name = "test";
  s.runs = {make_run("relu", "he_normal", 2, 0, "finished", 0.40),
            make_run("relu", "he_normal", 4, 0, "finished", 0.50),
            make_run("tanh", "he_normal", 2, 0, "diverged", 0.10),
            make_run("tanh", "he_normal", 4, 0, "diverged", 0.10)};
  const std::string html = render_sweep_report(s, {});
  const size_t relu = html.find(">activation relu<"), tanh = html.find(">activation tanh<");
  ASSERT_NE(relu, std::string::npos) << html;
  ASSERT_NE(tanh, std::string::npos) << html;
  const size_t tanh_end = html.find("</svg>", tanh);
  EXPECT_NE(html.substr(tanh, tanh_end - tanh).find("every run diverged"), std::string::npos);
  EXPECT_EQ(html.find("every run diverged"), html.rfind("every run diverged"));  // not relu's
  EXPECT_EQ(html.substr(tanh, tanh_end - tanh).find("no data"), std::string::npos);
}

// Writes a sweep directory into d: summary.csv with the columns train::summary_csv writes and
// the given rows, and runs/<id>/metrics.csv for each entry of `metrics`.
void write_sweep(const gl::testing_fixture::ScratchDir& d, const std::string& rows,
                 const std::map<std::string, std::string>& metrics = {}) {
  std::ofstream(d.path / "summary.csv")
      << "run,activation,init,depth,seed,status,diverged,epochs,final_test_acc,best_test_acc,"
         "best_epoch,final_train_acc,final_test_loss,total_time\n"
      << rows;
  for (const auto& [id, text] : metrics) {
    std::filesystem::create_directories(d.path / "runs" / id);
    std::ofstream(d.path / "runs" / id / "metrics.csv") << text;
  }
}

// The runs table's row of run `id` (empty when there is none).
std::string table_row(const std::string& html, const std::string& id) {
  const size_t at = html.find("<td class=\"l\">" + id + "</td>");
  if (at == std::string::npos) return "";
  return html.substr(at, html.find("</tr>", at) - at);
}

// summary.csv keeps a diverged run's last finished epoch and that epoch's accuracy. The runs
// table gives it no final accuracy (its heatmap cell is blank and says "diverged"): the cell
// says after which epoch it diverged, and labels the accuracy as that epoch's.
TEST(SweepReport, ADivergedRunHasNoFinalAccuracyInTheRunsTable) {
  const gl::testing_fixture::ScratchDir d("sweep_report");
  write_sweep(d,
              "fine,relu,he_normal,2,0,finished,0,5,0.8612,0.8731,4,0.9,0.41,10.000\n"
              "late,relu,he_normal,4,0,diverged,1,3,0.8523,0.8544,2,0.88,0.52,6.000\n"
              "early,relu,he_normal,8,0,diverged,1,0,,,,,,0.000\n");
  const std::string html = render_sweep_report(load_sweep(d.str()), {});
  EXPECT_NE(table_row(html, "fine").find("<td>86.12%</td><td>87.31%</td>"), std::string::npos)
      << table_row(html, "fine");
  const std::string late = table_row(html, "late");
  EXPECT_NE(late.find("<td>— <span class=\"note\">(diverged after epoch 3; test accuracy at "
                      "epoch 3: 85.23%)</span></td><td>85.44%</td>"),
            std::string::npos)
      << late;
  EXPECT_EQ(late.find("<td>85.23%</td>"), std::string::npos) << late;
  EXPECT_NE(table_row(html, "early")
                .find("<td>— <span class=\"note\">(diverged before finishing an epoch)</span></td>"
                      "<td>—</td>"),
            std::string::npos)
      << table_row(html, "early");
  // The heatmap's cells of the diverged runs: blank, saying so.
  EXPECT_NE(html.find("he_normal, depth 4: diverged</title>"), std::string::npos);
  EXPECT_NE(html.find("he_normal, depth 8: diverged</title>"), std::string::npos);
}

// Runs trained without gradient diagnostics have nan in every grad_norm_i cell: the gradient
// section says so instead of drawing charts with nothing on them, and a run with no metrics rows
// (diverged in its first epoch) gets no curve or legend entry.
TEST(SweepReport, StatisticsNotRecordedDrawNoEmptyFigures) {
  const std::string header =
      "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time,act_mean_0,act_std_0,grad_norm_0,"
      "act_mean_1,act_std_1,grad_norm_1\n";
  const gl::testing_fixture::ScratchDir d("sweep_report");
  write_sweep(d,
              "a,relu,he_normal,2,0,finished,0,2,0.8,0.8,2,0.9,0.5,2.000\n"
              "b,relu,xavier_normal,2,0,diverged,1,0,,,,,,0.000\n",
              {{"a", header + "1,1.0,0.9,0.6,0.7,1,0.1,0.5,nan,0.2,0.4,nan\n"
                              "2,0.5,0.6,0.8,0.8,1,0.1,0.6,nan,0.2,0.5,nan\n"},
               {"b", header}});
  const std::string html = render_sweep_report(load_sweep(d.str()), {});
  EXPECT_NE(html.find("No gradient norms in the runs' metrics.csv"), std::string::npos);
  EXPECT_EQ(html.find("weight-gradient norm"), std::string::npos);
  EXPECT_EQ(html.find("no data"), std::string::npos);
  // Run b has no rows: the accuracy-over-epochs chart of relu at depth 2 has a's curve and
  // legend entry only, and b has no (empty) act_std heatmap.
  const size_t title = html.find(">relu, depth 2</text>");
  ASSERT_NE(title, std::string::npos);
  const std::string chart = html.substr(title, html.find("</svg>", title) - title);
  EXPECT_NE(chart.find(">he_normal</text>"), std::string::npos) << chart;
  EXPECT_EQ(chart.find("xavier_normal"), std::string::npos) << chart;
  EXPECT_NE(html.find("<figcaption>a</figcaption>"), std::string::npos);
  EXPECT_EQ(html.find("<figcaption>b</figcaption>"), std::string::npos);
}

}  // namespace
