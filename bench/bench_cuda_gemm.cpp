// bench_cuda_gemm.cpp: our tiled SGEMM (and the opt-in TF32 kernel) against cuBLAS FP32 on
// the same device buffers, interleaved (ours, cuBLAS, ours, ...) so clock and thermal drift
// hit both alike; each figure is the median of the repeats, timed with CUDA events, after
// warm-up. Shapes: the MLP training shapes 128x784x128 (with bias+ReLU epilogue), 128x128x128,
// and square 1024..8192 (--max-size caps them). Prints a skip message and exits 0 without CUDA
// or without a GPU.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Args {
  long max_size = 8192;  // the largest square shape
  int repeats = 0;       // 0: 15, or 5 from 8192 up
};

// Exits with 0 after --help, with 2 and a message on a bad argument.
Args parse_args(int argc, char** argv) {
  const char* usage =
      "usage: bench_cuda_gemm [--max-size N] [--repeats R]\n"
      "  --max-size N  skip the square shapes above N (default 8192)\n"
      "  --repeats R   timings per shape and algorithm, each the mean of enough calls for about\n"
      "                a millisecond (default 15, 5 from 8192 up); the median is printed\n";
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&](long lo) {
      char* end = nullptr;
      const long v = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
      if (i + 1 >= argc || *argv[i + 1] == '\0' || *end != '\0' || v < lo) {
        std::fprintf(stderr, "bench_cuda_gemm: %s needs an integer of at least %ld\n%s", s.c_str(),
                     lo, usage);
        std::exit(2);
      }
      ++i;
      return v;
    };
    if (s == "--help" || s == "-h") {
      std::printf("%s", usage);
      std::exit(0);
    } else if (s == "--max-size") {
      a.max_size = value(128);
    } else if (s == "--repeats") {
      a.repeats = int(value(1));
    } else {
      std::fprintf(stderr, "bench_cuda_gemm: unknown argument '%s'\n%s", s.c_str(), usage);
      std::exit(2);
    }
  }
  return a;
}

}  // namespace

#if !defined(GRADLENS_HAVE_CUDA)
int main(int argc, char** argv) {
  parse_args(argc, argv);
  std::printf("bench_cuda_gemm: built without CUDA; nothing to measure\n");
  return 0;
}
#else
#include <algorithm>
#include <random>
#include <vector>

#include "kernels/cuda/runtime.h"
#include "kernels/cuda/sgemm.h"

namespace kc = gl::kernels::cuda;

namespace {

struct Shape {
  int64_t M, N, K;
  bool epilogue;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  if (kc::device_count() == 0) {
    std::printf("bench_cuda_gemm: no CUDA device (driver or GPU missing); nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  GL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const Shape shapes[] = {{128, 128, 784, true},     {128, 128, 128, false},
                          {1024, 1024, 1024, false}, {2048, 2048, 2048, false},
                          {4096, 4096, 4096, false}, {8192, 8192, 8192, false}};
  const kc::GemmAlgo algos[] = {kc::GemmAlgo::tiled, kc::GemmAlgo::tf32, kc::GemmAlgo::cublas};
  cudaStream_t s = kc::default_stream();
  cudaEvent_t start, stop;
  GL_CUDA_CHECK(cudaEventCreate(&start));
  GL_CUDA_CHECK(cudaEventCreate(&stop));
  std::printf("%-18s %-8s %10s %10s %8s\n", "MxNxK", "algo", "median_ms", "GFLOP/s", "vs_cublas");
  for (const Shape& sh : shapes) {
    if (sh.M > args.max_size) continue;
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> hA(sh.M * sh.K), hB(sh.K * sh.N), hbias(sh.N);
    for (auto& v : hA) v = u(rng);
    for (auto& v : hB) v = u(rng);
    for (auto& v : hbias) v = u(rng);
    kc::DeviceBuffer<float> A(hA.size()), B(hB.size()), C(sh.M * sh.N), bias(sh.N);
    kc::copy_to_device(A.get(), hA.data(), hA.size() * 4);
    kc::copy_to_device(B.get(), hB.data(), hB.size() * 4);
    kc::copy_to_device(bias.get(), hbias.data(), hbias.size() * 4);
    gl::kernels::Epilogue ep{};
    if (sh.epilogue) ep = {bias.get(), gl::kernels::Activation::relu};
    const double flops = 2.0 * double(sh.M) * sh.N * sh.K;
    // Enough calls per timing for about a millisecond of work even on small shapes.
    const int inner = std::max(1, int(2e9 / flops));
    const int repeats = args.repeats > 0 ? args.repeats : sh.M >= 8192 ? 5 : 15;
    auto run = [&](kc::GemmAlgo a) {
      kc::sgemm_with(a, false, false, sh.M, sh.N, sh.K, 1.0f, A.get(), sh.K, B.get(), sh.N, 0.0f,
                     C.get(), sh.N, ep, s);
    };
    for (auto a : algos) run(a);  // warm-up (handles, allocator, module load)
    kc::synchronize(s);
    std::vector<std::vector<double> > ms(3);
    for (int r = 0; r < repeats; ++r)
      for (int ai = 0; ai < 3; ++ai) {
        GL_CUDA_CHECK(cudaEventRecord(start, s));
        for (int i = 0; i < inner; ++i) run(algos[ai]);
        GL_CUDA_CHECK(cudaEventRecord(stop, s));
        GL_CUDA_CHECK(cudaEventSynchronize(stop));
        float t = 0;
        GL_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
        ms[ai].push_back(double(t) / inner);
      }
    const double ref = median(ms[2]);
    char name[64];
    std::snprintf(name, sizeof(name), "%ldx%ldx%ld%s", long(sh.M), long(sh.N), long(sh.K),
                  sh.epilogue ? "+ep" : "");
    for (int ai = 0; ai < 3; ++ai) {
      const double m = median(ms[ai]);
      std::printf("%-18s %-8s %10.4f %10.1f %8.2f\n", name, kc::gemm_algo_name(algos[ai]), m,
                  flops / (m * 1e6), ref / m);
    }
  }
  return 0;
}
#endif
