// module.h: Module, the base of every layer and model. A module owns named parameters and
// buffers and named child modules; the dotted names of the whole tree ("0.weight",
// "layers.3.bias") are the keys of its state dict, laid out as PyTorch lays out
// nn.Module.state_dict(), so weights move between the two by name.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace gl::models {

class Module;

// Ordered (name, tensor) pairs: a state dict, or any named tensor list.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = NamedTensors;

// Called after a module's forward with the module, its input and its output. Hooks must not
// modify the tensors; they may record them (diagnostics attach here from outside).
using ForwardHook = std::function<void(const Module&, const Tensor& input, const Tensor& output)>;
using HookId = int64_t;

// Throws naming the first tensor of `state` that holds a NaN or an infinity (or a batch norm's
// running_var or an Adam exp_avg_sq a negative value), and where. For weights given to
// evaluate or to start from (NaN would pass through quietly: ReLU maps it to 0), for a run's
// checkpoint (refused as corrupt) and for the model at each epoch's end (a divergence).
void require_finite(const StateDict& state);
// require_finite of the tensors a file gave (`given`) and then of the same tensors as loaded
// (`loaded`, the same names), whose dtype may be narrower: an f64 1e300 loads as an f32 inf,
// which the error says.
void require_finite_loaded(const StateDict& given, const StateDict& loaded);

// What load_state_dict found; with strict loading both lists are empty or it threw.
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Runs the module then its forward hooks, in the order they were added. Every call path
  // (a parent's forward included) goes through here, so hooks always fire.
  Tensor forward(const Tensor& input);
  Tensor operator()(const Tensor& input) { return forward(input); }

  // Short type name ("Linear", "BatchNorm1d"...), PyTorch's class names where one exists.
  virtual std::string kind() const = 0;
  // Settings of this module alone, e.g. "in_features=784, out_features=10, bias=True".
  virtual std::string extra_repr() const { return ""; }
  // PyTorch-style repr of the whole subtree (one line for a leaf).
  std::string describe() const;

  // ---- mode ----
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- hooks ----
  HookId add_forward_hook(ForwardHook hook);
  bool remove_forward_hook(HookId id);  // false when no hook has that id
  void clear_forward_hooks() { hooks_.clear(); }
  std::size_t num_forward_hooks() const { return hooks_.size(); }

  // ---- traversal (pre-order: a module's own entries, then its children in order) ----
  std::vector<Tensor> parameters() const;
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  // Includes this module itself under the name "" (as PyTorch does).
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  const std::vector<std::pair<std::string, std::unique_ptr<Module>>>& children() const {
    return children_;
  }
  int64_t num_parameters() const;

  // ---- state ----
  // Per module: parameters, then buffers, then each child's entries under "child.".
  // The tensors are detached views sharing the module's storage (PyTorch's behaviour):
  // clone them (clone_tensors) to keep a snapshot while training goes on.
  StateDict state_dict() const;
  // Copies values into the existing tensors (so parameter handles held by an optimizer stay
  // valid), converting dtype when needed. Everything is checked before anything is copied.
  // strict: missing and unexpected keys are errors. Shape mismatches are always errors.
  LoadResult load_state_dict(const StateDict& state, bool strict = true);

  // Drops every parameter's .grad (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  // Converts floating parameters and buffers to `dtype` (e.g. f64 for gradient checks);
  // integer buffers are kept. Parameter handles taken before the call are stale after it.
  void to(DType dtype);
  // Moves every floating parameter and buffer to `device` (values unchanged); integer buffers
  // (counters such as BatchNorm's num_batches_tracked, updated by the host every step) stay on
  // the host. Parameter handles taken before the call are stale after it: build optimizers
  // afterwards.
  void to(Device device);

 protected:
  // The computation; called by forward().
  virtual Tensor forward_impl(const Tensor& input) = 0;

  // Registration returns a reference that stays valid for the module's life.
  Tensor& register_parameter(std::string name, Tensor value);
  Tensor& register_buffer(std::string name, Tensor value);
  template <class M>
  M* register_module(std::string name, std::unique_ptr<M> child) {
    M* raw = child.get();
    add_child(std::move(name), std::move(child));
    return raw;
  }
  void add_child(std::string name, std::unique_ptr<Module> child);

 private:
  void check_new_name(const std::string& name, const char* what) const;
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  void collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out);

  bool training_ = true;
  // deques: references handed out by register_* must survive later registrations.
  std::deque<std::pair<std::string, Tensor>> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  std::vector<std::pair<HookId, ForwardHook>> hooks_;
  HookId next_hook_id_ = 1;
};

// Deep copies of each tensor (a snapshot of a state dict).
NamedTensors clone_tensors(const NamedTensors& tensors);

}  // namespace gl::models
