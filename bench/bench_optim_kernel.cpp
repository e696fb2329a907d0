// bench_optim_kernel.cpp: the optimization-statistics passes (kernels/cpu/optim_stats.h) over
// the 118,282 parameters of the 784-128-128-10 MLP, on one thread: v1 (one pass reading 6 and
// writing 4 float arrays, 40 bytes per component) against v2 (the record pass and the update
// pass, blocks of kOptimBlock as the optimizer's step runs them, 18 bytes per component beyond
// the gradient and weights the optimizer reads anyway), AVX-512 and AVX2 against the scalar
// loops. Once the
// arrays leave the cache both run at memory speed.
//
//   OMP_NUM_THREADS=1 build/bench/bench_optim_kernel
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/optim_stats.h"

namespace {
namespace kc = gl::kernels::cpu;

std::vector<float> random_floats(std::size_t n, uint32_t seed) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1e-3f);
  for (auto& x : v) x = d(rng);
  return v;
}

// Selects the instruction set for one benchmark; false (and the benchmark skipped) where the
// CPU cannot run it.
bool select_path(benchmark::State& state, const char* isa) {
  try {
    kc::optim_stats_force_isa(isa);
  } catch (const std::invalid_argument& e) {
    state.SkipWithError(e.what());
    return false;
  }
  state.SetLabel(isa);
  return true;
}
const char* const kPaths[] = {"avx512", "avx2", "scalar"};

void BM_OptimStatsPass(benchmark::State& state) {
  const int64_t n = state.range(0);
  const char* isa = kPaths[state.range(1)];
  const auto len = static_cast<size_t>(n);
  std::vector<float> g = random_floats(len, 1), w = random_floats(len, 2),
                     pg = random_floats(len, 3), pw = random_floats(len, 4),
                     eg = random_floats(len, 5), ew = random_floats(len, 6);
  if (!select_path(state, isa)) return;
  for (auto _ : state) {
    auto s =
        kc::optim_step_stats(g.data(), w.data(), pg.data(), pw.data(), eg.data(), ew.data(), n, {});
    benchmark::DoNotOptimize(s);
  }
  kc::optim_stats_force_isa("auto");
  state.SetBytesProcessed(int64_t(state.iterations()) * n * 40);
}

// What a recorded step of v2 adds to the optimizer's loop, block by block: the record pass,
// the copy of the weights before the update, the update pass (the update itself is left out:
// the weights after it are another array).
void BM_OptimStatsSplitPasses(benchmark::State& state) {
  const int64_t n = state.range(0);
  const char* isa = kPaths[state.range(1)];
  const auto len = static_cast<size_t>(n);
  std::vector<float> g = random_floats(len, 1), w = random_floats(len, 2),
                     w_after = random_floats(len, 3), eg = random_floats(len, 5),
                     ew = random_floats(len, 6), before(static_cast<size_t>(kc::kOptimBlock));
  std::vector<uint8_t> code(len, 0);
  if (!select_path(state, isa)) return;
  for (auto _ : state) {
    kc::OptimRecordSums r;
    kc::OptimUpdateSums u;
    for (int64_t lo = 0; lo < n; lo += kc::kOptimBlock) {
      const int64_t m = std::min(kc::kOptimBlock, n - lo);
      r += kc::optim_record_block(g.data() + lo, w.data() + lo, code.data() + lo, eg.data() + lo,
                                  ew.data() + lo, m, {});
      std::memcpy(before.data(), w.data() + lo, std::size_t(m) * sizeof(float));
      u += kc::optim_update_block(g.data() + lo, before.data(), w_after.data() + lo,
                                  code.data() + lo, m, {});
    }
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(u);
  }
  kc::optim_stats_force_isa("auto");
  state.SetBytesProcessed(int64_t(state.iterations()) * n * 18);
}

}  // namespace

// Second argument: 0 AVX-512 (v1 has none: it runs AVX2), 1 AVX2, 2 scalar.
BENCHMARK(BM_OptimStatsPass)->Args({118282, 1})->Args({118282, 2})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OptimStatsSplitPasses)
    ->Args({118282, 0})
    ->Args({118282, 1})
    ->Args({118282, 2})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
