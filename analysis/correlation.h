// correlation.h: Pearson correlation matrices between the features of two layers (columns of
// [n, d] activation matrices over the same n examples), within one layer, and between
// examples. Computed in f64: columns are centred and scaled to unit norm, then one GEMM.
#pragma once
#include <cstdint>
#include <vector>

namespace gl::analysis {

// x: [n, dx], y: [n, dy] row-major over the same n >= 2 examples. Returns [dx, dy] row-major:
// entry (a, b) is corr(x[:, a], y[:, b]). A feature that is constant over the examples (a dead
// ReLU unit, say) has no correlation: its rows/columns are NaN.
std::vector<double> pearson_cross(const float* x, int64_t n, int64_t dx, const float* y,
                                  int64_t dy);
// Feature-feature correlation within one layer: pearson_cross(x, x), [d, d].
std::vector<double> feature_correlation(const float* x, int64_t n, int64_t d);
// Sample-sample correlation: rows as variables, [n, n]. A constant row gives NaN.
std::vector<double> sample_correlation(const float* x, int64_t n, int64_t d);

// Every pair a <= b of several layers over the same n examples: layers[a] is [n, widths[a]].
// Returns the pearson_cross(layers[a], layers[b]) matrices in the order (0,0), (0,1), ...,
// (0,L-1), (1,1), ...; each layer is standardized once, then one f64 GEMM per pair.
std::vector<std::vector<double>> pearson_pairs(const std::vector<const float*>& layers, int64_t n,
                                               const std::vector<int64_t>& widths);

// Mean of |c| over the entries that are not NaN (0 when none are). With self_width = d > 0, c
// is a layer's [d, d] correlation with itself: its diagonal (each unit with itself, 1) is left
// out, so the mean is over distinct pairs of units.
double mean_abs(const std::vector<double>& c, int64_t self_width = 0);

}  // namespace gl::analysis
