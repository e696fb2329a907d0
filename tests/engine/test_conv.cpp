// conv2d and pooling forward values against naive loops (the 7-loop convolution of
// kernels::cpu::conv2d_reference, direct window loops for pooling), chunked batches against
// unchunked ones, and the one-line errors of bad shapes.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>

#include "engine/ops.h"
#include "kernels/cpu/conv.h"
#include "tests/error_of.h"

using namespace gl;
using gl::testing::error_of;

namespace {
struct ConvCase {
  int64_t n, c, h, w, oc, kh, kw;
  Conv2dParams p;
};

Tensor reference_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  kernels::cpu::ConvGeometry g;
  g.n = x.size(0), g.c = x.size(1), g.h = x.size(2), g.w = x.size(3);
  g.oc = w.size(0), g.kh = w.size(2), g.kw = w.size(3);
  g.stride_h = p.stride[0], g.stride_w = p.stride[1], g.pad_h = p.padding[0];
  g.pad_w = p.padding[1], g.dil_h = p.dilation[0], g.dil_w = p.dilation[1], g.groups = p.groups;
  Tensor xd = x.to(DType::f64).contiguous(), wd = w.to(DType::f64).contiguous();
  Tensor bd = b.defined() ? b.to(DType::f64).contiguous() : Tensor();
  Tensor out = Tensor::zeros({g.n, g.oc, g.out_h(), g.out_w()}, DType::f64);
  kernels::cpu::conv2d_reference(g, xd.data<double>(), wd.data<double>(),
                                 bd.defined() ? bd.data<double>() : nullptr, out.data<double>());
  return out;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    const double d = std::fabs(va[i] - vb[i]);  // a NaN counts as the largest difference
    m = std::max(m, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
  }
  return m;
}

}  // namespace

// Runs f once with each lowering of conv2d (kernels::cpu::ConvAlgo), restoring the default.
void for_each_algo(const std::function<void(const char*)>& f) {
  using kernels::cpu::ConvAlgo;
  for (auto [algo, name] :
       {std::pair{ConvAlgo::per_image, "per_image"}, std::pair{ConvAlgo::batched, "batched"},
        std::pair{ConvAlgo::winograd, "winograd"}, std::pair{ConvAlgo::direct, "direct"},
        std::pair{ConvAlgo::automatic, "automatic"}}) {
    kernels::cpu::set_conv_algo(algo);
    f(name);
  }
  kernels::cpu::set_conv_algo(ConvAlgo::automatic);
}

TEST(Conv2d, MatchesTheSevenLoopReference) {
  for_each_algo([](const char* algo) {
    Generator gen(5);
    std::vector<ConvCase> cases = {
        {2, 3, 7, 6, 4, 3, 3, {}},
        {3, 1, 28, 28, 8, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},  // the default CNN's first layer
        {2, 4, 9, 8, 6, 3, 2, {{2, 2}, {1, 0}, {1, 1}, 1}},
        {2, 4, 9, 9, 4, 3, 3, {{1, 2}, {2, 1}, {2, 3}, 2}},  // dilation, groups, mixed stride
        {1, 6, 5, 5, 6, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 6}},  // depthwise
        {2, 5, 4, 4, 3, 1, 1, {}},                           // 1x1
        {1, 2, 3, 3, 2, 5, 5, {{1, 1}, {1, 1}, {1, 1}, 1}},  // kernel larger than the input
    };
    for (const auto& c : cases) {
      for (DType dt : {DType::f32, DType::f64}) {
        Tensor x = Tensor::randn({c.n, c.c, c.h, c.w}, gen, dt);
        Tensor w = Tensor::randn({c.oc, c.c / c.p.groups, c.kh, c.kw}, gen, dt);
        Tensor b = Tensor::randn({c.oc}, gen, dt);
        Tensor out = conv2d(x, w, b, c.p);
        double tol = dt == DType::f64 ? 1e-12 : 1e-4;
        EXPECT_LT(max_abs_diff(out, reference_conv(x, w, b, c.p)), tol)
            << algo << " case c=" << c.c << " h=" << c.h << " k=" << c.kh << "x" << c.kw;
        EXPECT_LT(max_abs_diff(conv2d(x, w, Tensor(), c.p), reference_conv(x, w, Tensor(), c.p)),
                  tol)
            << algo;
      }
    }
  });
}

// Every lowering gives the same forward and gradients (f64, so only rounding differs; the f32
// lowerings, Winograd and direct, serve f32 only and fall back to im2col here).
TEST(Conv2d, EveryLoweringGivesTheSameGradients) {
  Generator gen(11);
  Tensor x = Tensor::randn({5, 4, 7, 6}, gen, DType::f64);
  Tensor w = Tensor::randn({6, 2, 3, 3}, gen, DType::f64);
  Tensor b = Tensor::randn({6}, gen, DType::f64);
  Tensor gy;
  std::vector<std::vector<Tensor>> got;
  for_each_algo([&](const char*) {
    Tensor xl = x.detach().requires_grad_(true), wl = w.detach().requires_grad_(true);
    Tensor bl = b.detach().requires_grad_(true);
    Tensor y = conv2d(xl, wl, bl, {{2, 1}, {1, 1}, {1, 2}, 2});
    if (!gy.defined()) gy = Tensor::randn(y.shape(), gen, DType::f64);
    y.backward(gy);
    got.push_back({y.detach(), xl.grad(), wl.grad(), bl.grad()});
  });
  for (std::size_t a = 1; a < got.size(); ++a)
    for (std::size_t i = 0; i < 4; ++i) EXPECT_LT(max_abs_diff(got[0][i], got[a][i]), 1e-10) << i;
}

TEST(Conv2d, NonContiguousInputsGiveTheSameResult) {
  Generator gen(6);
  Tensor nhwc = Tensor::randn({2, 6, 5, 3}, gen, DType::f64);
  Tensor x = nhwc.permute({0, 3, 1, 2});  // [2, 3, 6, 5] channels-last storage
  Tensor w = Tensor::randn({4, 3, 3, 3}, gen, DType::f64);
  Conv2dParams p{{1, 1}, {1, 1}, {1, 1}, 1};
  EXPECT_FALSE(x.is_contiguous());
  EXPECT_LT(max_abs_diff(conv2d(x, w, Tensor(), p), conv2d(x.contiguous(), w, Tensor(), p)), 1e-14);
  Tensor sliced = Tensor::randn({2, 3, 12, 10}, gen, DType::f64).slice(2, 0, 12, 2);
  EXPECT_LT(max_abs_diff(conv2d(sliced, w, Tensor(), p), reference_conv(sliced, w, Tensor(), p)),
            1e-12);
}

// A batch larger than the batched path's im2col budget runs in chunks; forward and every gradient
// must equal the sums over sub-batches small enough to run whole.
TEST(Conv2d, ChunkedBatchesMatchWholeSubBatches) {
  kernels::cpu::set_conv_algo(kernels::cpu::ConvAlgo::batched);
  Generator gen(7);
  const int64_t n = 20;
  Tensor x = Tensor::randn({n, 16, 64, 64}, gen);
  Tensor w = Tensor::randn({4, 16, 3, 3}, gen, DType::f32, 0.0, 0.1);
  Tensor b = Tensor::randn({4}, gen);
  Conv2dParams p{{1, 1}, {1, 1}, {1, 1}, 1};
  Tensor gy = Tensor::randn({n, 4, 64, 64}, gen);
  auto grads = [&](const Tensor& xs, const Tensor& gys) {
    Tensor xl = xs.detach().requires_grad_(true);
    Tensor wl = w.detach().requires_grad_(true), bl = b.detach().requires_grad_(true);
    Tensor out = conv2d(xl, wl, bl, p);
    out.backward(gys);
    return std::vector<Tensor>{out.detach(), xl.grad(), wl.grad(), bl.grad()};
  };
  auto whole = grads(x, gy);
  std::vector<std::vector<Tensor>> parts;
  for (int64_t i = 0; i < n; i += 4) parts.push_back(grads(x.narrow(0, i, 4), gy.narrow(0, i, 4)));
  std::vector<Tensor> outs, gxs;
  Tensor gw = Tensor::zeros(w.shape()), gb = Tensor::zeros(b.shape());
  for (auto& pr : parts) {
    outs.push_back(pr[0]);
    gxs.push_back(pr[1]);
    gw = add(gw, pr[2]);
    gb = add(gb, pr[3]);
  }
  EXPECT_LT(max_abs_diff(whole[0], concat(outs, 0)), 1e-5);
  EXPECT_LT(max_abs_diff(whole[1], concat(gxs, 0)), 1e-5);
  EXPECT_LT(max_abs_diff(whole[2], gw), 1e-2);  // sums of 80k f32 products
  EXPECT_LT(max_abs_diff(whole[3], gb), 1e-2);
  kernels::cpu::set_conv_algo(kernels::cpu::ConvAlgo::automatic);
}

TEST(Pooling, MaxAndAverageMatchWindowLoops) {
  Generator gen(8);
  Tensor x = Tensor::randn({2, 3, 7, 6}, gen, DType::f64);
  struct P {
    std::array<int64_t, 2> k, s, pad;
  };
  for (P c : {P{{2, 2}, {2, 2}, {0, 0}}, P{{3, 3}, {2, 2}, {1, 1}}, P{{3, 2}, {1, 1}, {1, 0}}}) {
    Tensor mx = max_pool2d(x, c.k, c.s, c.pad), av = avg_pool2d(x, c.k, c.s, c.pad);
    const int64_t oh = (7 + 2 * c.pad[0] - c.k[0]) / c.s[0] + 1;
    const int64_t ow = (6 + 2 * c.pad[1] - c.k[1]) / c.s[1] + 1;
    ASSERT_EQ(mx.shape(), (Shape{2, 3, oh, ow}));
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            double best = -std::numeric_limits<double>::infinity(), sum = 0;
            for (int64_t a = 0; a < c.k[0]; ++a)
              for (int64_t bb = 0; bb < c.k[1]; ++bb) {
                int64_t r = i * c.s[0] - c.pad[0] + a, q = j * c.s[1] - c.pad[1] + bb;
                if (r < 0 || r >= 7 || q < 0 || q >= 6) continue;
                best = std::max(best, x.at({n, ch, r, q}));
                sum += x.at({n, ch, r, q});
              }
            EXPECT_EQ(mx.at({n, ch, i, j}), best);
            EXPECT_NEAR(av.at({n, ch, i, j}), sum / double(c.k[0] * c.k[1]), 1e-12);
          }
  }
  // Adaptive: 7x6 -> 3x4 bins [floor(i*7/3), ceil((i+1)*7/3)).
  Tensor ad = adaptive_avg_pool2d(x, {3, 4});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      int64_t r0 = i * 7 / 3, r1 = ((i + 1) * 7 + 2) / 3, c0 = j * 6 / 4,
              c1 = ((j + 1) * 6 + 3) / 4;
      double s = 0;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t q = c0; q < c1; ++q) s += x.at({1, 2, r, q});
      EXPECT_NEAR(ad.at({1, 2, i, j}), s / double((r1 - r0) * (c1 - c0)), 1e-12);
    }
}

TEST(BatchNorm2d, NormalizesEachChannelOverBatchAndSpace) {
  Generator gen(9);
  Tensor x = Tensor::randn({4, 3, 5, 5}, gen, DType::f64, 2.0, 3.0);
  Tensor rm = Tensor::zeros({3}, DType::f64), rv = Tensor::ones({3}, DType::f64);
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5);
  for (int64_t c = 0; c < 3; ++c) {
    double s = 0, sq = 0, xs = 0, xsq = 0;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 5; ++j) {
          s += y.at({n, c, i, j});
          sq += y.at({n, c, i, j}) * y.at({n, c, i, j});
          xs += x.at({n, c, i, j});
          xsq += x.at({n, c, i, j}) * x.at({n, c, i, j});
        }
    EXPECT_NEAR(s / 100, 0.0, 1e-10);
    EXPECT_NEAR(sq / 100, 1.0, 1e-3);
    double mean = xs / 100, var_unbiased = (xsq - 100 * mean * mean) / 99;
    EXPECT_NEAR(rm.at({c}), 0.1 * mean, 1e-10);
    EXPECT_NEAR(rv.at({c}), 0.9 + 0.1 * var_unbiased, 1e-9);
  }
}

TEST(Conv2d, BadInputsGiveOneLineErrorsNamingTheProblem) {
  Generator gen(10);
  Tensor w = Tensor::randn({4, 3, 3, 3}, gen);
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  };
  has(error_of([&] {
        conv2d(Tensor::randn({3, 8, 8}, gen), w, Tensor());
      }),
      "must be 4-D [N, C, H, W]");
  has(error_of([&] {
        conv2d(Tensor::randn({2, 2, 8, 8}, gen), w, Tensor());
      }),
      "has 2 channels but weight f32[4, 3, 3, 3] with groups 1 expects 3");
  has(error_of([&] {
        conv2d(Tensor::randn({1, 3, 2, 2}, gen), w, Tensor());
      }),
      "kernel 3x3 (dilated 3x3) is larger than the padded input 2x2");
  has(error_of([&] {
        conv2d(Tensor::randn({1, 3, 8, 8}, gen), Tensor::randn({4, 1, 3, 3}, gen), Tensor(),
               {{1, 1}, {0, 0}, {1, 1}, 2});
      }),
      "input channels 3 are not divisible by groups 2");
  has(error_of([&] {
        conv2d(Tensor::randn({1, 4, 8, 8}, gen), Tensor::randn({3, 2, 3, 3}, gen), Tensor(),
               {{1, 1}, {0, 0}, {1, 1}, 2});
      }),
      "output channels 3");
  has(error_of([&] {
        conv2d(Tensor::randn({1, 3, 8, 8}, gen), w, Tensor::randn({5}, gen));
      }),
      "bias f32[5] must be [4]");
  has(error_of([&] {
        conv2d(Tensor::randn({1, 3, 8, 8}, gen), w, Tensor(), {{0, 1}});
      }),
      "stride (0, 1) must be >= 1");
  has(error_of([&] {
        max_pool2d(Tensor::randn({1, 1, 2, 2}, gen), {3, 3});
      }),
      "max_pool2d: kernel 3x3 is larger than the padded input 2x2");
  has(error_of([&] {
        avg_pool2d(Tensor::randn({1, 1, 6, 6}, gen), {2, 2}, {2, 2}, {2, 2});
      }),
      "padding (2, 2) must be at most half the kernel");
}

// Ties send the gradient to the first maximum in row-major order and NaN wins over numbers
// (the first NaN), on the unrolled 2x2 path and on the generic window loop alike.
TEST(Pooling, MaxTiesAndNaNFollowOneRule) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Four 2x2 windows: all tied, tie between the 2nd and 3rd, NaN at 3rd and 4th, NaN first.
  std::vector<double> v = {1, 1, 0, 5, nan, 0,   nan, 1,  //
                           1, 1, 5, 2, nan, nan, 3,   4};
  for (bool generic : {false, true}) {
    Tensor x = Tensor::from_vector(v, {1, 1, 2, 8}).requires_grad_(true);
    // Stride (1, 2) on 2 rows gives the same windows through the generic loop.
    Tensor y = generic ? max_pool2d(x, {2, 2}, {1, 2}) : max_pool2d(x, {2, 2});
    y.backward(Tensor::ones(y.shape(), DType::f64));
    auto g = x.grad().to_vector<double>();
    auto out = y.to_vector<double>();
    EXPECT_EQ(out[0], 1.0);
    EXPECT_EQ(g[0], 1.0) << generic;  // all tied: the first
    EXPECT_EQ(g[1] + g[8] + g[9], 0.0) << generic;
    EXPECT_EQ(out[1], 5.0);
    EXPECT_EQ(g[3], 1.0) << generic;  // 5 at (0, 3) before 5 at (1, 2)
    EXPECT_EQ(g[10], 0.0) << generic;
    EXPECT_TRUE(std::isnan(out[2]));
    EXPECT_EQ(g[4], 1.0) << generic;  // the first NaN
    EXPECT_EQ(g[12] + g[13], 0.0) << generic;
    EXPECT_TRUE(std::isnan(out[3]));
    EXPECT_EQ(g[6], 1.0) << generic;
  }
}

// The per-image path sums dW and db over fixed chunks of images in a fixed order: the
// gradients are bit-identical whatever the thread count.
TEST(Conv2d, GradientsDoNotDependOnTheThreadCount) {
  Generator gen(12);
  Tensor x = Tensor::randn({37, 3, 9, 9}, gen), w = Tensor::randn({8, 3, 3, 3}, gen);
  Tensor b = Tensor::randn({8}, gen), gy = Tensor::randn({37, 8, 9, 9}, gen);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Tensor wl = w.detach().requires_grad_(true), bl = b.detach().requires_grad_(true);
    conv2d(x, wl, bl, {{1, 1}, {1, 1}}).backward(gy);
    std::vector<float> g = wl.grad().to_vector<float>(), gb = bl.grad().to_vector<float>();
    g.insert(g.end(), gb.begin(), gb.end());
    runs.push_back(g);
  }
  omp_set_num_threads(saved);
  EXPECT_TRUE(runs[0] == runs[1]);
  EXPECT_TRUE(runs[0] == runs[2]);
}
