// bench_optim_kernel.cpp: the fused optimization-statistics pass (kernels/cpu/optim_stats.h)
// over the 118,282 parameters of the 784-128-128-10 MLP, AVX2 against the scalar loop, on one
// thread. The pass reads 6 and writes 4 float arrays (40 bytes per component), so once the
// arrays leave the cache it runs at memory speed.
//
//   OMP_NUM_THREADS=1 build/bench/bench_optim_kernel
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/optim_stats.h"

namespace {
namespace kc = gl::kernels::cpu;

void BM_OptimStatsPass(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool scalar = state.range(1) != 0;
  const auto len = static_cast<size_t>(n);
  std::vector<float> g(len), w(len), pg(len), pw(len), eg(len), ew(len);
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1e-3f);
  for (auto* v : {&g, &w, &pg, &pw, &eg, &ew})
    for (auto& x : *v) x = d(rng);
  kc::optim_stats_force_scalar(scalar);
  for (auto _ : state) {
    auto s =
        kc::optim_step_stats(g.data(), w.data(), pg.data(), pw.data(), eg.data(), ew.data(), n, {});
    benchmark::DoNotOptimize(s);
  }
  kc::optim_stats_force_scalar(false);
  state.SetBytesProcessed(int64_t(state.iterations()) * n * 40);
  state.SetLabel(scalar ? "scalar" : (kc::optim_stats_uses_avx2() ? "avx2" : "scalar (no AVX2)"));
}

}  // namespace

BENCHMARK(BM_OptimStatsPass)->Args({118282, 0})->Args({118282, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
