// test_gemm_batched.cpp: sgemm_batched / dgemm_batched, the pointer-array batch of same-shape
// GEMMs behind fused multi-model training. Every entry must be bit for bit the lone
// sgemm/dgemm result for the same arguments (the fused step's exactness rests on it), at 1, 2
// and 5 threads (more threads than entries cuts entries into row chunks), on every ISA this CPU
// runs, for all transpose forms, padded leading dimensions, beta, bias (some entries without)
// and the fused activations; the lone results are checked against the naive reference too.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/gemm_ops.h"

namespace gl::kernels::cpu {
namespace {

using gemm_test::Ops;
using gemm_test::runnable_isas;

struct Shape {
  bool ta, tb;
  int64_t M, N, K;
};

// One batch of `count` entries with their own random A, B, C and bias (entry 1 has no bias).
template <class T>
void check_batch(const Shape& s, int64_t count, int64_t pad, double beta, Activation act,
                 const std::string& what) {
  std::mt19937 rng(uint32_t(s.M * 131 + s.N * 7 + s.K + count));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t a_rows = s.ta ? s.K : s.M, a_cols = s.ta ? s.M : s.K;
  const int64_t b_rows = s.tb ? s.N : s.K, b_cols = s.tb ? s.K : s.N;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = s.N + pad;
  auto fill = [&](int64_t n) {
    std::vector<T> v(size_t(std::max<int64_t>(n, 1)));
    for (auto& x : v) x = T(dist(rng));
    return v;
  };
  std::vector<std::vector<T>> A, B, C0, bias;
  for (int64_t i = 0; i < count; ++i) {
    A.push_back(fill(a_rows * lda));
    B.push_back(fill(b_rows * ldb));
    C0.push_back(fill(s.M * ldc));
    if (beta == 0)  // must never be read; the padding must survive
      for (int64_t r = 0; r < s.M; ++r)
        for (int64_t j = 0; j < ldc; ++j)
          C0.back()[size_t(r * ldc + j)] = j < s.N ? std::numeric_limits<T>::quiet_NaN() : T(7);
    bias.push_back(fill(s.N));
  }
  const T alpha = T(0.75);
  // The lone results at 1 and 2 threads (equal to each other), checked against the reference.
  std::vector<std::vector<T>> want(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    Epilogue ep{i == 1 ? nullptr : bias[size_t(i)].data(), act};
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<T> c = C0[size_t(i)];
      Ops<T>::gemm(s.ta, s.tb, s.M, s.N, s.K, alpha, A[size_t(i)].data(), lda, B[size_t(i)].data(),
                   ldb, T(beta), c.data(), ldc, ep);
      if (threads == 1) {
        want[size_t(i)] = c;
        std::vector<T> r = C0[size_t(i)];
        Ops<T>::ref(s.ta, s.tb, s.M, s.N, s.K, alpha, A[size_t(i)].data(), lda, B[size_t(i)].data(),
                    ldb, T(beta), r.data(), ldc, ep);
        double worst = 0;
        for (size_t e = 0; e < r.size(); ++e) {
          const double d = double(std::abs(r[e] - c[e]));  // a NaN counts as the largest
          worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
        }
        ASSERT_LE(worst, Ops<T>::kTolPerK * double(s.K + 4)) << what;
      } else {
        ASSERT_EQ(std::memcmp(c.data(), want[size_t(i)].data(), c.size() * sizeof(T)), 0)
            << what << ": the lone GEMM differs between 1 and 2 threads";
      }
    }
  }
  std::vector<const T*> pa, pb, pbias;
  for (int64_t i = 0; i < count; ++i) {
    pa.push_back(A[size_t(i)].data());
    pb.push_back(B[size_t(i)].data());
    pbias.push_back(i == 1 ? nullptr : bias[size_t(i)].data());
  }
  for (int threads : {1, 2, 5}) {
    omp_set_num_threads(threads);
    std::vector<std::vector<T>> got = C0;
    std::vector<T*> pc;
    for (auto& c : got) pc.push_back(c.data());
    Ops<T>::batched(s.ta, s.tb, s.M, s.N, s.K, alpha, pa.data(), lda, pb.data(), ldb, T(beta),
                    pc.data(), ldc, pbias.data(), act, count);
    for (int64_t i = 0; i < count; ++i)
      ASSERT_EQ(std::memcmp(got[size_t(i)].data(), want[size_t(i)].data(),
                            want[size_t(i)].size() * sizeof(T)),
                0)
          << what << " threads=" << threads << ": entry " << i << " differs from its lone GEMM";
  }
}

class GemmBatched : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { set_isa(GetParam().c_str()); }
  void TearDown() override {
    set_isa("auto");
    omp_set_num_threads(saved_);
  }
  int saved_ = omp_get_max_threads();
};

TEST_P(GemmBatched, EveryEntryEqualsItsLoneGemmBitForBit) {
  // The training shapes of a width-128 MLP on 784 inputs (forward X W^T, dW = dY^T X,
  // dX = dY W), a batch of 1, odd sizes, and shapes that cross the kc / mc blocks.
  const Shape shapes[] = {
      {false, true, 128, 128, 784},  {false, true, 128, 128, 128}, {false, true, 128, 10, 128},
      {true, false, 128, 784, 128},  {true, false, 128, 128, 128}, {true, false, 10, 128, 128},
      {false, false, 128, 128, 128}, {false, false, 128, 128, 10}, {false, true, 1, 128, 128},
      {true, true, 37, 45, 29},      {false, false, 300, 70, 600}, {true, true, 97, 33, 1030}};
  int n = 0;
  for (const Shape& s : shapes) {
    const std::string what = GetParam() + " ta=" + std::to_string(s.ta) +
                             " tb=" + std::to_string(s.tb) + " M=" + std::to_string(s.M) +
                             " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K);
    const Activation act = n % 3 == 0   ? Activation::relu
                           : n % 3 == 1 ? Activation::none
                                        : Activation::tanh;
    check_batch<float>(s, 1 + (n % 4) * 2, n % 2, n % 5 == 4 ? 0.5 : 0.0, act, what + " f32");
    if (n % 3 == 0) check_batch<double>(s, 3, 1, 0.0, Activation::sigmoid, what + " f64");
    ++n;
  }
}

// prefetch_during_next_gemm only moves memory: a call given hints (one line, several regions of
// up to 4 MiB, more than four, a strided region it must leave out, its own operands) computes
// what it computes without them, bit for bit, lone or batched, and the hints are spent by the
// call that follows them (a later call without hints also agrees).
template <class T>
void check_hints(const Shape& s, int64_t count, const std::string& what) {
  std::mt19937 rng(uint32_t(s.M + 17 * s.N + 3 * s.K));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
  auto fill = [&](int64_t n) {
    std::vector<T> v(static_cast<size_t>(n));
    for (auto& x : v) x = T(dist(rng));
    return v;
  };
  std::vector<std::vector<T>> A, B, bias;
  for (int64_t i = 0; i < count; ++i) {
    A.push_back(fill(s.M * s.K));
    B.push_back(fill(s.K * s.N));
    bias.push_back(fill(s.N));
  }
  const std::vector<char> far(size_t(4) << 20, 1);
  auto hint_all = [&](int variant) {
    switch (variant) {
      case 0:
        break;
      case 1:
        prefetch_during_next_gemm(far.data(), 1, 64, 64);
        break;
      case 2:
        for (int r = 0; r < 6; ++r)  // the fifth and sixth are dropped
          prefetch_during_next_gemm(far.data() + r * 4096, 1, int64_t(far.size()) - r * 4096,
                                    int64_t(far.size()));
        break;
      case 3:
        prefetch_during_next_gemm(far.data(), 16, 64, 4096);  // strided: left out
        prefetch_during_next_gemm(A[0].data(), s.M, s.K * int64_t(sizeof(T)),
                                  s.K * int64_t(sizeof(T)));
        prefetch_during_next_gemm(B[0].data(), 1, s.K * s.N * int64_t(sizeof(T)), 0);
        break;
    }
  };
  std::vector<std::vector<T>> want;
  for (int variant = 0; variant < 4; ++variant) {
    std::vector<std::vector<T>> lone, batch(size_t(count), std::vector<T>(size_t(s.M * s.N)));
    for (int64_t i = 0; i < count; ++i) {
      lone.emplace_back(size_t(s.M * s.N));
      hint_all(variant);
      Ops<T>::gemm(s.ta, s.tb, s.M, s.N, s.K, T(1), A[size_t(i)].data(), lda, B[size_t(i)].data(),
                   ldb, T(0), lone.back().data(), ldc,
                   Epilogue{bias[size_t(i)].data(), Activation::none});
    }
    std::vector<const T*> pa, pb, pbias;
    std::vector<T*> pc;
    for (int64_t i = 0; i < count; ++i) {
      pa.push_back(A[size_t(i)].data());
      pb.push_back(B[size_t(i)].data());
      pbias.push_back(bias[size_t(i)].data());
      pc.push_back(batch[size_t(i)].data());
    }
    hint_all(variant);
    Ops<T>::batched(s.ta, s.tb, s.M, s.N, s.K, T(1), pa.data(), lda, pb.data(), ldb, T(0),
                    pc.data(), ldc, pbias.data(), Activation::none, count);
    if (variant == 0) want = lone;
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(std::memcmp(lone[size_t(i)].data(), want[size_t(i)].data(),
                            want[size_t(i)].size() * sizeof(T)),
                0)
          << what << " hints " << variant << ": lone entry " << i;
      ASSERT_EQ(std::memcmp(batch[size_t(i)].data(), want[size_t(i)].data(),
                            want[size_t(i)].size() * sizeof(T)),
                0)
          << what << " hints " << variant << ": batched entry " << i;
    }
  }
}

TEST_P(GemmBatched, PrefetchHintsChangeNoResult) {
  omp_set_num_threads(1);  // the hints act on one thread
  const Shape shapes[] = {{false, true, 128, 128, 784},  {true, false, 128, 784, 128},
                          {false, false, 128, 128, 128}, {true, false, 128, 128, 128},
                          {false, true, 37, 45, 29},     {false, false, 300, 70, 600}};
  for (const Shape& s : shapes) {
    const std::string what = GetParam() + " ta=" + std::to_string(s.ta) +
                             " tb=" + std::to_string(s.tb) + " M=" + std::to_string(s.M) +
                             " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K);
    check_hints<float>(s, 3, what + " f32");
    check_hints<float>(s, 1, what + " f32");
    check_hints<double>(s, 2, what + " f64");
  }
}

INSTANTIATE_TEST_SUITE_P(AllRunnable, GemmBatched, ::testing::ValuesIn(runnable_isas()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(GemmBatchedArgs, EmptyAndDegenerateBatches) {
  // count 0 and M = 0 touch nothing; K = 0 leaves beta * C + bias through the activation.
  sgemm_batched(false, false, 4, 4, 4, 1.f, nullptr, 4, nullptr, 4, 0.f, nullptr, 4, nullptr,
                Activation::none, 0);
  std::vector<float> c0{-1, 2, -3, 4}, c1{5, -6, 7, -8}, b{1, 1};
  float* pc[] = {c0.data(), c1.data()};
  const float* pa[] = {c0.data(), c1.data()};
  const float* pbias[] = {b.data(), nullptr};
  sgemm_batched(false, false, 2, 2, 0, 1.f, pa, 1, pa, 2, 1.f, pc, 2, pbias, Activation::relu, 2);
  EXPECT_EQ(c0, (std::vector<float>{0, 3, 0, 5}));
  EXPECT_EQ(c1, (std::vector<float>{5, 0, 7, 0}));
}

TEST(GemmBatchedArgs, RejectsBadArgumentsNamingTheCall) {
  std::vector<float> A(64), B(64), C(64);
  const float* pa[] = {A.data(), A.data()};
  const float* pb[] = {B.data(), B.data()};
  float* pc[] = {C.data(), nullptr};
  try {
    sgemm_batched(false, false, 4, 4, 4, 1.f, pa, 3, pb, 4, 0.f, pc, 4, nullptr, Activation::none,
                  1);
    FAIL() << "lda < K accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sgemm_batched"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("lda=3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sgemm_batched(false, false, 4, 4, 4, 1.f, pa, 4, pb, 4, 0.f, pc, 4, nullptr,
                             Activation::none, 2),
               std::invalid_argument);  // entry 1 has no C
  EXPECT_THROW(sgemm_batched(false, false, 4, 4, 4, 1.f, pa, 4, pb, 4, 0.f, pc, 4, nullptr,
                             Activation::none, -1),
               std::invalid_argument);
}

}  // namespace
}  // namespace gl::kernels::cpu
