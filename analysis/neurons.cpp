// neurons.cpp: one pass for the class means, a partial sort per unit for the top examples.
#include "analysis/neurons.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/core.h"

namespace gl::analysis {

NeuronStats neuron_stats(const float* acts, int64_t n, int64_t units, const int64_t* labels,
                         int64_t classes, int64_t k) {
  GL_CHECK(n >= 1 && units >= 1 && classes >= 1, "neurons: empty input ({} x {}, {} classes)", n,
           units, classes);
  NeuronStats s;
  s.units = units;
  s.classes = classes;
  s.k = std::min(k, n);
  s.class_mean.assign(static_cast<size_t>(units * classes), 0.0);
  std::vector<int64_t> count(static_cast<size_t>(classes), 0);
  for (int64_t i = 0; i < n; ++i) {
    GL_CHECK(labels[i] >= 0 && labels[i] < classes,
             "neurons: label {} of example {} not in [0, {})", labels[i], i, classes);
    ++count[size_t(labels[i])];
    for (int64_t u = 0; u < units; ++u)
      s.class_mean[size_t(u * classes + labels[i])] += acts[i * units + u];
  }
  for (int64_t u = 0; u < units; ++u)
    for (int64_t c = 0; c < classes; ++c)
      s.class_mean[size_t(u * classes + c)] =
          count[size_t(c)] ? s.class_mean[size_t(u * classes + c)] / double(count[size_t(c)])
                           : std::nan("");
  s.selectivity.resize(static_cast<size_t>(units));
  s.preferred.resize(static_cast<size_t>(units));
  for (int64_t u = 0; u < units; ++u) {
    int64_t best = -1;
    double sum = 0;
    int64_t present = 0;
    for (int64_t c = 0; c < classes; ++c) {
      double v = s.class_mean[size_t(u * classes + c)];
      if (std::isnan(v)) continue;
      sum += v;
      ++present;
      if (best < 0 || v > s.class_mean[size_t(u * classes + best)]) best = c;
    }
    s.preferred[size_t(u)] = best;
    double mu_max = best >= 0 ? s.class_mean[size_t(u * classes + best)] : 0;
    double mu_rest = present > 1 ? (sum - mu_max) / double(present - 1) : 0;
    double den = std::abs(mu_max) + std::abs(mu_rest);
    s.selectivity[size_t(u)] = den > 0 ? (mu_max - mu_rest) / den : 0.0;
  }
  s.top.resize(static_cast<size_t>(units * s.k));
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t u = 0; u < units; ++u) {
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + s.k, order.end(), [&](int64_t a, int64_t b) {
      float va = acts[a * units + u], vb = acts[b * units + u];
      return va != vb ? va > vb : a < b;
    });
    std::copy(order.begin(), order.begin() + s.k, s.top.begin() + u * s.k);
  }
  return s;
}

std::vector<int64_t> display_order(const NeuronStats& s) {
  std::vector<int64_t> o(static_cast<size_t>(s.units));
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) {
    if (s.preferred[size_t(a)] != s.preferred[size_t(b)])
      return s.preferred[size_t(a)] < s.preferred[size_t(b)];
    return s.selectivity[size_t(a)] > s.selectivity[size_t(b)];
  });
  return o;
}

}  // namespace gl::analysis
