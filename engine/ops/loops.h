// loops.h: CPU iteration over strided N-d tensors. Dimensions are coalesced where every
// operand is contiguous across them, so most calls become one long inner loop that the
// compiler vectorizes; the outer rows are split across OpenMP threads for large tensors.
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "engine/core.h"

namespace gl::loops {

// Work below this many elements runs on one thread: the fork costs more than it saves.
inline constexpr int64_t kParallelGrain = 1 << 15;

// Whether a loop over `work` elements should open a parallel region: above the grain, with
// threads to spare, and not already inside one. Call sites branch on this rather than putting
// an `if` clause on the pragma: even a region that runs on one thread costs libgomp a team
// set-up (about a microsecond), which adds up over the many small ops of a training step.
inline bool worth_forking(int64_t work) {
  return work >= kParallelGrain && omp_get_max_threads() > 1 && !omp_in_parallel();
}

// f(i) for i in [0, n), split across threads when `work` elements are worth_forking.
template <class F>
void parallel_for(int64_t n, int64_t work, F&& f) {
  if (!worth_forking(work)) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <std::size_t N>
struct Layout {
  Shape shape;
  std::array<Shape, N> strides;
};

// Drops size-1 dims and merges adjacent dims that are contiguous for every operand.
template <std::size_t N>
Layout<N> coalesce(const Shape& shape, const std::array<Shape, N>& strides) {
  Layout<N> out;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!out.shape.empty()) {
      bool merge = true;
      for (std::size_t k = 0; k < N; ++k)
        if (out.strides[k].back() != strides[k][d] * shape[d]) merge = false;
      if (merge) {
        out.shape.back() *= shape[d];
        for (std::size_t k = 0; k < N; ++k) out.strides[k].back() = strides[k][d];
        continue;
      }
    }
    out.shape.push_back(shape[d]);
    for (std::size_t k = 0; k < N; ++k) out.strides[k].push_back(strides[k][d]);
  }
  return out;
}

// Calls f(offsets, inner_len, inner_strides) once per innermost row. Offsets are in elements
// from each operand's first element. f must be safe to call concurrently on distinct rows.
template <std::size_t N, class F>
void for_each_row(const Shape& shape, const std::array<Shape, N>& strides, F&& f,
                  bool parallel = true) {
  int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  Layout<N> L = coalesce<N>(shape, strides);
  std::array<int64_t, N> zero{};
  if (L.shape.empty()) {
    std::array<int64_t, N> one;
    one.fill(1);
    f(zero, int64_t(1), one);
    return;
  }
  const int64_t nd = int64_t(L.shape.size());
  const int64_t inner = L.shape[nd - 1];
  std::array<int64_t, N> inner_strides;
  for (std::size_t k = 0; k < N; ++k) inner_strides[k] = L.strides[k][nd - 1];
  const int64_t rows = numel / inner;
  auto run = [&](int64_t r0, int64_t r1) {
    if (r0 >= r1) return;
    std::vector<int64_t> idx(std::max<int64_t>(nd - 1, 1), 0);
    std::array<int64_t, N> off{};
    int64_t rem = r0;
    for (int64_t d = nd - 2; d >= 0; --d) {
      idx[d] = rem % L.shape[d];
      rem /= L.shape[d];
      for (std::size_t k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      f(off, inner, inner_strides);
      for (int64_t d = nd - 2; d >= 0; --d) {
        if (++idx[d] < L.shape[d]) {
          for (std::size_t k = 0; k < N; ++k) off[k] += L.strides[k][d];
          break;
        }
        idx[d] = 0;
        for (std::size_t k = 0; k < N; ++k) off[k] -= (L.shape[d] - 1) * L.strides[k][d];
      }
    }
  };
  if (parallel && rows > 1 && worth_forking(numel)) {
#pragma omp parallel
    {
      int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t chunk = (rows + nt - 1) / nt;
      run(t * chunk, std::min(rows, (t + 1) * chunk));
    }
  } else {
    run(0, rows);
  }
}

// Strides of `s` (with shape `from`) seen from a broadcast target shape `to`: 0 on
// broadcast dims, leading dims added.
inline Shape broadcast_strides(const Shape& from, const Shape& from_strides, const Shape& to) {
  Shape st(to.size(), 0);
  std::size_t lead = to.size() - from.size();
  for (std::size_t i = 0; i < from.size(); ++i)
    st[lead + i] = from[i] == 1 && to[lead + i] != 1 ? 0 : from_strides[i];
  return st;
}

}  // namespace gl::loops
