// test_optim_stats.cpp: every optimization statistic of OptimStatsCallback checked against a
// naive double-precision reference computed from host copies of the gradients and weights of
// consecutive steps of a real MLP trained on the mnist-tiny fixture (SGD with momentum and
// Adam); counts exact, norms to 1e-6 relative. The statistics measured inside the optimizer's
// step equal those of the separate passes bit for bit, and do not change the training. Also the
// files it writes, the sign map, --analyze-every and the CLI flags.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>

#include "analysis/npy_read.h"
#include "analysis/optim_stats.h"
#include "analysis_fixture.h"
#include "train/trainer.h"

using namespace gl;
using namespace gl::analysis;
using gl::testing_fixture::ScratchDir;

namespace {

// Host copies of every parameter and gradient at every step (what a PyTorch user would do).
struct Recorder : train::Callback {
  std::map<int64_t, std::vector<std::vector<float>>> grads, weights;
  void on_after_backward(train::Trainer& t, int64_t step) override {
    for (auto& [name, p] : t.model().named_parameters()) {
      grads[step].push_back(p.grad().to_vector<float>());
      weights[step].push_back(p.to_vector<float>());
    }
  }
};

struct Naive {
  double zero = 0, small_prev = 0, released = 0, retained = 0, flip = 0, lmin = 0, lmax = 0, wd = 0,
         zgdw = 0;
};

int sgn(double v) {
  return (v > 0) - (v < 0);
}

Naive naive_stats(const std::vector<float>& g, const std::vector<float>& gp,
                  const std::vector<float>& w, const std::vector<float>& wp, double zt, double st) {
  Naive r;
  double wd2 = 0, z2 = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double a = g[i], b = gp[i], dw = double(w[i]) - double(wp[i]), dg = a - b;
    if (std::fabs(a) < zt) r.zero += 1;
    if (std::fabs(b) < st) {
      r.small_prev += 1;
      if (std::fabs(a) < st)
        r.retained += 1;
      else
        r.released += 1;
    }
    bool flip = sgn(a) * sgn(b) < 0;
    r.flip += flip;
    if (flip && sgn(dw) * sgn(dg) > 0) r.lmin += 1;
    if (flip && sgn(dw) * sgn(dg) < 0) r.lmax += 1;
    wd2 += dw * dw;
    if (std::fabs(b) < zt) z2 += dw * dw;
  }
  r.wd = std::sqrt(wd2);
  r.zgdw = std::sqrt(z2);
  return r;
}

void expect_rel(double got, double want, const std::string& what) {
  EXPECT_NEAR(got, want, 1e-6 * std::max(std::fabs(want), 1e-30)) << what;
}

struct TrainedOptim {
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  std::shared_ptr<OptimStatsCallback> optim;
};

TrainedOptim train_tiny(const ScratchDir& d, OptimStatsOptions o, int64_t epochs = 1,
                        const std::function<void(train::TrainConfig&)>& configure = {},
                        std::shared_ptr<OptimStatsCallback> second = {}) {
  train::TrainConfig cfg;
  cfg.data_dir = gl::testing_fixture::tiny_mnist_data_dir(d);
  cfg.out = d.str() + "/run";
  cfg.hidden = {64, 32};
  cfg.batch_size = 64;
  cfg.epochs = epochs;
  cfg.limit_train = 320;  // 5 steps per epoch
  cfg.lr = 0.05;
  cfg.momentum = 0.9;
  cfg.weight_decay = 1e-3;  // weights with zero gradient still move
  cfg.progress = false;
  cfg.threads = 1;
  if (configure) configure(cfg);
  train::Trainer trainer(cfg);
  TrainedOptim r;
  r.optim = std::make_shared<OptimStatsCallback>(o);
  trainer.add_callback(r.rec);
  trainer.add_callback(r.optim);
  if (second) trainer.add_callback(second);
  trainer.run();
  return r;
}

std::vector<int64_t> record_steps(const TrainedOptim& r) {
  std::vector<int64_t> steps;
  for (auto& rec : r.optim->records()) steps.push_back(rec.step);
  return steps;
}

void use_adam(train::TrainConfig& cfg) {
  cfg.optimizer = "adam";
  cfg.lr = 0.01;
}

// Records equal bit for bit (NaN where NaN).
void expect_same_records(const std::vector<OptimRecord>& a, const std::vector<OptimRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].step, b[i].step);
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    ASSERT_EQ(a[i].stats.size(), b[i].stats.size());
    for (size_t k = 0; k < a[i].stats.size(); ++k)
      for (int st = 0; st < kNumOptimStats; ++st) {
        const double x = a[i].stats[k][size_t(st)], y = b[i].stats[k][size_t(st)];
        if (std::isnan(x))
          EXPECT_TRUE(std::isnan(y))
              << "record " << i << " row " << k << " " << optim_stat_name(st);
        else
          EXPECT_EQ(x, y) << "record " << i << " row " << k << " " << optim_stat_name(st);
      }
  }
}

void check_against_naive(const TrainedOptim& r, const OptimStatsOptions& o) {
  const auto& recs = r.optim->records();
  ASSERT_FALSE(recs.empty());
  const size_t P = r.optim->names().size();
  // EMAs by the naive recurrence over the recorded steps.
  std::vector<std::vector<double>> eg(P), ew(P);
  bool first = true;
  int64_t nonzero_zero = 0, nonzero_flip = 0, nonzero_released = 0, nonzero_zgdw = 0;
  for (auto& rec : recs) {
    const int64_t s = rec.step;
    ASSERT_TRUE(r.rec->grads.count(s) && r.rec->grads.count(s - 1)) << "step " << s;
    ASSERT_EQ(rec.stats.size(), P + 1);
    Naive total;
    double teg2 = 0, tew2 = 0;
    for (size_t k = 0; k < P; ++k) {
      const auto& g = r.rec->grads.at(s)[k];
      const auto& gp = r.rec->grads.at(s - 1)[k];
      const auto& w = r.rec->weights.at(s)[k];
      const auto& wp = r.rec->weights.at(s - 1)[k];
      Naive n = naive_stats(g, gp, w, wp, o.zero_threshold, o.small_threshold);
      const auto& got = rec.stats[k];
      std::string at = "step " + std::to_string(s) + " " + r.optim->names()[k];
      EXPECT_EQ(got[kZeroCount], n.zero) << at;
      EXPECT_EQ(got[kSmallPrevCount], n.small_prev) << at;
      EXPECT_EQ(got[kReleasedCount], n.released) << at;
      EXPECT_EQ(got[kRetainedCount], n.retained) << at;
      EXPECT_EQ(got[kSignFlipCount], n.flip) << at;
      EXPECT_EQ(got[kLocalMinCount], n.lmin) << at;
      EXPECT_EQ(got[kLocalMaxCount], n.lmax) << at;
      expect_rel(got[kZeroFraction], n.zero / double(g.size()), at + " zero fraction");
      expect_rel(got[kSignFlipFraction], n.flip / double(g.size()), at + " flip fraction");
      if (n.small_prev > 0) {
        expect_rel(got[kReleasedFraction], n.released / n.small_prev, at + " released fraction");
        expect_rel(got[kRetainedFraction], n.retained / n.small_prev, at + " retained fraction");
      } else {
        EXPECT_TRUE(std::isnan(got[kReleasedFraction])) << at;
      }
      expect_rel(got[kWeightDiffNorm], n.wd, at + " weight diff norm");
      expect_rel(got[kZeroGradWeightChangeNorm], n.zgdw, at + " zero-grad weight change");
      double g2 = 0, w2 = 0;
      eg[k].resize(g.size());
      ew[k].resize(g.size());
      for (size_t i = 0; i < g.size(); ++i) {
        eg[k][i] = first ? g[i] : o.ema_decay * eg[k][i] + (1 - o.ema_decay) * g[i];
        ew[k][i] = first ? w[i] : o.ema_decay * ew[k][i] + (1 - o.ema_decay) * w[i];
        g2 += eg[k][i] * eg[k][i];
        w2 += ew[k][i] * ew[k][i];
      }
      expect_rel(got[kEmaGradNorm], std::sqrt(g2), at + " ema grad norm");
      expect_rel(got[kEmaWeightNorm], std::sqrt(w2), at + " ema weight norm");
      total.zero += n.zero, total.flip += n.flip, total.released += n.released;
      total.wd += n.wd * n.wd;
      teg2 += g2, tew2 += w2;
      nonzero_zero += n.zero > 0, nonzero_flip += n.flip > 0, nonzero_released += n.released > 0;
      nonzero_zgdw += n.zgdw > 0;
    }
    const auto& tot = rec.stats[P];
    EXPECT_EQ(tot[kZeroCount], total.zero);
    EXPECT_EQ(tot[kSignFlipCount], total.flip);
    EXPECT_EQ(tot[kReleasedCount], total.released);
    expect_rel(tot[kWeightDiffNorm], std::sqrt(total.wd), "total weight diff norm");
    expect_rel(tot[kEmaGradNorm], std::sqrt(teg2), "total ema grad norm");
    first = false;
  }
  // The fixture must exercise the statistics, not compare zeros with zeros.
  EXPECT_GT(nonzero_zero, 0);
  EXPECT_GT(nonzero_flip, 0);
  EXPECT_GT(nonzero_released, 0);
  EXPECT_GT(nonzero_zgdw, 0);
}

}  // namespace

TEST(OptimStats, EveryStepMatchesNaiveReference) {
  ScratchDir d("optim");
  OptimStatsOptions o;
  TrainedOptim r = train_tiny(d, o, 2);
  // 10 steps: step 1 has no predecessor.
  ASSERT_EQ(r.optim->records().size(), 9u);
  EXPECT_EQ(r.optim->records().front().step, 2);
  check_against_naive(r, o);
}

TEST(OptimStats, AdamEveryStepMatchesNaiveReference) {
  ScratchDir d("optim_adam");
  OptimStatsOptions o;
  TrainedOptim r = train_tiny(d, o, 2, use_adam);
  ASSERT_EQ(r.optim->records().size(), 9u);
  EXPECT_EQ(r.optim->observed_steps(), 10);  // measured inside Adam's step
  check_against_naive(r, o);
}

TEST(OptimStats, AdamEveryNComparesWithThePreviousStep) {
  ScratchDir d("optim_adam_every");
  OptimStatsOptions o;
  o.every = 4;
  o.ema_decay = 0.5;
  TrainedOptim r = train_tiny(d, o, 2, use_adam);
  EXPECT_EQ(record_steps(r), (std::vector<int64_t>{4, 8}));
  // Steps 3, 4, 7, 8: the snapshots and the records; the others are not measured.
  EXPECT_EQ(r.optim->observed_steps(), 4);
  check_against_naive(r, o);
}

TEST(OptimStats, InsideTheOptimizerStepEqualsSeparatePasses) {
  // SGD with momentum and Adam; one thread, and two threads, where the first layer's
  // 100,352 weights step in chunks on both threads. every 1 and every 3.
  for (bool adam : {false, true})
    for (int threads : {1, 2})
      for (int64_t every : {int64_t(1), int64_t(3)}) {
        SCOPED_TRACE(fmt::format("{} threads {} every {}", adam ? "adam" : "sgd", threads, every));
        auto configure = [&](train::TrainConfig& cfg) {
          if (adam) use_adam(cfg);
          cfg.hidden = {128, 32};
          cfg.threads = threads;
        };
        ScratchDir d1("optim_inside"), d2("optim_separate");
        OptimStatsOptions inside, separate;
        inside.every = separate.every = every;
        separate.observe_optimizer = false;
        TrainedOptim a = train_tiny(d1, inside, 2, configure);
        TrainedOptim b = train_tiny(d2, separate, 2, configure);
        EXPECT_GT(a.optim->observed_steps(), 0);
        EXPECT_EQ(b.optim->observed_steps(), 0);
        EXPECT_FALSE(a.optim->records().empty());
        expect_same_records(a.optim->records(), b.optim->records());
        // Observing does not change the training.
        EXPECT_EQ(a.rec->weights, b.rec->weights);
        EXPECT_EQ(a.rec->grads, b.rec->grads);
        if (every == 1 && threads == 1) check_against_naive(a, inside);
      }
}

TEST(OptimStats, SecondCallbackFallsBackToSeparatePasses) {
  // The optimizer has one observer: a second callback on the same trainer measures by
  // separate passes, and gets the same records.
  ScratchDir d("optim_two");
  OptimStatsOptions quiet;
  quiet.write_files = false;  // the first one writes <run>/optim/
  auto second = std::make_shared<OptimStatsCallback>(quiet);
  TrainedOptim r = train_tiny(d, {}, 2, {}, second);
  EXPECT_EQ(r.optim->observed_steps(), 10);
  EXPECT_EQ(second->observed_steps(), 0);
  expect_same_records(r.optim->records(), second->records());
}

TEST(OptimStats, EveryNComparesWithThePreviousStep) {
  ScratchDir d("optim_every");
  OptimStatsOptions o;
  o.every = 3;
  o.zero_threshold = 1e-6;
  o.ema_decay = 0.5;
  TrainedOptim r = train_tiny(d, o, 2);
  EXPECT_EQ(record_steps(r), (std::vector<int64_t>{3, 6, 9}));
  check_against_naive(r, o);
}

TEST(OptimStats, SignMapMatchesNaiveCodes) {
  ScratchDir d("optim_sign");
  OptimStatsOptions o;
  o.sign_map_width = 50;
  o.sign_map_zoom = 40;
  TrainedOptim r = train_tiny(d, o, 2);
  const auto& maps = r.optim->sign_maps();
  ASSERT_EQ(maps.size(), r.optim->names().size());
  for (size_t k = 0; k < maps.size(); ++k) {
    ASSERT_EQ(maps[k].size(), 2u);  // one row per epoch
    for (int e = 0; e < 2; ++e) {
      const auto& g = r.rec->grads.at((e + 1) * 5)[k];  // last step of the epoch
      double mean = 0;
      for (float v : g) mean += std::fabs(double(v));
      mean /= double(g.size());
      std::vector<int> codes;
      for (float v : g) {
        double a = std::fabs(double(v));
        codes.push_back(a > 2 * mean ? 2 : v > 0 ? 1 : v < 0 ? -1 : 0);
      }
      const auto& zoom = r.optim->sign_zooms()[k][size_t(e)];
      ASSERT_EQ(zoom.size(), std::min<size_t>(40, g.size()));
      for (size_t i = 0; i < zoom.size(); ++i) EXPECT_EQ(int(zoom[i]), codes[i]) << k << " " << i;
      const auto& row = maps[k][size_t(e)];
      const size_t width = std::min<size_t>(50, g.size());
      ASSERT_EQ(row.size(), width);
      for (size_t b = 0; b < width; ++b) {
        size_t lo = b * g.size() / width, hi = (b + 1) * g.size() / width;
        std::map<int, int> count;
        for (size_t i = lo; i < hi; ++i) count[codes[i]]++;
        int best_count = 0;
        for (auto& [c, n] : count) best_count = std::max(best_count, n);
        EXPECT_EQ(count[int(row[b])], best_count) << "bin " << b << " of " << r.optim->names()[k];
      }
    }
  }
}

TEST(OptimStats, DownsampleTiesAndIdentity) {
  std::vector<int8_t> c = {1, -1, 2, 2, -1, -1, 0, 0, 1, 1};
  EXPECT_EQ(downsample_codes(c, 20), c);
  EXPECT_EQ(downsample_codes(c, 5), (std::vector<int8_t>{1, 2, -1, 0, 1}));
}

TEST(OptimStats, FilesMatchRecords) {
  ScratchDir d("optim_files");
  TrainedOptim r = train_tiny(d, {}, 2);
  std::string dir = d.str() + "/run/optim";
  NpyArray stats = read_npy(dir + "/stats.npy");
  NpyArray steps = read_npy(dir + "/steps.npy");
  const auto& recs = r.optim->records();
  const int64_t P = int64_t(r.optim->names().size());
  ASSERT_EQ(stats.shape, (std::vector<int64_t>{int64_t(recs.size()), P + 1, kNumOptimStats}));
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(steps.values[i * 2], double(recs[i].step));
    EXPECT_EQ(steps.values[i * 2 + 1], double(recs[i].epoch));
    for (int64_t k = 0; k <= P; ++k)
      for (int s = 0; s < kNumOptimStats; ++s) {
        double want = recs[i].stats[size_t(k)][size_t(s)];
        double got = stats.values[(i * size_t(P + 1) + size_t(k)) * kNumOptimStats + size_t(s)];
        if (std::isnan(want))
          EXPECT_TRUE(std::isnan(got));
        else
          EXPECT_EQ(got, want);
      }
  }
  NpyArray map0 = read_npy(dir + "/sign_map_0.npy");
  ASSERT_EQ(map0.shape.size(), 2u);
  EXPECT_EQ(map0.shape[0], 2);
  std::ifstream js(dir + "/optim.json");
  std::string text((std::istreambuf_iterator<char>(js)), {});
  EXPECT_NE(text.find("\"zero_count\""), std::string::npos);
  EXPECT_NE(text.find("\"0.weight\""), std::string::npos);
}

TEST(OptimStats, BadOptionsThrowNamingTheFlag) {
  OptimStatsOptions o;
  o.every = 0;
  EXPECT_THROW(
      {
        try {
          OptimStatsCallback cb(o);
        } catch (const std::exception& e) {
          EXPECT_NE(std::string(e.what()).find("--analyze-every"), std::string::npos);
          throw;
        }
      },
      std::exception);
  o = {};
  o.ema_decay = 1.5;
  EXPECT_THROW(OptimStatsCallback cb(o), std::exception);
  o = {};
  o.zero_threshold = -1;
  EXPECT_THROW(OptimStatsCallback cb(o), std::exception);
}

TEST(OptimStats, CliWritesOptimDirectoryAndReport) {
  ScratchDir d("optim_cli");
  std::string data = gl::testing_fixture::tiny_mnist_data_dir(d);
  std::string out = d.str() + "/run";
  std::string cmd = std::string(GRADLENS_BINARY) + " train --data-dir " + data + " --out " + out +
                    " --hidden 32 --epochs 2 --limit-train 256 --batch-size 64 --no-progress "
                    "--analyze optim --analyze-every 2 --zero-grad-threshold 1e-6 --ema-decay 0.9 "
                    ">/dev/null 2>&1";
  ASSERT_EQ(gl::testing_fixture::run_shell(cmd), 0) << cmd;
  EXPECT_TRUE(std::filesystem::exists(out + "/optim/optim.json"));
  std::ifstream js(out + "/optim/optim.json");
  std::string text((std::istreambuf_iterator<char>(js)), {});
  EXPECT_NE(text.find("\"every\": 2"), std::string::npos) << text.substr(0, 200);
  std::string report = d.str() + "/report.html";
  ASSERT_EQ(gl::testing_fixture::run_shell(std::string(GRADLENS_BINARY) + " report " + out +
                                           " --out " + report + " >/dev/null 2>&1"),
            0);
  std::ifstream rs(report);
  std::string html((std::istreambuf_iterator<char>(rs)), {});
  EXPECT_NE(html.find("Optimization dynamics"), std::string::npos);
  EXPECT_NE(html.find("Gradient sign map"), std::string::npos);
  EXPECT_NE(html.find("Zoom: first components"), std::string::npos);

  std::string bad = std::string(GRADLENS_BINARY) + " train --data-dir " + data + " --out " + out +
                    "_bad --analyze bogus --no-progress 2>&1 | grep -q -- '--analyze'";
  EXPECT_EQ(gl::testing_fixture::run_shell(bad), 0);
}
