// Every row of the op table passes f64 central-difference gradcheck, and every required op
// has a row.
#include <gtest/gtest.h>

#include <set>

#include "engine/testing/op_table.h"

using namespace gl;

TEST(OpTable, HasARowForEveryOp) {
  std::set<std::string> covered;
  for (const auto& c : gl::testing::op_table()) covered.insert(c.op);
  for (const auto& op : gl::testing::required_ops()) EXPECT_TRUE(covered.count(op)) << "no row for " << op;
}

class Gradcheck : public ::testing::TestWithParam<std::size_t> {};

TEST_P(Gradcheck, AnalyticMatchesCentralDifferences) {
  const auto& c = gl::testing::op_table()[GetParam()];
  for (uint64_t seed : {1u, 2u}) {
    auto r = gl::testing::gradcheck(c, seed);
    EXPECT_TRUE(r.passed) << c.name << " seed " << seed << ": " << r.detail;
    EXPECT_GT(r.checked, 0) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(AllOps, Gradcheck,
                         ::testing::Range<std::size_t>(0, gl::testing::op_table().size()),
                         [](const auto& info) {
                           std::string n = gl::testing::op_table()[info.param].name;
                           for (auto& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// A deliberately wrong backward must be caught: the checker can fail.
TEST(Gradcheck, DetectsAWrongBackward) {
  gl::testing::OpCase wrong{"wrong", "wrong",
                        [](Generator& g, DType dt) {
                          return std::vector<Tensor>{Tensor::rand({3}, g, dt, -1, 1)};
                        },
                        [](const std::vector<Tensor>& x) {
                          Tensor out = mul(x[0].detach(), x[0].detach());
                          Tensor in = x[0];
                          attach_grad_fn(out, "wrong", {in}, [in](const Tensor& g) -> std::vector<Tensor> {
                            return {mul(g, in.detach())};  // should be 2*x
                          });
                          return out;
                        }};
  EXPECT_FALSE(gl::testing::gradcheck(wrong, 3).passed);
}

// A backward that is wrong where the true derivative is 0: the failing row's relative error is
// the whole error (1), not 0, which once read as "no relative error at all".
TEST(Gradcheck, RelativeErrorOfAGradientWhereTheNumericOneIsZero) {
  gl::testing::OpCase constant{
      "constant", "constant",
      [](Generator& g, DType dt) { return std::vector<Tensor>{Tensor::rand({3}, g, dt, -1, 1)}; },
      [](const std::vector<Tensor>& x) {
        Tensor out = mul(x[0].detach(), 0.0);  // does not depend on x
        Tensor in = x[0];
        attach_grad_fn(out, "constant", {in}, [](const Tensor& g) -> std::vector<Tensor> {
          return {g};  // should be 0
        });
        return out;
      }};
  auto r = gl::testing::gradcheck(constant, 3);
  EXPECT_FALSE(r.passed);
  EXPECT_GT(r.max_abs_err, 0.0);
  EXPECT_DOUBLE_EQ(r.max_rel_err, 1.0);
}
