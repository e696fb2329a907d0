// test_optim.cpp: SGD, Adam and AdamW against closed forms over a few steps, exact resume
// through their state dicts, and 5 steps against torch.optim where PyTorch is installed.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <vector>

#include "engine/generator.h"
#include "models/optim.h"
#include "tests/cuda_devices.h"
#include "tests/models/torch_oracle.h"
#if defined(GRADLENS_HAVE_CUDA)
#include "kernels/cuda/runtime.h"
#endif

namespace gl::models {
namespace {

Tensor param(const std::vector<double>& v) {
  Tensor p = Tensor::from_vector(v, {int64_t(v.size())});
  p.requires_grad_(true);
  return p;
}
void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.set_grad(Tensor::from_vector(g, {int64_t(g.size())}).to(p.dtype()));
}

const std::vector<double> kP0{0.5, -1.25, 2.0}, kG{0.3, -0.7, 0.05};

TEST(SGD, PlainWithWeightDecayClosedForm) {
  Tensor p = param(kP0);
  SGD opt({p}, {.lr = 0.1, .weight_decay = 0.01});
  std::vector<double> ref = kP0;
  for (int step = 0; step < 3; ++step) {
    set_grad(p, kG);
    opt.step();
    for (int i = 0; i < 3; ++i) ref[i] -= 0.1 * (kG[i] + 0.01 * ref[i]);
  }
  auto got = p.to_vector<double>();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], ref[i], 1e-15);
  EXPECT_TRUE(opt.state_dict().empty());  // no momentum, no state
}

TEST(SGD, MomentumAndNesterovClosedForm) {
  const double lr = 0.1, mu = 0.9;
  for (bool nesterov : {false, true}) {
    Tensor p = param(kP0);
    SGD opt({p}, {.lr = lr, .momentum = mu, .nesterov = nesterov});
    for (int step = 0; step < 3; ++step) {
      set_grad(p, kG);
      opt.step();
    }
    // Constant gradient: buf_t = (1 + mu + ... + mu^(t-1)) g; the step is buf_t (or
    // g + mu buf_t with Nesterov).
    double total = 0, buf = 0;
    for (int t = 1; t <= 3; ++t) {
      buf = mu * buf + 1;
      total += nesterov ? 1 + mu * buf : buf;
    }
    auto got = p.to_vector<double>();
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], kP0[i] - lr * total * kG[i], 1e-14) << nesterov;
    auto st = opt.state_dict();
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0].first, "state.0.momentum_buffer");
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(st[0].second.at({i}), buf * kG[i], 1e-15);
  }
  // Dampening applies from the second step on.
  Tensor p = param(kP0);
  SGD opt({p}, {.lr = lr, .momentum = mu, .dampening = 0.5});
  set_grad(p, kG);
  opt.step();
  set_grad(p, kG);
  opt.step();
  auto got = p.to_vector<double>();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], kP0[i] - lr * (1 + (mu + 0.5)) * kG[i], 1e-14);
  EXPECT_THROW(SGD({param(kP0)}, {.lr = 0.1, .momentum = 0, .nesterov = true}), Error);
}

// Stepping each parameter alone (what the fused MLP step does as each layer's gradient
// arrives) gives the bits of step(), momentum buffers (first step and later) included, for f32
// parameters long enough to take the vectorized loops with a tail.
TEST(SGD, StepParamEqualsStep) {
  for (double mu : {0.0, 0.9}) {
    Generator gen(3);
    std::vector<Tensor> a, b;
    for (int64_t n : {1037, 16, 5}) {
      Tensor t = Tensor::randn({n}, gen);
      a.push_back(t.clone().requires_grad_());
      b.push_back(t.clone().requires_grad_());
    }
    SGD whole(a, {.lr = 0.05, .momentum = mu, .weight_decay = 1e-3});
    SGD alone(b, {.lr = 0.05, .momentum = mu, .weight_decay = 1e-3});
    ASSERT_TRUE(alone.steps_params_alone());
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < a.size(); ++i) {
        Tensor g = Tensor::randn(a[i].shape(), gen);
        a[i].set_grad(g.clone());
        b[i].set_grad(g.clone());
      }
      whole.step();
      for (std::size_t i = b.size(); i-- > 0;) alone.step_param(i);  // last layer first
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      auto x = a[i].to_vector<float>(), y = b[i].to_vector<float>();
      for (std::size_t k = 0; k < x.size(); ++k)
        ASSERT_EQ(x[k], y[k]) << "momentum " << mu << " parameter " << i << " component " << k;
    }
  }
}

TEST(Adam, ConstantGradientClosedForm) {
  // With a constant gradient the bias-corrected moments are g and g^2 exactly, so each step
  // moves p by lr * g / (|g| + eps * ...) -- precisely lr * g / (|g| + eps).
  const double lr = 0.01, eps = 1e-8;
  Tensor p = param(kP0);
  Adam opt({p}, {.lr = lr, .eps = eps});
  for (int step = 0; step < 3; ++step) {
    set_grad(p, kG);
    opt.step();
  }
  auto got = p.to_vector<double>();
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(got[i], kP0[i] - 3 * lr * kG[i] / (std::abs(kG[i]) + eps), 1e-14);
  auto st = opt.state_dict();
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0].first, "state.0.step");
  EXPECT_EQ(st[0].second.item(), 3);
  EXPECT_EQ(st[0].second.dtype(), DType::i64);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(st[1].second.at({i}), (1 - std::pow(0.9, 3)) * kG[i], 1e-15);
    EXPECT_NEAR(st[2].second.at({i}), (1 - std::pow(0.999, 3)) * kG[i] * kG[i], 1e-15);
  }
}

TEST(Adam, WeightDecayL2AndDecoupledByHand) {
  const double lr = 0.05, wd = 0.1, b1 = 0.8, b2 = 0.95, eps = 1e-6;
  for (bool decoupled : {false, true}) {
    Tensor p = param(kP0);
    AdamOptions o{.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd};
    std::unique_ptr<Optimizer> opt;
    if (decoupled)
      opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, o);
    else
      opt = std::make_unique<Adam>(std::vector<Tensor>{p}, o);
    EXPECT_EQ(opt->kind(), decoupled ? "AdamW" : "Adam");
    std::vector<double> ref = kP0, m(3, 0), v(3, 0);
    for (int t = 1; t <= 2; ++t) {
      std::vector<double> g{kG[0] * t, kG[1] - t, kG[2]};
      set_grad(p, g);
      opt->step();
      for (int i = 0; i < 3; ++i) {
        if (decoupled) ref[i] *= 1 - lr * wd;
        double gi = decoupled ? g[i] : g[i] + wd * ref[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
        ref[i] -= lr * mhat / (std::sqrt(vhat) + eps);
      }
    }
    auto got = p.to_vector<double>();
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], ref[i], 1e-13) << decoupled;
  }
}

TEST(Optimizer, SkipsParamsWithoutGradAndResumesExactly) {
  Generator gen(8);
  auto make = [&] {
    std::vector<Tensor> ps{Tensor::randn({4, 3}, gen), Tensor::randn({3}, gen)};
    for (auto& p : ps) p.requires_grad_(true);
    return ps;
  };
  std::vector<std::vector<Tensor>> grads;
  for (int s = 0; s < 5; ++s)
    grads.push_back({Tensor::randn({4, 3}, gen), Tensor::randn({3}, gen)});
  for (int which = 0; which < 2; ++which) {
    auto a = make();
    std::vector<Tensor> b;
    for (auto& p : a) b.push_back(p.detach().clone().requires_grad_(true));
    auto build = [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
      if (which == 0) return std::make_unique<SGD>(ps, SgdOptions{.lr = 0.1, .momentum = 0.9});
      return std::make_unique<AdamW>(ps, AdamOptions{.lr = 0.01, .weight_decay = 0.05});
    };
    auto oa = build(a);
    // Step 0: only the first parameter has a gradient; the second must not move.
    std::vector<float> before = a[1].to_vector<float>();
    a[0].set_grad(grads[0][0]);
    oa->step();
    EXPECT_EQ(a[1].to_vector<float>(), before);
    EXPECT_EQ(oa->state_dict().size(), which == 0 ? 1u : 3u);
    for (int s = 1; s < 2; ++s) {
      for (int i = 0; i < 2; ++i) a[i].set_grad(grads[s][i]);
      oa->step();
    }
    // Resume: copy parameters and optimizer state into fresh objects, continue both.
    for (int i = 0; i < 2; ++i) b[i].detach().copy_(a[i]);
    auto ob = build(b);
    ob->load_state_dict(oa->state_dict());
    for (int s = 2; s < 5; ++s) {
      for (int i = 0; i < 2; ++i) {
        a[i].set_grad(grads[s][i]);
        b[i].set_grad(grads[s][i]);
      }
      oa->step();
      ob->step();
    }
    for (int i = 0; i < 2; ++i)
      EXPECT_EQ(a[i].to_vector<float>(), b[i].to_vector<float>()) << which;
    oa->zero_grad();
    EXPECT_FALSE(a[0].grad().defined());
    // Bad state names the key.
    NamedTensors bad{{"state.0.exp_avg", Tensor::zeros({2})}};
    EXPECT_THROW(ob->load_state_dict(bad), Error);
    NamedTensors unknown{{"state.7.momentum_buffer", Tensor::zeros({3})}};
    EXPECT_THROW(ob->load_state_dict(unknown), Error);
  }
}

// Records every call of a step: what before_update and after_update saw, per chunk.
struct RecordingObserver : StepObserver {
  struct Chunk {
    int64_t lo = -1, n = 0;
    const float* g = nullptr;
    std::vector<float> grad, before, after;
    int calls = 0;  // 1 before, 2 after (3: both, in order)
  };
  std::map<std::size_t, std::vector<Chunk>> chunks;  // sized before the step: slots per chunk
  void size_for(const std::vector<Tensor>& params) {
    for (std::size_t i = 0; i < params.size(); ++i)
      chunks[i].resize(std::size_t((params[i].numel() + Optimizer::kObserveChunk - 1) /
                                   Optimizer::kObserveChunk));
  }
  Chunk& slot(std::size_t param, int64_t lo) {
    return chunks.at(param).at(std::size_t(lo / Optimizer::kObserveChunk));
  }
  void before_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                     const float* w) override {
    Chunk& c = slot(param, lo);
    c.lo = lo;
    c.n = n;
    c.g = g;
    c.grad.assign(g, g + n);
    c.before.assign(w, w + n);
    c.calls = c.calls == 0 ? 1 : 99;
  }
  void after_update(std::size_t param, int64_t lo, int64_t n, const float* g,
                    const float* w) override {
    Chunk& c = slot(param, lo);
    EXPECT_EQ(c.g, g);
    EXPECT_EQ(c.n, n);
    c.after.assign(w, w + n);
    c.calls = c.calls == 1 ? 3 : 99;
  }
};

TEST(Optimizer, StepObserverSeesEveryChunkBeforeAndAfterItsUpdate) {
  // A parameter of several chunks and a tail, one large enough to step on several threads, a
  // small one, one without a gradient and an f64 one (neither observed). The observed step
  // must leave the same weights and state as the plain one, bit for bit.
  const int threads = omp_get_max_threads();
  for (int t : {1, 2})
    for (int which = 0; which < 3; ++which) {
      SCOPED_TRACE(fmt::format("threads {} optimizer {}", t, which));
      omp_set_num_threads(t);
      Generator gen(21);
      std::vector<Tensor> init{Tensor::randn({3 * Optimizer::kObserveChunk + 100}, gen),
                               Tensor::randn({70000}, gen), Tensor::randn({5}, gen),
                               Tensor::randn({7}, gen), Tensor::randn({9}, gen, DType::f64)};
      auto make = [&] {
        std::vector<Tensor> ps;
        for (auto& p : init) ps.push_back(p.clone().requires_grad_(true));
        return ps;
      };
      auto build = [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
        if (which == 0) return std::make_unique<SGD>(ps, SgdOptions{.lr = 0.1, .momentum = 0.9});
        if (which == 1) return std::make_unique<Adam>(ps, AdamOptions{.lr = 0.01});
        return std::make_unique<AdamW>(ps, AdamOptions{.lr = 0.01, .weight_decay = 0.1});
      };
      std::vector<Tensor> plain = make(), observed = make();
      auto op = build(plain), oo = build(observed);
      RecordingObserver rec;
      EXPECT_TRUE(oo->observes_steps());
      oo->set_step_observer(&rec);
      EXPECT_EQ(oo->step_observer(), &rec);
      for (int step = 0; step < 3; ++step) {
        rec.chunks.clear();
        rec.size_for(observed);
        std::vector<std::vector<float>> before;
        for (std::size_t i = 0; i < observed.size(); ++i) {
          before.push_back(observed[i].to_vector<float>());
          if (i == 3) continue;  // no gradient: skipped
          Tensor g = Tensor::randn(init[i].shape(), gen, init[i].dtype());
          plain[i].set_grad(g.clone());
          observed[i].set_grad(g.clone());
        }
        op->step();
        oo->step();
        for (std::size_t i = 0; i < observed.size(); ++i) {
          const bool seen = i < 3;  // f32 parameters with a gradient
          std::vector<float> grad =
              i == 3 ? std::vector<float>{} : observed[i].grad().to_vector<float>();
          std::vector<float> after = observed[i].to_vector<float>();
          EXPECT_EQ(after, plain[i].to_vector<float>()) << "parameter " << i;
          for (const auto& c : rec.chunks.at(i)) {
            if (!seen) {
              EXPECT_EQ(c.calls, 0) << "parameter " << i;
              continue;
            }
            ASSERT_EQ(c.calls, 3) << "parameter " << i << " chunk at " << c.lo;
            EXPECT_EQ(c.n, std::min(Optimizer::kObserveChunk, observed[i].numel() - c.lo));
            const auto from = std::size_t(c.lo), to = std::size_t(c.lo + c.n);
            EXPECT_EQ(c.grad, std::vector<float>(grad.begin() + from, grad.begin() + to));
            EXPECT_EQ(c.before,
                      std::vector<float>(before[i].begin() + from, before[i].begin() + to));
            EXPECT_EQ(c.after, std::vector<float>(after.begin() + from, after.begin() + to));
          }
        }
      }
      // The same state, and nothing observed once the observer is removed.
      auto sp = op->state_dict(), so = oo->state_dict();
      ASSERT_EQ(sp.size(), so.size());
      for (std::size_t k = 0; k < sp.size(); ++k)
        EXPECT_EQ(sp[k].second.to_vector<double>(), so[k].second.to_vector<double>())
            << sp[k].first;
      oo->set_step_observer(nullptr);
      rec.chunks.clear();
      observed[0].set_grad(Tensor::randn(init[0].shape(), gen));
      oo->step();
      EXPECT_TRUE(rec.chunks.empty());
    }
  omp_set_num_threads(threads);
}

TEST(Optimizer, MatchesTorchOverFiveSteps) {
  GL_REQUIRE_TORCH();
  Generator gen(12);
  const int64_t n = 64;
  std::vector<double> p0 = Tensor::randn({n}, gen, DType::f32).to_vector<double>();
  std::vector<std::vector<double>> gs;
  std::string gs_py = "[";
  for (int s = 0; s < 5; ++s) {
    gs.push_back(Tensor::randn({n}, gen, DType::f32, 0.0, 0.5).to_vector<double>());
    gs_py += testing::py_list(gs.back()) + ",";
  }
  gs_py += "]";
  struct Case {
    std::string torch_ctor;
    std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)> ours;
  };
  std::vector<Case> cases{
      {"torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)",
       [](auto ps) {
         return std::make_unique<SGD>(
             ps, SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
       }},
      {"torch.optim.SGD([p], lr=0.05, momentum=0.8, dampening=0.2, weight_decay=0.001)",
       [](auto ps) {
         return std::make_unique<SGD>(
             ps, SgdOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.2, .weight_decay = 0.001});
       }},
      {"torch.optim.Adam([p], lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02)",
       [](auto ps) {
         return std::make_unique<Adam>(
             ps, AdamOptions{
                     .lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.02});
       }},
      {"torch.optim.AdamW([p], lr=0.01, weight_decay=0.1)",
       [](auto ps) {
         return std::make_unique<AdamW>(ps, AdamOptions{.lr = 0.01, .weight_decay = 0.1});
       }},
  };
  std::string code = fmt::format("import torch\np0 = {}\ngs = {}\n", testing::py_list(p0), gs_py);
  for (auto& c : cases)
    code += fmt::format(R"(
p = torch.tensor(p0, dtype=torch.float32, requires_grad=True)
opt = {}
for g in gs:
    p.grad = torch.tensor(g, dtype=torch.float32)
    opt.step()
print(' '.join(repr(v) for v in p.detach().tolist()))
)",
                        c.torch_ctor);
  auto theirs = testing::parse_numbers(testing::run_python(code));
  ASSERT_EQ(theirs.size(), cases.size() * std::size_t(n));
  for (std::size_t k = 0; k < cases.size(); ++k) {
    Tensor p = Tensor::from_vector(p0, {n}).to(DType::f32);
    p.requires_grad_(true);
    auto opt = cases[k].ours({p});
    for (auto& g : gs) {
      set_grad(p, g);
      opt->step();
    }
    auto ours = p.to_vector<double>();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = std::abs(ours[i] - theirs[k * n + i]) / (1e-3 + std::abs(ours[i]));
      worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
    }
    // f32 rounding differences only (torch fuses some multiply-adds).
    EXPECT_LT(worst, 1e-6) << cases[k].torch_ctor;
  }
}

#if defined(GRADLENS_HAVE_CUDA)
// Parameters w copied to d, stepped twice with gradients g (copied to d; with `transposed`, g
// holds their transposes and each gradient is the transpose of its copy, a strided view on d) by
// SGD with momentum (kind 0) or Adam (kind 1): their values after.
std::vector<std::vector<float>> two_steps(int kind, const std::vector<Tensor>& w,
                                          const std::vector<Tensor>& g, Device d,
                                          bool transposed = false) {
  std::vector<Tensor> ps;
  for (const Tensor& t : w) ps.push_back(t.to(d).clone().requires_grad_(true));
  std::unique_ptr<Optimizer> opt;
  if (kind == 0)
    opt = std::make_unique<SGD>(ps, SgdOptions{.lr = 0.1, .momentum = 0.9});
  else
    opt = std::make_unique<Adam>(ps, AdamOptions{.lr = 0.01});
  for (int step = 0; step < 2; ++step) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      ps[i].set_grad(transposed ? g[i].to(d).t() : g[i].to(d));
      EXPECT_EQ(ps[i].grad().is_contiguous(), !transposed) << "gradient " << i;
    }
    opt->step();
  }
  std::vector<std::vector<float>> out;
  for (const Tensor& p : ps) out.push_back(p.to_vector<float>());
  return out;
}
#endif

// On a GPU the step reads up to 256 contiguous gradients where they are (kernel arguments);
// more parameters than that, or a gradient that is a strided view, are copied into the step's
// buffers first. Both ways step as on the CPU: 300 parameters, and 3 whose gradients are
// transposed views, SGD with momentum and Adam, two steps each.
TEST(CudaOptimizer, ManyParametersAndStridedGradientsStepAsOnTheCpu) {
#if defined(GRADLENS_HAVE_CUDA)
  if (kernels::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  Generator gen(11);
  for (const bool strided : {false, true}) {
    const int count = strided ? 3 : 300;
    std::vector<Tensor> w, g;
    for (int i = 0; i < count; ++i) {
      const int64_t rows = 2 + i % 7, cols = 2 + i % 5;
      w.push_back(Tensor::rand({rows, cols}, gen, DType::f32, -1, 1));
      // Strided gradients: transposes, made on the device, of [cols, rows] tensors.
      g.push_back(strided ? Tensor::rand({cols, rows}, gen, DType::f32, -1, 1)
                          : Tensor::rand({rows, cols}, gen, DType::f32, -1, 1));
    }
    for (int kind = 0; kind < 2; ++kind) {
      SCOPED_TRACE(std::string(kind == 0 ? "SGD" : "Adam") + (strided ? ", strided" : ", 300"));
      const auto want = two_steps(kind, w, g, Device::cpu(), strided);
      const auto got = two_steps(kind, w, g, Device::cuda(), strided);
      for (int k = 0; k < count; ++k) {
        ASSERT_EQ(got[size_t(k)].size(), want[size_t(k)].size());
        for (std::size_t i = 0; i < want[size_t(k)].size(); ++i) {
          ASSERT_NEAR(got[size_t(k)][i], want[size_t(k)][i],
                      1e-5 * (1 + std::fabs(want[size_t(k)][i])))
              << "parameter " << k << " element " << i;
          ASSERT_NE(got[size_t(k)][i], w[size_t(k)].to_vector<float>()[i]) << "not stepped";
        }
      }
    }
  }
#else
  GTEST_SKIP() << "this build has no CUDA backend (configure with -DGRADLENS_CUDA=ON)";
#endif
}

// Parameters on cuda:1 stepped while cuda:0 is current: the step runs on cuda:1 (one launch
// over every parameter) and matches the CPU step; cuda:0 stays current. Skips with fewer than
// two GPUs (see MultiGpu.OpsRunOnTheDeviceOfTheirTensors).
using MultiGpu = gl::testing::TwoGpuTest;
TEST_F(MultiGpu, OptimizerStepsRunOnTheParametersDevice) {
#if defined(GRADLENS_HAVE_CUDA)
  namespace kc = gl::kernels::cuda;
  const Device d1 = Device::cuda(1);
  Generator gen(3);
  const Tensor w0 = Tensor::rand({3, 20000}, gen, DType::f32, -1, 1);
  const Tensor w1 = Tensor::rand({7}, gen, DType::f32, -1, 1);
  const Tensor g0 = Tensor::rand({3, 20000}, gen, DType::f32, -1, 1);
  const Tensor g1 = Tensor::rand({7}, gen, DType::f32, -1, 1);
  for (int kind = 0; kind < 2; ++kind) {
    SCOPED_TRACE(kind == 0 ? "SGD" : "Adam");
    const auto want = two_steps(kind, {w0, w1}, {g0, g1}, Device::cpu());
    const auto got = two_steps(kind, {w0, w1}, {g0, g1}, d1);
    EXPECT_EQ(kc::current_device(), 0);
    for (std::size_t k = 0; k < want.size(); ++k) {
      ASSERT_EQ(got[k].size(), want[k].size());
      for (std::size_t i = 0; i < want[k].size(); ++i)
        ASSERT_NEAR(got[k][i], want[k][i], 1e-5 * (1 + std::fabs(want[k][i])))
            << "parameter " << k << " element " << i;
    }
  }
#endif
}

}  // namespace
}  // namespace gl::models
