// test_diagnostics.cpp: the Diagnostics callback on the mnist-tiny fixture, checked against
// naive references: the model's activations recomputed on the test split with the test's own
// hooks (moments, per-class moments, histograms, dead and saturated units, selectivity),
// gradient norms against the engine's own .grad and retained activation gradients, the update
// ratio by hand; the files read back with the report's strict loader; training unchanged by the
// probes; and `gradlens train --diagnostics all` + `gradlens report` end to end.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "analysis/csv_read.h"
#include "analysis/diagnostics.h"
#include "analysis/run_data.h"
#include "engine/autograd.h"
#include "engine/io/npy.h"

namespace fs = std::filesystem;
using namespace gl;
using gl::analysis::DiagnosticsCallback;
using gl::analysis::DiagnosticsOptions;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("gl_diag_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
    fs::create_directory_symlink(fs::path(GRADLENS_TEST_DATA) / "mnist-tiny", path / "mnist");
  }
  ~TempDir() { fs::remove_all(path); }
};

train::TrainConfig tiny_config(const TempDir& d, const std::string& act, int64_t epochs) {
  train::TrainConfig c;
  c.dataset = "mnist";
  c.data_dir = d.path.string();
  c.out = (d.path / "run").string();
  c.hidden = {24, 16};
  c.activation = act;
  c.epochs = epochs;
  c.batch_size = 100;
  c.lr = 0.05;
  c.progress = false;
  c.threads = 1;
  return c;
}

// Records, for recorded steps, the norms of the engine's own gradients, the activation
// gradients kept by retain_grad, and the update ratio from its own weight snapshots.
struct GradOracle : train::Callback {
  std::shared_ptr<DiagnosticsCallback> diag;
  std::vector<Tensor> post_out;
  std::vector<std::vector<DiagnosticsCallback::StepGrads>> seen;
  std::vector<std::vector<float>> before;
  static double norm(const Tensor& t) {
    double s = 0;
    for (double v : t.to_vector<double>()) s += v * v;
    return std::sqrt(s);
  }
  void on_train_begin(train::Trainer& t) override {
    auto& taps = t.model().taps();
    post_out.resize(taps.size());
    seen.resize(taps.size());
    before.resize(taps.size());
    for (std::size_t i = 0; i < taps.size(); ++i)
      taps[i].post->add_forward_hook(
          [this, i](const models::Module&, const Tensor&, const Tensor& out) {
            if (out.requires_grad()) {
              out.retain_grad();
              post_out[i] = out;
            }
          });
  }
  void on_after_backward(train::Trainer& t, int64_t step) override {
    if (!diag->is_recorded_step(step)) return;
    auto& taps = t.model().taps();
    for (std::size_t i = 0; i < taps.size(); ++i) {
      DiagnosticsCallback::StepGrads g;
      g.step = step;
      g.weight_grad = norm(taps[i].linear->weight().grad());
      g.bias_grad = norm(taps[i].linear->bias().grad());
      g.act_grad = norm(post_out[i].grad());
      before[i] = taps[i].linear->weight().to_vector<float>();
      seen[i].push_back(g);
    }
  }
  void on_step_end(train::Trainer& t, int64_t step, double) override {
    if (!diag->is_recorded_step(step)) return;
    auto& taps = t.model().taps();
    for (std::size_t i = 0; i < taps.size(); ++i) {
      auto after = taps[i].linear->weight().to_vector<float>();
      double d = 0, b = 0, a = 0;
      for (std::size_t j = 0; j < after.size(); ++j) {
        d += (double(after[j]) - before[i][j]) * (double(after[j]) - before[i][j]);
        b += double(before[i][j]) * before[i][j];
        a += double(after[j]) * after[j];
      }
      seen[i].back().update_ratio = std::sqrt(d / b);
      seen[i].back().weight_norm = std::sqrt(a);
    }
  }
};

// Every pre/post activation of the test split at the model's current weights: [layer][side]
// -> rows of units, and the labels.
struct Captured {
  std::vector<std::array<std::vector<std::vector<float>>, 2>> act;
  std::vector<int64_t> labels;
};
Captured capture(train::Trainer& t) {
  auto& taps = t.model().taps();
  Captured c;
  c.act.resize(taps.size());
  std::vector<models::HookId> ids;
  auto add_rows = [](std::vector<std::vector<float>>& dst, const Tensor& out) {
    auto v = out.to_vector<float>();
    const int64_t n = out.size(0), u = out.size(1);
    for (int64_t r = 0; r < n; ++r) dst.emplace_back(v.begin() + r * u, v.begin() + (r + 1) * u);
  };
  for (std::size_t i = 0; i < taps.size(); ++i) {
    ids.push_back(taps[i].pre->add_forward_hook(
        [&c, i, add_rows](const models::Module&, const Tensor&, const Tensor& o) {
          add_rows(c.act[i][0], o);
        }));
    ids.push_back(taps[i].post->add_forward_hook(
        [&c, i, add_rows](const models::Module&, const Tensor&, const Tensor& o) {
          add_rows(c.act[i][1], o);
        }));
  }
  NoGrad ng;
  t.model().eval();
  const auto& L = t.test_loader();
  for (int64_t b = 0; b < L.num_batches(); ++b) {
    auto batch = L.batch(b);
    t.model().forward(batch.images);
    auto l = batch.labels.to_vector<int64_t>();
    c.labels.insert(c.labels.end(), l.begin(), l.end());
  }
  t.model().train();
  for (std::size_t i = 0; i < taps.size(); ++i) {
    taps[i].pre->remove_forward_hook(ids[2 * i]);
    taps[i].post->remove_forward_hook(ids[2 * i + 1]);
  }
  return c;
}

void expect_rel(double got, double want, double rel, const std::string& what) {
  EXPECT_NEAR(got, want, rel * std::max(1e-12, std::fabs(want))) << what;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Diagnostics, ParseGroups) {
  auto o = DiagnosticsOptions::parse("grads,units");
  EXPECT_TRUE(o.grads && o.units);
  EXPECT_FALSE(o.activations || o.histograms || o.selectivity);
  EXPECT_FALSE(DiagnosticsOptions::parse("none").any());
  EXPECT_EQ(DiagnosticsOptions::parse("all").groups(),
            "activations,histograms,units,grads,selectivity");
  try {
    DiagnosticsOptions::parse("grads,bogus");
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--diagnostics"), std::string::npos) << m;
    EXPECT_NE(m.find("bogus"), std::string::npos) << m;
    EXPECT_NE(m.find("selectivity"), std::string::npos) << m;
  }
  EXPECT_EQ(analysis::nice_ceil(3.1), 5.0);
  EXPECT_EQ(analysis::nice_ceil(0.021), 0.025);
  EXPECT_EQ(analysis::nice_ceil(10.0), 10.0);
}

// ReLU network: moments, per-class moments, histograms, dead units, selectivity, gradients.
TEST(Diagnostics, ReluStatisticsMatchNaiveReference) {
  TempDir d;
  auto cfg = tiny_config(d, "relu", 2);
  train::Trainer t(cfg);
  DiagnosticsOptions o;
  o.every = 3;
  auto diag = std::make_shared<DiagnosticsCallback>(o);
  auto oracle = std::make_shared<GradOracle>();
  oracle->diag = diag;
  t.add_callback(diag);
  t.add_callback(oracle);
  auto hist = t.run();
  const int64_t K = t.num_classes();
  Captured c = capture(t);
  const std::size_t N = c.labels.size();
  ASSERT_EQ(N, 200u);
  auto run = analysis::load_run(cfg.out);
  ASSERT_TRUE(run.diagnostics.has_value());
  const auto& g = *run.diagnostics;
  EXPECT_EQ(g.layers.size(), 2u);
  EXPECT_EQ(g.epochs, (std::vector<double>{0, 1, 2}));
  for (int64_t i = 0; i < 2; ++i)
    for (int post = 0; post < 2; ++post) {
      const auto& rows = c.act[std::size_t(i)][std::size_t(post)];
      ASSERT_EQ(rows.size(), N);
      const std::size_t U = rows[0].size();
      for (int64_t k = -1; k < K; ++k) {
        long double s = 0, sq = 0;
        double mn = INFINITY, mx = -INFINITY;
        int64_t n = 0;
        for (std::size_t r = 0; r < N; ++r) {
          if (k >= 0 && c.labels[r] != k) continue;
          for (float v : rows[r]) {
            s += v, sq += (long double)v * v, mn = std::min(mn, double(v)),
                                              mx = std::max(mx, double(v));
            ++n;
          }
        }
        const double mean = double(s / n), sd = double(std::sqrt(sq / n - (s / n) * (s / n)));
        auto m = diag->moments(i, post, k);
        const std::string what = fmt::format("layer {} post {} class {}", i, post, k);
        expect_rel(m.mean, mean, 1e-5, what + " mean");
        expect_rel(m.std, sd, 1e-5, what + " std");
        EXPECT_EQ(double(m.min), mn) << what;
        EXPECT_EQ(double(m.max), mx) << what;
        // The same numbers in activations.csv, last epoch.
        bool found = false;
        for (auto& a : g.activations)
          if (a.epoch == 2 && a.layer == i && a.post == bool(post) && a.cls == k) {
            expect_rel(a.mean, mean, 1e-5, what + " csv mean");
            expect_rel(a.std, sd, 1e-5, what + " csv std");
            found = true;
          }
        EXPECT_TRUE(found) << what;
      }
      // Histogram, last row, with the written edges; out-of-range values in the edge bins.
      const analysis::LayerHistogram* h = nullptr;
      for (auto& x : g.histograms)
        if (x.layer == i && x.post == bool(post)) h = &x;
      ASSERT_NE(h, nullptr);
      ASSERT_EQ(h->counts.size(), 3u);
      const auto& edges = h->edges[0];
      const int B = int(edges.size()) - 1;
      auto [lo, hi] = diag->hist_range(i, post);
      EXPECT_EQ(edges.front(), double(lo));
      EXPECT_EQ(edges.back(), double(hi));
      std::vector<double> ref(std::size_t(B), 0);
      for (auto& r : rows)
        for (float v : r) {
          int b = int((v - lo) * (float(B) / (hi - lo)));  // histogram_bin's arithmetic
          ++ref[std::size_t(std::clamp(b, 0, B - 1))];
        }
      EXPECT_EQ(h->counts.back(), ref) << "layer " << i << " post " << post;
      // Dead units: never positive on any test sample.
      if (post) {
        std::vector<int64_t> dead;
        for (std::size_t u = 0; u < U; ++u) {
          bool alive = false;
          for (auto& r : rows) alive |= r[u] > 0;
          if (!alive) dead.push_back(int64_t(u));
        }
        ASSERT_EQ(g.dead_units.size(), 2u);
        EXPECT_EQ(g.dead_units[std::size_t(i)], dead);
        for (auto& ur : g.units) {
          if (ur.epoch == 2 && ur.layer == i) {
            EXPECT_NEAR(ur.dead, double(dead.size()) / double(U), 1e-8);
          }
        }
        // Selectivity: class-mean of each unit.
        const auto& sel = g.selectivity.at(std::size_t(i)).second;
        ASSERT_EQ(sel.shape, (std::vector<int64_t>{K, int64_t(U)}));
        for (int64_t k = 0; k < K; ++k)
          for (std::size_t u = 0; u < U; ++u) {
            double s = 0;
            int64_t n = 0;
            for (std::size_t r = 0; r < N; ++r)
              if (c.labels[r] == k) s += rows[r][u], ++n;
            expect_rel(sel.values[std::size_t(k) * U + u], s / double(n), 1e-5, "selectivity");
          }
      }
    }
  // Gradients: every recorded step, against the oracle.
  const auto& sg = diag->step_grads();
  const int64_t nb = t.train_loader().num_batches();
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(sg[i].size(), oracle->seen[i].size());
    ASSERT_FALSE(sg[i].empty());
    for (std::size_t j = 0; j < sg[i].size(); ++j) {
      const auto &a = sg[i][j], &b = oracle->seen[i][j];
      EXPECT_EQ(a.step, b.step);
      EXPECT_TRUE(a.step % 3 == 0 || a.step % nb == 0) << a.step;
      expect_rel(a.weight_grad, b.weight_grad, 1e-9, "weight grad");
      expect_rel(a.bias_grad, b.bias_grad, 1e-9, "bias grad");
      expect_rel(a.act_grad, b.act_grad, 1e-9, "activation grad");
      expect_rel(a.update_ratio, b.update_ratio, 1e-9, "update ratio");
      expect_rel(a.weight_norm, b.weight_norm, 1e-9, "weight norm");
    }
    // grads.csv and metrics.csv: the epoch's last step.
    for (auto& gr : g.grads)
      if (gr.epoch == 2 && gr.layer == int(i)) {
        expect_rel(gr.weight_grad_norm, sg[i].back().weight_grad, 1e-7, "grads.csv");
        expect_rel(gr.update_ratio, sg[i].back().update_ratio, 1e-7, "grads.csv ratio");
      }
    ASSERT_EQ(run.metrics.grad_norm.size(), 2u);
    expect_rel(run.metrics.grad_norm[i].back(), sg[i].back().weight_grad, 1e-7,
               "metrics grad_norm");
    expect_rel(run.metrics.act_mean[i].back(), diag->moments(int64_t(i), true).mean, 1e-7,
               "metrics act_mean");
    expect_rel(run.metrics.act_std[i].back(), diag->moments(int64_t(i), true).std, 1e-7,
               "metrics act_std");
  }
  EXPECT_NE(
      slurp(fs::path(cfg.out) / "metrics.csv").find("act_mean_0,act_std_0,grad_norm_0,act_mean_1"),
      std::string::npos);

  // The probes leave training untouched: the same run without them has the same losses.
  TempDir d2;
  auto cfg2 = tiny_config(d2, "relu", 2);
  train::Trainer t2(cfg2);
  auto hist2 = t2.run();
  for (std::size_t e = 0; e < hist.size(); ++e) {
    EXPECT_EQ(hist[e].train_loss, hist2[e].train_loss);
    EXPECT_EQ(hist[e].test_loss, hist2[e].test_loss);
  }
}

// tanh and sigmoid with a large init: saturated units against the definition on the outputs.
TEST(Diagnostics, SaturatedUnitsMatchNaiveReference) {
  for (std::string act : {"tanh", "sigmoid"}) {
    TempDir d;
    auto cfg = tiny_config(d, act, 1);
    cfg.init = "normal";
    cfg.init_args = {{"std", "0.3"}};
    train::Trainer t(cfg);
    auto diag = std::make_shared<DiagnosticsCallback>(DiagnosticsOptions{});
    t.add_callback(diag);
    t.run();
    Captured c = capture(t);
    auto run = analysis::load_run(cfg.out);
    const auto& g = *run.diagnostics;
    for (std::size_t i = 0; i < 2; ++i) {
      const auto& rows = c.act[i][1];
      std::vector<int64_t> sat;
      for (std::size_t u = 0; u < rows[0].size(); ++u) {
        int64_t n = 0;
        for (auto& r : rows) {
          const double y = act == "tanh" ? r[u] : 2.0 * r[u] - 1.0;
          n += std::fabs(y) > 0.99;
        }
        if (double(n) > 0.5 * double(rows.size())) sat.push_back(int64_t(u));
      }
      EXPECT_EQ(g.saturated_units.at(i), sat) << act << " layer " << i;
      for (auto& ur : g.units)
        if (ur.epoch == 1 && ur.layer == int(i)) {
          EXPECT_NEAR(ur.saturated, double(sat.size()) / double(rows[0].size()),
                      1e-8);  // 9 digits in the CSV
          EXPECT_TRUE(std::isnan(ur.dead));
        }
      auto [lo, hi] = diag->hist_range(int64_t(i), true);
      EXPECT_EQ(lo, act == "tanh" ? -1.0f : 0.0f);
      EXPECT_EQ(hi, 1.0f);
    }
  }
}

// The command line: train with --diagnostics all, then render the report.
// The epoch-0 pass that holds its activations and bins them after choosing the ranges writes
// the same bytes as two evaluation passes (ranges, then counts), for every file; and its
// epoch-0 histogram equals a naive binning of the initial model's activations.
TEST(Diagnostics, OnePassAtInitializationMatchesTwoPasses) {
  std::map<std::string, std::string> files[2];
  for (int two_passes = 0; two_passes < 2; ++two_passes) {
    TempDir d;
    auto cfg = tiny_config(d, "leaky_relu", 1);
    train::Trainer t(cfg);
    Captured init = capture(t);  // the initial model's activations (no diagnostics yet)
    DiagnosticsOptions o;
    o.every = 2;
    if (two_passes) o.hold_limit_bytes = 0;
    auto diag = std::make_shared<DiagnosticsCallback>(o);
    t.add_callback(diag);
    t.run();
    const fs::path dir = fs::path(cfg.out) / "diagnostics";
    for (auto& e : fs::directory_iterator(dir))
      files[two_passes][e.path().filename().string()] = slurp(e.path());
    if (two_passes) continue;
    for (int64_t i = 0; i < 2; ++i)
      for (int post = 0; post < 2; ++post) {
        auto [lo, hi] = diag->hist_range(i, post);
        const int B = o.hist_bins;
        std::vector<int64_t> want(std::size_t(B), 0);
        for (const auto& row : init.act[std::size_t(i)][std::size_t(post)])
          for (float v : row) {
            int b = v < lo ? 0 : v > hi ? B - 1 : int((v - lo) * (float(B) / (hi - lo)));
            ++want[std::size_t(std::clamp(b, 0, B - 1))];
          }
        auto h =
            io::load_npy((dir / fmt::format("hist_{}_{}.npy", i, post ? "post" : "pre")).string());
        ASSERT_EQ(h.shape, (std::vector<int64_t>{2, B}));
        std::vector<int64_t> got(static_cast<std::size_t>(B));
        std::memcpy(got.data(), h.bytes.data(), got.size() * 8);  // row 0: epoch 0
        EXPECT_EQ(got, want) << "layer " << i << " post " << post;
      }
  }
  EXPECT_GT(files[0].size(), 10u);
  EXPECT_EQ(files[0].size(), files[1].size());
  for (auto& [name, bytes] : files[1]) {
    ASSERT_TRUE(files[0].count(name)) << name;
    EXPECT_TRUE(files[0][name] == bytes) << name << " differs between one and two passes";
  }
}

// Conv layers are summarized per channel: every (image, position) row carries its image's
// label. The one-pass epoch-0 path must label rows the same way as the two-pass path. A limit
// that the per-unit estimate passes but a conv layer's positions exceed switches to two passes
// as the values arrive, holding no more than the limit, with the same files.
TEST(Diagnostics, ConvOnePassAtInitializationMatchesTwoPasses) {
  std::map<std::string, std::string> files[3];
  for (int variant = 0; variant < 3; ++variant) {
    TempDir d;
    auto cfg = tiny_config(d, "relu", 1);
    cfg.model = "cnn";
    cfg.channels = {4, 6};
    cfg.fc = {16};
    cfg.limit_train = 200;
    train::Trainer t(cfg);
    DiagnosticsOptions o;
    const auto n = int64_t(t.test_dataset().labels.size());
    // Twice the estimate from the units alone (2 sides x (4 + 6 + 16) units per image); the
    // first conv layer alone holds 4 x 28 x 28 values per image and side.
    const int64_t estimate_passing = 2 * 2 * (4 + 6 + 16) * n * int64_t(sizeof(float));
    if (variant == 1) o.hold_limit_bytes = 0;
    if (variant == 2) o.hold_limit_bytes = estimate_passing;
    auto diag = std::make_shared<DiagnosticsCallback>(o);
    t.add_callback(diag);
    t.run();
    EXPECT_LE(diag->held_peak_bytes(), o.hold_limit_bytes) << "variant " << variant;
    if (variant == 0) {
      EXPECT_GT(diag->held_peak_bytes(), estimate_passing);
    }
    for (auto& e : fs::directory_iterator(fs::path(cfg.out) / "diagnostics"))
      files[variant][e.path().filename().string()] = slurp(e.path());
  }
  EXPECT_GT(files[0].size(), 10u);
  for (int variant = 1; variant < 3; ++variant) {
    EXPECT_EQ(files[0].size(), files[variant].size());
    for (auto& [name, bytes] : files[variant]) {
      ASSERT_TRUE(files[0].count(name)) << name;
      EXPECT_TRUE(files[0][name] == bytes) << name << " differs in variant " << variant;
    }
  }
}

TEST(Diagnostics, EndToEndTrainAndReport) {
  TempDir d;
  const std::string bin = GRADLENS_BINARY, run = (d.path / "run").string();
  std::string cmd =
      bin + " train --dataset mnist --data-dir " + d.path.string() + " --hidden 16,16 --epochs 2 " +
      "--batch-size 100 --threads 1 --no-progress --diagnostics all --diagnostics-every 4 --out " +
      run + " > " + (d.path / "log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(d.path / "log");
  for (const char* f :
       {"layers.json", "activations.csv", "units.csv", "grads.csv", "grad_steps.csv",
        "dead_units.json", "saturated_units.json", "hist_0_pre.npy", "hist_1_post.npy",
        "hist_1_post_edges.npy", "selectivity_0.npy", "selectivity_1.npy"})
    EXPECT_TRUE(fs::exists(fs::path(run) / "diagnostics" / f)) << f;
  auto header = analysis::read_csv((fs::path(run) / "diagnostics" / "grads.csv").string()).header;
  for (const char* col : {"epoch", "layer", "weight_grad_norm", "bias_grad_norm", "act_grad_norm",
                          "weight_norm", "update_ratio"})
    EXPECT_NE(std::find(header.begin(), header.end(), col), header.end()) << col;
  const std::string out = (d.path / "report.html").string();
  cmd = bin + " report " + run + " --out " + out + " > " + (d.path / "log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(d.path / "log");
  std::string html = slurp(out);
  EXPECT_GT(html.size(), 10000u);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // A bad group name is one line naming the flag and the valid names.
  cmd = bin + " train --dataset mnist --data-dir " + d.path.string() + " --diagnostics foo --out " +
        (d.path / "bad").string() + " > " + (d.path / "log").string() + " 2>&1";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  std::string log = slurp(d.path / "log");
  EXPECT_NE(log.find("--diagnostics"), std::string::npos) << log;
  EXPECT_NE(log.find("activations, histograms"), std::string::npos) << log;
}

// A checkpoint at epoch E tells a resumed run that epochs 1..E are done, and the resume keeps
// the diagnostics rows of exactly those epochs from the files: so when the trainer writes the
// checkpoint, the epoch's rows must already be on disk, not still in the background writer.
TEST(Diagnostics, EpochFilesAreOnDiskBeforeItsCheckpoint) {
  struct CheckFiles : train::Callback {
    std::string dir;
    std::vector<int64_t> epochs_seen;
    void on_before_checkpoint(train::Trainer& t) override {
      // Runs after the diagnostics callback's own on_before_checkpoint (added before it).
      std::ifstream f(dir + "/diagnostics/activations.csv");
      ASSERT_TRUE(f.good()) << "no activations.csv when epoch " << t.current_epoch()
                            << "'s checkpoint is written";
      std::string line, last;
      while (std::getline(f, line))
        if (!line.empty()) last = line;
      epochs_seen.push_back(std::strtoll(last.c_str(), nullptr, 10));
    }
  };
  TempDir d;
  auto cfg = tiny_config(d, "relu", 3);
  cfg.checkpoint_every = 1;
  train::Trainer t(cfg);
  DiagnosticsOptions o;
  o.histograms = true;
  t.add_callback(std::make_shared<DiagnosticsCallback>(o));
  auto check = std::make_shared<CheckFiles>();
  check->dir = cfg.out;
  t.add_callback(check);
  t.run();
  EXPECT_EQ(check->epochs_seen, (std::vector<int64_t>{1, 2, 3}));
}
