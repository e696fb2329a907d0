// test_cuda_training.cpp: the same run (an MLP for three epochs, a small CNN for two short ones)
// on the CPU and on CUDA, from the same initial weights (--load-weights), on the mnist-tiny
// fixture: per-epoch
// losses and accuracies and the final weights must agree within a small tolerance (f32 on both
// sides; summation orders differ). The CPU run is the oracle. Skips with a message without a
// CUDA build or GPU. The same runs on the CPU with its SIMD GEMM kernels (and direct
// convolutions) against its scalar ones, which sum in other orders, run everywhere: they show
// that each run's training is not chaotic, so that such rounding differences alone do not take
// it apart by more than the tolerance.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include "analysis/diagnostics.h"
#include "engine/io/tensor_io.h"
#include "engine/ops.h"
#include "kernels/kernels.h"
#include "train/trainer.h"

namespace {

namespace fs = std::filesystem;

std::string no_gpu_reason() {
#if defined(GRADLENS_HAVE_CUDA)
  if (gl::kernels::cuda::device_count() == 0) return "no CUDA device on this machine";
  return "";
#else
  return "this build has no CUDA backend (configure with -DGRADLENS_CUDA=ON)";
#endif
}

// A data dir holding mnist/ -> the fixture, and the CPU-initialized weights of the model.
struct Fixture {
  std::string root, data_dir, weights;
};

Fixture make_fixture(const std::string& name) {
  Fixture f;
  // A fresh folder of its own: two test processes running at once never share one.
  std::string tmpl =
      (fs::temp_directory_path() / ("gradlens_cuda_train_" + name + "_XXXXXX")).string();
  f.root = mkdtemp(tmpl.data());
  fs::create_directories(f.root + "/data");
  fs::create_directory_symlink(std::string(GRADLENS_TEST_DATA) + "/mnist-tiny",
                               f.root + "/data/mnist");
  f.data_dir = f.root + "/data";
  f.weights = f.root + "/init.safetensors";
  return f;
}

gl::train::TrainConfig base_config(const Fixture& f, const std::string& optimizer) {
  gl::train::TrainConfig c;
  c.data_dir = f.data_dir;
  c.hidden = {32, 32};
  c.epochs = 3;
  c.batch_size = 16;
  c.optimizer = optimizer;
  c.lr = optimizer == "sgd" ? 0.05 : 1e-3;
  c.dropout = 0.1;  // the Philox masks match across devices
  c.seed = 5;
  c.progress = false;
  c.checkpoint_every = 0;
  return c;
}

// The second run of a pair: on the GPU with a GEMM backend, or on the CPU with its scalar kernels.
struct Other {
  bool gpu;
  std::string gemm;
};

void run_pair(const Other& other, const std::string& optimizer, const std::string& model = "mlp",
              bool batchnorm = false, bool diagnostics = false) {
  Fixture f = make_fixture(optimizer + "_" + (other.gpu ? other.gemm : "scalar") + "_" + model +
                           (batchnorm ? "_bn" : "") + (diagnostics ? "_diag" : ""));
  gl::train::TrainConfig c = base_config(f, optimizer);
  c.batchnorm = batchnorm;  // running statistics updated on the device, used by evaluation
  if (model == "cnn") {     // conv 3x3 - relu - max pool, twice, then fc: every CNN op on the GPU
    c.model = "cnn";
    c.channels = {4, 8};
    c.fc = {16};
    // At 0.05 this CNN's training is chaotic on the fixture: the CPU's SIMD and scalar kernels
    // end its three epochs with weights 0.6 apart (the first 480 examples 1e-7 apart, the first
    // 800 0.06). At 0.02 they stay within 3e-7; but a discrete event (a max-pool window's
    // maximum changing places, a ReLU's sign) still moves a weight by lr times a gradient, and
    // the chance of one grows with the steps: with initial weights scaled by 1 + 1e-6 u (u
    // uniform in [-1, 1]) three epochs failed in 4 of 7 draws, two epochs of 5 steps (with batch
    // norm too) in none of 8. So two epochs of 80 examples, 10 steps.
    if (optimizer == "sgd") c.lr = 0.02;
    c.epochs = 2;
    c.limit_train = 80;
  }
  // Adam's step is about lr in either direction for a gradient near zero, whose sign rounding
  // decides; eps 1e-6 (not 1e-8) keeps such gradients' steps small.
  if (optimizer == "adam") c.adam_eps = 1e-6;
  {  // initial weights, written by a CPU trainer that does not train
    gl::train::TrainConfig init = c;
    init.out = f.root + "/init_run";
    gl::train::Trainer t(init);
    gl::io::save_tensors(f.weights, t.model().state_dict(), {{"format", "pt"}});
  }
  c.load_weights = f.weights;
  gl::train::TrainConfig cpu = c, gpu = c;
  cpu.out = f.root + "/cpu";
  gpu.out = f.root + "/gpu";
  if (other.gpu) {
    gpu.device = "cuda";
    gpu.gemm = other.gemm;
  }
  gl::train::Trainer tc(cpu), tg(gpu);
  // Every diagnostic group, gradient statistics every 5 steps: the GPU run's are taken from its
  // device tensors (copied to the host), the CPU run's are the oracle.
  std::shared_ptr<gl::analysis::DiagnosticsCallback> dc, dg;
  if (diagnostics) {
    gl::analysis::DiagnosticsOptions o;
    o.every = 5;
    dc = std::make_shared<gl::analysis::DiagnosticsCallback>(o);
    dg = std::make_shared<gl::analysis::DiagnosticsCallback>(o);
    tc.add_callback(dc);
    tg.add_callback(dg);
  }
  auto hc = tc.run();
  struct AutoIsaAfter {  // also when the run throws
    ~AutoIsaAfter() { gl::kernels::cpu::set_isa("auto"); }
  } restore;
  if (!other.gpu) gl::kernels::cpu::set_isa("scalar");
  auto hg = tg.run();
  gl::set_cuda_gemm_algo(gl::CudaGemmAlgo::native);
  const auto epochs = std::size_t(c.epochs);
  ASSERT_EQ(hc.size(), epochs);
  ASSERT_EQ(hg.size(), epochs);
  for (std::size_t e = 0; e < epochs; ++e) {
    SCOPED_TRACE("epoch " + std::to_string(e + 1));
    EXPECT_NEAR(hg[e].train_loss, hc[e].train_loss, 1e-3 + 1e-3 * std::fabs(hc[e].train_loss));
    EXPECT_NEAR(hg[e].test_loss, hc[e].test_loss, 1e-3 + 1e-3 * std::fabs(hc[e].test_loss));
    // One flipped prediction on the small fixture moves accuracy by about 1%.
    EXPECT_NEAR(hg[e].train_acc, hc[e].train_acc, 0.02);
    EXPECT_NEAR(hg[e].test_acc, hc[e].test_acc, 0.02);
  }
  if (diagnostics) {  // the last evaluation pass's moments per layer, before and after the act
    const auto layers = int64_t(tc.model().taps().size());  // hidden layers (conv and fc)
    EXPECT_GT(layers, 0);
    for (int64_t l = 0; l < layers; ++l)
      for (bool post : {false, true}) {
        SCOPED_TRACE("diagnostics layer " + std::to_string(l) + (post ? " post" : " pre"));
        const auto mc = dc->moments(l, post), mg = dg->moments(l, post);
        EXPECT_EQ(mg.count, mc.count);
        EXPECT_NEAR(mg.mean, mc.mean, 1e-3 + 1e-3 * std::fabs(mc.mean));
        EXPECT_NEAR(mg.std, mc.std, 1e-3 + 1e-3 * std::fabs(mc.std));
      }
  }
  auto wc = tc.model().state_dict();
  auto wg = tg.model().state_dict();
  ASSERT_EQ(wc.size(), wg.size());
  for (std::size_t i = 0; i < wc.size(); ++i) {
    SCOPED_TRACE(wc[i].first);
    // Floating tensors live on the device; integer counters (num_batches_tracked) on the host.
    EXPECT_EQ(wg[i].second.device().is_cuda(), other.gpu && gl::is_floating(wg[i].second.dtype()));
    auto a = wc[i].second.to_vector<double>();
    auto b = wg[i].second.to_vector<double>();
    ASSERT_EQ(a.size(), b.size());
    double worst = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
      const double d = std::fabs(a[k] - b[k]);  // a NaN counts as the largest difference
      worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
    }
    EXPECT_LT(worst, 2e-3);
  }
  fs::remove_all(f.root);
}

TEST(CudaTraining, ThreeEpochsSgdMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA training parity skipped: " << why;
  run_pair({true, "native"}, "sgd");
}

TEST(CudaTraining, ThreeEpochsAdamCublasMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA training parity skipped: " << why;
  run_pair({true, "cublas"}, "adam");
}

TEST(CudaTraining, TwoShortEpochsCnnMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA training parity skipped: " << why;
  run_pair({true, "native"}, "sgd", "cnn");
}

TEST(CudaTraining, ThreeEpochsMlpBatchNormMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA training parity skipped: " << why;
  // SGD: with Adam the biases of the layers batch norm follows (whose gradient is zero but for
  // rounding) step by the learning rate, with the rounding's sign, in either direction: the
  // CPU's two kernel sets end three epochs with them 0.013 apart.
  run_pair({true, "native"}, "sgd", "mlp", /*batchnorm=*/true);
}

TEST(CudaTraining, TwoShortEpochsCnnBatchNormMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA training parity skipped: " << why;
  run_pair({true, "native"}, "sgd", "cnn", /*batchnorm=*/true);
}

TEST(CudaTraining, CnnWithBatchNormAndEveryDiagnosticMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA training parity skipped: " << why;
  run_pair({true, "native"}, "sgd", "cnn", /*batchnorm=*/true, /*diagnostics=*/true);
}

// Each GPU parity run on the CPU, its SIMD GEMM kernels (and direct convolutions) against its
// scalar ones.
std::string no_simd_reason() {
  return std::string(gl::kernels::cpu::isa_name()) == "scalar"
             ? "this CPU has no SIMD kernels to compare with the scalar ones"
             : "";
}

TEST(CpuKernelSets, SgdRunsAgree) {
  if (std::string why = no_simd_reason(); !why.empty()) GTEST_SKIP() << why;
  run_pair({false, ""}, "sgd");
}

TEST(CpuKernelSets, AdamRunsAgree) {
  if (std::string why = no_simd_reason(); !why.empty()) GTEST_SKIP() << why;
  run_pair({false, ""}, "adam");
}

TEST(CpuKernelSets, CnnRunsAgree) {
  if (std::string why = no_simd_reason(); !why.empty()) GTEST_SKIP() << why;
  run_pair({false, ""}, "sgd", "cnn");
}

TEST(CpuKernelSets, MlpBatchNormRunsAgree) {
  if (std::string why = no_simd_reason(); !why.empty()) GTEST_SKIP() << why;
  run_pair({false, ""}, "sgd", "mlp", /*batchnorm=*/true);
}

TEST(CpuKernelSets, CnnBatchNormRunsAgreeWithEveryDiagnostic) {
  if (std::string why = no_simd_reason(); !why.empty()) GTEST_SKIP() << why;
  run_pair({false, ""}, "sgd", "cnn", /*batchnorm=*/true, /*diagnostics=*/true);
}

TEST(CudaTraining, CudaGraphFlagIsRejectedClearly) {
  gl::train::TrainConfig c;
  c.out = (fs::temp_directory_path() / "gradlens_cuda_graph_flag").string();
  c.cuda_graph = true;
  c.data_dir = std::string(GRADLENS_TEST_DATA) + "/nonexistent";
  try {
    gl::train::Trainer t(c);
    FAIL() << "expected --cuda-graph to be rejected";
  } catch (const gl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cuda-graph"), std::string::npos) << e.what();
  }
}

}  // namespace
