// test_gemm.cpp: the packed CPU GEMM (sgemm/dgemm) against the naive reference loops, on every
// ISA this CPU can run: odd and zero shapes, all transpose forms, padded leading dimensions,
// alpha/beta (beta = 0 must ignore NaN in C), blocks that cross kc/mc/nc, fused epilogues,
// and 1 vs 2 OpenMP threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/vecmath.h"
#include "kernels/kernels.h"
#include "tests/kernels/gemm_ops.h"

namespace gl::kernels::cpu {
namespace {

using gemm_test::Ops;
using gemm_test::runnable_isas;

struct Case {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t pad = 0;  // extra elements per row of A, B and C beyond the row width
  double alpha = 1, beta = 0;
  bool with_bias = false;
  Activation act = Activation::none;
};

std::string describe(const Case& c, const std::string& isa) {
  return "isa=" + isa + " ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) +
         " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " pad=" + std::to_string(c.pad) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " bias=" + std::to_string(c.with_bias) +
         " act=" + std::to_string(int(c.act));
}

// Runs one case through the fast path and the reference; returns the fast result and checks
// it element by element (padding included: it must be left untouched).
template <class T>
std::vector<T> check_case(const Case& c, const std::string& isa, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  std::vector<T> A(size_t(std::max<int64_t>(1, a_rows * lda)));
  std::vector<T> B(size_t(std::max<int64_t>(1, b_rows * ldb)));
  std::vector<T> C0(size_t(std::max<int64_t>(1, c.M * ldc)));
  std::vector<T> bias(size_t(std::max<int64_t>(1, c.N)));
  for (auto& v : A) v = T(dist(rng));
  for (auto& v : B) v = T(dist(rng));
  for (auto& v : bias) v = T(dist(rng));
  if (c.beta == 0) {
    for (auto& v : C0) v = std::numeric_limits<T>::quiet_NaN();  // must never be read
    for (int64_t i = 0; i < c.M; ++i)  // sentinels in the padding, which must survive
      for (int64_t j = c.N; j < ldc; ++j) C0[size_t(i * ldc + j)] = T(7);
  } else {
    for (auto& v : C0) v = T(dist(rng));
  }
  std::vector<T> got = C0, want = C0;
  Epilogue ep{c.with_bias ? bias.data() : nullptr, c.act};
  Ops<T>::gemm(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A.data(), lda, B.data(), ldb, T(c.beta),
               got.data(), ldc, ep);
  Ops<T>::ref(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A.data(), lda, B.data(), ldb, T(c.beta),
              want.data(), ldc, ep);
  const double tol =
      Ops<T>::kTolPerK * double(c.K + 4) * (std::abs(c.alpha) + std::abs(c.beta) + 1);
  int reported = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t at = size_t(i * ldc + j);
      const double g = double(got[at]), w = double(want[at]);
      const bool ok = j < c.N ? std::abs(g - w) <= tol : g == double(C0[at]);
      if (!ok && reported++ < 3)
        ADD_FAILURE() << describe(c, isa) << " at (" << i << "," << j << "): got " << g << " want "
                      << w << " tol " << tol;
    }
  }
  return got;
}

template <class T>
void sweep_shapes(const std::string& isa) {
  const int64_t Ms[] = {0, 1, 5, 6, 7, 13, 37, 128, 129};
  const int64_t Ns[] = {0, 1, 15, 16, 17, 37, 129};
  const int64_t Ks[] = {0, 1, 7, 37, 129};
  int n = 0;
  for (int64_t M : Ms)
    for (int64_t N : Ns)
      for (int64_t K : Ks)
        for (int t = 0; t < 4; ++t) {
          Case c;
          c.ta = t & 1;
          c.tb = t & 2;
          c.M = M;
          c.N = N;
          c.K = K;
          c.pad = (n % 3 == 0) ? 3 : 0;
          const double alphas[] = {1.0, -0.75, 2.0};
          const double betas[] = {0.0, 1.0, -0.5};
          c.alpha = alphas[n % 3];
          c.beta = betas[(n / 3) % 3];
          ++n;
          check_case<T>(c, isa);
        }
}

class GemmIsa : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { set_isa(GetParam().c_str()); }
  void TearDown() override { set_isa("auto"); }
};

TEST_P(GemmIsa, ShapesTransposesStridesF32) {
  sweep_shapes<float>(GetParam());
}
TEST_P(GemmIsa, ShapesTransposesStridesF64) {
  sweep_shapes<double>(GetParam());
}

// Every count of rows below a whole micro-panel (1 to 13 for the 14-row AVX-512 kernels, 1 to 5
// for AVX2's 6) has its own edge kernel: M from 1 to 30 reaches each of them after zero, one and
// two whole panels, with B read in place (N up to 8 panels) and packed (tb), a bias and ReLU in
// the epilogue, beta 0 and 1.
TEST_P(GemmIsa, EveryEdgeRowCount) {
  for (int64_t M = 1; M <= 30; ++M)
    for (int64_t N : {int64_t(10), int64_t(40)})
      for (int t = 0; t < 4; ++t)
        check_case<float>({.ta = (t & 1) != 0,
                           .tb = (t & 2) != 0,
                           .M = M,
                           .N = N,
                           .K = 19,
                           .beta = (M + t) % 2 == 0 ? 0.0 : 1.0,
                           .with_bias = t == 1,
                           .act = t == 1 ? Activation::relu : Activation::none},
                          GetParam(), uint32_t(M));
}

// Crosses the k-block (kc), A block (mc) and B block (nc) boundaries of every kernel set,
// so the beta=1 continuation of later k-blocks and the multi-block loops are exercised.
TEST_P(GemmIsa, CrossesCacheBlocks) {
  struct Shape {
    int64_t M, N, K;
  };
  // Tall (several mc blocks, several k-blocks) and wide (several nc blocks).
  const Shape shapes[] = {{301, 40, 611}, {13, 4133, 300}};
  for (const Shape& s : shapes) {
    for (int t = 0; t < 4; ++t) {
      Case c;
      c.ta = t & 1;
      c.tb = t & 2;
      c.M = s.M;
      c.N = s.N;
      c.K = s.K;
      c.alpha = 0.5;
      c.beta = 0.25;
      c.with_bias = true;
      c.act = Activation::tanh;
      check_case<float>(c, GetParam());
      check_case<double>(c, GetParam());
    }
  }
}

TEST_P(GemmIsa, FusedEpilogues) {
  for (Activation act :
       {Activation::none, Activation::relu, Activation::tanh, Activation::sigmoid}) {
    for (bool bias : {false, true}) {
      for (double beta : {0.0, 0.5}) {
        for (int64_t K : {int64_t(1), int64_t(300), int64_t(600)}) {
          Case c;
          c.M = 37;
          c.N = 45;
          c.K = K;
          c.tb = K == 300;
          c.alpha = 1.25;
          c.beta = beta;
          c.with_bias = bias;
          c.act = act;
          check_case<float>(c, GetParam());
          check_case<double>(c, GetParam());
        }
      }
    }
  }
}

// The f32 activation epilogue is the activation kernels' value bit for bit: tanh and sigmoid
// the vectorized maps over the epilogue-free output (whichever of AVX-512, AVX2 and scalar the
// maps run), relu the functor. So an MLP layer fused into its GEMM gives what the separate
// passes give. Shapes with edge rows and columns, k-blocks, transposes and the empty product.
TEST_P(GemmIsa, F32ActivationEpilogueIsTheMapBitForBit) {
  struct Shape {
    bool ta, tb;
    int64_t M, N, K;
  };
  const Shape shapes[] = {{false, true, 128, 128, 128},
                          {false, false, 37, 45, 600},
                          {true, true, 30, 70, 5},
                          {false, true, 128, 128, 784},
                          {false, false, 3, 17, 0}};
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (const char* vm : {"auto", "avx2", "scalar"}) {
    vecmath_force_scalar(std::string(vm) == "scalar");
    vecmath_force_avx2(std::string(vm) == "avx2");
    for (const Shape& s : shapes) {
      const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
      std::vector<float> A(size_t(std::max<int64_t>(1, s.M * s.K))),
          B(size_t(std::max<int64_t>(1, s.K * s.N))), bias(size_t(s.N));
      // Scaled so the outputs reach both branches of tanh and sigmoid's saturation.
      for (auto& v : A) v = 3.f * dist(rng);
      for (auto& v : B) v = dist(rng);
      for (auto& v : bias) v = dist(rng);
      for (Activation act : {Activation::tanh, Activation::sigmoid, Activation::relu}) {
        std::vector<float> fused(size_t(s.M * s.N)), plain(fused.size()), want(fused.size());
        sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, fused.data(), s.N,
              Epilogue{bias.data(), act});
        sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, plain.data(), s.N,
              Epilogue{bias.data(), Activation::none});
        const auto n = int64_t(plain.size());
        if (act == Activation::tanh) tanh_f32(plain.data(), want.data(), n);
        if (act == Activation::sigmoid) sigmoid_f32(plain.data(), want.data(), n);
        if (act == Activation::relu) relu_f32(plain.data(), want.data(), n);
        int64_t differ = 0;
        for (size_t i = 0; i < want.size(); ++i)
          differ += std::memcmp(&fused[i], &want[i], sizeof(float)) != 0;
        EXPECT_EQ(differ, 0) << "isa=" << GetParam() << " maps=" << vm << " act=" << int(act)
                             << " M=" << s.M << " N=" << s.N << " K=" << s.K;
      }
    }
  }
  vecmath_force_scalar(false);
  vecmath_force_avx2(false);
}

// ReLU in the epilogue keeps NaN (as PyTorch's relu does) and maps -0 and every negative to +0,
// in the vector kernels, their edge kernels and both precisions: C = A B with B = 1 (K = 1) puts
// each special value of A's column through the epilogue unchanged.
template <class T>
void relu_epilogue_specials(const std::string& isa) {
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  const T specials[] = {nan, T(-0.0), T(0), T(-2), T(3), -inf, inf, -nan};
  for (int64_t M : {int64_t(5), int64_t(30)})
    for (int64_t N : {int64_t(7), int64_t(40)}) {
      std::vector<T> A(static_cast<size_t>(M)), B(static_cast<size_t>(N), T(1)),
          C(static_cast<size_t>(M * N), T(7));
      for (int64_t i = 0; i < M; ++i) A[size_t(i)] = specials[i % 8];
      Ops<T>::gemm(false, false, M, N, 1, T(1), A.data(), 1, B.data(), N, T(0), C.data(), N,
                   Epilogue{nullptr, Activation::relu});
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          const T a = A[size_t(i)], c = C[size_t(i * N + j)];
          if (std::isnan(a)) {
            EXPECT_TRUE(std::isnan(c)) << "isa=" << isa << " M=" << M << " N=" << N << " row " << i;
          } else {
            const T want = a > T(0) ? a : T(0);
            EXPECT_EQ(std::memcmp(&c, &want, sizeof(T)), 0)
                << "isa=" << isa << " M=" << M << " N=" << N << " relu(" << a << ") gave " << c;
          }
        }
    }
}

TEST_P(GemmIsa, ReluEpilogueKeepsNaNAndGivesPositiveZero) {
  relu_epilogue_specials<float>(GetParam());
  relu_epilogue_specials<double>(GetParam());
  // The tape's map and the functor (the CUDA kernels instantiate it) agree.
  const float x[] = {std::numeric_limits<float>::quiet_NaN(), -0.0f, -1.0f, 2.0f};
  float y[4];
  relu_f32(x, y, 4);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_FALSE(std::signbit(y[1]));
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 2.0f);
}

// The training shapes of an MNIST MLP (batch 128), with W stored [in, out] (forward X W,
// dW = X^T dY, dX = dY W^T) and [out, in] (forward X W^T, dW = dY^T X, dX = dY W).
TEST_P(GemmIsa, TrainingShapesOneAndTwoThreadsAgree) {
  struct Shape {
    bool ta, tb;
    int64_t M, N, K;
  };
  const Shape shapes[] = {
      {false, false, 128, 128, 784}, {false, false, 128, 128, 128}, {false, false, 128, 10, 128},
      {true, false, 784, 128, 128},  {false, true, 128, 784, 128},  {false, true, 128, 128, 10},
      {true, false, 128, 10, 128},   {false, true, 128, 128, 128},  {false, true, 128, 128, 784},
      {false, true, 128, 10, 128},   {true, false, 128, 128, 128},  {true, false, 10, 128, 128}};
  const int saved = omp_get_max_threads();
  for (const Shape& s : shapes) {
    Case c;
    c.ta = s.ta;
    c.tb = s.tb;
    c.M = s.M;
    c.N = s.N;
    c.K = s.K;
    c.with_bias = true;
    c.act = Activation::relu;
    omp_set_num_threads(1);
    const std::vector<float> one = check_case<float>(c, GetParam(), 7);
    omp_set_num_threads(2);
    const std::vector<float> two = check_case<float>(c, GetParam(), 7);
    ASSERT_EQ(one.size(), two.size());
    double worst = 0;
    for (size_t i = 0; i < one.size(); ++i)
      worst = std::max(worst, double(std::abs(one[i] - two[i])));
    EXPECT_LE(worst, 1e-5 * double(s.K)) << describe(c, GetParam());
  }
  omp_set_num_threads(saved);
}

// An all-zero operand (-0 entries too) against a finite one skips the product and runs the
// epilogue alone. Oracle: the full product, taken where the same operand has one nonzero line
// (row 0 of op(A), or column 0 of op(B)), so that call multiplies; every other row (column) of
// its C is a product of zeros by the kernels' arithmetic and must match the skipped call bit for
// bit, sign of zero included (alpha = -1 turns the +0 accumulators into -0), over several
// k-blocks (K = 600) and with beta, bias and activations. An infinity or a NaN opposite the
// zeros must keep the product: 0 * inf is NaN.
template <class T>
void zero_operand_case(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, T beta,
                       bool with_bias, Activation act, bool zero_a, const std::string& isa) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  std::vector<T> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)),
      C0(static_cast<size_t>(M * N)), bias(static_cast<size_t>(N));
  // Element (i, k) of op(A) and (k, j) of op(B) in a matrix stored as A or B.
  auto a_at = [&](std::vector<T>& a, int64_t i, int64_t k) -> T& {
    return ta ? a[size_t(k * lda + i)] : a[size_t(i * lda + k)];
  };
  auto b_at = [&](std::vector<T>& b, int64_t k, int64_t j) -> T& {
    return tb ? b[size_t(j * ldb + k)] : b[size_t(k * ldb + j)];
  };
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) a_at(A, i, k) = T(dist(rng));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j) b_at(B, k, j) = T(dist(rng));
  for (auto& v : bias) v = T(dist(rng));
  for (size_t i = 0; i < C0.size(); ++i) C0[i] = i % 7 == 0 ? T(-0.0) : T(dist(rng));
  // The zero operand: +0 and -0, except its first line in the oracle's copy.
  std::vector<T>& Z = zero_a ? A : B;
  for (size_t i = 0; i < Z.size(); ++i) Z[i] = i % 3 == 0 ? T(-0.0) : T(0);
  std::vector<T> Aline = A, Bline = B;
  if (zero_a)
    for (int64_t k = 0; k < K; ++k) a_at(Aline, 0, k) = T(dist(rng));
  else
    for (int64_t k = 0; k < K; ++k) b_at(Bline, k, 0) = T(dist(rng));
  const Epilogue ep{with_bias ? bias.data() : nullptr, act};
  std::vector<T> skipped = C0, full = C0;
  Ops<T>::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, skipped.data(), N, ep);
  Ops<T>::gemm(ta, tb, M, N, K, alpha, Aline.data(), lda, Bline.data(), ldb, beta, full.data(), N,
               ep);
  int64_t differ = 0, compared = 0;
  for (int64_t i = zero_a ? 1 : 0; i < M; ++i)
    for (int64_t j = zero_a ? 0 : 1; j < N; ++j, ++compared)
      differ += std::memcmp(&skipped[size_t(i * N + j)], &full[size_t(i * N + j)], sizeof(T)) != 0;
  EXPECT_GT(compared, 0);
  EXPECT_EQ(differ, 0) << "isa=" << isa << " ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N
                       << " K=" << K << " alpha=" << alpha << " beta=" << beta
                       << " bias=" << with_bias << " act=" << int(act) << " zero_a=" << zero_a;
  // An infinity (then a NaN) in the other operand at depth k = 1, in row 2 of op(A) or column 3
  // of op(B): that line of C is NaN (0 * inf), everything else as before.
  for (T bad : {std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN()}) {
    std::vector<T> A2 = A, B2 = B, C2 = C0;
    if (zero_a)
      b_at(B2, 1, 3) = bad;
    else
      a_at(A2, 2, 1) = bad;
    Ops<T>::gemm(ta, tb, M, N, K, alpha, A2.data(), lda, B2.data(), ldb, beta, C2.data(), N, ep);
    int64_t nan_line = 0, other_differ = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const bool on_line = zero_a ? j == 3 : i == 2;
        const T v = C2[size_t(i * N + j)];
        if (on_line)
          nan_line += std::isnan(v);  // relu keeps NaN
        else
          other_differ += std::memcmp(&v, &skipped[size_t(i * N + j)], sizeof(T)) != 0;
      }
    EXPECT_EQ(nan_line, zero_a ? M : N) << "isa=" << isa << " zero_a=" << zero_a;
    EXPECT_EQ(other_differ, 0) << "isa=" << isa << " zero_a=" << zero_a;
  }
}

TEST_P(GemmIsa, ZeroOperandSkipsTheProductBitForBit) {
  struct Shape {
    bool ta, tb;
    int64_t M, N, K;
  };
  const Shape shapes[] = {{false, true, 128, 128, 128},
                          {true, false, 37, 45, 600},
                          {false, false, 30, 70, 5},
                          {true, true, 16, 40, 300}};
  for (const Shape& s : shapes)
    for (bool zero_a : {true, false})
      for (int variant = 0; variant < 4; ++variant) {
        const float alpha = variant % 2 ? -1.f : 1.f, beta = variant / 2 ? 0.5f : 0.f;
        const Activation act = variant == 1   ? Activation::relu
                               : variant == 2 ? Activation::tanh
                                              : Activation::none;
        zero_operand_case<float>(s.ta, s.tb, s.M, s.N, s.K, alpha, beta, variant >= 2, act, zero_a,
                                 GetParam());
        zero_operand_case<double>(s.ta, s.tb, s.M, s.N, s.K, double(alpha), double(beta),
                                  variant == 1, Activation::none, zero_a, GetParam());
      }
}

INSTANTIATE_TEST_SUITE_P(AllRunnable, GemmIsa, ::testing::ValuesIn(runnable_isas()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(Gemm, SetIsaRejectsUnknownAndUnsupported) {
  EXPECT_THROW(set_isa("sse9"), std::invalid_argument);
  EXPECT_THROW(set_isa(nullptr), std::invalid_argument);
  if (!__builtin_cpu_supports("avx512f")) {
    EXPECT_THROW(set_isa("avx512"), std::invalid_argument);
  }
  set_isa("scalar");
  EXPECT_STREQ(isa_name(), "scalar");
  EXPECT_EQ(isa_level(), 0);
  set_isa("auto");
  const std::string best = __builtin_cpu_supports("avx512f") ? "avx512"
                           : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                               ? "avx2"
                               : "scalar";
  EXPECT_EQ(isa_name(), best);
  EXPECT_EQ(isa_level(), best == "avx512" ? 2 : best == "avx2" ? 1 : 0);
}

TEST(Gemm, RejectsBadLeadingDimensionsWithTheShapeInTheMessage) {
  std::vector<float> A(64), B(64), C(64);
  try {
    sgemm(false, false, 4, 4, 4, 1.f, A.data(), 3, B.data(), 4, 0.f, C.data(), 4);
    FAIL() << "lda < K accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("lda=3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sgemm"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sgemm(false, true, 4, 4, 5, 1.f, A.data(), 5, B.data(), 4, 0.f, C.data(), 4),
               std::invalid_argument);
  EXPECT_THROW(sgemm(false, false, 4, 5, 4, 1.f, A.data(), 4, B.data(), 5, 0.f, C.data(), 4),
               std::invalid_argument);
  EXPECT_THROW(sgemm(false, false, -1, 4, 4, 1.f, A.data(), 4, B.data(), 4, 0.f, C.data(), 4),
               std::invalid_argument);
}

}  // namespace
}  // namespace gl::kernels::cpu
