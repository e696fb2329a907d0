// bench_conv.cpp: conv2d forward + backward at given shapes, median wall time of N repeats
// after warm-up. Driven by bench/compare_cnn_cpu.py, which times PyTorch at the same shapes in
// the same run. usage: bench_conv --threads T --repeats R [--algo
// automatic|per_image|batched|winograd|direct]
//   N,C,H,W,OC,K,PAD,NEEDS_DX ...
// Prints one line per shape: "<spec> fwd_ms <median> fwd_bwd_ms <median> fwd_cpu_ms <median>
// fwd_bwd_cpu_ms <median>" (wall and process CPU time).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/winograd.h"
#include "train/trainer.h"

using namespace gl;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
// CPU time of the whole process (all threads): on a loaded machine it still counts only the
// work done, where wall time also counts the waits for a core.
double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 20;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::stoi(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc)
      repeats = std::stoi(argv[++i]);
    else if (a == "--algo" && i + 1 < argc) {
      const std::string algo = argv[++i];
      using kernels::cpu::ConvAlgo;
      if (algo == "automatic")
        kernels::cpu::set_conv_algo(ConvAlgo::automatic);
      else if (algo == "per_image")
        kernels::cpu::set_conv_algo(ConvAlgo::per_image);
      else if (algo == "batched")
        kernels::cpu::set_conv_algo(ConvAlgo::batched);
      else if (algo == "winograd")
        kernels::cpu::set_conv_algo(ConvAlgo::winograd);
      else if (algo == "direct")
        kernels::cpu::set_conv_algo(ConvAlgo::direct);
      else {
        std::fprintf(
            stderr,
            "bench_conv: unknown --algo '%s' (automatic, per_image, batched, winograd, direct)\n",
            algo.c_str());
        return 2;
      }
    } else if (a == "--winograd-tile" && i + 1 < argc) {
      try {
        kernels::cpu::set_winograd_tile(std::stoi(argv[++i]));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_conv: --winograd-tile: %s\n", e.what());
        return 2;
      }
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_conv [--threads T] [--repeats R] [--algo "
          "automatic|per_image|batched|winograd|direct]\n"
          "                  [--winograd-tile 0|2|3|4|5]\n"
          "                  N,C,H,W,OC,K,PAD,NEEDS_DX ...\n");
      return 0;
    } else
      specs.push_back(a);
  }
  omp_set_num_threads(threads);
  for (const auto& spec : specs) {
    std::vector<int64_t> v = train::parse_int_list(spec, "shape");
    if (v.size() != 8) {
      std::fprintf(stderr, "bench_conv: shape '%s' must be N,C,H,W,OC,K,PAD,NEEDS_DX\n",
                   spec.c_str());
      return 2;
    }
    Generator gen(1);
    Tensor x = Tensor::randn({v[0], v[1], v[2], v[3]}, gen).requires_grad_(v[7] != 0);
    Tensor w = Tensor::randn({v[4], v[1], v[5], v[5]}, gen, DType::f32, 0.0, 0.1).requires_grad_();
    Tensor b = Tensor::zeros({v[4]}).requires_grad_();
    Conv2dParams p{{1, 1}, {v[6], v[6]}, {1, 1}, 1};
    Tensor gy;
    std::vector<double> fwd, both, fwd_cpu, both_cpu;
    for (int r = 0; r < repeats + 3; ++r) {
      if (!gy.defined()) {
        NoGrad ng;
        gy = Tensor::randn(conv2d(x, w, b, p).shape(), gen);
      }
      double t0 = now_ms(), c0 = cpu_ms();
      Tensor y;
      {
        NoGrad ng;
        y = conv2d(x, w, b, p);
      }
      double t1 = now_ms(), c1 = cpu_ms();
      y = conv2d(x, w, b, p);
      y.backward(gy);
      double t2 = now_ms(), c2 = cpu_ms();
      x.zero_grad();
      w.zero_grad();
      b.zero_grad();
      if (r >= 3) {  // warm-up: scratch buffers and page faults
        fwd.push_back(t1 - t0);
        both.push_back(t2 - t1);
        fwd_cpu.push_back(c1 - c0);
        both_cpu.push_back(c2 - c1);
      }
    }
    std::printf("%s fwd_ms %.4f fwd_bwd_ms %.4f fwd_cpu_ms %.4f fwd_bwd_cpu_ms %.4f\n",
                spec.c_str(), median(fwd), median(both), median(fwd_cpu), median(both_cpu));
  }
  return 0;
}
