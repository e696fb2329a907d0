// cauchy.h: sums of the Student-t (Cauchy) kernel w = 1 / (1 + |t - s|^2) between 2-D target
// points and weighted 2-D sources: the repulsive half of the t-SNE gradient, evaluated against
// a Barnes-Hut interaction list (sources are cell centres of mass weighted by their point
// counts, or single points with weight 1). f32 arithmetic, AVX2+FMA over 8 sources at a time
// with a scalar fallback chosen at run time; per-target sums are returned in f64.
#pragma once
#include <cstdint>

namespace gl::kernels::cpu {

// For every target i < nt, over sources e < ns:
//   w    = 1 / (1 + (tx[i] - sx[e])^2 + (ty[i] - sy[e])^2)
//   z[i] = sum_e sc[e] w,  fx[i] = sum_e sc[e] w^2 (tx[i] - sx[e]),  fy[i] likewise.
// Outputs are overwritten. Single-threaded (callers run one list per thread); the summation
// order depends only on ns, so a result does not depend on how callers split their work.
void cauchy_repulsion_f32(const float* tx, const float* ty, int64_t nt, const float* sx,
                          const float* sy, const float* sc, int64_t ns, double* z, double* fx,
                          double* fy);

// The attractive half: for rows i in [row_begin, row_end) of a sparse matrix in CSR form
// (row_ptr, col, val), with y = interleaved 2-D points [n, 2] and j = col[t]:
//   f[2i]     = sum_t val[t] (y[2i]     - y[2j])     / (1 + |y_i - y_j|^2)
//   f[2i + 1] = sum_t val[t] (y[2i + 1] - y[2j + 1]) / (1 + |y_i - y_j|^2)
// 8 entries per AVX2 step (gathered coordinates); the summation order depends only on the row.
void cauchy_attraction_f32(const float* y, const int64_t* row_ptr, const int32_t* col,
                           const float* val, int64_t row_begin, int64_t row_end, double* f);

// True when the AVX2 path is in use.
bool cauchy_uses_avx2();
// Forces the scalar path (tests compare both); false restores automatic selection.
void cauchy_force_scalar(bool on);

}  // namespace gl::kernels::cpu
