// autograd.h: the tape. Each differentiable op that sees an input requiring grad attaches a
// Node to its output: the inputs, the backward closure (which holds what it saved) and a
// name. backward() walks the tensors in reverse topological order, iteratively, so chains of
// any length run in constant stack.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace gl {

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Node {
  std::string name;
  std::vector<Tensor> inputs;
  BackwardFn backward;
  std::vector<Shape> saved_shapes;  // for graph drawing: shapes of what the closure saved
  bool released = false;
  ~Node();  // iterative teardown: deep chains must not recurse
  void release();
};

// Thread-local switch: inside a NoGrad scope no op records history.
class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool on);
};
class NoGrad {
 public:
  NoGrad() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGrad() { GradMode::set_enabled(prev_); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `out` as produced by op `name` from `inputs`. `backward` returns one gradient per
// input (an undefined Tensor where there is none), each either of that input's shape or
// broadcastable to the output shape: broadcasting is undone here, in one place.
// Closures must not capture `out` itself (that would be a cycle): capture out.detach().
void attach_grad_fn(Tensor& out, std::string name, std::vector<Tensor> inputs,
                    BackwardFn backward, std::vector<Shape> saved_shapes = {});

// Reduces `grad` by summation to `shape` (the inverse of broadcasting).
Tensor sum_to(const Tensor& grad, const Shape& shape);

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace gl
