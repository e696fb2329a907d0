// tsne.h: t-SNE (van der Maaten & Hinton 2008) to 2-D, exact for small sets and Barnes-Hut
// (van der Maaten 2014) for large ones, following scikit-learn's choices so results compare:
// squared Euclidean input distances, perplexity calibrated by binary search on the entropy,
// symmetrized joint P (sparse over k = 3 * perplexity + 1 exact nearest neighbours for
// Barnes-Hut), PCA initialization scaled to std 1e-4, early exaggeration 12 for 250
// iterations with momentum 0.5 then 0.8, per-coordinate gains, learning rate max(n / 48, 50).
// The Barnes-Hut forces are computed in f32 (as scikit-learn does), one interaction list per
// group of neighbouring points; the embedding and its updates stay f64. For a given input and
// options the result does not depend on the OpenMP thread count. Speed against scikit-learn:
// bench/results/tsne.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gl::analysis {

struct TsneOptions {
  double perplexity = 30.0;
  int64_t iterations = 1000;  // total, exaggeration phase included
  double early_exaggeration = 12.0;
  int64_t exaggeration_iterations = 250;
  double learning_rate = 0.0;   // 0: max(n / early_exaggeration / 4, 50)
  double theta = 0.5;           // Barnes-Hut opening angle
  std::string method = "auto";  // exact | barnes_hut | auto (exact up to 1000 examples)
  bool pca_init = true;         // else Gaussian N(0, 1e-4) from `seed`
  uint64_t seed = 0;
  bool verbose = false;
};

struct TsneResult {
  int64_t n = 0;
  std::vector<double> embedding;  // [n, 2] row-major
  double kl_divergence = 0.0;     // of the final embedding (Barnes-Hut: approximated Z)
  std::string method;
  double seconds = 0.0;             // total, neighbour search included
  double seconds_affinities = 0.0;  // of which the joint P (neighbours, calibration)
};

// x: [n, d] row-major. Throws when n <= 3 * perplexity (too few examples for the perplexity)
// or on non-finite input.
TsneResult tsne(const float* x, int64_t n, int64_t d, const TsneOptions& options = {});

// Conditional probabilities of one row: p_j = exp(-beta d_j) / sum, beta found by binary
// search so the entropy (nats) is log(perplexity). dist2: squared distances to the candidates.
// Returns beta.
double calibrate_row(const double* dist2, int64_t k, double perplexity, double* p);

// Exact k nearest neighbours (self excluded) by blocked f32 GEMM distances, refined in f64.
// Returns indices [n, k] and squared distances [n, k], each row sorted by distance.
void knn_exact(const float* x, int64_t n, int64_t d, int64_t k, std::vector<int64_t>& index,
               std::vector<double>& dist2);

// The Barnes-Hut repulsion that tsne() uses: for every point i of y [n, 2],
// force[2i, 2i + 1] = sum_{j != i} w_ij^2 (y_i - y_j) with w_ij = 1 / (1 + |y_i - y_j|^2),
// cells summarized when width / distance < theta; returns Z = sum_{i != j} w_ij. theta = 0 is
// exact up to f32 rounding. Does not depend on the OpenMP thread count.
double tsne_repulsion(const double* y, int64_t n, double theta, double* force);

// Trustworthiness (Venna & Kaski; scikit-learn's definition) of embedding y [n, dy] of
// x [n, d] with k neighbours: 1 means every embedded neighbour is an original neighbour.
double trustworthiness(const float* x, int64_t n, int64_t d, const double* y, int64_t dy,
                       int64_t k);

}  // namespace gl::analysis
