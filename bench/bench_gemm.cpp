// bench_gemm.cpp: gradlens sgemm vs OpenBLAS cblas_sgemm, side by side in one program on the
// same data, at MLP training shapes (batch 128, see kShapes) and at 512/1024/2048 square, on 1 and
// 2 threads. Reports GFLOP/s (real time).
//
// Intended use (interleaved repetitions, medians):
//   build/bench/bench_gemm --benchmark_repetitions=7 --benchmark_enable_random_interleaving=true
//     --benchmark_report_aggregates_only=true --benchmark_min_time=0.2
// On a machine shared with other work, many short repetitions and the "max" aggregate of
// GFLOPS (the fastest repetition, i.e. the one least disturbed by other processes) compare
// the libraries more stably than medians:
//   ... --benchmark_repetitions=40 --benchmark_min_time=0.01 ... then gemm_table.py FILE max
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"

#if defined(GRADLENS_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace {

struct Shape {
  const char* name;
  bool ta, tb;
  int64_t M, N, K;
};

// The name says which training GEMM the shape is; op(A) is M x K, op(B) is K x N.
// train_*: what Linear (W stored [out, in]) issues at batch 128 in an MLP of width 128 with
// 784 inputs and 10 outputs: forward Y = X W^T (NT), dX = dY W (NN), dW = dY^T X (TN).
// The older names assume W stored [in, out] (forward NN) and are kept for comparison.
const Shape kShapes[] = {
    {"train_fwd_NT_128x128x128", false, true, 128, 128, 128},
    {"train_fwd_NT_128x128x784", false, true, 128, 128, 784},
    {"train_fwd_NT_128x10x128", false, true, 128, 10, 128},
    {"train_dX_NN_128x128x128", false, false, 128, 128, 128},
    {"train_dW_TN_128x128x128", true, false, 128, 128, 128},
    {"train_dW_TN_128x784x128", true, false, 128, 784, 128},
    {"train_dX_NN_128x128x10", false, false, 128, 128, 10},
    {"train_dW_TN_10x128x128", true, false, 10, 128, 128},
    {"fwd_128x784x128", false, false, 128, 128, 784},
    {"fwd_128x128x128", false, false, 128, 128, 128},
    {"fwd_128x128x10", false, false, 128, 10, 128},
    {"dW_TN_784x128x128", true, false, 784, 128, 128},
    {"dW_TN_128x10x128", true, false, 128, 10, 128},
    {"dX_NT_128x784x128", false, true, 128, 784, 128},
    {"dX_NT_128x128x10", false, true, 128, 128, 10},
    {"sq_512", false, false, 512, 512, 512},
    {"sq_1024", false, false, 1024, 1024, 1024},
    {"sq_2048", false, false, 2048, 2048, 2048},
};

struct Operands {
  std::vector<float> A, B, C;
  int64_t lda, ldb, ldc;
  explicit Operands(const Shape& s) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    A.resize(size_t(s.M * s.K));
    B.resize(size_t(s.K * s.N));
    C.assign(size_t(s.M * s.N), 0.f);
    for (auto& v : A) v = d(rng);
    for (auto& v : B) v = d(rng);
    lda = s.ta ? s.M : s.K;
    ldb = s.tb ? s.K : s.N;
    ldc = s.N;
  }
};

void set_flops(benchmark::State& state, const Shape& s) {
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * double(s.M * s.N * s.K) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ours(benchmark::State& state, Shape s, int threads) {
  omp_set_num_threads(threads);
  Operands o(s);
  for (auto _ : state) {
    gl::kernels::cpu::sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.f, o.A.data(), o.lda, o.B.data(), o.ldb,
                            0.f, o.C.data(), o.ldc);
    benchmark::DoNotOptimize(o.C.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
  state.SetLabel(gl::kernels::cpu::isa_name());
}

#if defined(GRADLENS_HAVE_OPENBLAS)
void BM_openblas(benchmark::State& state, Shape s, int threads) {
  openblas_set_num_threads(threads);
  Operands o(s);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                int(s.M), int(s.N), int(s.K), 1.f, o.A.data(), int(o.lda), o.B.data(), int(o.ldb),
                0.f, o.C.data(), int(o.ldc));
    benchmark::DoNotOptimize(o.C.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}
#endif

double max_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
}

int register_all() {
  for (const Shape& s : kShapes) {
    for (int threads : {1, 2}) {
      const std::string suffix = std::string(s.name) + "/threads:" + std::to_string(threads);
      benchmark::RegisterBenchmark(("ours/" + suffix).c_str(), BM_ours, s, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond)
          ->ComputeStatistics("max", max_of);
#if defined(GRADLENS_HAVE_OPENBLAS)
      benchmark::RegisterBenchmark(("openblas/" + suffix).c_str(), BM_openblas, s, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond)
          ->ComputeStatistics("max", max_of);
#endif
    }
  }
  return 0;
}
const int kRegistered = register_all();

}  // namespace

BENCHMARK_MAIN();
