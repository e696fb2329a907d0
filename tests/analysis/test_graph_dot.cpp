// test_graph_dot.cpp: the DOT of an MLP training step's tape against an independent walk of
// the same tape (every op and leaf drawn once, every parameter named and marked as needing
// grad, edges from data dashed), rendering with Graphviz where installed, and the command.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "analysis/graph_dot.h"
#include "analysis_fixture.h"
#include "engine/autograd.h"
#include "engine/generator.h"
#include "engine/io/fs.h"
#include "engine/ops.h"
#include "models/mlp.h"

using namespace gl;
using gl::testing_fixture::run_shell;
using gl::testing_fixture::ScratchDir;

namespace {

struct Step {
  std::unique_ptr<models::MLP> model;
  Tensor loss;
};

Step mlp_step() {
  models::MlpConfig c;
  c.in_features = 12;
  c.hidden = {8, 6};  // three Linear layers
  c.num_classes = 4;
  Step s;
  s.model = models::build_mlp(c);
  Generator gen(3);
  s.model->reset_parameters(gen);
  Tensor x = Tensor::randn({5, 12}, gen);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 0}, {5});
  s.loss = cross_entropy(s.model->forward(x), y);
  return s;
}

int count(const std::string& s, const std::regex& re) {
  return int(std::distance(std::sregex_iterator(s.begin(), s.end(), re), std::sregex_iterator()));
}

}  // namespace

TEST(GraphDot, MatchesAnIndependentWalkOfTheTape) {
  Step s = mlp_step();
  analysis::GraphDotOptions o;
  o.names = s.model->named_parameters();
  std::string dot = analysis::autograd_dot(s.loss, o);

  // Reference: recursive walk collecting distinct nodes, leaves and edges.
  std::set<const Node*> nodes;
  std::set<const TensorImpl*> leaves;
  size_t edges = 0;
  std::function<void(const Tensor&)> walk = [&](const Tensor& t) {
    const Node* n = t.grad_fn().get();
    if (!nodes.insert(n).second) return;
    for (auto& in : n->inputs) {
      if (!in.defined()) continue;
      ++edges;
      if (in.grad_fn())
        walk(in);
      else
        leaves.insert(in.impl());
    }
  };
  walk(s.loss);
  EXPECT_EQ(count(dot, std::regex(R"(\n  op\d+ \[shape=box)")), int(nodes.size()));
  EXPECT_EQ(count(dot, std::regex(R"(\n  leaf\d+ \[shape=ellipse)")), int(leaves.size()));
  EXPECT_EQ(count(dot, std::regex(" -> ")), int(edges) + 1);  // + the edge into the root
  for (auto& [name, p] : s.model->named_parameters()) {
    EXPECT_NE(dot.find("label=\"" + name + "\\n" + std::string(dtype_name(p.dtype()))),
              std::string::npos)
        << name;
  }
  EXPECT_EQ(count(dot, std::regex("requires grad")), 6);  // 3 weights + 3 biases
  EXPECT_GE(count(dot, std::regex("style=dashed")), 1);   // the input batch
  EXPECT_NE(dot.find("saved"), std::string::npos);
  EXPECT_NE(dot.find("[5, 12]"), std::string::npos);
}

TEST(GraphDot, NoHistoryThrows) {
  Tensor t = Tensor::zeros({2, 2});
  EXPECT_THROW(analysis::autograd_dot(t, {}), std::exception);
}

// An SVG path in a directory that does not exist: one error naming it (it was once the shell's
// own message and a second line), whether or not Graphviz is installed.
TEST(GraphDot, RenderingIntoAMissingDirectoryNamesIt) {
  ScratchDir d("graph_missing");
  const std::string dot_path = d.str() + "/g.dot";
  io::write_file_atomic(dot_path, "digraph g { a -> b; }\n");
  try {
    analysis::render_dot_svg(dot_path, d.str() + "/no/such/dir/g.svg");
    FAIL() << "no error";
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no directory '" + d.str() + "/no/such/dir'"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

// An SVG path that is a directory: one error naming it (it was a raw "cannot rename" from a
// fixed PATH.tmp name, which was left behind), and nothing written beside it.
TEST(GraphDot, RenderingOntoADirectoryNamesIt) {
  ScratchDir d("graph_onto_dir");
  const std::string dot_path = d.str() + "/g.dot", svg_path = d.str() + "/g.svg";
  io::write_file_atomic(dot_path, "digraph g { a -> b; }\n");
  std::filesystem::create_directories(svg_path);
  try {
    analysis::render_dot_svg(dot_path, svg_path);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot write '" + svg_path + "': it is a directory"), std::string::npos) << m;
  }
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(d.str())) entries += e.exists();
  EXPECT_EQ(entries, 2);  // g.dot and the directory g.svg
}

TEST(GraphDot, RendersWithGraphviz) {
  if (!analysis::graphviz_available()) GTEST_SKIP() << "Graphviz `dot` is not installed";
  ScratchDir d("graph");
  Step s = mlp_step();
  analysis::GraphDotOptions o;
  o.names = s.model->named_parameters();
  std::string dot_path = d.str() + "/g.dot", svg_path = d.str() + "/g.svg";
  io::write_file_atomic(dot_path, analysis::autograd_dot(s.loss, o));
  ASSERT_EQ(run_shell("dot -Tsvg " + dot_path + " -o " + svg_path + " 2>" + d.str() + "/err"), 0);
  auto err = io::read_file(d.str() + "/err");
  EXPECT_TRUE(err.empty()) << std::string(err.begin(), err.end());
  auto svg = io::read_file(svg_path);
  std::string text(svg.begin(), svg.end());
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("2.weight"), std::string::npos);
}

TEST(GraphDot, CommandWritesDotAndSvg) {
  ScratchDir d("graph_cmd");
  std::string out = d.str() + "/mlp.dot";
  ASSERT_EQ(run_shell(std::string(GRADLENS_BINARY) + " graph --hidden 16,16 --out " + out +
                      " >/dev/null 2>&1"),
            0);
  auto dot = io::read_file(out);
  EXPECT_NE(std::string(dot.begin(), dot.end()).find("digraph autograd"), std::string::npos);
  if (analysis::graphviz_available()) {
    EXPECT_TRUE(std::filesystem::exists(d.str() + "/mlp.svg"));
  }
  EXPECT_NE(run_shell(std::string(GRADLENS_BINARY) + " graph --hidden 16,x --out " + out +
                      " >/dev/null 2>&1"),
            0);
  // Dropout and batch norm appear in the graph (--dropout once failed for want of a
  // generator for its masks).
  const std::string with = d.str() + "/dropout.dot";
  ASSERT_EQ(
      run_shell(std::string(GRADLENS_BINARY) + " graph --hidden 8 --dropout 0.5 --batchnorm " +
                "--no-svg --out " + with + " >/dev/null 2>&1"),
      0);
  auto text = io::read_file(with);
  const std::string s(text.begin(), text.end());
  EXPECT_NE(s.find("label=\"dropout"), std::string::npos) << s;
  EXPECT_NE(s.find("1.weight"), std::string::npos) << s;  // the batch norm's scale
}
