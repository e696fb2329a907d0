// test_repr.cpp: representation analysis against independent oracles: the eigensolver against
// closed-form spectra, correlations against a naive f64 loop, PCA against a closed-form design,
// t-SNE pieces against brute force (and scikit-learn where /usr/bin/python3 has it), the
// augmentation against exact shifts, and `gradlens analyze` end to end on mnist-tiny.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <sstream>

#include "analysis/correlation.h"
#include "analysis/linalg.h"
#include "analysis/neurons.h"
#include "analysis/npy_read.h"
#include "analysis/pca.h"
#include "analysis/representation.h"
#include "analysis/tsne.h"
#include "train/augment.h"

namespace fs = std::filesystem;
using namespace gl::analysis;

namespace {

std::vector<float> random_matrix(int64_t n, int64_t d, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = nd(g);
  return x;
}

// Gaussian blobs: `per` points around each of `k` centres spaced `sep` apart in d dims.
std::vector<float> blobs(int64_t k, int64_t per, int64_t d, double sep, std::vector<int>& labels,
                         unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd;
  std::vector<std::vector<double>> centres(static_cast<size_t>(k),
                                           std::vector<double>(static_cast<size_t>(d)));
  for (auto& c : centres)
    for (auto& v : c) v = sep * nd(g);
  std::vector<float> x;
  labels.clear();
  for (int64_t i = 0; i < k * per; ++i) {
    int c = int(i % k);
    labels.push_back(c);
    for (int64_t f = 0; f < d; ++f) x.push_back(float(centres[size_t(c)][size_t(f)] + nd(g)));
  }
  return x;
}

bool have_sklearn() {
  static int ok = -1;
  if (ok < 0) ok = std::system("/usr/bin/python3 -c 'import sklearn' >/dev/null 2>&1") == 0;
  return ok == 1;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("gl_repr_" + std::to_string(::getpid()) + "_" + std::to_string(std::rand()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_raw(const fs::path& p, const void* data, size_t bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(static_cast<const char*>(data), std::streamsize(bytes));
}

std::string run_cmd(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (f && fgets(buf, sizeof buf, f)) out += buf;
  int st = f ? pclose(f) : -1;
  if (status) *status = st;
  return out;
}

}  // namespace

// ---------------------------------------------------------------- eigensolver

TEST(Eigen, TridiagonalToeplitzClosedForm) {
  // tridiag(-1, 2, -1) of size n has eigenvalues 2 - 2 cos(k pi / (n + 1)), k = 1..n.
  const int64_t n = 40;
  std::vector<double> a(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    a[size_t(i * n + i)] = 2;
    if (i + 1 < n) a[size_t(i * n + i + 1)] = a[size_t((i + 1) * n + i)] = -1;
  }
  auto e = symmetric_eigen(a, n);
  for (int64_t k = 1; k <= n; ++k) {
    double expect = 2 - 2 * std::cos(double(n - k + 1) * std::numbers::pi / double(n + 1));
    EXPECT_NEAR(e.values[size_t(k - 1)], expect, 1e-12) << k;
  }
}

TEST(Eigen, RandomSymmetricDecomposes) {
  const int64_t n = 57;
  auto r = random_matrix(n, n, 3);
  std::vector<double> a(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      a[size_t(i * n + j)] = double(r[size_t(i * n + j)]) + r[size_t(j * n + i)];
  auto e = symmetric_eigen(a, n);
  double trace = 0, sum = 0;
  for (int64_t i = 0; i < n; ++i) trace += a[size_t(i * n + i)];
  for (double v : e.values) sum += v;
  EXPECT_NEAR(trace, sum, 1e-9);
  for (int64_t k = 0; k < n; ++k) {
    if (k) {
      EXPECT_GE(e.values[size_t(k - 1)], e.values[size_t(k)]);
    }
    for (int64_t i = 0; i < n; ++i) {  // A v = lambda v
      double av = 0;
      for (int64_t j = 0; j < n; ++j) av += a[size_t(i * n + j)] * e.vectors[size_t(j * n + k)];
      EXPECT_NEAR(av, e.values[size_t(k)] * e.vectors[size_t(i * n + k)], 1e-9);
    }
    for (int64_t l = 0; l < n; ++l) {  // orthonormal
      double dot = 0;
      for (int64_t i = 0; i < n; ++i)
        dot += e.vectors[size_t(i * n + k)] * e.vectors[size_t(i * n + l)];
      EXPECT_NEAR(dot, k == l ? 1.0 : 0.0, 1e-10);
    }
  }
}

TEST(Eigen, RejectsBadInput) {
  EXPECT_THROW(symmetric_eigen({1, 2, 3}, 2), gl::Error);
  EXPECT_THROW(symmetric_eigen({1, NAN, NAN, 1}, 2), gl::Error);
}

// ---------------------------------------------------------------- correlation

TEST(Correlation, MatchesNaiveF64ToOneInAMillion) {
  const int64_t n = 300, dx = 17, dy = 23;
  auto x = random_matrix(n, dx, 1), y = random_matrix(n, dy, 2);
  for (int64_t i = 0; i < n; ++i) {
    y[size_t(i * dy)] = 3 * x[size_t(i * dx)] + 0.1f * y[size_t(i * dy)];  // strong correlation
    x[size_t(i * dx + 5)] = 100.0f + 0.001f * x[size_t(i * dx + 5)];       // offset, tiny spread
    y[size_t(i * dy + 7)] = 2.5f;                                          // constant: undefined
  }
  auto c = pearson_cross(x.data(), n, dx, y.data(), dy);
  for (int64_t a = 0; a < dx; ++a)
    for (int64_t b = 0; b < dy; ++b) {
      double ma = 0, mb = 0;
      for (int64_t i = 0; i < n; ++i) {
        ma += x[size_t(i * dx + a)];
        mb += y[size_t(i * dy + b)];
      }
      ma /= n;
      mb /= n;
      double sab = 0, saa = 0, sbb = 0;
      for (int64_t i = 0; i < n; ++i) {
        double u = x[size_t(i * dx + a)] - ma, v = y[size_t(i * dy + b)] - mb;
        sab += u * v;
        saa += u * u;
        sbb += v * v;
      }
      double got = c[size_t(a * dy + b)];
      if (sbb == 0) {
        EXPECT_TRUE(std::isnan(got)) << a << "," << b;
        continue;
      }
      EXPECT_NEAR(got, sab / std::sqrt(saa * sbb), 1e-6) << a << "," << b;
    }
  EXPECT_GT(c[0], 0.99);
  // mean_abs skips the undefined column.
  double s = 0;
  int k = 0;
  for (double v : c)
    if (!std::isnan(v)) s += std::abs(v), ++k;
  EXPECT_DOUBLE_EQ(mean_abs(c), s / k);
}

TEST(Correlation, SelfAndSampleCorrelation) {
  const int64_t n = 50, d = 8;
  auto x = random_matrix(n, d, 4);
  auto f = feature_correlation(x.data(), n, d);
  for (int64_t a = 0; a < d; ++a) {
    EXPECT_NEAR(f[size_t(a * d + a)], 1.0, 1e-12);
    for (int64_t b = 0; b < d; ++b) EXPECT_NEAR(f[size_t(a * d + b)], f[size_t(b * d + a)], 1e-12);
  }
  auto s = sample_correlation(x.data(), n, d);
  // Row 0 vs row 1 by hand.
  double m0 = 0, m1 = 0;
  for (int64_t j = 0; j < d; ++j) m0 += x[size_t(j)], m1 += x[size_t(d + j)];
  m0 /= d;
  m1 /= d;
  double s01 = 0, s00 = 0, s11 = 0;
  for (int64_t j = 0; j < d; ++j) {
    double u = x[size_t(j)] - m0, v = x[size_t(d + j)] - m1;
    s01 += u * v, s00 += u * u, s11 += v * v;
  }
  EXPECT_NEAR(s[1], s01 / std::sqrt(s00 * s11), 1e-9);
  // A layer's mean |r| with itself is over its distinct pairs of units: the mean of the
  // off-diagonal entries, not pulled toward 1 by the diagonal.
  double off = 0;
  for (int64_t a = 0; a < d; ++a)
    for (int64_t b = 0; b < d; ++b)
      if (a != b) off += std::abs(f[size_t(a * d + b)]);
  EXPECT_NEAR(mean_abs(f, d), off / double(d * (d - 1)), 1e-12);
  EXPECT_LT(mean_abs(f, d), mean_abs(f));
  EXPECT_THROW(mean_abs(f, d + 1), gl::Error);
  EXPECT_THROW(pearson_cross(x.data(), 1, d, x.data(), d), gl::Error);
}

// ---------------------------------------------------------------- PCA

TEST(Pca, ClosedFormCrossDesign) {
  // Points +-a u, +-b v (u, v orthonormal in 5-D): covariance 2a^2/3 u u^T + 2b^2/3 v v^T, so
  // explained variances are 2a^2/3 and 2b^2/3 along u and v, ratio a^2 / (a^2 + b^2).
  const double a = 3, b = 1.5, th = 0.4;
  const double u[5] = {std::cos(th), std::sin(th), 0, 0, 0},
               v[5] = {-std::sin(th), std::cos(th), 0, 0, 0};
  std::vector<float> x;
  const double off[5] = {1, -2, 3, 0.5, 7};  // a mean that PCA must remove
  for (double s : {a, -a})
    for (int f = 0; f < 5; ++f) x.push_back(float(off[f] + s * u[f]));
  for (double s : {b, -b})
    for (int f = 0; f < 5; ++f) x.push_back(float(off[f] + s * v[f]));
  auto r = pca(x.data(), 4, 5, 2);
  EXPECT_NEAR(r.explained_variance[0], 2 * a * a / 3, 1e-5);
  EXPECT_NEAR(r.explained_variance[1], 2 * b * b / 3, 1e-5);
  EXPECT_NEAR(r.explained_variance[2], 0, 1e-5);
  EXPECT_NEAR(r.explained_variance_ratio[0], a * a / (a * a + b * b), 1e-6);
  EXPECT_NEAR(std::abs(r.axes[0] * u[0] + r.axes[1] * u[1]), 1.0, 1e-6);
  EXPECT_NEAR(std::abs(r.projection[0]), a, 1e-5);  // first point sits at +-a on PC1
  EXPECT_NEAR(r.projection[1], 0, 1e-5);
}

TEST(Pca, MatchesSklearn) {
  if (!have_sklearn()) GTEST_SKIP() << "scikit-learn not installed for /usr/bin/python3";
  TempDir t;
  const int64_t n = 200, d = 12;
  auto x = random_matrix(n, d, 9);
  for (int64_t i = 0; i < n; ++i) x[size_t(i * d + 3)] += 2 * x[size_t(i * d)];
  write_raw(t.path / "x.f32", x.data(), x.size() * 4);
  std::string cmd =
      "/usr/bin/python3 -c \"import numpy as np; from sklearn.decomposition import PCA; "
      "x=np.fromfile('" +
      (t.path / "x.f32").string() + "',dtype=np.float32).reshape(" + std::to_string(n) + "," +
      std::to_string(d) +
      ").astype(np.float64); p=PCA().fit(x); print(' '.join(repr(v) for v in "
      "p.explained_variance_))\"";
  std::string out = run_cmd(cmd);
  std::istringstream is(out);
  auto r = pca(x.data(), n, d, 2);
  for (int64_t k = 0; k < d; ++k) {
    double v;
    ASSERT_TRUE(is >> v) << out;
    EXPECT_NEAR(r.explained_variance[size_t(k)], v, 1e-6 * std::max(1.0, v)) << k;
  }
}

TEST(Correlation, PairsOfLayersMatchPearsonCross) {
  const int64_t n = 120;
  const std::vector<int64_t> widths{9, 4, 6};
  std::vector<std::vector<float>> layers;
  for (size_t a = 0; a < widths.size(); ++a)
    layers.push_back(random_matrix(n, widths[a], unsigned(20 + a)));
  for (int64_t i = 0; i < n; ++i) layers[1][size_t(i * 4 + 2)] = 1.5f;  // a dead unit
  std::vector<const float*> ptrs;
  for (auto& l : layers) ptrs.push_back(l.data());
  auto pairs = pearson_pairs(ptrs, n, widths);
  ASSERT_EQ(pairs.size(), 6u);
  size_t p = 0;
  for (size_t a = 0; a < widths.size(); ++a)
    for (size_t b = a; b < widths.size(); ++b, ++p) {
      auto want = pearson_cross(ptrs[a], n, widths[a], ptrs[b], widths[b]);
      ASSERT_EQ(pairs[p].size(), want.size()) << a << "," << b;
      for (size_t t = 0; t < want.size(); ++t) {
        if (std::isnan(want[t]))
          EXPECT_TRUE(std::isnan(pairs[p][t])) << a << "," << b << " " << t;
        else
          EXPECT_EQ(pairs[p][t], want[t]) << a << "," << b << " " << t;
      }
    }
  EXPECT_THROW(pearson_pairs(ptrs, 1, widths), gl::Error);
}

// ---------------------------------------------------------------- t-SNE

TEST(Tsne, CalibratedRowHasTargetPerplexity) {
  std::vector<double> d2;
  for (int i = 0; i < 90; ++i) d2.push_back(0.3 * i + 0.01 * i * i);
  std::vector<double> p(d2.size());
  calibrate_row(d2.data(), int64_t(d2.size()), 30.0, p.data());
  double h = 0, s = 0;
  for (double v : p) {
    s += v;
    if (v > 0) h -= v * std::log(v);
  }
  EXPECT_NEAR(s, 1.0, 1e-12);
  EXPECT_NEAR(std::exp(h), 30.0, 30.0 * 1e-4);
}

TEST(Tsne, KnnMatchesBruteForce) {
  const int64_t n = 700, d = 9, k = 12;
  auto x = random_matrix(n, d, 5);
  std::vector<int64_t> idx;
  std::vector<double> d2;
  knn_exact(x.data(), n, d, k, idx, d2);
  for (int64_t i = 0; i < n; i += 37) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      double s = 0;
      for (int64_t f = 0; f < d; ++f)
        s += std::pow(double(x[size_t(i * d + f)]) - x[size_t(j * d + f)], 2);
      all.emplace_back(s, j);
    }
    std::sort(all.begin(), all.end());
    for (int64_t c = 0; c < k; ++c) {
      EXPECT_EQ(idx[size_t(i * k + c)], all[size_t(c)].second);
      EXPECT_NEAR(d2[size_t(i * k + c)], all[size_t(c)].first, 1e-9);
    }
  }
}

TEST(Tsne, TrustworthinessOfIdentityAndOfShuffle) {
  const int64_t n = 300;
  auto x = random_matrix(n, 2, 6);
  std::vector<double> y(x.begin(), x.end());
  EXPECT_NEAR(trustworthiness(x.data(), n, 2, y.data(), 2, 10), 1.0, 1e-12);
  // A random embedding scores about 0.5 (expected rank n/2 for foreign neighbours).
  auto r = random_matrix(n, 2, 7);
  std::vector<double> yr(r.begin(), r.end());
  double t = trustworthiness(x.data(), n, 2, yr.data(), 2, 10);
  EXPECT_LT(t, 0.65);
  EXPECT_GT(t, 0.35);
}

TEST(Tsne, TrustworthinessMatchesSklearn) {
  if (!have_sklearn()) GTEST_SKIP() << "scikit-learn not installed for /usr/bin/python3";
  TempDir t;
  const int64_t n = 400, d = 10;
  auto x = random_matrix(n, d, 11);
  auto y32 = random_matrix(n, 2, 12);
  for (int64_t i = 0; i < n; ++i) y32[size_t(2 * i)] += x[size_t(i * d)] * 2;  // partly faithful
  std::vector<double> y(y32.begin(), y32.end());
  write_raw(t.path / "x.f32", x.data(), x.size() * 4);
  write_raw(t.path / "y.f64", y.data(), y.size() * 8);
  std::string cmd =
      "/usr/bin/python3 -c \"import numpy as np; from sklearn.manifold import trustworthiness; "
      "x=np.fromfile('" +
      (t.path / "x.f32").string() + "',dtype=np.float32).reshape(-1," + std::to_string(d) +
      ").astype(np.float64); y=np.fromfile('" + (t.path / "y.f64").string() +
      "').reshape(-1,2); print(repr(trustworthiness(x,y,n_neighbors=10)))\"";
  std::string out = run_cmd(cmd);
  double want = std::stod(out);
  EXPECT_NEAR(trustworthiness(x.data(), n, d, y.data(), 2, 10), want, 1e-9) << out;
}

// Share of points whose nearest embedded neighbour comes from the same blob.
double same_blob_share(const TsneResult& r, const std::vector<int>& labels) {
  const int64_t n = r.n;
  std::vector<float> e(r.embedding.begin(), r.embedding.end());
  std::vector<int64_t> idx;
  std::vector<double> d2;
  knn_exact(e.data(), n, 2, 1, idx, d2);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) same += labels[size_t(i)] == labels[size_t(idx[size_t(i)])];
  return double(same) / double(n);
}

TEST(Tsne, ExactAndBarnesHutSeparateClusters) {
  std::vector<int> labels;
  auto x = blobs(5, 60, 20, 4.0, labels, 8);
  const int64_t n = int64_t(labels.size());
  for (std::string method : {"exact", "barnes_hut"}) {
    TsneOptions o;
    o.method = method;
    o.perplexity = 20;
    o.iterations = 500;
    auto r = tsne(x.data(), n, 20, o);
    EXPECT_EQ(r.method, method);
    double t = trustworthiness(x.data(), n, 20, r.embedding.data(), 2, 10);
    EXPECT_GT(t, 0.9) << method;
    EXPECT_GE(same_blob_share(r, labels), 0.98) << method;
    EXPECT_TRUE(std::isfinite(r.kl_divergence));
    EXPECT_LT(r.kl_divergence, 2.0) << method;
  }
}

// Naive f64 repulsion: sum_{j != i} w^2 (y_i - y_j) and Z.
double naive_repulsion(const std::vector<double>& y, int64_t n, std::vector<double>& f) {
  f.assign(size_t(2 * n), 0.0);
  double z = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const double dx = y[size_t(2 * i)] - y[size_t(2 * j)],
                   dy = y[size_t(2 * i + 1)] - y[size_t(2 * j + 1)];
      const double w = 1 / (1 + dx * dx + dy * dy);
      z += w;
      f[size_t(2 * i)] += w * w * dx;
      f[size_t(2 * i + 1)] += w * w * dy;
    }
  return z;
}

// A 2-D layout like t-SNE's: tight clusters of very different sizes, a few exact duplicates.
std::vector<double> clustered_layout(int64_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd;
  std::vector<double> y;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % 7;
    y.push_back(10.0 * double(c % 3) + (0.2 + c) * 0.3 * nd(g));
    y.push_back(12.0 * double(c / 3) + (0.2 + c) * 0.3 * nd(g));
  }
  for (int64_t i = 0; i < 5; ++i) {  // duplicates of point 0
    y[size_t(2 * (n - 1 - i))] = y[0];
    y[size_t(2 * (n - 1 - i) + 1)] = y[1];
  }
  return y;
}

// tsne_repulsion against the naive sums on a clustered layout of n points: the relative error
// of Z and of the force field as a whole (single forces near zero vary more).
std::pair<double, double> repulsion_errors(int64_t n, double theta, unsigned seed) {
  auto y = clustered_layout(n, seed);
  std::vector<double> want, got(size_t(2 * n));
  const double z_want = naive_repulsion(y, n, want);
  const double z = tsne_repulsion(y.data(), n, theta, got.data());
  double err = 0, norm = 0;
  for (size_t t = 0; t < want.size(); ++t) {
    err += (got[t] - want[t]) * (got[t] - want[t]);
    norm += want[t] * want[t];
  }
  return {std::abs(z - z_want) / z_want, std::sqrt(err / norm)};
}

TEST(Tsne, BarnesHutRepulsionWithThetaZeroIsExact) {
  auto [z_err, f_err] = repulsion_errors(700, 0.0, 3);
  EXPECT_LT(z_err, 1e-5);
  EXPECT_LT(f_err, 1e-5);
}

TEST(Tsne, BarnesHutRepulsionApproximatesWithinOnePercent) {
  auto [z_err, f_err] = repulsion_errors(3000, 0.5, 4);
  EXPECT_LT(z_err, 1e-2);
  EXPECT_LT(f_err, 1e-2);
  EXPECT_GT(f_err, 0.0);  // theta 0.5 does summarize cells
}

TEST(Tsne, BarnesHutDoesNotDependOnThreadCount) {
  std::vector<int> labels;
  auto x = blobs(6, 250, 16, 4.0, labels, 9);
  const int64_t n = int64_t(labels.size());
  TsneOptions o;
  o.method = "barnes_hut";
  o.iterations = 300;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = tsne(x.data(), n, 16, o);
  omp_set_num_threads(2);
  auto two = tsne(x.data(), n, 16, o);
  omp_set_num_threads(saved);
  ASSERT_EQ(one.embedding.size(), two.embedding.size());
  for (size_t t = 0; t < one.embedding.size(); ++t)
    ASSERT_EQ(one.embedding[t], two.embedding[t]) << t;
  EXPECT_EQ(one.kl_divergence, two.kl_divergence);
}

TEST(Tsne, BarnesHutKeepsManyClustersTrustworthy) {
  std::vector<int> labels;
  auto x = blobs(10, 200, 30, 3.0, labels, 10);
  const int64_t n = int64_t(labels.size());
  TsneOptions o;
  o.method = "barnes_hut";
  auto r = tsne(x.data(), n, 30, o);
  EXPECT_GT(trustworthiness(x.data(), n, 30, r.embedding.data(), 2, 10), 0.9);
  EXPECT_GE(same_blob_share(r, labels), 0.98);
}

TEST(Tsne, RejectsTooFewExamples) {
  auto x = random_matrix(50, 3, 1);
  EXPECT_THROW(tsne(x.data(), 50, 3, {}), gl::Error);  // perplexity 30 needs > 90
}

// ---------------------------------------------------------------- augmentation

TEST(Augment, DeterministicAndIdentityExact) {
  const int64_t h = 28, w = 28;
  std::vector<uint8_t> img(static_cast<size_t>(h * w));
  for (size_t i = 0; i < img.size(); ++i) img[i] = uint8_t((i * 37) % 256);
  gl::data::AugmentOptions o;
  o.seed = 5;
  std::vector<float> a(static_cast<size_t>(h * w)), b(static_cast<size_t>(h * w)),
      c(static_cast<size_t>(h * w));
  gl::data::augment_image(img.data(), 1, h, w, o, 17, a.data());
  gl::data::augment_image(img.data(), 1, h, w, o, 3, c.data());
  gl::data::augment_image(img.data(), 1, h, w, o, 17, b.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  gl::data::warp_affine(img.data(), 1, h, w, {}, a.data());
  for (size_t i = 0; i < img.size(); ++i) EXPECT_FLOAT_EQ(a[i], img[i] / 255.0f);
  // Translation by exactly 2 pixels right and 1 down.
  gl::data::AffineParams p;
  p.tx = 2.0 / w;
  p.ty = 1.0 / h;
  gl::data::warp_affine(img.data(), 1, h, w, p, a.data());
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      float want = (y >= 1 && x >= 2) ? img[size_t((y - 1) * w + x - 2)] / 255.0f : 0.0f;
      EXPECT_NEAR(a[size_t(y * w + x)], want, 1e-6);
    }
  // Rotation by 90 degrees about the centre of a 28 x 28 grid maps pixels onto pixels.
  p = {};
  p.angle_rad = std::numbers::pi / 2;
  gl::data::warp_affine(img.data(), 1, h, w, p, a.data());
  // out(y, x) = in at inverse rotation: src_x = y, src_y = w - 1 - x.
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      EXPECT_NEAR(a[size_t(y * w + x)], img[size_t((w - 1 - x) * w + y)] / 255.0f, 1e-5);
}

TEST(Augment, ParametersStayInRange) {
  gl::data::AugmentOptions o;
  for (uint64_t i = 0; i < 200; ++i) {
    auto p = gl::data::sample_affine(o, i);
    EXPECT_LE(std::abs(p.angle_rad), o.rotation_deg * std::numbers::pi / 180 + 1e-12);
    EXPECT_LE(std::abs(p.tx), o.translate);
    EXPECT_GE(p.scale, o.scale_min);
    EXPECT_LE(p.scale, o.scale_max);
  }
}

TEST(Augment, VarianceRatioByHand) {
  // aug rows vary by +-1 (var 4/3 over 4 rows... computed), data by +-2.
  std::vector<float> aug = {1, 5, -1, 5, 1, 5, -1, 5}, data = {2, 0, -2, 0, 2, 1, -2, 3};
  auto r = variance_ratio(aug.data(), 4, data.data(), 4, 2);
  EXPECT_NEAR(r[0], (4.0 / 3) / (16.0 / 3), 1e-12);
  EXPECT_NEAR(r[1], 0.0, 1e-12);  // constant across augmentations
}

// ---------------------------------------------------------------- neurons

TEST(Neurons, ClassMeansSelectivityTopK) {
  // Unit 0 fires only for class 1; unit 1 equally for all.
  std::vector<float> acts = {0, 1, 4, 1, 0, 1, 6, 1, 0, 1, 2, 1};
  std::vector<int64_t> labels = {0, 1, 2, 1, 0, 1};
  auto s = neuron_stats(acts.data(), 6, 2, labels.data(), 3, 2);
  EXPECT_DOUBLE_EQ(s.class_mean[0 * 3 + 1], 4.0);
  EXPECT_DOUBLE_EQ(s.class_mean[0 * 3 + 0], 0.0);
  EXPECT_EQ(s.preferred[0], 1);
  EXPECT_DOUBLE_EQ(s.selectivity[0], 1.0);  // (4 - 0) / (4 + 0)
  EXPECT_DOUBLE_EQ(s.selectivity[1], 0.0);
  EXPECT_EQ(s.top[0], 3);  // 6 at row 3, then 4 at row 1
  EXPECT_EQ(s.top[1], 1);
}

// ---------------------------------------------------------------- end to end

class AnalyzeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fs::create_directories(dir_->path / "data");
    fs::create_directory_symlink(fs::path(GRADLENS_TEST_DATA) / "mnist-tiny",
                                 dir_->path / "data" / "mnist");
    int st = 0;
    std::string out = run_cmd(std::string(GRADLENS_BINARY) + " train --dataset mnist --data-dir " +
                                  (dir_->path / "data").string() + " --hidden 32,16 --epochs 2 " +
                                  "--lr 0.05 --no-progress --analyze corr --out " + run(),
                              &st);
    ASSERT_EQ(st, 0) << out;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string run() { return (dir_->path / "run").string(); }
  static std::string analyze(const std::string& args, int* st) {
    return run_cmd(std::string(GRADLENS_BINARY) + " analyze " + args, st);
  }
  static TempDir* dir_;
};
TempDir* AnalyzeCli::dir_ = nullptr;

TEST_F(AnalyzeCli, TrainingCorrCallbackRecordsEveryEpoch) {
  std::ifstream f(run() + "/analysis/corr_means.json");
  ASSERT_TRUE(f.good());
  auto j = nlohmann::json::parse(f);
  EXPECT_EQ(j["epochs"], nlohmann::json({0, 1, 2}));
  ASSERT_TRUE(j["pairs"].contains("h0-h1"));
  EXPECT_EQ(j["pairs"]["h0-h1"].size(), 3u);
  // The saved matrix agrees with its recorded mean.
  auto m = read_npy(run() + "/analysis/corr_epochs/e2_h0_h1.npy");
  EXPECT_EQ(m.shape, (std::vector<int64_t>{32, 16}));
  double s = 0;
  int k = 0;
  for (double v : m.values)
    if (!std::isnan(v)) s += std::abs(v), ++k;
  EXPECT_NEAR(s / k, j["pairs"]["h0-h1"][2].get<double>(), 1e-6);
}

// The last record reuses the activations of the trainer's final evaluation; the offline
// analysis captures them afresh from the saved model. Both must give the same matrices.
TEST_F(AnalyzeCli, TrainingCorrMatchesOfflineCorrOfTheFinalModel) {
  int st = 0;
  const std::string dd = " --data-dir " + (dir_->path / "data").string();
  std::string out = analyze(run() + " corr --layers h0,h1 --quiet --no-activations" + dd, &st);
  ASSERT_EQ(st, 0) << out;
  for (const char* pair : {"h0_h0", "h0_h1", "h1_h1"}) {
    auto during = read_npy(run() + "/analysis/corr_epochs/e2_" + pair + ".npy");
    auto offline = read_npy(run() + "/analysis/corr_" + pair + ".npy");
    ASSERT_EQ(during.shape, offline.shape) << pair;
    for (size_t t = 0; t < during.values.size(); ++t) {
      if (std::isnan(offline.values[t])) {
        EXPECT_TRUE(std::isnan(during.values[t])) << pair << " " << t;
        continue;
      }
      EXPECT_NEAR(during.values[t], offline.values[t], 1e-6) << pair << " " << t;
    }
  }
}

TEST_F(AnalyzeCli, AllAnalysesWriteFilesAndReport) {
  int st = 0;
  std::string out = analyze(run() +
                                " all --examples 150 --augmentations 40 --iterations 300 "
                                "--data-dir " +
                                (dir_->path / "data").string(),
                            &st);
  ASSERT_EQ(st, 0) << out;
  for (auto f :
       {"corr.json", "corr_h0_h1.npy", "pca_h1.json", "pca_h1.npy", "tsne_h0.npy", "tsne_h0.json",
        "augment.json", "augment_images.npy", "augment_samplecorr_h1.npy", "neurons_h0.json",
        "neurons_classmean_h1.npy", "neurons_weights_h0.npy", "activations_h0.npy"})
    EXPECT_TRUE(fs::exists(run() + "/analysis/" + f)) << f;
  auto a = read_npy(run() + "/analysis/activations_h0.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{150, 32}));
  out = run_cmd(std::string(GRADLENS_BINARY) + " report " + run(), &st);
  ASSERT_EQ(st, 0) << out;
  std::ifstream f(run() + "/report.html");
  std::string html((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (auto s : {"Representations", "Layer cross-correlation", "PCA", "t-SNE",
                 "Augmentation invariance", "Neurons"})
    EXPECT_NE(html.find(s), std::string::npos) << s;
}

TEST_F(AnalyzeCli, BadRequestsGiveOneLineErrors) {
  auto one_line_error = [](const std::string& args, const std::string& needle) {
    int st = 0;
    std::string out = analyze(args, &st);
    EXPECT_NE(st, 0) << args;
    EXPECT_NE(out.find(needle), std::string::npos) << args << "\n" << out;
    EXPECT_LE(std::count(out.begin(), out.end(), '\n'), 1) << out;
  };
  const std::string dd = " --data-dir " + (dir_->path / "data").string();
  one_line_error(run() + " corr --layers h7" + dd, "no layer 'h7'");
  one_line_error(run() + " pca --examples 5000" + dd, "has only 200 examples");
  fs::create_directories(dir_->path / "empty");
  std::ofstream((dir_->path / "empty" / "config.json").string()) << "{}";
  one_line_error((dir_->path / "empty").string() + " pca", "no model.safetensors");
  one_line_error((dir_->path / "missing").string() + " pca", "does not exist");
  // Values that hung (a batch of 0) or failed deep inside with another message.
  one_line_error(run() + " corr --batch-size 0" + dd,
                 "--batch-size: expected an integer from 1 to");
  one_line_error(run() + " corr --examples -1" + dd, "--examples: expected an integer from 0 to");
  one_line_error(run() + " neurons --top-k -1" + dd, "--top-k: expected an integer from 1 to");
  one_line_error(run() + " tsne --iterations -1" + dd,
                 "--iterations: expected an integer from 1 to");
  one_line_error(run() + " tsne --theta nan" + dd, "--theta must be a number >= 0");
  one_line_error(run() + " tsne --perplexity inf" + dd, "--perplexity must be a positive");
  // A perplexity too large for the examples: the bound as a number, not an overflowed integer.
  one_line_error(run() + " tsne --perplexity 1e300" + dd,
                 "perplexity 1e+300 needs more than 3 x perplexity = 3e+300 examples");
  one_line_error(run() + " augment --augmentations 1" + dd,
                 "--augmentations: expected an integer from 2 to");
  one_line_error(run() + " augment --image 99999" + dd, "--image: example 99999 is out of range");
  // More augmentations than memory holds: named by the flag, not by the allocator alone.
  one_line_error(
      run() + " augment --augmentations 100000000000" + dd,
      "--augmentations 100000000000: 100000000000 augmented 784-value images do not fit");
  // Values that were taken without a word: a negative class (all classes), an empty list,
  // a layer twice, --indices beside --examples, a t-SNE setting without t-SNE.
  one_line_error(run() + " pca --class -1" + dd, "--class: expected an integer from 0 to");
  one_line_error(run() + " pca --indices ''" + dd, "--indices: give at least one");
  one_line_error(run() + " pca --layers ''" + dd, "--layers: give at least one");
  one_line_error(run() + " pca --layers h0,h0" + dd, "h0 is listed twice");
  one_line_error(run() + " pca --indices 1,2 --examples 5" + dd, "without --examples");
  one_line_error(run() + " corr --perplexity 5" + dd, "--perplexity is a t-SNE setting");
}
