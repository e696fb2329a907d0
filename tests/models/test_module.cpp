// test_module.cpp: Module registration and naming, state-dict round trips and strict-load
// errors, train/eval propagation, forward hooks, dtype conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/ops.h"
#include "models/layers.h"
#include "models/module.h"

namespace gl::models {
namespace {

// A two-level tree: own parameter and buffer, a Linear child and a nested Sequential.
class Toy : public Module {
 public:
  Toy() {
    scale_ = &register_parameter("scale", Tensor::ones({3}));
    register_buffer("count", Tensor::zeros({}, DType::i64));
    lin_ = register_module("proj", std::make_unique<Linear>(3, 4));
    auto seq = std::make_unique<Sequential>();
    seq->emplace<Linear>(4, 2);
    seq->emplace<Activation>(ActivationKind::relu);
    seq->emplace<BatchNorm1d>(2);
    layers_ = register_module("layers", std::move(seq));
  }
  std::string kind() const override { return "Toy"; }
  Tensor forward_impl(const Tensor& x) override {
    return layers_->forward(lin_->forward(x * *scale_));
  }
  void add_duplicate() { register_parameter("scale", Tensor::ones({1})); }
  void add_dotted() { register_buffer("a.b", Tensor::ones({1})); }

 private:
  Tensor* scale_;
  Linear* lin_;
  Sequential* layers_;
};

std::vector<std::string> keys(const NamedTensors& t) {
  std::vector<std::string> k;
  for (auto& [n, v] : t) k.push_back(n);
  return k;
}

TEST(Module, NamesFollowPyTorchOrder) {
  Toy toy;
  std::vector<std::string> expect_params{"scale",           "proj.weight",   "proj.bias",
                                         "layers.0.weight", "layers.0.bias", "layers.2.weight",
                                         "layers.2.bias"};
  EXPECT_EQ(keys(toy.named_parameters()), expect_params);
  std::vector<std::string> expect_buffers{"count", "layers.2.running_mean", "layers.2.running_var",
                                          "layers.2.num_batches_tracked"};
  EXPECT_EQ(keys(toy.named_buffers()), expect_buffers);
  std::vector<std::string> expect_state{"scale",
                                        "count",
                                        "proj.weight",
                                        "proj.bias",
                                        "layers.0.weight",
                                        "layers.0.bias",
                                        "layers.2.weight",
                                        "layers.2.bias",
                                        "layers.2.running_mean",
                                        "layers.2.running_var",
                                        "layers.2.num_batches_tracked"};
  EXPECT_EQ(keys(toy.state_dict()), expect_state);
  std::vector<std::string> mods;
  for (auto& [n, m] : toy.named_modules()) mods.push_back(n + ":" + m->kind());
  std::vector<std::string> expect_mods{
      ":Toy",          "proj:Linear",         "layers:Sequential", "layers.0:Linear",
      "layers.1:ReLU", "layers.2:BatchNorm1d"};
  EXPECT_EQ(mods, expect_mods);
  EXPECT_EQ(toy.num_parameters(), 3 + 12 + 4 + 8 + 2 + 2 + 2);
  for (auto& p : toy.parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(toy.named_buffers()[3].second.dtype(), DType::i64);
}

TEST(Module, RejectsDuplicateAndDottedNames) {
  Toy toy;
  EXPECT_THROW(toy.add_duplicate(), Error);
  EXPECT_THROW(toy.add_dotted(), Error);
}

TEST(Module, StateDictRoundTrip) {
  Toy a, b;
  Generator gen(7);
  for (auto& [n, t] : a.state_dict())
    if (is_floating(t.dtype())) t.copy_(Tensor::randn(t.shape(), gen));
  a.named_buffers()[0].second.fill_(42);
  Tensor handle = b.named_parameters()[1].second;  // must stay the live parameter
  auto r = b.load_state_dict(a.state_dict());
  EXPECT_TRUE(r.missing_keys.empty() && r.unexpected_keys.empty());
  auto sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].second.dtype(), sb[i].second.dtype()) << sa[i].first;
    EXPECT_EQ(sa[i].second.to_vector<double>(), sb[i].second.to_vector<double>()) << sa[i].first;
  }
  EXPECT_TRUE(handle.same(b.named_parameters()[1].second));
  EXPECT_EQ(handle.to_vector<double>(), sa[2].second.to_vector<double>());
  // state_dict shares storage; clone_tensors does not.
  auto snap = clone_tensors(a.state_dict());
  a.state_dict()[0].second.fill_(-1);
  EXPECT_EQ(a.state_dict()[0].second.at({0}), -1);
  EXPECT_NE(snap[0].second.at({0}), -1);
}

TEST(Module, StrictLoadErrorsNameTheKey) {
  Toy a, b;
  auto sd = a.state_dict();
  auto missing = sd;
  missing.erase(missing.begin() + 3);  // proj.bias
  try {
    b.load_state_dict(missing);
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("missing keys [proj.bias]"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  auto extra = sd;
  extra.emplace_back("layers.9.weight", Tensor::zeros({1}));
  try {
    b.load_state_dict(extra);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected keys [layers.9.weight]"), std::string::npos)
        << e.what();
  }
  auto bad = sd;
  bad[2].second = Tensor::zeros({4, 5});
  try {
    b.load_state_dict(bad, /*strict=*/false);
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'proj.weight'"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 5]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 3]"), std::string::npos) << m;
  }
  // Nothing was copied by the failed loads; non-strict loading reports what it skipped.
  b.named_parameters()[0].second.fill_(5);
  auto r = b.load_state_dict(extra, false);
  EXPECT_EQ(r.unexpected_keys, std::vector<std::string>{"layers.9.weight"});
  EXPECT_EQ(b.named_parameters()[0].second.at({0}), 1.0);
  auto dup = sd;
  dup.push_back(sd[0]);
  EXPECT_THROW(b.load_state_dict(dup), Error);
  // require_finite names the first tensor holding a NaN or an infinity, and where.
  EXPECT_NO_THROW(require_finite(sd));
  for (double v : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    auto nonfinite = clone_tensors(sd);
    Tensor w = nonfinite[2].second;  // proj.weight [4, 3]
    std::vector<double> vals = w.to_vector<double>();
    vals[7] = v;
    w.copy_(Tensor::from_vector(vals, w.shape()).to(w.dtype()));
    try {
      require_finite(nonfinite);
      FAIL() << "no throw for " << v;
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("'proj.weight' holds a non-finite value"), std::string::npos) << m;
      EXPECT_NE(m.find("flat index 7"), std::string::npos) << m;
    }
  }
  // A batch norm's running variance below 0 is no variance at all.
  StateDict bn{{"0.running_var", Tensor::from_vector(std::vector<float>{1.f, 0.f, -1.f}, {3})},
               {"0.running_mean", Tensor::from_vector(std::vector<float>{-1.f, 0.f, -1.f}, {3})}};
  try {
    require_finite(bn);
    FAIL() << "no throw for a negative running_var";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'0.running_var' holds a negative variance"),
              std::string::npos)
        << e.what();
  }
  bn[0].second = Tensor::from_vector(std::vector<float>{1.f, 0.f, 2.f}, {3});
  EXPECT_NO_THROW(require_finite(bn));  // negative means are fine
}

TEST(Module, TrainEvalPropagates) {
  Toy toy;
  EXPECT_TRUE(toy.is_training());
  toy.eval();
  for (auto& [n, m] : toy.named_modules()) EXPECT_FALSE(m->is_training()) << n;
  toy.train();
  for (auto& [n, m] : toy.named_modules()) EXPECT_TRUE(m->is_training()) << n;
}

TEST(Module, ForwardHooksSeeInputAndOutputAndAreRemovable) {
  Sequential seq;
  auto* lin = seq.emplace<Linear>(3, 2);
  auto* act = seq.emplace<Activation>(ActivationKind::tanh);
  Generator gen(1);
  lin->reset_parameters(gen);
  Tensor x = Tensor::randn({5, 3}, gen);

  std::vector<std::string> order;
  Tensor seen_in, seen_out;
  Module& as_module = *act;  // diagnostics only hold a Module&
  HookId id = as_module.add_forward_hook([&](const Module& m, const Tensor& in, const Tensor& out) {
    order.push_back(m.kind());
    seen_in = in;
    seen_out = out;
  });
  Tensor lin_out;
  HookId id2 = lin->add_forward_hook([&](const Module& m, const Tensor&, const Tensor& out) {
    order.push_back(m.kind());
    lin_out = out;
  });
  Tensor y = seq(x);
  EXPECT_EQ(order, (std::vector<std::string>{"Linear", "Tanh"}));
  EXPECT_TRUE(seen_out.same(y));
  EXPECT_TRUE(seen_in.same(lin_out));
  auto yv = y.to_vector<float>();
  auto hv = lin_out.to_vector<float>();
  for (std::size_t i = 0; i < yv.size(); ++i) EXPECT_FLOAT_EQ(yv[i], std::tanh(hv[i]));

  EXPECT_TRUE(as_module.remove_forward_hook(id));
  EXPECT_FALSE(as_module.remove_forward_hook(id));
  order.clear();
  seq(x);
  EXPECT_EQ(order, std::vector<std::string>{"Linear"});
  // A hook may remove itself while firing.
  HookId self = 0;
  int calls = 0;
  self = lin->add_forward_hook([&](const Module&, const Tensor&, const Tensor&) {
    ++calls;
    lin->remove_forward_hook(self);
  });
  seq(x);
  seq(x);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(lin->remove_forward_hook(id2));
  EXPECT_EQ(lin->num_forward_hooks(), 0u);
}

TEST(Module, ToF64KeepsIntegerBuffersAndGrad) {
  Toy toy;
  toy.to(DType::f64);
  for (auto& [n, t] : toy.named_parameters()) {
    EXPECT_EQ(t.dtype(), DType::f64) << n;
    EXPECT_TRUE(t.requires_grad()) << n;
  }
  EXPECT_EQ(toy.named_buffers()[0].second.dtype(), DType::i64);
  Tensor x = Tensor::ones({4, 3}, DType::f64);
  Tensor y = toy(x);
  EXPECT_EQ(y.dtype(), DType::f64);
  sum(y).backward();
  for (auto& [n, t] : toy.named_parameters()) EXPECT_TRUE(t.grad().defined()) << n;
  toy.zero_grad();
  for (auto& [n, t] : toy.named_parameters()) EXPECT_FALSE(t.grad().defined()) << n;
}

TEST(Module, DescribeIsPyTorchLike) {
  Toy toy;
  std::string d = toy.describe();
  EXPECT_NE(d.find("(proj): Linear(in_features=3, out_features=4, bias=True)"), std::string::npos)
      << d;
  EXPECT_NE(d.find("    (2): BatchNorm1d(2, eps=1e-05"), std::string::npos) << d;
}

}  // namespace
}  // namespace gl::models
