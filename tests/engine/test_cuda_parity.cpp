// test_cuda_parity.cpp: every row of the op table (engine/testing/op_table.h) evaluated on the
// CPU and on CUDA in f32 from the same inputs: outputs and input gradients of sum(out * R)
// must agree within tolerance. The CPU result is the oracle (it is itself checked against f64
// finite differences by test_gradcheck). Skips with a message without a CUDA build or GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/testing/op_table.h"
#include "kernels/kernels.h"
#include "tests/cuda_devices.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "kernels/cuda/runtime.h"
#endif

namespace {

using gl::Device;
using gl::DType;
using gl::Tensor;

std::string no_gpu_reason() {
#if defined(GRADLENS_HAVE_CUDA)
  if (gl::kernels::cuda::device_count() == 0) return "no CUDA device on this machine";
  return "";
#else
  return "this build has no CUDA backend (configure with -DGRADLENS_CUDA=ON)";
#endif
}

// max over elements of |a - b| / (atol + rtol * |b|); <= 1 passes.
double worst_ratio(const Tensor& got, const Tensor& want, double atol, double rtol,
                   std::string& where) {
  auto g = got.to(Device::cpu()).to_vector<double>();
  auto w = want.to_vector<double>();
  if (g.size() != w.size()) {
    where = "size mismatch";
    return INFINITY;
  }
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    double r = std::fabs(g[i] - w[i]) / (atol + rtol * std::fabs(w[i]));
    if (!(r <= worst)) {
      worst = std::isnan(r) ? INFINITY : r;
      where = "element " + std::to_string(i) + ": cuda " + std::to_string(g[i]) + " cpu " +
              std::to_string(w[i]);
    }
  }
  return worst;
}

TEST(CudaParity, EveryOpTableRowForwardAndBackward) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA parity skipped: " << why;
  const double atol = 1e-4, rtol = 1e-3;  // f32 on both sides, different summation orders
  for (const auto& c : gl::testing::op_table()) {
    SCOPED_TRACE(c.name);
    gl::Generator gen(42);
    std::vector<Tensor> cpu_in = c.make_inputs(gen, DType::f32);
    std::vector<Tensor> gpu_in;
    for (auto& x : cpu_in) {
      gpu_in.push_back(x.detach().to(Device::cuda()));
      x.requires_grad_(true);
      gpu_in.back().requires_grad_(true);
    }
    Tensor out_cpu = c.fn(cpu_in);
    Tensor out_gpu = c.fn(gpu_in);
    ASSERT_TRUE(out_gpu.device().is_cuda()) << "output left the device";
    ASSERT_EQ(out_cpu.shape(), out_gpu.shape());
    std::string where;
    EXPECT_LE(worst_ratio(out_gpu, out_cpu, atol, rtol, where), 1.0) << "forward, " << where;

    gl::Generator wgen(7);
    Tensor w = Tensor::rand(out_cpu.shape(), wgen, DType::f32, -1.0, 1.0);
    gl::sum(gl::mul(out_cpu, w)).backward();
    gl::sum(gl::mul(out_gpu, w.to(Device::cuda()))).backward();
    for (std::size_t k = 0; k < cpu_in.size(); ++k) {
      Tensor gc = cpu_in[k].grad(), gg = gpu_in[k].grad();
      ASSERT_EQ(gc.defined(), gg.defined()) << "input " << k;
      if (!gc.defined()) continue;
      EXPECT_TRUE(gg.device().is_cuda()) << "gradient of input " << k << " left the device";
      EXPECT_LE(worst_ratio(gg, gc, atol, rtol, where), 1.0)
          << "gradient of input " << k << ", " << where;
    }
  }
}

TEST(CudaParity, EveryGemmBackendAgreesWithCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA parity skipped: " << why;
  gl::Generator gen(3);
  Tensor a = Tensor::rand({67, 45}, gen, DType::f32, -1, 1);
  Tensor b = Tensor::rand({45, 33}, gen, DType::f32, -1, 1);
  Tensor bias = Tensor::rand({67}, gen, DType::f32, -1, 1);
  Tensor want = gl::matmul(a, b);
  Tensor want_lin = gl::linear(b.t(), a, bias);  // [33,45] x [67,45]^T + bias
  for (auto algo : {gl::CudaGemmAlgo::native, gl::CudaGemmAlgo::cublas, gl::CudaGemmAlgo::tf32}) {
    SCOPED_TRACE(gl::cuda_gemm_algo_name(algo));
    gl::set_cuda_gemm_algo(algo);
    // TF32 keeps 10 mantissa bits of the inputs: about 1e-3 relative per product.
    double tol = algo == gl::CudaGemmAlgo::tf32 ? 2e-2 : 1e-4;
    std::string where;
    EXPECT_LE(
        worst_ratio(gl::matmul(a.to(Device::cuda()), b.to(Device::cuda())), want, tol, 1e-3, where),
        1.0)
        << where;
    EXPECT_LE(worst_ratio(gl::linear(b.t().to(Device::cuda()), a.to(Device::cuda()),
                                     bias.to(Device::cuda())),
                          want_lin, tol, 1e-3, where),
              1.0)
        << where;
  }
  gl::set_cuda_gemm_algo(gl::CudaGemmAlgo::native);
}

TEST(CudaParity, DropoutMaskMatchesCpuBitForBit) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA parity skipped: " << why;
  Tensor x = Tensor::ones({1000, 37}, DType::f32);
  gl::Generator g1(99), g2(99);
  auto cpu = gl::dropout(x, 0.3, g1, true).to_vector<float>();
  auto gpu = gl::dropout(x.to(Device::cuda()), 0.3, g2, true).to_vector<float>();
  ASSERT_EQ(cpu.size(), gpu.size());
  for (std::size_t i = 0; i < cpu.size(); ++i) ASSERT_EQ(cpu[i], gpu[i]) << "element " << i;
  EXPECT_EQ(g1.offset(), g2.offset());
}

TEST(CudaParity, MixedDevicesNameTheOpAndDevices) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA parity skipped: " << why;
  Tensor a = Tensor::ones({2, 2}), b = Tensor::ones({2, 2}).to(Device::cuda());
  try {
    gl::add(a, b);
    FAIL() << "expected an error";
  } catch (const gl::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
    EXPECT_NE(m.find("cpu"), std::string::npos) << m;
  }
  EXPECT_THROW(gl::matmul(b.to(DType::f64), b.to(DType::f64)), gl::Error);  // f32 only on CUDA
}

// The device half of Tensor.FloatToIntegerCastsTruncateAndSaturate: the copy and fill kernels
// convert with the CPU's rule.
TEST(CudaParity, FloatToIntegerCastsMatchCpu) {
  std::string why = no_gpu_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA parity skipped: " << why;
  const std::vector<double> src = {std::nan(""), INFINITY, -INFINITY, 1e30,   -1e30,   2.9, -2.9,
                                   300.0,        -5.0,     255.5,     9.3e18, -9.3e18, 0.0, -0.0};
  const gl::Shape shape{int64_t(src.size())};
  for (DType from : {DType::f64, DType::f32}) {
    for (DType to : {DType::i64, DType::u8}) {
      SCOPED_TRACE(std::string(gl::dtype_name(from)) + " -> " + gl::dtype_name(to));
      Tensor x = Tensor::from_vector<double>(src, shape).to(from);
      const auto want = x.to(to).to_vector<int64_t>();
      EXPECT_EQ(x.to(Device::cuda()).to(to).to_vector<int64_t>(), want);
      Tensor strided = Tensor::zeros({7, 2}, to, Device::cuda()).t();
      strided.copy_(Tensor::from_vector<double>(src, {2, 7}).to(from).to(Device::cuda()));
      EXPECT_EQ(strided.contiguous().to_vector<int64_t>(), want);
    }
  }
  for (double v : src) {
    SCOPED_TRACE(v);
    for (DType to : {DType::i64, DType::u8})
      EXPECT_EQ(Tensor::full({2}, v, to, Device::cuda()).to_vector<int64_t>(),
                Tensor::full({2}, v, to).to_vector<int64_t>());
  }
}

// Tensors on cuda:1 used while cuda:0 is current: every op, its backward and the copies run on
// cuda:1 (a kernel on cuda:0 would fault on cuda:1's memory) and leave cuda:0 current. Named
// apart from CudaParity.*: it skips on a one-GPU machine, where a skipping CUDA test fails
// scripts/gpu_check.sh (which runs it with the rest of ctest, where a skip is fine).
using MultiGpu = gl::testing::TwoGpuTest;
TEST_F(MultiGpu, OpsRunOnTheDeviceOfTheirTensors) {
#if defined(GRADLENS_HAVE_CUDA)
  namespace kc = gl::kernels::cuda;
  const Device d1 = Device::cuda(1);
  gl::Generator gen(11);
  const Tensor x = Tensor::rand({2, 3, 9, 8}, gen, DType::f32, -1, 1);
  const Tensor w = Tensor::rand({4, 3, 3, 3}, gen, DType::f32, -1, 1);
  const Tensor b = Tensor::rand({4}, gen, DType::f32, -1, 1);
  const Tensor lw = Tensor::rand({5, 4 * 4 * 4}, gen, DType::f32, -1, 1);
  const Tensor labels = Tensor::from_vector<int64_t>({3, 1}, {2});
  // Loss, then the gradients of every input, all copied back to the host.
  auto run = [&](Device d) {
    std::vector<Tensor> in{x.to(d), w.to(d), b.to(d), lw.to(d)};
    for (auto& t : in) t.requires_grad_(true);
    gl::Conv2dParams p;
    p.padding = {1, 1};
    Tensor h = gl::max_pool2d(gl::relu(gl::conv2d(in[0], in[1], in[2], p)), {2, 2});
    h = gl::avg_pool2d(h, {1, 1});
    Tensor logits = gl::linear(h.reshape({2, 4 * 4 * 4}), in[3], Tensor());
    Tensor loss =
        gl::add(gl::cross_entropy(logits, labels), gl::mean(gl::sum(gl::softmax(logits, 1), {0})));
    loss.backward();
    std::vector<Tensor> r{loss.to(Device::cpu())};
    for (auto& t : in) r.push_back(t.grad().to(Device::cpu()));
    return r;
  };
  const auto want = run(Device::cpu());
  const auto got = run(d1);
  EXPECT_EQ(kc::current_device(), 0);
  for (std::size_t i = 0; i < want.size(); ++i) {
    std::string where;
    EXPECT_LE(worst_ratio(got[i], want[i], 1e-4, 1e-3, where), 1.0)
        << "result " << i << ": " << where;
  }
  // Creation, fills and copies between the devices, either way.
  Tensor z = Tensor::zeros({3, 5}, DType::f32, d1);
  z.fill_(2.5);
  Tensor on0 = z.to(Device::cuda(0));
  EXPECT_EQ(on0.device(), Device::cuda(0));
  EXPECT_EQ(on0.to(d1).to(DType::f64).to_vector<double>(), std::vector<double>(15, 2.5));
  EXPECT_EQ(gl::sum(Tensor::full({4}, 1.5, DType::f32, d1)).item(), 6.0);
  EXPECT_EQ(kc::current_device(), 0);
  // Mixing the two devices in one op is refused, naming both.
  try {
    gl::add(z, on0);
    FAIL() << "expected an error";
  } catch (const gl::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda:1"), std::string::npos) << m;
  }
#endif
}

}  // namespace
