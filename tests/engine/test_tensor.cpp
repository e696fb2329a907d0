// Tensor basics: creation, dtypes, views sharing storage, broadcasting, printing, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/ops.h"
#include "tests/error_of.h"

using namespace gl;

using gl::testing::error_of;

TEST(Tensor, CreationAndElementAccess) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_DOUBLE_EQ(z.at({1, 2}), 0.0);
  Tensor f = Tensor::full({2}, 2.5, DType::f64);
  EXPECT_DOUBLE_EQ(f.at({1}), 2.5);
  Tensor a = Tensor::arange(5, DType::i64);
  EXPECT_EQ(a.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Tensor u = Tensor::from_vector<uint8_t>({1, 255}, {2});
  EXPECT_DOUBLE_EQ(u.at({1}), 255.0);
  EXPECT_DOUBLE_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(z.item(), Error);
}

// The rule of kernels/functors.h saturate_cast, which the CUDA copy and fill kernels share:
// a floating value into an integer dtype is truncated toward zero and clamped to the dtype's
// range, NaN giving 0 (a plain C++ conversion of these values is undefined).
TEST(Tensor, FloatToIntegerCastsTruncateAndSaturate) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const std::vector<double> src = {nan,   inf,  -inf,  1e30,   -1e30,   2.9, -2.9,
                                   300.0, -5.0, 255.5, 9.3e18, -9.3e18, 0.0, -0.0};
  const std::vector<int64_t> want_i64 = {0,   INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN, 2, -2,
                                         300, -5,        255,       INT64_MAX, INT64_MIN, 0, 0};
  const std::vector<uint8_t> want_u8 = {0, 255, 0, 255, 0, 2, 0, 255, 0, 255, 255, 0, 0, 0};
  const Shape shape{int64_t(src.size())};
  for (DType from : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(from));
    Tensor x = Tensor::from_vector<double>(src, shape).to(from);
    EXPECT_EQ(x.to(DType::i64).to_vector<int64_t>(), want_i64);
    EXPECT_EQ(x.to(DType::u8).to_vector<uint8_t>(), want_u8);
    // copy_ into a strided (transposed) destination takes the element loop.
    Tensor x2 = Tensor::from_vector<double>(src, {2, 7}).to(from);
    Tensor dst = Tensor::zeros({7, 2}, DType::i64).t();
    dst.copy_(x2);
    EXPECT_EQ(dst.contiguous().to_vector<int64_t>(), want_i64);
  }
  for (std::size_t i = 0; i < src.size(); ++i) {
    SCOPED_TRACE(src[i]);
    EXPECT_EQ(Tensor::full({3}, src[i], DType::i64).to_vector<int64_t>()[2], want_i64[i]);
    Tensor u = Tensor::zeros({2}, DType::u8);
    u.fill_(src[i]);
    EXPECT_EQ(u.to_vector<uint8_t>()[1], want_u8[i]);
    u.set_at({0}, src[i]);
    EXPECT_EQ(u.to_vector<uint8_t>()[0], want_u8[i]);
  }
  // Integers into a narrower integer wrap (C++'s rule); floats round to nearest.
  EXPECT_EQ(Tensor::from_vector<int64_t>({300, -1}, {2}).to(DType::u8).to_vector<uint8_t>(),
            (std::vector<uint8_t>{44, 255}));
  EXPECT_EQ(Tensor::from_vector<double>({1e300}, {1}).to(DType::f32).to_vector<float>()[0],
            std::numeric_limits<float>::infinity());
}

TEST(Tensor, PhiloxRandomIsSeededAndDistributed) {
  Generator g1(5), g2(5), g3(6);
  auto a = Tensor::randn({10000}, g1, DType::f64).to_vector<double>();
  auto b = Tensor::randn({10000}, g2, DType::f64).to_vector<double>();
  auto c = Tensor::randn({10000}, g3, DType::f64).to_vector<double>();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double m = 0, v = 0;
  for (double x : a) m += x;
  m /= a.size();
  for (double x : a) v += (x - m) * (x - m);
  v /= a.size() - 1;
  EXPECT_NEAR(m, 0.0, 4 * std::sqrt(1.0 / a.size()));
  EXPECT_NEAR(v, 1.0, 4 * std::sqrt(2.0 / a.size()));
  Generator g4(1);
  auto u = Tensor::rand({10000}, g4, DType::f32, 2.0, 3.0).to_vector<float>();
  for (float x : u) ASSERT_TRUE(x >= 2.0f && x < 3.0f);
  // f32 and f64 draws from the same state agree to f32 rounding.
  Generator g5(9), g6(9);
  auto f = Tensor::randn({100}, g5, DType::f32).to_vector<double>();
  auto d = Tensor::randn({100}, g6, DType::f64).to_vector<double>();
  for (int i = 0; i < 100; ++i) EXPECT_NEAR(f[i], d[i], 1e-6 * (1 + std::fabs(d[i])));
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = Tensor::arange(12, DType::f64).reshape({3, 4});
  Tensor t = x.t();
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  EXPECT_DOUBLE_EQ(t.at({3, 1}), 7.0);
  t.set_at({3, 1}, -1.0);
  EXPECT_DOUBLE_EQ(x.at({1, 3}), -1.0);
  Tensor s = x.slice(1, 1, 4, 2);  // columns 1, 3
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  EXPECT_DOUBLE_EQ(s.at({2, 0}), 9.0);
  Tensor n = x.narrow(0, 1, 2);
  EXPECT_DOUBLE_EQ(n.at({0, 0}), 4.0);
  Tensor e = Tensor::arange(3, DType::f64).reshape({3, 1}).expand({3, 5});
  EXPECT_EQ(e.strides()[1], 0);
  EXPECT_DOUBLE_EQ(e.at({2, 4}), 2.0);
  Tensor p = Tensor::arange(24, DType::f64).reshape({2, 3, 4}).permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_DOUBLE_EQ(p.at({3, 1, 2}), 1 * 12 + 2 * 4 + 3);
  EXPECT_EQ(p.contiguous().to_vector<double>()[1], 4.0);
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(0).squeeze(0).shape(), (Shape{3, 4}));
  EXPECT_EQ(x.reshape({-1}).shape(), (Shape{12}));
  EXPECT_EQ(x.select(1, 2).to_vector<double>(), (std::vector<double>{2, 6, 10}));
  // A transposed tensor cannot be viewed flat, but can be reshaped (copy).
  EXPECT_THROW(t.view({12}), Error);
  EXPECT_EQ(t.reshape({12}).to_vector<double>()[1], 4.0);
  EXPECT_EQ(x.flatten().shape(), (Shape{12}));
}

TEST(Tensor, BroadcastingFollowsNumpyRules) {
  Tensor a = Tensor::arange(3, DType::f64).reshape({3, 1});
  Tensor b = Tensor::arange(4, DType::f64);
  Tensor c = add(a, b);
  EXPECT_EQ(c.shape(), (Shape{3, 4}));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_DOUBLE_EQ(c.at({i, j}), i + j);
  EXPECT_EQ(broadcast_shapes({5, 1, 4}, {3, 1}, "t"), (Shape{5, 3, 4}));
  std::string msg = error_of([] { add(Tensor::zeros({3, 4}), Tensor::zeros({5})); });
  EXPECT_NE(msg.find("add"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5]"), std::string::npos) << msg;
}

TEST(Tensor, ErrorsNameTheOpAndShapes) {
  std::string m1 = error_of([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
  EXPECT_NE(m1.find("matmul"), std::string::npos);
  EXPECT_NE(m1.find("[2, 3]"), std::string::npos);
  EXPECT_NE(m1.find("[4, 5]"), std::string::npos);
  std::string m2 = error_of([] { add(Tensor::zeros({2}), Tensor::zeros({2}, DType::f64)); });
  EXPECT_NE(m2.find("add"), std::string::npos);
  EXPECT_NE(m2.find("dtype"), std::string::npos);
  std::string m3 = error_of([] { sum(Tensor::zeros({2, 3}), {2}); });
  EXPECT_NE(m3.find("sum"), std::string::npos);
  EXPECT_NE(m3.find("dim 2"), std::string::npos);
  std::string m4 = error_of([] { Tensor::zeros({2, 3}).transpose(0, 5); });
  EXPECT_NE(m4.find("transpose"), std::string::npos);
  std::string m5 = error_of([] {
    cross_entropy(Tensor::zeros({2, 3}), Tensor::from_vector<int64_t>({0, 3}, {2}));
  });
  EXPECT_NE(m5.find("label 3"), std::string::npos) << m5;
  std::string m6 = error_of([] { linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}), Tensor()); });
  EXPECT_NE(m6.find("linear"), std::string::npos);
  std::string m7 = error_of([] { relu(Tensor::zeros({2}, DType::i64)); });
  EXPECT_NE(m7.find("relu"), std::string::npos);
  EXPECT_NE(m7.find("i64"), std::string::npos);
  EXPECT_THROW(Device::parse("tpu"), Error);
}

TEST(Tensor, PrintingShowsMetadataAndValues) {
  Tensor x = Tensor::from_vector<float>({1.5f, -2.0f}, {2});
  std::string s = x.to_string();
  EXPECT_NE(s.find("f32[2]"), std::string::npos);
  EXPECT_NE(s.find("1.5"), std::string::npos);
  EXPECT_NE(s.find("-2"), std::string::npos);
}

// A freed host block is reused for the next tensor of the same size, and what the old tensor
// left in it never shows through: zeros() and the ops still write every element.
TEST(Tensor, FreedHostBlocksAreReusedAndStartClean) {
  // A size no earlier test frees (so none is waiting in this thread's cache), 64-byte rounded.
  const int64_t n = 128 * 128 * 3 + 16 * 7;
  const std::size_t before = host_block_cache_bytes();
  const float* first = nullptr;
  {
    Tensor t = Tensor::full({n}, 7.0);
    first = t.data<float>();
  }
  EXPECT_EQ(host_block_cache_bytes(), before + std::size_t(n) * 4);
  Tensor z = Tensor::zeros({n});
  EXPECT_EQ(z.data<float>(), first);  // the same block back
  EXPECT_EQ(host_block_cache_bytes(), before);
  for (int64_t i = 0; i < n; i += 97) ASSERT_EQ(z.data<float>()[i], 0.0f) << i;
  // Small blocks go straight back to the system allocator.
  { Tensor small = Tensor::full({8}, 1.0); }
  EXPECT_EQ(host_block_cache_bytes(), before);
  // A block of another size is not handed out for this one.
  const float* other_block = nullptr;
  {
    Tensor other = Tensor::full({n + 64}, 3.0);
    other_block = other.data<float>();
  }
  Tensor ones = Tensor::ones({n});
  EXPECT_NE(ones.data<float>(), other_block);
  for (int64_t i = 0; i < n; i += 97) ASSERT_EQ(ones.data<float>()[i], 1.0f) << i;
}

// Element and byte counts past 64 bits once wrapped: the allocation "succeeded" with a few
// bytes and the writes that followed ran past it. Each count is now checked, naming the shape.
TEST(Tensor, SizesPastSixtyFourBitsThrowNamingTheShape) {
  const int64_t big = int64_t{1} << 62;
  std::string e = error_of([&] { (void)shape_numel({big, 784}); });
  EXPECT_NE(e.find("shape [4611686018427387904, 784] has more elements than fit in 64 bits"),
            std::string::npos)
      << e;
  e = error_of([&] { Tensor::empty({big, 784}); });
  EXPECT_NE(e.find("[4611686018427387904, 784]"), std::string::npos) << e;
  // [2^62, 4, 4] wraps to 0 elements; [2^61, 8] wraps to 0 bytes.
  e = error_of([&] { Tensor::zeros({big, 4, 4}); });
  EXPECT_NE(e.find("[4611686018427387904, 4, 4] has more elements"), std::string::npos) << e;
  // The element count fits, the byte count (x 4 for f32) does not.
  e = error_of([&] { Tensor::empty({1, big}); });
  EXPECT_NE(e.find("shape [1, 4611686018427387904] of f32"), std::string::npos) << e;
  EXPECT_NE(e.find("more bytes than fit in 64 bits"), std::string::npos) << e;
  e = error_of([&] { Tensor::empty({int64_t{1} << 61}, DType::f64); });
  EXPECT_NE(e.find("of f64"), std::string::npos) << e;
  Generator gen(0);
  e = error_of([&] { Tensor::randn({int64_t{1} << 61, 8}, gen); });
  EXPECT_NE(e.find("[2305843009213693952, 8]"), std::string::npos) << e;
  // A zero dim makes any shape empty, however large the others.
  EXPECT_EQ(shape_numel({big, big, 0}), 0);
  EXPECT_EQ(Tensor::empty({big, big, 0}).numel(), 0);
  EXPECT_EQ(Tensor::empty({0, big}, DType::f64).numel(), 0);
  // A reshape whose known dims overflow is refused, not inferred from a wrapped product
  // ((2^63 - 1)^2 wraps to 1, which once made [2^63 - 1, 2^63 - 1, 8] a view of 8 elements).
  Tensor t = Tensor::zeros({8});
  const int64_t odd = std::numeric_limits<int64_t>::max();
  e = error_of([&] { (void)t.reshape({odd, odd, -1}); });
  EXPECT_NE(e.find("cannot reshape [8]"), std::string::npos) << e;
}
