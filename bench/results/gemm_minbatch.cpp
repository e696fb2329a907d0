// gemm_minbatch.cpp: timing harness for a loaded machine: ours vs OpenBLAS cblas_sgemm alternating in
// batches of 5 calls, minimum per-call time of each. Not part of the build; compile with
//   g++ -std=c++20 -O3 -DNDEBUG -fopenmp -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread bench/results/gemm_minbatch.cpp kernels/cpu/gemm*.cpp -lopenblas -o gemm_minbatch
// usage: gemm_minbatch ta tb M N K batches [threads]
#include <omp.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <random>
#include <vector>
#include "kernels/kernels.h"
#include <cblas.h>
int main(int argc, char** argv) {
  bool ta = atoi(argv[1]), tb = atoi(argv[2]);
  long M = atol(argv[3]), N = atol(argv[4]), K = atol(argv[5]), it = atol(argv[6]);
  int th = argc > 7 ? atoi(argv[7]) : 1;
  omp_set_num_threads(th);
  std::mt19937 rng(1); std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> A(M * K), B(K * N), C(M * N), R(M * N);
  for (auto& v : A) v = d(rng);
  for (auto& v : B) v = d(rng);
  long lda = ta ? M : K, ldb = tb ? K : N;
  gl::kernels::cpu::sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), N);
  gl::kernels::cpu::sgemm_reference(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, R.data(), N);
  double err = 0; for (long i = 0; i < M * N; ++i) err = std::max(err, (double)std::fabs(C[i] - R[i]));
  // min over batches of 5 calls, ours and OpenBLAS alternating: robust to other processes
  openblas_set_num_threads(th);
  double best = 1e9, bestb = 1e9;
  for (long i = 0; i < it; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < 5; ++r)
      gl::kernels::cpu::sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), N);
    auto t1 = std::chrono::steady_clock::now();
    for (int r = 0; r < 5; ++r)
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, R.data(), N);
    auto t2 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count() / 5);
    bestb = std::min(bestb, std::chrono::duration<double>(t2 - t1).count() / 5);
  }
  printf("ta=%d tb=%d %ldx%ldx%ld th=%d maxerr=%.2e ours %.1f GFLOP/s (%.2f us) openblas %.1f GFLOP/s ratio %.2f\n", ta, tb, M, N, K, th, err,
         2.0 * M * N * K / best * 1e-9, best * 1e6, 2.0 * M * N * K / bestb * 1e-9, bestb / best);
}
