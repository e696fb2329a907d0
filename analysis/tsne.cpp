// tsne.cpp: t-SNE optimizer. Exact gradients for small n; Barnes-Hut repulsion with a quadtree
// built by recursive in-place partitioning of the point indices (leaves hold one point, or
// several exact duplicates), summarized when cell width / distance < theta. Per-point force
// sums run on OpenMP threads; results do not depend on the thread count.
#include "analysis/tsne.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "analysis/pca.h"
#include "engine/core.h"
#include "engine/generator.h"
#include "kernels/kernels.h"

namespace gl::analysis {

double calibrate_row(const double* dist2, int64_t k, double perplexity, double* p) {
  const double target = std::log(perplexity);
  double dmin = std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < k; ++j) dmin = std::min(dmin, dist2[j]);
  double beta = 1.0, lo = -std::numeric_limits<double>::infinity(),
         hi = std::numeric_limits<double>::infinity();
  for (int step = 0; step < 200; ++step) {
    double sum = 0, wsum = 0;
    for (int64_t j = 0; j < k; ++j) {
      // Shifting by the nearest distance keeps exp() in range; it cancels in p.
      p[j] = std::exp(-(dist2[j] - dmin) * beta);
      sum += p[j];
      wsum += (dist2[j] - dmin) * p[j];
    }
    double entropy = std::log(sum) + beta * wsum / sum;
    for (int64_t j = 0; j < k; ++j) p[j] /= sum;
    double diff = entropy - target;
    if (std::abs(diff) <= 1e-5) break;
    if (diff > 0) {  // too flat: sharpen
      lo = beta;
      beta = std::isinf(hi) ? beta * 2 : (beta + hi) / 2;
    } else {
      hi = beta;
      beta = std::isinf(lo) ? beta / 2 : (beta + lo) / 2;
    }
  }
  return beta;
}

void knn_exact(const float* x, int64_t n, int64_t d, int64_t k, std::vector<int64_t>& index,
               std::vector<double>& dist2) {
  GL_CHECK(k >= 1 && k < n, "knn: {} neighbours asked of {} examples", k, n);
  std::vector<float> sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[i * d + j]) * x[i * d + j];
    sq[i] = float(s);
  }
  index.assign(static_cast<size_t>(n * k), 0);
  dist2.assign(static_cast<size_t>(n * k), 0.0);
  const int64_t block = 512;
  // Candidates by f32 distances (an extra margin of neighbours absorbs rounding), then the
  // final order from exact f64 distances.
  const int64_t cand = std::min(n - 1, k + 8);
  std::vector<float> g(static_cast<size_t>(block * n));
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t rows = std::min(block, n - b0);
    kernels::cpu::sgemm(false, true, rows, n, d, 1.0f, x + b0 * d, d, x, d, 0.0f, g.data(), n);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = b0 + r;
      std::vector<std::pair<float, int64_t>> all;
      all.reserve(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j)
        if (j != i) all.emplace_back(sq[i] + sq[j] - 2 * g[size_t(r * n + j)], j);
      std::nth_element(all.begin(), all.begin() + (cand - 1), all.end());
      std::vector<std::pair<double, int64_t>> best;
      for (int64_t c = 0; c < cand; ++c) {
        int64_t j = all[c].second;
        double s = 0;
        for (int64_t f = 0; f < d; ++f) {
          double t = double(x[i * d + f]) - x[j * d + f];
          s += t * t;
        }
        best.emplace_back(s, j);
      }
      std::sort(best.begin(), best.end());
      for (int64_t c = 0; c < k; ++c) {
        index[size_t(i * k + c)] = best[c].second;
        dist2[size_t(i * k + c)] = best[c].first;
      }
    }
  }
}

namespace {

struct Sparse {  // CSR
  std::vector<int64_t> row_ptr, col;
  std::vector<double> val;
};

// Quadtree over the current embedding. Node i covers perm[begin, end).
struct QuadTree {
  struct Node {
    double cx = 0, cy = 0;  // centre of mass
    double width = 0;       // side of the square cell
    int64_t begin = 0, end = 0;
    int32_t child[4] = {-1, -1, -1, -1};
    bool leaf = true;
  };
  std::vector<Node> nodes;
  std::vector<int64_t> perm;
  const double* y = nullptr;

  void build(const double* pts, int64_t n) {
    y = pts;
    perm.resize(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    double x0 = pts[0], x1 = pts[0], y0 = pts[1], y1 = pts[1];
    for (int64_t i = 0; i < n; ++i) {
      x0 = std::min(x0, pts[2 * i]);
      x1 = std::max(x1, pts[2 * i]);
      y0 = std::min(y0, pts[2 * i + 1]);
      y1 = std::max(y1, pts[2 * i + 1]);
    }
    double w = std::max(x1 - x0, y1 - y0) * (1 + 1e-9) + 1e-12;
    nodes.clear();
    nodes.reserve(static_cast<size_t>(2 * n + 16));
    make(0, n, (x0 + x1) / 2, (y0 + y1) / 2, w, 0);
  }

  int32_t make(int64_t begin, int64_t end, double mx, double my, double w, int depth) {
    const int32_t id = int32_t(nodes.size());
    nodes.emplace_back();
    double sx = 0, sy = 0;
    bool same = true;
    for (int64_t t = begin; t < end; ++t) {
      sx += y[2 * perm[t]];
      sy += y[2 * perm[t] + 1];
      if (y[2 * perm[t]] != y[2 * perm[begin]] || y[2 * perm[t] + 1] != y[2 * perm[begin] + 1])
        same = false;
    }
    Node nd;
    nd.begin = begin;
    nd.end = end;
    nd.width = w;
    nd.cx = sx / double(end - begin);
    nd.cy = sy / double(end - begin);
    nd.leaf = end - begin <= 1 || same || depth > 60;
    nodes[size_t(id)] = nd;
    if (nd.leaf) return id;
    auto* p = perm.data();
    auto left = std::partition(p + begin, p + end, [&](int64_t i) { return y[2 * i] < mx; });
    auto lb = std::partition(p + begin, left, [&](int64_t i) { return y[2 * i + 1] < my; });
    auto rb = std::partition(left, p + end, [&](int64_t i) { return y[2 * i + 1] < my; });
    const int64_t cut[5] = {begin, lb - p, left - p, rb - p, end};
    const double q = w / 4;
    const double ox[4] = {mx - q, mx - q, mx + q, mx + q}, oy[4] = {my - q, my + q, my - q, my + q};
    for (int c = 0; c < 4; ++c)
      if (cut[c + 1] > cut[c]) {
        int32_t ch = make(cut[c], cut[c + 1], ox[c], oy[c], w / 2, depth + 1);
        nodes[size_t(id)].child[c] = ch;
      }
    nodes[size_t(id)].leaf = false;
    return id;
  }

  // Unnormalized repulsion on point i: sum over j of w_ij^2 (y_i - y_j), and sum of w_ij.
  void repulsion(int64_t i, double theta2, double& fx, double& fy, double& zsum,
                 std::vector<int32_t>& stack) const {
    const double xi = y[2 * i], yi = y[2 * i + 1];
    stack.clear();
    stack.push_back(0);
    while (!stack.empty()) {
      const Node& nd = nodes[size_t(stack.back())];
      stack.pop_back();
      const double dx = xi - nd.cx, dy = yi - nd.cy, dist2 = dx * dx + dy * dy;
      const double count = double(nd.end - nd.begin);
      if (nd.leaf) {
        for (int64_t t = nd.begin; t < nd.end; ++t) {
          const int64_t j = perm[size_t(t)];
          if (j == i) continue;
          const double ex = xi - y[2 * j], ey = yi - y[2 * j + 1];
          const double w = 1.0 / (1.0 + ex * ex + ey * ey);
          zsum += w;
          fx += w * w * ex;
          fy += w * w * ey;
        }
      } else if (nd.width * nd.width < theta2 * dist2) {
        const double w = 1.0 / (1.0 + dist2);
        zsum += count * w;
        fx += count * w * w * dx;
        fy += count * w * w * dy;
      } else {
        for (int c = 0; c < 4; ++c)
          if (nd.child[c] >= 0) stack.push_back(nd.child[c]);
      }
    }
  }
};

// Exact joint P [n, n] from squared distances.
std::vector<double> joint_p_exact(const float* x, int64_t n, int64_t d, double perplexity) {
  std::vector<double> dist(static_cast<size_t>(n * n)), p(static_cast<size_t>(n * n), 0.0);
  std::vector<double> xd(x, x + n * d), sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t f = 0; f < d; ++f) s += xd[size_t(i * d + f)] * xd[size_t(i * d + f)];
    sq[i] = s;
  }
  kernels::cpu::dgemm(false, true, n, n, d, -2.0, xd.data(), d, xd.data(), d, 0.0, dist.data(), n);
#pragma omp parallel
  {
    std::vector<double> row(static_cast<size_t>(n - 1)), pr(static_cast<size_t>(n - 1));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      int64_t c = 0;
      for (int64_t j = 0; j < n; ++j)
        if (j != i) row[c++] = std::max(0.0, dist[size_t(i * n + j)] + sq[i] + sq[j]);
      calibrate_row(row.data(), n - 1, perplexity, pr.data());
      c = 0;
      for (int64_t j = 0; j < n; ++j)
        if (j != i) p[size_t(i * n + j)] = pr[c++];
    }
  }
  std::vector<double> joint(static_cast<size_t>(n * n));
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) total += p[size_t(i * n + j)] + p[size_t(j * n + i)];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      joint[size_t(i * n + j)] =
          i == j ? 0.0 : std::max((p[size_t(i * n + j)] + p[size_t(j * n + i)]) / total, 1e-12);
  return joint;
}

Sparse joint_p_sparse(const float* x, int64_t n, int64_t d, double perplexity) {
  const int64_t k = std::min<int64_t>(n - 1, int64_t(3 * perplexity + 1));
  std::vector<int64_t> idx;
  std::vector<double> dist2, cond(static_cast<size_t>(n * k));
  knn_exact(x, n, d, k, idx, dist2);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    calibrate_row(dist2.data() + i * k, k, perplexity, cond.data() + i * k);
  // P + P^T over the union of both neighbour lists, normalized to sum 1.
  std::vector<std::vector<std::pair<int64_t, double>>> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < k; ++c) {
      int64_t j = idx[size_t(i * k + c)];
      double v = cond[size_t(i * k + c)];
      rows[size_t(i)].emplace_back(j, v);
      rows[size_t(j)].emplace_back(i, v);
    }
  Sparse s;
  s.row_ptr.push_back(0);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    auto& r = rows[size_t(i)];
    std::sort(r.begin(), r.end());
    for (size_t t = 0; t < r.size();) {
      size_t u = t;
      double v = 0;
      while (u < r.size() && r[u].first == r[t].first) v += r[u++].second;
      s.col.push_back(r[t].first);
      s.val.push_back(v);
      total += v;
      t = u;
    }
    s.row_ptr.push_back(int64_t(s.col.size()));
  }
  for (auto& v : s.val) v /= total;
  return s;
}

}  // namespace

TsneResult tsne(const float* x, int64_t n, int64_t d, const TsneOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  GL_CHECK(o.perplexity > 0 && double(n) > 3 * o.perplexity,
           "tsne: perplexity {} needs more than {} examples, got {}", o.perplexity,
           int64_t(3 * o.perplexity), n);
  GL_CHECK(o.method == "auto" || o.method == "exact" || o.method == "barnes_hut",
           "tsne: unknown method '{}' (exact | barnes_hut | auto)", o.method);
  for (int64_t t = 0; t < n * d; ++t)
    GL_CHECK(std::isfinite(x[t]), "tsne: input entry {} (example {}) is {}", t, t / d, x[t]);
  const bool exact = o.method == "exact" || (o.method == "auto" && n <= 1000);
  TsneResult r;
  r.n = n;
  r.method = exact ? "exact" : "barnes_hut";

  std::vector<double> P;
  Sparse S;
  if (exact)
    P = joint_p_exact(x, n, d, o.perplexity);
  else
    S = joint_p_sparse(x, n, d, o.perplexity);

  // Initial embedding.
  std::vector<double> y(static_cast<size_t>(2 * n));
  if (o.pca_init && d >= 2) {
    PcaResult pc = pca(x, n, d, 2);
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; ++i) m += pc.projection[size_t(2 * i)];
    m /= double(n);
    for (int64_t i = 0; i < n; ++i) v += std::pow(pc.projection[size_t(2 * i)] - m, 2);
    double sd = std::sqrt(v / double(n));
    double scale = sd > 0 ? 1e-4 / sd : 1.0;
    for (int64_t t = 0; t < 2 * n; ++t) y[size_t(t)] = pc.projection[size_t(t)] * scale;
  } else {
    Generator gen(o.seed);
    for (auto& v : y) v = 1e-4 * gen.normal();
  }

  const double lr =
      o.learning_rate > 0 ? o.learning_rate : std::max(double(n) / o.early_exaggeration / 4, 50.0);
  std::vector<double> grad(static_cast<size_t>(2 * n)), update(static_cast<size_t>(2 * n), 0.0),
      gains(static_cast<size_t>(2 * n), 1.0);
  QuadTree tree;
  std::vector<double> w;  // exact: kernel matrix
  if (exact) w.resize(static_cast<size_t>(n * n));
  const double theta2 = o.theta * o.theta;
  double last_z = 1.0;

  auto gradient = [&](double exaggeration) {
    if (exact) {
      double z = 0;
#pragma omp parallel for reduction(+ : z) schedule(static)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          if (i == j) {
            w[size_t(i * n + j)] = 0;
            continue;
          }
          double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
          double v = 1.0 / (1.0 + dx * dx + dy * dy);
          w[size_t(i * n + j)] = v;
          z += v;
        }
      last_z = z;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        double gx = 0, gy = 0;
        for (int64_t j = 0; j < n; ++j) {
          double v = w[size_t(i * n + j)];
          double m = (exaggeration * P[size_t(i * n + j)] - v / z) * v;
          gx += m * (y[2 * i] - y[2 * j]);
          gy += m * (y[2 * i + 1] - y[2 * j + 1]);
        }
        grad[size_t(2 * i)] = 4 * gx;
        grad[size_t(2 * i + 1)] = 4 * gy;
      }
      return;
    }
    tree.build(y.data(), n);
    std::vector<double> rep(static_cast<size_t>(2 * n));
    double z = 0;
#pragma omp parallel reduction(+ : z)
    {
      std::vector<int32_t> stack;
      stack.reserve(256);
#pragma omp for schedule(dynamic, 64)
      for (int64_t i = 0; i < n; ++i) {
        double fx = 0, fy = 0, zi = 0;
        tree.repulsion(i, theta2, fx, fy, zi, stack);
        rep[size_t(2 * i)] = fx;
        rep[size_t(2 * i + 1)] = fy;
        z += zi;
      }
    }
    last_z = z;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      double ax = 0, ay = 0;
      for (int64_t t = S.row_ptr[i]; t < S.row_ptr[i + 1]; ++t) {
        int64_t j = S.col[size_t(t)];
        double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
        double m = exaggeration * S.val[size_t(t)] / (1.0 + dx * dx + dy * dy);
        ax += m * dx;
        ay += m * dy;
      }
      grad[size_t(2 * i)] = 4 * (ax - rep[size_t(2 * i)] / z);
      grad[size_t(2 * i + 1)] = 4 * (ay - rep[size_t(2 * i + 1)] / z);
    }
  };

  for (int64_t it = 0; it < o.iterations; ++it) {
    const bool explore = it < o.exaggeration_iterations;
    const double momentum = explore ? 0.5 : 0.8;
    gradient(explore ? o.early_exaggeration : 1.0);
    for (int64_t t = 0; t < 2 * n; ++t) {
      double& g = gains[size_t(t)];
      g = (update[size_t(t)] * grad[size_t(t)] < 0) ? g + 0.2 : g * 0.8;
      g = std::max(g, 0.01);
      update[size_t(t)] = momentum * update[size_t(t)] - lr * g * grad[size_t(t)];
      y[size_t(t)] += update[size_t(t)];
    }
    if (o.verbose && (it + 1) % 100 == 0) fmt::print(stderr, "tsne: iteration {}\n", it + 1);
  }

  // KL(P || Q) of the final embedding.
  gradient(1.0);
  double kl = 0;
  if (exact) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        if (i != j) {
          double p = P[size_t(i * n + j)], q = std::max(w[size_t(i * n + j)] / last_z, 1e-300);
          kl += p * std::log(std::max(p, 1e-300) / q);
        }
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t t = S.row_ptr[i]; t < S.row_ptr[i + 1]; ++t) {
        int64_t j = S.col[size_t(t)];
        double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
        double q = 1.0 / (1.0 + dx * dx + dy * dy) / last_z;
        double p = S.val[size_t(t)];
        if (p > 0) kl += p * std::log(p / std::max(q, 1e-300));
      }
  }
  r.kl_divergence = kl;
  r.embedding = std::move(y);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

double trustworthiness(const float* x, int64_t n, int64_t d, const double* y, int64_t dy,
                       int64_t k) {
  GL_CHECK(k >= 1 && 2 * k < n, "trustworthiness: k = {} needs more than {} examples, got {}", k,
           2 * k, n);
  std::vector<float> ye(static_cast<size_t>(n * dy));
  for (int64_t t = 0; t < n * dy; ++t) ye[size_t(t)] = float(y[t]);
  std::vector<int64_t> emb_idx;
  std::vector<double> emb_d;
  knn_exact(ye.data(), n, dy, k, emb_idx, emb_d);
  std::vector<float> sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t f = 0; f < d; ++f) s += double(x[i * d + f]) * x[i * d + f];
    sq[i] = float(s);
  }
  const int64_t block = 512;
  std::vector<float> g(static_cast<size_t>(block * n));
  double penalty = 0;
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t rows = std::min(block, n - b0);
    kernels::cpu::sgemm(false, true, rows, n, d, 1.0f, x + b0 * d, d, x, d, 0.0f, g.data(), n);
#pragma omp parallel for reduction(+ : penalty) schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = b0 + r;
      std::vector<double> di(static_cast<size_t>(n));
      // Ranks only compare distances of one row, all computed the same way.
      for (int64_t j = 0; j < n; ++j)
        di[size_t(j)] = double(sq[i]) + sq[j] - 2.0 * g[size_t(r * n + j)];
      std::vector<double> sorted;
      sorted.reserve(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j)
        if (j != i) sorted.push_back(di[size_t(j)]);
      std::sort(sorted.begin(), sorted.end());
      for (int64_t c = 0; c < k; ++c) {
        int64_t j = emb_idx[size_t(i * k + c)];
        // Rank (1-based) of j among i's original neighbours: one past the number of strictly
        // closer points.
        int64_t rank = int64_t(std::lower_bound(sorted.begin(), sorted.end(), di[size_t(j)]) -
                               sorted.begin()) +
                       1;
        if (rank > k) penalty += double(rank - k);
      }
    }
  }
  return 1.0 - penalty * (2.0 / (double(n) * k * (2.0 * n - 3.0 * k - 1.0)));
}

}  // namespace gl::analysis
