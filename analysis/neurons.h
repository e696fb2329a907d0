// neurons.h: per-unit views of a layer: mean activation per class, class selectivity, and the
// examples that drive each unit hardest.
#pragma once
#include <cstdint>
#include <vector>

namespace gl::analysis {

struct NeuronStats {
  int64_t units = 0, classes = 0;
  std::vector<double> class_mean;   // [units, classes]
  std::vector<double> selectivity;  // [units]: (mu_max - mu_rest) / (|mu_max| + |mu_rest|)
  std::vector<int64_t> preferred;   // [units]: argmax class
  std::vector<int64_t> top;         // [units, k]: rows of the input, most activating first
  int64_t k = 0;
};

// acts: [n, units] activations, labels in [0, classes). Selectivity follows Morcos et al.
// (2018) with mu_rest the mean over the other classes; 0 when both means are 0.
NeuronStats neuron_stats(const float* acts, int64_t n, int64_t units, const int64_t* labels,
                         int64_t classes, int64_t k);

// Units ordered for display: by preferred class, then by selectivity, descending.
std::vector<int64_t> display_order(const NeuronStats& s);

}  // namespace gl::analysis
