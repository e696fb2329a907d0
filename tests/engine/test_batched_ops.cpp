// test_batched_ops.cpp: the tape-free pieces a fused multi-model step is built from
// (linear_batched, matmul_batched, activate_backward, cross_entropy_and_grad, the batched
// activations, column sums and cross entropy) against the ops, the lone calls and the tape they
// stand in for, bit for bit: a fused step may only differ from the solo one in how the work is
// scheduled, never in a result.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "engine/ops.h"
#include "tests/cuda_devices.h"
#include "tests/error_of.h"

using namespace gl;
using gl::testing::error_of;

namespace {

::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype() || a.device() != b.device())
    return ::testing::AssertionFailure() << a.str() << " vs " << b.str();
  // Compared on the host: a device tensor's memory is not the host's to read.
  Tensor ac = a.to(Device::cpu()).contiguous(), bc = b.to(Device::cpu()).contiguous();
  if (std::memcmp(ac.raw_data(), bc.raw_data(), size_t(a.numel()) * dtype_size(a.dtype())) != 0)
    return ::testing::AssertionFailure() << "values differ: " << a.str();
  return ::testing::AssertionSuccess();
}

}  // namespace

// linear_activation puts relu, tanh and sigmoid into the GEMM's epilogue (f32 on the host):
// the same bits as the two ops, on shapes with partial tiles; the other activations, f64 and
// inputs that need a gradient take the two ops (and the tape).
TEST(BatchedOps, LinearActivationEqualsLinearThenActivate) {
  Generator g(5);
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t B : {int64_t(128), int64_t(37)}) {
      const Tensor x = mul(Tensor::randn({B, 100}, g, dt), 0.5);
      const Tensor w = Tensor::randn({45, 100}, g, dt), b = Tensor::randn({45}, g, dt);
      for (ActivationKind a :
           {ActivationKind::identity, ActivationKind::relu, ActivationKind::tanh,
            ActivationKind::sigmoid, ActivationKind::gelu, ActivationKind::leaky_relu}) {
        NoGrad ng;
        EXPECT_TRUE(
            same_bits(linear_activation(x, w, b, a, 0.1), activate(linear(x, w, b), a, 0.1)))
            << activation_name(a) << " B=" << B;
        EXPECT_TRUE(same_bits(linear_activation(x, w, Tensor(), a, 0.1),
                              activate(linear(x, w, Tensor()), a, 0.1)))
            << activation_name(a) << " without bias";
      }
    }
  }
  // With a gradient to record, the tape's ops: the weight's gradient is the product's.
  Tensor x = Tensor::randn({8, 6}, g), w = Tensor::randn({4, 6}, g).requires_grad_(true);
  Tensor y = linear_activation(x, w, Tensor(), ActivationKind::tanh);
  sum(y).backward();
  Tensor w2 = w.detach().requires_grad_(true);
  sum(tanh(linear(x, w2, Tensor()))).backward();
  EXPECT_TRUE(same_bits(w.grad(), w2.grad()));
  EXPECT_NE(error_of([&] {
              linear_activation(x, Tensor::randn({4, 5}, g), Tensor(), ActivationKind::relu);
            }).find("features"),
            std::string::npos);
}

// activate_in_place gives activate's bits, over x's own buffer where it may (contiguous f32 on
// the host, no gradient, a vectorized kernel) and as a new tensor otherwise, leaving x as it was.
TEST(BatchedOps, ActivateInPlaceEqualsActivate) {
  Generator g(9);
  for (DType dt : {DType::f32, DType::f64}) {
    for (ActivationKind a : {ActivationKind::identity, ActivationKind::relu, ActivationKind::tanh,
                             ActivationKind::sigmoid, ActivationKind::gelu,
                             ActivationKind::leaky_relu, ActivationKind::silu}) {
      for (bool transposed : {false, true}) {
        NoGrad ng;
        const Tensor src = mul(Tensor::randn({37, 45}, g, dt), 3.0);
        const Tensor x = transposed ? src.t() : src.clone();
        const Tensor want = activate(x, a, 0.1);
        const Tensor before = x.clone();
        const void* buffer = x.raw_data();
        const Tensor got = activate_in_place(x, a, 0.1);
        EXPECT_TRUE(same_bits(got, want)) << activation_name(a) << " transposed=" << transposed;
        const bool in_place = a == ActivationKind::identity ||
                              (dt == DType::f32 && !transposed && a != ActivationKind::leaky_relu);
        EXPECT_EQ(got.raw_data() == buffer, in_place) << activation_name(a);
        if (!in_place) {
          EXPECT_TRUE(same_bits(x, before)) << activation_name(a);
        }
      }
    }
  }
  // An input that records a gradient keeps its values and gets the tape's op.
  Tensor x = Tensor::randn({4, 5}, g).requires_grad_(true);
  const Tensor before = x.detach().clone();
  Tensor y = activate_in_place(x, ActivationKind::tanh);
  EXPECT_NE(y.raw_data(), x.raw_data());
  EXPECT_TRUE(same_bits(x.detach(), before));
  sum(y).backward();
  EXPECT_TRUE(x.grad().defined());
}

TEST(BatchedOps, LinearAndMatmulEqualTheOpsOneByOne) {
  Generator g(11);
  const int saved = omp_get_max_threads();
  // Training shapes (batch 128, widths 784 -> 128 -> 10), a last batch of 1 and width 1, where
  // the operands' layouts change (as_operand reads a one-column transpose as a plain matrix).
  struct Case {
    int64_t B, in, out;
  };
  for (Case c : {Case{128, 784, 128}, Case{128, 128, 10}, Case{1, 128, 128}, Case{33, 7, 1}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      std::vector<Tensor> x, w, b, gy;
      for (int k = 0; k < 5; ++k) {
        x.push_back(Tensor::randn({c.B, c.in}, g, dt));
        w.push_back(Tensor::randn({c.out, c.in}, g, dt));
        b.push_back(k == 2 ? Tensor() : Tensor::randn({c.out}, g, dt));
        gy.push_back(Tensor::randn({c.B, c.out}, g, dt));
      }
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        NoGrad ng;
        std::vector<Tensor> y = linear_batched(x, w, b);
        std::vector<Tensor> gyt;
        for (auto& t : gy) gyt.push_back(t.t());
        std::vector<Tensor> dx = matmul_batched(gy, w);   // backward's dX = dY W
        std::vector<Tensor> dw = matmul_batched(gyt, x);  // dW = dY^T X (a transposed view)
        omp_set_num_threads(2);
        for (int k = 0; k < 5; ++k) {
          EXPECT_TRUE(same_bits(y[size_t(k)], linear(x[size_t(k)], w[size_t(k)], b[size_t(k)])))
              << "linear " << k << " B=" << c.B << " threads=" << threads;
          EXPECT_TRUE(same_bits(dx[size_t(k)], matmul(gy[size_t(k)], w[size_t(k)]))) << k;
          EXPECT_TRUE(same_bits(dw[size_t(k)], matmul(gy[size_t(k)].t(), x[size_t(k)]))) << k;
        }
      }
    }
  }
  // Without biases at all.
  std::vector<Tensor> x{Tensor::randn({9, 4}, g), Tensor::randn({9, 4}, g)};
  std::vector<Tensor> w{Tensor::randn({3, 4}, g), Tensor::randn({3, 4}, g)};
  auto y = linear_batched(x, w, {});
  EXPECT_TRUE(same_bits(y[1], linear(x[1], w[1], Tensor())));
  omp_set_num_threads(saved);
}

TEST(BatchedOps, RefuseGradInputsAndMismatchedLists) {
  Generator g(2);
  Tensor x = Tensor::randn({4, 3}, g), w = Tensor::randn({2, 3}, g);
  w.requires_grad_(true);
  std::string msg = error_of([&] { linear_batched({x}, {w}, {}); });
  EXPECT_NE(msg.find("NoGrad"), std::string::npos) << msg;
  {
    NoGrad ng;
    EXPECT_NO_THROW(linear_batched({x}, {w}, {}));
  }
  msg = error_of([&] {
    NoGrad ng;
    matmul_batched({x, x}, {w.t()});
  });
  EXPECT_NE(msg.find("2 problems"), std::string::npos) << msg;
  msg = error_of([&] {
    NoGrad ng;
    matmul_batched({x}, {w});
  });
  EXPECT_NE(msg.find("not aligned"), std::string::npos) << msg;
}

TEST(BatchedOps, ActivateBackwardEqualsTheTape) {
  Generator g(5);
  for (ActivationKind a :
       {ActivationKind::identity, ActivationKind::relu, ActivationKind::leaky_relu,
        ActivationKind::tanh, ActivationKind::sigmoid, ActivationKind::gelu,
        ActivationKind::gelu_tanh, ActivationKind::silu}) {
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x0 = Tensor::randn({64, 300}, g, dt), up = Tensor::randn({64, 300}, g, dt);
      Tensor x = x0.clone().requires_grad_(true);
      Tensor y = activate(x, a, 0.07);
      mul(y, up).backward(Tensor::ones(y.shape(), dt));  // d/dy of sum(y * up) is up
      Tensor y0;
      {
        NoGrad ng;
        y0 = activate(x0, a, 0.07);
      }
      EXPECT_TRUE(same_bits(y0, y.detach())) << activation_name(a);
      EXPECT_TRUE(same_bits(activate_backward(up, x0, y0, a, 0.07), x.grad()))
          << activation_name(a) << " " << dtype_name(dt);
      // The forward that also returns the derivative (GELU in f32; the tape uses it too): the
      // same y, and grad * d is the backward from x.
      if (a == ActivationKind::identity) continue;
      NoGrad ng;
      auto [yd, d] = activate_with_derivative(x0, a, 0.07);
      EXPECT_TRUE(same_bits(y0, yd)) << activation_name(a);
      const bool has_d =
          dt == DType::f32 && (a == ActivationKind::gelu || a == ActivationKind::gelu_tanh);
      ASSERT_EQ(d.defined(), has_d) << activation_name(a) << " " << dtype_name(dt);
      if (has_d) {
        EXPECT_TRUE(same_bits(backward_from_derivative(up, d), x.grad())) << activation_name(a);
      }
    }
  }
  // Strided views (a transposed input, a transposed incoming gradient) give the same bits as
  // their contiguous copies, forward and backward.
  for (ActivationKind a : {ActivationKind::tanh, ActivationKind::sigmoid, ActivationKind::gelu,
                           ActivationKind::gelu_tanh, ActivationKind::silu}) {
    Tensor xt = Tensor::randn({300, 64}, g).t(), upt = Tensor::randn({300, 64}, g).t();
    ASSERT_FALSE(xt.is_contiguous());
    Tensor yt = activate(xt, a), yc = activate(xt.contiguous(), a);
    EXPECT_TRUE(same_bits(yt, yc)) << activation_name(a);
    EXPECT_TRUE(same_bits(activate_backward(upt, xt, yt, a),
                          activate_backward(upt.contiguous(), xt.contiguous(), yc, a)))
        << activation_name(a);
  }
  Tensor x = Tensor::randn({3, 3}, g);
  std::string msg = error_of([&] { activate_backward(x, Tensor(), x, ActivationKind::gelu); });
  EXPECT_NE(msg.find("gelu"), std::string::npos) << msg;
}

TEST(BatchedOps, CrossEntropyAndGradEqualTheTape) {
  Generator g(8);
  for (int64_t N : {1, 7, 128}) {
    Tensor logits0 = Tensor::randn({N, 10}, g);
    std::vector<int64_t> lab;
    for (int64_t i = 0; i < N; ++i) lab.push_back((i * 7 + 3) % 10);
    Tensor labels = Tensor::from_vector(lab, {N});
    Tensor logits = logits0.clone().requires_grad_(true);
    Tensor loss = cross_entropy(logits, labels);
    loss.backward();
    auto [l2, d2] = cross_entropy_and_grad(logits0, labels);
    EXPECT_TRUE(same_bits(loss.detach(), l2)) << N;
    EXPECT_TRUE(same_bits(logits.grad(), d2)) << N;
  }
}

// activate_batched and activate_backward_batched: each entry bit for bit the lone call, with
// activations shared by several entries, leaky_relu at two slopes (two groups), identity, on the
// CPU (one call each) and on a GPU (one launch per group) when there is one; there also a
// non-contiguous entry (the lone calls) and more entries than one launch takes.
TEST(BatchedOps, ActivateBatchedEqualsTheLoneCalls) {
  using A = ActivationKind;
  const std::vector<A> kinds = {A::relu,       A::tanh,       A::relu,    A::gelu,
                                A::leaky_relu, A::leaky_relu, A::sigmoid, A::identity,
                                A::silu,       A::gelu_tanh,  A::tanh};
  const std::vector<double> slopes = {0.01, 0.01, 0.01, 0.01, 0.1, 0.2,
                                      0.01, 0.01, 0.01, 0.01, 0.01};
  std::vector<Device> devices = {Device::cpu()};
  if (gl::testing::missing_gpus(1).empty()) devices.push_back(Device::cuda());
  Generator g(11);
  NoGrad ng;
  for (const Device& dev : devices) {
    for (int copies : {1, 4}) {  // 11 or 44 entries (more than 32)
      std::vector<Tensor> x, grad;
      std::vector<A> a;
      std::vector<double> s;
      for (int c = 0; c < copies; ++c)
        for (std::size_t k = 0; k < kinds.size(); ++k) {
          x.push_back(mul(Tensor::randn({37, 29}, g, DType::f32), 2.0).to(dev));
          grad.push_back(Tensor::randn({37, 29}, g, DType::f32).to(dev));
          a.push_back(kinds[k]);
          s.push_back(slopes[k]);
        }
      const std::vector<Tensor> y = activate_batched(x, a, s);
      std::vector<Tensor> lone_y;
      for (std::size_t k = 0; k < x.size(); ++k) {
        lone_y.push_back(activate(x[k], a[k], s[k]));
        EXPECT_TRUE(same_bits(y[k], lone_y[k])) << activation_name(a[k]) << " entry " << k;
      }
      const std::vector<Tensor> d = activate_backward_batched(grad, x, y, a, s);
      for (std::size_t k = 0; k < x.size(); ++k)
        EXPECT_TRUE(same_bits(d[k], activate_backward(grad[k], x[k], lone_y[k], a[k], s[k])))
            << activation_name(a[k]) << " backward entry " << k;
    }
    // A transposed entry: every entry takes its lone call, with the same values.
    std::vector<Tensor> x = {Tensor::randn({29, 37}, g, DType::f32).to(dev).t(),
                             Tensor::randn({37, 29}, g, DType::f32).to(dev)};
    const std::vector<Tensor> y = activate_batched(x, {A::tanh, A::tanh}, {0.01, 0.01});
    for (std::size_t k = 0; k < 2; ++k) EXPECT_TRUE(same_bits(y[k], activate(x[k], A::tanh)));
  }
  EXPECT_NE(error_of([] {
              activate_batched({Tensor::ones({2})}, {}, {});
            }).find("activate_batched: 1 tensors, 0 activations, 0 slopes"),
            std::string::npos);
}

namespace {
// The devices a batched-op test runs on: the CPU, and a GPU when there is one.
std::vector<Device> test_devices() {
  std::vector<Device> devices = {Device::cpu()};
  if (gl::testing::missing_gpus(1).empty()) devices.push_back(Device::cuda());
  return devices;
}

// Entry k of a batch: values of magnitude 10^(k % 7 - 3) around an offset of the same order,
// so the entries differ and their sums round differently.
Tensor batch_entry(const Shape& shape, std::size_t k, DType dtype, Generator& g) {
  const double scale = std::pow(10.0, double(int(k % 7) - 3));
  return add(mul(Tensor::randn(shape, g, dtype), scale), 0.25 * scale * double(k % 3));
}
}  // namespace

// column_sums_batched: each entry bit for bit sum(x, {0}), and within rounding of f64 column
// sums of the same values, for f32 and f64, on shapes with a partial 32-column tile and rows
// not a multiple of 8, with more entries than one launch takes (on a GPU); mixed shapes and a
// transposed entry take the lone calls, with the same values.
TEST(BatchedOps, ColumnSumsBatchedEqualTheLoneCalls) {
  Generator g(21);
  NoGrad ng;
  for (const Device& dev : test_devices()) {
    for (DType dtype : {DType::f32, DType::f64}) {
      for (const Shape& shape : {Shape{37, 45}, Shape{1, 5}, Shape{300, 3}}) {
        for (std::size_t count : {std::size_t(2), std::size_t(11), std::size_t(40)}) {
          std::vector<Tensor> x;
          for (std::size_t k = 0; k < count; ++k)
            x.push_back(batch_entry(shape, k, dtype, g).to(dev));
          const std::vector<Tensor> s = column_sums_batched(x);
          ASSERT_EQ(s.size(), count);
          for (std::size_t k = 0; k < count; ++k) {
            EXPECT_EQ(s[k].device(), dev);
            EXPECT_TRUE(same_bits(s[k], sum(x[k], {0})))
                << dev.str() << " " << dtype_name(dtype) << " " << shape_str(shape) << " entry "
                << k << " of " << count;
            const std::vector<double> v = x[k].to_vector<double>(), got = s[k].to_vector<double>();
            const int64_t rows = shape[0], cols = shape[1];
            for (int64_t c = 0; c < cols; ++c) {
              double exact = 0, mag = 0;
              for (int64_t r = 0; r < rows; ++r) {
                exact += v[std::size_t(r * cols + c)];
                mag += std::abs(v[std::size_t(r * cols + c)]);
              }
              const double eps = dtype == DType::f32 ? 1e-6 : 1e-14;
              EXPECT_NEAR(got[std::size_t(c)], exact, eps * double(rows) * mag + 1e-300)
                  << "column " << c << " of entry " << k;
            }
          }
        }
      }
    }
    // Mixed shapes, and a transposed entry: the lone calls.
    std::vector<Tensor> mixed = {Tensor::randn({7, 9}, g, DType::f32).to(dev),
                                 Tensor::randn({8, 9}, g, DType::f32).to(dev),
                                 Tensor::randn({9, 7}, g, DType::f32).to(dev).t()};
    const std::vector<Tensor> s = column_sums_batched(mixed);
    for (std::size_t k = 0; k < mixed.size(); ++k)
      EXPECT_TRUE(same_bits(s[k], sum(mixed[k], {0}))) << dev.str() << " mixed entry " << k;
  }
  EXPECT_TRUE(column_sums_batched({}).empty());
}

// cross_entropy_and_grad_batched: each loss and gradient bit for bit the lone call's, and
// within rounding of an f64 softmax cross-entropy of the same values, for f32 and f64, batch
// sizes 1, 7 and 130, logits from 0.001 to 1000 in magnitude, more entries than one launch
// takes (on a GPU), labels on the host and on the device; mixed shapes and a transposed entry
// take the lone calls. A label out of range is refused, naming the op.
TEST(BatchedOps, CrossEntropyBatchedEqualsTheLoneCalls) {
  Generator g(22);
  NoGrad ng;
  for (const Device& dev : test_devices()) {
    for (DType dtype : {DType::f32, DType::f64}) {
      for (int64_t N : {1, 7, 130}) {
        const int64_t C = 10;
        std::vector<int64_t> lab;
        for (int64_t i = 0; i < N; ++i) lab.push_back((i * 7 + 3) % C);
        const Tensor host_labels = Tensor::from_vector(lab, {N});
        for (const Tensor& labels : {host_labels, host_labels.to(dev)}) {
          for (std::size_t count : {std::size_t(3), std::size_t(40)}) {
            std::vector<Tensor> logits;
            for (std::size_t k = 0; k < count; ++k)
              logits.push_back(batch_entry({N, C}, k, dtype, g).to(dev));
            const auto [loss, grad] = cross_entropy_and_grad_batched(logits, labels);
            ASSERT_EQ(loss.size(), count);
            ASSERT_EQ(grad.size(), count);
            for (std::size_t k = 0; k < count; ++k) {
              const auto [lone_loss, lone_grad] = cross_entropy_and_grad(logits[k], labels);
              const std::string where = dev.str() + " " + dtype_name(dtype) + " N " +
                                        std::to_string(N) + " labels on " + labels.device().str() +
                                        " entry " + std::to_string(k);
              EXPECT_EQ(loss[k].device(), dev) << where;
              EXPECT_TRUE(same_bits(loss[k], lone_loss)) << where;
              EXPECT_TRUE(same_bits(grad[k], lone_grad)) << where;
              // f64 reference: loss = mean(logsumexp - x[y]), grad = (softmax - onehot) / N.
              const std::vector<double> v = logits[k].to_vector<double>(),
                                        d = grad[k].to_vector<double>();
              // Rounding errors grow with the logits' magnitude (log-probabilities lose
              // eps * max |logit|).
              double total = 0, largest = 0;
              for (double e : v) largest = std::max(largest, std::abs(e));
              const double tol = (dtype == DType::f32 ? 1e-6 : 1e-14) * (1.0 + largest);
              for (int64_t r = 0; r < N; ++r) {
                const double* row = v.data() + r * C;
                double m = row[0];
                for (int64_t c = 1; c < C; ++c) m = std::max(m, row[c]);
                double se = 0;
                for (int64_t c = 0; c < C; ++c) se += std::exp(row[c] - m);
                total += m + std::log(se) - row[lab[std::size_t(r)]];
                for (int64_t c = 0; c < C; ++c) {
                  const double p = std::exp(row[c] - m) / se;
                  const double want = (p - (c == lab[std::size_t(r)] ? 1.0 : 0.0)) / double(N);
                  EXPECT_NEAR(d[std::size_t(r * C + c)], want, tol / double(N))
                      << where << " row " << r << " class " << c;
                }
              }
              const double want_loss = total / double(N);
              // The mean of N row losses, each about log(C), summed in f32 on a GPU: about
              // log2(N) roundings of the sum more than one row's.
              EXPECT_NEAR(loss[k].item(), want_loss, tol * (dtype == DType::f32 ? 8 : 1)) << where;
            }
          }
        }
      }
    }
    // Mixed shapes, and a transposed entry: the lone calls.
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 3, 2, 1, 3}, {5});
    std::vector<Tensor> mixed = {Tensor::randn({5, 4}, g, DType::f32).to(dev),
                                 Tensor::randn({5, 6}, g, DType::f32).to(dev),
                                 Tensor::randn({4, 5}, g, DType::f32).to(dev).t()};
    const auto [loss, grad] = cross_entropy_and_grad_batched(mixed, labels);
    for (std::size_t k = 0; k < mixed.size(); ++k) {
      const auto [lone_loss, lone_grad] = cross_entropy_and_grad(mixed[k], labels);
      EXPECT_TRUE(same_bits(loss[k], lone_loss)) << dev.str() << " mixed entry " << k;
      EXPECT_TRUE(same_bits(grad[k], lone_grad)) << dev.str() << " mixed entry " << k;
    }
    const Tensor x = Tensor::randn({2, 3}, g, DType::f32).to(dev);
    const std::string msg = error_of([&] {
      cross_entropy_and_grad_batched({x, x}, Tensor::from_vector(std::vector<int64_t>{0, 3}, {2}));
    });
    EXPECT_NE(msg.find("cross_entropy: label 3 at row 1 outside [0, 3)"), std::string::npos) << msg;
  }
}
