// graph_dot.h: the autograd tape behind a tensor as a Graphviz DOT graph: one box per op
// (its name, output shape and the shapes its backward closure saved), one ellipse per leaf
// (parameters by name, inputs), edges labelled with the shape that flows along them. Leaves
// and edges that need no gradient are drawn grey and dashed.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace gl::analysis {

struct GraphDotOptions {
  std::string title;
  // Names of leaf tensors (matched by identity), e.g. a model's named_parameters().
  std::vector<std::pair<std::string, Tensor>> names;
  std::string root_name = "loss";
};

// Throws naming the tensor when `root` has no history (nothing was recorded).
std::string autograd_dot(const Tensor& root, const GraphDotOptions& options);

// Runs `dot -Tsvg` on `dot_path`, writing `svg_path` atomically; throws with dot's message on
// failure. graphviz_available() says whether `dot` is on PATH.
bool graphviz_available();
void render_dot_svg(const std::string& dot_path, const std::string& svg_path);

}  // namespace gl::analysis
