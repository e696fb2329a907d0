// autograd.cpp: recording nodes and the iterative reverse-mode sweep.
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace gl {

namespace {
thread_local bool g_grad_enabled = true;
}

bool GradMode::enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool on) { g_grad_enabled = on; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->requires_grad()) return true;
  return false;
}
bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

void Node::release() {
  backward = nullptr;
  released = true;
}

// Tearing down a long chain recursively (output -> node -> input -> node ...) would use
// stack proportional to its length, so nodes that are about to die are unlinked onto an
// explicit stack first.
Node::~Node() {
  std::vector<std::shared_ptr<Node>> pending;
  auto unlink = [&pending](Node& n) {
    n.backward = nullptr;  // drop captured tensors first so use counts are exact
    for (Tensor& t : n.inputs) {
      const auto& impl = t.impl_ptr();
      if (impl && impl.use_count() == 1 && impl->grad_fn && impl->grad_fn.use_count() == 1)
        pending.push_back(std::move(impl->grad_fn));
    }
    n.inputs.clear();
  };
  unlink(*this);
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    unlink(*n);
  }
}

void attach_grad_fn(Tensor& out, std::string name, std::vector<Tensor> inputs,
                    BackwardFn backward, std::vector<Shape> saved_shapes) {
  auto node = std::make_shared<Node>();
  node->name = std::move(name);
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  node->saved_shapes = std::move(saved_shapes);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  GL_CHECK(grad.dim() >= int64_t(shape.size()),
           "backward: gradient {} cannot be reduced to shape {}", grad.str(), shape_str(shape));
  std::size_t lead = grad.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (std::size_t i = 0; i < grad.shape().size(); ++i) {
    if (i < lead) {
      dims.push_back(int64_t(i));
    } else if (shape[i - lead] == 1 && grad.shape()[i] != 1) {
      dims.push_back(int64_t(i));
    } else {
      GL_CHECK(shape[i - lead] == grad.shape()[i],
               "backward: gradient {} does not broadcast to shape {}", grad.str(),
               shape_str(shape));
    }
  }
  Tensor r = dims.empty() ? grad : sum(grad, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

namespace {
void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    slot = add(slot, g);
  }
}
}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_in, bool retain_graph) {
  GL_CHECK(root.defined(), "backward: tensor is undefined");
  GL_CHECK(root.requires_grad(),
           "backward: tensor {} does not require grad (no input of its graph requires grad)",
           root.str());
  Tensor grad = grad_in;
  if (!grad.defined()) {
    GL_CHECK(root.numel() == 1,
             "backward: tensor {} is not a scalar; pass the gradient of the output explicitly",
             root.str());
    grad = Tensor::ones(root.shape(), root.dtype(), root.device());
  } else {
    GL_CHECK(grad.shape() == root.shape(), "backward: gradient {} for output {}", grad.str(),
             root.str());
  }
  NoGrad no_grad;

  // Reverse topological order by iterative depth-first search over the tensors.
  std::vector<TensorImpl*> order;
  std::unordered_map<TensorImpl*, Tensor> handle;  // keeps every visited tensor alive
  {
    std::unordered_set<TensorImpl*> visited;
    std::vector<std::pair<TensorImpl*, std::size_t>> stack;
    stack.emplace_back(root.impl(), 0);
    visited.insert(root.impl());
    handle.emplace(root.impl(), root);
    while (!stack.empty()) {
      auto& [impl, next] = stack.back();
      Node* node = impl->grad_fn.get();
      if (node && next < node->inputs.size()) {
        const Tensor& in = node->inputs[next++];
        if (in.requires_grad() && visited.insert(in.impl()).second) {
          handle.emplace(in.impl(), in);
          stack.emplace_back(in.impl(), 0);
        }
        continue;
      }
      order.push_back(impl);
      stack.pop_back();
    }
  }

  std::unordered_map<TensorImpl*, Tensor> grads;
  grads[root.impl()] = grad;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* impl = *it;
    auto found = grads.find(impl);
    if (found == grads.end()) continue;
    Tensor g = std::move(found->second);
    grads.erase(found);
    for (auto& [id, hook] : impl->hooks) {
      Tensor r = hook(g);
      if (r.defined()) {
        GL_CHECK(r.shape() == g.shape(), "gradient hook returned {} for a gradient {}", r.str(),
                 g.str());
        g = r;
      }
    }
    Node* node = impl->grad_fn.get();
    if (!node) {  // leaf: accumulate into .grad; the first gradient is copied so leaves never alias
      if (!impl->grad.defined()) {
        // A gradient nobody else holds (the usual case: a fresh GEMM result) is kept as is;
        // a shared one (e.g. add's backward hands g to both inputs) is copied.
        bool sole = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                    g.is_contiguous() && g.offset() == 0;
        impl->grad = sole ? g : g.clone();
      } else {
        impl->grad = add(impl->grad, g);
      }
      continue;
    }
    if (impl->retains_grad) accumulate(impl->grad, g.clone());
    GL_CHECK(!node->released,
             "backward: the graph through '{}' was freed by an earlier backward(); call "
             "backward(grad, retain_graph=true) the first time to backpropagate twice",
             node->name);
    std::vector<Tensor> gin = node->backward(g);
    GL_CHECK(gin.size() == node->inputs.size(), "backward of '{}' returned {} gradients for {} inputs",
             node->name, gin.size(), node->inputs.size());
    for (std::size_t i = 0; i < gin.size(); ++i) {
      const Tensor& in = node->inputs[i];
      if (!in.requires_grad() || !gin[i].defined()) continue;
      Tensor gi = sum_to(gin[i], in.shape());
      if (gi.dtype() != in.dtype()) gi = gi.to(in.dtype());
      accumulate(grads[in.impl()], gi);
    }
    if (!retain_graph) node->release();
  }
}

}  // namespace gl
