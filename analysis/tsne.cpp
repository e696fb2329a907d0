// tsne.cpp: t-SNE optimizer. Exact gradients for small n. Barnes-Hut for large n, per iteration:
// a quadtree built by in-place partitioning of the f32 points (leaves of up to 8 points, points
// stored in tree order), then one interaction list per group of up to 32 neighbouring points
// (Barnes' grouped variant: a cell is summarized when width / distance < theta holds for every
// point of the group), evaluated by the AVX2 kernel of kernels/cpu/cauchy.h; the sparse
// attraction runs on the same OpenMP tasks. Every task writes only its own points and sums in
// a fixed order, so results do not depend on the thread count.
//
// Against scikit-learn and the earlier per-point f64 traversal on 10,000 activations:
// bench/results/tsne.md.
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
#include "kernels/cpu/cauchy.h"
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
#pragma omp parallel
    {
      std::vector<std::pair<float, int64_t>> heap;  // the `cand` closest so far, max on top
      std::vector<std::pair<double, int64_t>> best;
      heap.reserve(static_cast<size_t>(cand + 1));
#pragma omp for schedule(dynamic, 16)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = b0 + r;
        const float* gr = g.data() + r * n;
        heap.clear();
        for (int64_t j = 0; j < n; ++j) {
          if (j == i) continue;
          const std::pair<float, int64_t> e{sq[i] + sq[j] - 2 * gr[j], j};
          if (int64_t(heap.size()) < cand) {
            heap.push_back(e);
            std::push_heap(heap.begin(), heap.end());
          } else if (e < heap.front()) {
            std::pop_heap(heap.begin(), heap.end());
            heap.back() = e;
            std::push_heap(heap.begin(), heap.end());
          }
        }
        best.clear();
        for (const auto& e : heap) {
          const int64_t j = e.second;
          double s = 0;
          for (int64_t f = 0; f < d; ++f) {
            double t = double(x[i * d + f]) - x[j * d + f];
            s += t * t;
          }
          best.emplace_back(s, j);
        }
        std::sort(best.begin(), best.end());
        for (int64_t c = 0; c < k; ++c) {
          index[size_t(i * k + c)] = best[size_t(c)].second;
          dist2[size_t(i * k + c)] = best[size_t(c)].first;
        }
      }
    }
  }
}

namespace {

// Points per Barnes-Hut interaction list (QuadTree::groups).
// 16 to 128 measured within noise of each other on 10,000 MNIST-like activations.
constexpr int64_t kGroupSize = 32;

struct Sparse {  // CSR
  std::vector<int64_t> row_ptr, col;
  std::vector<double> val;
};

// Quadtree over the embedding. The points are copied into tree order, so every cell's points
// are contiguous (px/py[begin, begin + count)) and a cell's children are consecutive nodes.
// Leaves hold up to kLeafSize points (more only at depth 60, where f32 cannot tell them apart).
struct QuadTree {
  static constexpr int64_t kLeafSize = 8;
  struct Node {
    float cx = 0, cy = 0;  // centre of mass
    float width = 0;       // side of the square cell
    int32_t begin = 0, count = 0;
    int32_t first_child = -1, children = 0;  // children: nodes [first_child, + children)
  };
  std::vector<Node> nodes;
  std::vector<int32_t> perm;  // tree position -> point
  std::vector<float> px, py;  // coordinates in tree order

  void build(const double* y, int64_t n) {
    pts.resize(static_cast<size_t>(n));
    float x0 = float(y[0]), x1 = x0, y0 = float(y[1]), y1 = y0;
    for (int64_t i = 0; i < n; ++i) {
      Point& p = pts[size_t(i)];
      p = {float(y[2 * i]), float(y[2 * i + 1]), int32_t(i)};
      x0 = std::min(x0, p.x);
      x1 = std::max(x1, p.x);
      y0 = std::min(y0, p.y);
      y1 = std::max(y1, p.y);
    }
    const double w = std::max(double(x1) - x0, double(y1) - y0) * (1 + 1e-6) + 1e-12;
    nodes.clear();
    nodes.reserve(static_cast<size_t>(n / 2 + 16));
    nodes.emplace_back();
    fill(0, 0, int32_t(n), (double(x0) + x1) / 2, (double(y0) + y1) / 2, w, 0);
    perm.resize(static_cast<size_t>(n));
    px.resize(static_cast<size_t>(n));
    py.resize(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) {
      perm[size_t(t)] = pts[size_t(t)].i;
      px[size_t(t)] = pts[size_t(t)].x;
      py[size_t(t)] = pts[size_t(t)].y;
    }
  }

 private:
  struct Point {
    float x, y;
    int32_t i;
  };
  std::vector<Point> pts;  // partitioned in place into tree order

  // Partitions pts[begin, end) into the quadrants of the square centred at (mx, my) with side
  // w, recursively; the centre of mass comes from the leaves upwards (f64 sums).
  void fill(int32_t id, int32_t begin, int32_t end, double mx, double my, double w, int depth) {
    nodes[size_t(id)].begin = begin;
    nodes[size_t(id)].count = end - begin;
    nodes[size_t(id)].width = float(w);
    double sx = 0, sy = 0;
    // Deep cells only hold (near-)duplicates: f32 cannot split them further.
    if (end - begin <= kLeafSize || depth >= 60) {
      for (int32_t t = begin; t < end; ++t) {
        sx += pts[size_t(t)].x;
        sy += pts[size_t(t)].y;
      }
    } else {
      Point* p = pts.data();
      auto left = std::partition(p + begin, p + end, [&](const Point& q) { return q.x < mx; });
      auto lb = std::partition(p + begin, left, [&](const Point& q) { return q.y < my; });
      auto rb = std::partition(left, p + end, [&](const Point& q) { return q.y < my; });
      const int32_t cut[5] = {begin, int32_t(lb - p), int32_t(left - p), int32_t(rb - p), end};
      const double q = w / 4;
      const double ox[4] = {mx - q, mx - q, mx + q, mx + q},
                   oy[4] = {my - q, my + q, my - q, my + q};
      const int32_t first = int32_t(nodes.size());
      int32_t made = 0;
      for (int c = 0; c < 4; ++c)
        if (cut[c + 1] > cut[c]) {
          nodes.emplace_back();
          ++made;
        }
      nodes[size_t(id)].first_child = first;
      nodes[size_t(id)].children = made;
      for (int c = 0, k = 0; c < 4; ++c)
        if (cut[c + 1] > cut[c]) {
          const int32_t ch = first + k++;
          fill(ch, cut[c], cut[c + 1], ox[c], oy[c], w / 2, depth + 1);
          const Node& cn = nodes[size_t(ch)];
          sx += double(cn.cx) * cn.count;
          sy += double(cn.cy) * cn.count;
        }
    }
    nodes[size_t(id)].cx = float(sx / double(end - begin));
    nodes[size_t(id)].cy = float(sy / double(end - begin));
  }

 public:
  // Nodes whose points share one interaction list: the largest cells with at most
  // `group_size` points (or leaves), in tree order.
  void groups(int64_t group_size, std::vector<int32_t>& out) const {
    out.clear();
    std::vector<int32_t> stack{0};
    while (!stack.empty()) {
      const int32_t id = stack.back();
      stack.pop_back();
      const Node& nd = nodes[size_t(id)];
      if (nd.count <= group_size || nd.children == 0) {
        out.push_back(id);
        continue;
      }
      for (int32_t c = nd.children - 1; c >= 0; --c) stack.push_back(nd.first_child + c);
    }
  }

  // Barnes-Hut interaction list of group node g: cells whose every point of g sees them under
  // an angle width / distance < theta become one source (centre of mass, weight = count), the
  // points of the other leaves reached are sources of weight 1. The test uses the distance
  // from the centre of g's bounding box minus its radius, a lower bound of every member's
  // distance, so each member gets at least the accuracy of the classic per-point criterion.
  // Cells that overlap g are always opened: g's own points are sources, each once.
  struct List {
    std::vector<float> x, y, c;
    std::vector<int32_t> stack;
  };
  void interactions(int32_t g, double theta, List& l) const {
    const Node& gn = nodes[size_t(g)];
    float bx0 = px[size_t(gn.begin)], bx1 = bx0, by0 = py[size_t(gn.begin)], by1 = by0;
    for (int32_t t = gn.begin; t < gn.begin + gn.count; ++t) {
      bx0 = std::min(bx0, px[size_t(t)]);
      bx1 = std::max(bx1, px[size_t(t)]);
      by0 = std::min(by0, py[size_t(t)]);
      by1 = std::max(by1, py[size_t(t)]);
    }
    const float gx = (bx0 + bx1) / 2, gy = (by0 + by1) / 2;
    // Radius rounded up a little so f32 rounding never makes the bound optimistic.
    const float gr = std::sqrt((bx1 - bx0) * (bx1 - bx0) + (by1 - by0) * (by1 - by0)) / 2 * 1.0001f;
    const float inv_theta = theta > 0 ? float(1.0 / theta) : std::numeric_limits<float>::infinity();
    l.x.clear();
    l.y.clear();
    l.c.clear();
    l.stack.clear();
    l.stack.push_back(0);
    while (!l.stack.empty()) {
      const Node& nd = nodes[size_t(l.stack.back())];
      l.stack.pop_back();
      const bool overlap = nd.begin < gn.begin + gn.count && gn.begin < nd.begin + nd.count;
      if (!overlap) {
        // width < theta (dist - gr)  <=>  dist > gr + width / theta
        const float dx = nd.cx - gx, dy = nd.cy - gy, reach = gr + nd.width * inv_theta;
        if (dx * dx + dy * dy > reach * reach) {
          l.x.push_back(nd.cx);
          l.y.push_back(nd.cy);
          l.c.push_back(float(nd.count));
          continue;
        }
      }
      if (nd.children == 0) {
        for (int32_t t = nd.begin; t < nd.begin + nd.count; ++t) {
          l.x.push_back(px[size_t(t)]);
          l.y.push_back(py[size_t(t)]);
          l.c.push_back(1.0f);
        }
      } else {
        for (int32_t c = nd.children - 1; c >= 0; --c) l.stack.push_back(nd.first_child + c);
      }
    }
  }
};

// The sparse P in the f32 form the attraction kernel reads.
struct Attraction {
  const std::vector<int64_t>& row_ptr;
  std::vector<int32_t> col;
  std::vector<float> val;
  explicit Attraction(const Sparse& s)
      : row_ptr(s.row_ptr), col(s.col.begin(), s.col.end()), val(s.val.begin(), s.val.end()) {}
};

// Barnes-Hut forces of one iteration, with the buffers reused across iterations.
class BarnesHut {
 public:
  explicit BarnesHut(int64_t n)
      : n_(n), yf_(size_t(2 * n)), rep_t_(size_t(2 * n)), rep_z_(size_t(n)) {}

  // rep [n, 2] = sum_{j != i} w_ij^2 (y_i - y_j) (unnormalized repulsion); with `a`, also
  // attr [n, 2] = sum_j p_ij w_ij (y_i - y_j). Returns Z = sum_{i != j} w_ij.
  double forces(const double* y, double theta, double* rep, const Attraction* a, double* attr) {
    const int64_t n = n_;
    tree_.build(y, n);
    tree_.groups(kGroupSize, groups_);
    if (a)
      for (int64_t t = 0; t < 2 * n; ++t) yf_[size_t(t)] = float(y[t]);
    // One parallel region: tasks [0, ngroups) are Barnes-Hut groups (repulsion of their
    // points, in tree order), the rest are row blocks of the attraction. Each task writes only
    // its own points, so the result does not depend on the thread count.
    const int64_t ngroups = int64_t(groups_.size()), rows = 256;
    const int64_t tasks = ngroups + (a ? (n + rows - 1) / rows : 0);
#pragma omp parallel
    {
      QuadTree::List list;
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < tasks; ++task) {
        if (task >= ngroups) {
          const int64_t b = (task - ngroups) * rows;
          kernels::cpu::cauchy_attraction_f32(yf_.data(), a->row_ptr.data(), a->col.data(),
                                              a->val.data(), b, std::min(n, b + rows), attr);
          continue;
        }
        const auto& gn = tree_.nodes[size_t(groups_[size_t(task)])];
        tree_.interactions(groups_[size_t(task)], theta, list);
        const size_t b = size_t(gn.begin);
        kernels::cpu::cauchy_repulsion_f32(tree_.px.data() + b, tree_.py.data() + b, gn.count,
                                           list.x.data(), list.y.data(), list.c.data(),
                                           int64_t(list.x.size()), rep_z_.data() + b,
                                           rep_t_.data() + 2 * b, rep_t_.data() + 2 * b + gn.count);
        // Scatter back to point order; each group's own points met themselves (w = 1).
        for (int32_t t = 0; t < gn.count; ++t) {
          const int64_t i = tree_.perm[b + size_t(t)];
          rep[2 * i] = rep_t_[2 * b + size_t(t)];
          rep[2 * i + 1] = rep_t_[2 * b + size_t(gn.count + t)];
          rep_z_[b + size_t(t)] -= 1.0;
        }
      }
    }
    double z = 0;
    for (int64_t t = 0; t < n; ++t) z += rep_z_[size_t(t)];
    return z;
  }

 private:
  int64_t n_;
  QuadTree tree_;
  std::vector<int32_t> groups_;
  std::vector<float> yf_;
  std::vector<double> rep_t_, rep_z_;
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
  GL_CHECK(std::isfinite(o.perplexity) && o.perplexity > 0,
           "tsne: perplexity must be a positive number, got {}", o.perplexity);
  GL_CHECK(double(n) > 3 * o.perplexity,
           "tsne: perplexity {} needs more than 3 x perplexity = {:.6g} examples, got {}",
           o.perplexity, 3 * o.perplexity, n);
  GL_CHECK(o.method == "auto" || o.method == "exact" || o.method == "barnes_hut",
           "tsne: unknown method '{}' (exact | barnes_hut | auto)", o.method);
  for (int64_t t = 0; t < n * d; ++t)
    GL_CHECK(std::isfinite(x[t]), "tsne: input entry {} (example {}) is {}", t, t / d, x[t]);
  GL_CHECK(n < (int64_t(1) << 31), "tsne: {} examples is more than the 2^31 supported", n);
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
  r.seconds_affinities =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

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
  BarnesHut bh(exact ? 0 : n);
  const Attraction attraction(S);
  std::vector<double> rep(exact ? 0 : size_t(2 * n)), attr(exact ? 0 : size_t(2 * n)),
      row_z(exact ? size_t(n) : 0);
  std::vector<double> w;  // exact: kernel matrix
  if (exact) w.resize(static_cast<size_t>(n * n));
  double last_z = 1.0;

  auto gradient = [&](double exaggeration) {
    if (exact) {
      // Row sums first, then their total in a fixed order: independent of the thread count.
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        double zi = 0;
        for (int64_t j = 0; j < n; ++j) {
          if (i == j) {
            w[size_t(i * n + j)] = 0;
            continue;
          }
          double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
          double v = 1.0 / (1.0 + dx * dx + dy * dy);
          w[size_t(i * n + j)] = v;
          zi += v;
        }
        row_z[size_t(i)] = zi;
      }
      double z = 0;
      for (int64_t i = 0; i < n; ++i) z += row_z[size_t(i)];
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
    const double z = bh.forces(y.data(), o.theta, rep.data(), &attraction, attr.data());
    last_z = z;
    for (int64_t t = 0; t < 2 * n; ++t)
      grad[size_t(t)] = 4 * (exaggeration * attr[size_t(t)] - rep[size_t(t)] / z);
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

double tsne_repulsion(const double* y, int64_t n, double theta, double* force) {
  GL_CHECK(n >= 2 && n < (int64_t(1) << 31), "tsne_repulsion: {} points (need 2 to 2^31 - 1)", n);
  GL_CHECK(theta >= 0, "tsne_repulsion: theta must be >= 0, got {}", theta);
  return BarnesHut(n).forces(y, theta, force, nullptr, nullptr);
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
      // Rank (1-based) of each embedded neighbour among i's original neighbours: one past the
      // number of other points strictly closer (counted, no sort needed).
      for (int64_t c = 0; c < k; ++c) {
        const double cut = di[size_t(emb_idx[size_t(i * k + c)])];
        int64_t closer = 0;
        for (int64_t j = 0; j < n; ++j) closer += di[size_t(j)] < cut;
        closer -= di[size_t(i)] < cut;  // i itself is not a neighbour
        if (closer + 1 > k) penalty += double(closer + 1 - k);
      }
    }
  }
  return 1.0 - penalty * (2.0 / (double(n) * k * (2.0 * n - 3.0 * k - 1.0)));
}

}  // namespace gl::analysis
