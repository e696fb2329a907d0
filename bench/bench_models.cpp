// bench_models.cpp: what the Module layer costs on top of the raw ops, side by side on the
// same data: an MLP's forward (and forward+backward) through Sequential/Linear/Activation
// against the same chain of gl::linear and gl::relu calls, plus one optimizer step over the
// MLP's parameters. Shape: batch 128, 784-256-256-10, f32.
#include <benchmark/benchmark.h>

#include "engine/ops.h"
#include "models/init.h"
#include "models/mlp.h"
#include "models/optim.h"

namespace {
using namespace gl;
using namespace gl::models;

struct Fixture {
  std::unique_ptr<MLP> mlp;
  Tensor x;
  Fixture() {
    MlpConfig c = MlpConfig::uniform(784, 2, 256, 10);
    mlp = build_mlp(c);
    Generator gen(1);
    init_model(*mlp, parse_init("he_normal"), gen);
    x = Tensor::randn({128, 784}, gen);
  }
  Tensor raw_forward() const {
    Tensor h = x;
    for (auto& tap : mlp->taps()) h = relu(linear(h, tap.linear->weight(), tap.linear->bias()));
    return linear(h, mlp->output_layer().weight(), mlp->output_layer().bias());
  }
};

void BM_ModuleForward(benchmark::State& state) {
  Fixture f;
  NoGrad ng;
  for (auto _ : state) benchmark::DoNotOptimize(f.mlp->forward(f.x).raw_data());
}
void BM_RawOpsForward(benchmark::State& state) {
  Fixture f;
  NoGrad ng;
  for (auto _ : state) benchmark::DoNotOptimize(f.raw_forward().raw_data());
}
void BM_ModuleForwardBackward(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) {
    sum(f.mlp->forward(f.x)).backward();
    f.mlp->zero_grad();
  }
}
void BM_RawOpsForwardBackward(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) {
    sum(f.raw_forward()).backward();
    f.mlp->zero_grad();
  }
}
template <bool kAdam>
void BM_OptimizerStep(benchmark::State& state) {
  Fixture f;
  sum(f.mlp->forward(f.x)).backward();
  std::unique_ptr<Optimizer> opt;
  if (kAdam)
    opt = std::make_unique<Adam>(f.mlp->parameters(), AdamOptions{.lr = 1e-3});
  else
    opt = std::make_unique<SGD>(f.mlp->parameters(), SgdOptions{.lr = 1e-3, .momentum = 0.9});
  for (auto _ : state) opt->step();
  state.SetItemsProcessed(state.iterations() * f.mlp->num_parameters());
}

BENCHMARK(BM_ModuleForward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RawOpsForward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ModuleForwardBackward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RawOpsForwardBackward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OptimizerStep<false>)->Name("BM_SgdMomentumStep")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OptimizerStep<true>)->Name("BM_AdamStep")->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
