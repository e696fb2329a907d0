// module.cpp: registration, traversal, hooks and state-dict loading of Module.
#include "models/module.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "engine/autograd.h"

namespace gl::models {

Tensor Module::forward(const Tensor& input) {
  Tensor out = forward_impl(input);
  if (!hooks_.empty()) {
    // A hook may remove itself (or others) while firing: run over a snapshot.
    auto snapshot = hooks_;
    for (auto& [id, hook] : snapshot) hook(*this, input, out);
  }
  return out;
}

std::string Module::describe() const {
  std::string head = kind() + "(" + extra_repr();
  if (children_.empty()) return head + ")";
  std::string s = head + (extra_repr().empty() ? "\n" : ",\n");
  for (const auto& [name, child] : children_) {
    std::string sub = child->describe();
    // Indent nested lines under their parent.
    std::string indented;
    for (char c : sub) {
      indented += c;
      if (c == '\n') indented += "  ";
    }
    s += "  (" + name + "): " + indented + "\n";
  }
  return s + ")";
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

HookId Module::add_forward_hook(ForwardHook hook) {
  GL_CHECK(hook != nullptr, "{}: add_forward_hook given an empty function", kind());
  HookId id = next_hook_id_++;
  hooks_.emplace_back(id, std::move(hook));
  return id;
}

bool Module::remove_forward_hook(HookId id) {
  auto it =
      std::find_if(hooks_.begin(), hooks_.end(), [id](const auto& h) { return h.first == id; });
  if (it == hooks_.end()) return false;
  hooks_.erase(it);
  return true;
}

void Module::check_new_name(const std::string& name, const char* what) const {
  GL_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "{}: {} name '{}' must be non-empty and contain no '.'", kind(), what, name);
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  };
  GL_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_),
           "{}: {} name '{}' is already registered", kind(), what, name);
}

Tensor& Module::register_parameter(std::string name, Tensor value) {
  check_new_name(name, "parameter");
  GL_CHECK(value.defined() && is_floating(value.dtype()),
           "{}: parameter '{}' must be a defined floating tensor", kind(), name);
  value.requires_grad_(true);
  params_.emplace_back(std::move(name), std::move(value));
  return params_.back().second;
}

Tensor& Module::register_buffer(std::string name, Tensor value) {
  check_new_name(name, "buffer");
  GL_CHECK(value.defined(), "{}: buffer '{}' is undefined", kind(), name);
  buffers_.emplace_back(std::move(name), std::move(value));
  return buffers_.back().second;
}

void Module::add_child(std::string name, std::unique_ptr<Module> child) {
  check_new_name(name, "child module");
  GL_CHECK(child != nullptr, "{}: child module '{}' is null", kind(), name);
  children_.emplace_back(std::move(name), std::move(child));
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     NamedTensors& out) const {
  if (params)
    for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  if (buffers)
    for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", params, buffers, out);
}

void Module::collect_slots(const std::string& prefix,
                           std::vector<std::pair<std::string, Tensor*>>& out) {
  for (auto& [name, t] : params_) out.emplace_back(prefix + name, &t);
  for (auto& [name, t] : buffers_) out.emplace_back(prefix + name, &t);
  for (auto& [name, child] : children_) child->collect_slots(prefix + name + ".", out);
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [name, child] : children_)
    for (auto& [sub, m] : child->named_modules())
      out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out;
  for (auto& [name, m] : const_cast<Module*>(this)->named_modules()) out.emplace_back(name, m);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

StateDict Module::state_dict() const {
  NamedTensors all;
  collect("", true, true, all);
  for (auto& [name, t] : all) t = t.detach();
  return all;
}

void require_finite(const StateDict& state) {
  for (const auto& [name, t] : state) {
    if (!t.defined() || !is_floating(t.dtype())) continue;
    const Tensor v = t.to(Device::cpu()).to(DType::f64).contiguous();
    const double* p = v.data<double>();
    // Batch norm's running variance and Adam's second moment are never negative.
    const char* what = name.ends_with("running_var")  ? "variance"
                       : name.ends_with("exp_avg_sq") ? "second moment"
                                                      : nullptr;
    for (int64_t i = 0; i < v.numel(); ++i) {
      GL_CHECK(std::isfinite(p[i]), "'{}' holds a non-finite value ({} at flat index {} of {})",
               name, message_value(p[i]), i, shape_str(t.shape()));
      GL_CHECK(!what || p[i] >= 0, "'{}' holds a negative {} ({} at flat index {} of {})", name,
               what, p[i], i, shape_str(t.shape()));
    }
  }
}

void require_finite_loaded(const StateDict& given, const StateDict& loaded) {
  require_finite(given);
  std::map<std::string, DType> file_dtype;
  for (const auto& [name, t] : given)
    if (t.defined()) file_dtype.emplace(name, t.dtype());
  for (const auto& entry : loaded) {
    try {
      require_finite({entry});
    } catch (const Error& e) {
      const auto it = file_dtype.find(entry.first);
      const char* to = dtype_name(entry.second.dtype());
      throw Error(fmt::format("{} once converted to {}: the {} value there is beyond {}'s range",
                              e.what(), to,
                              it == file_dtype.end() ? "given" : dtype_name(it->second), to));
    }
  }
}

LoadResult Module::load_state_dict(const StateDict& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect_slots("", slots);
  std::unordered_map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) {
    GL_CHECK(given.emplace(name, &t).second, "load_state_dict: key '{}' appears twice", name);
    GL_CHECK(t.defined(), "load_state_dict: key '{}' holds an undefined tensor", name);
  }
  LoadResult result;
  std::unordered_set<std::string> known;
  for (const auto& [name, slot] : slots) {
    known.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    GL_CHECK(src.shape() == slot->shape(),
             "load_state_dict: shape mismatch for '{}': checkpoint has {}, model has {}", name,
             shape_str(src.shape()), shape_str(slot->shape()));
  }
  for (const auto& [name, t] : state)
    if (!known.count(name)) result.unexpected_keys.push_back(name);
  if (strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty())) {
    std::string msg = "load_state_dict (strict):";
    if (!result.missing_keys.empty())
      msg += fmt::format(" missing keys [{}]", fmt::join(result.missing_keys, ", "));
    if (!result.unexpected_keys.empty())
      msg += fmt::format("{} unexpected keys [{}]", result.missing_keys.empty() ? "" : ";",
                         fmt::join(result.unexpected_keys, ", "));
    throw Error(msg);
  }
  NoGrad no_grad;
  for (const auto& [name, slot] : slots) {
    auto it = given.find(name);
    if (it != given.end()) slot->copy_(*it->second);
  }
  return result;
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

void Module::to(DType dtype) {
  GL_CHECK(is_floating(dtype), "{}: to({}) needs a floating dtype", kind(), dtype_name(dtype));
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect_slots("", slots);
  for (auto& [name, slot] : slots) {
    if (!is_floating(slot->dtype()) || slot->dtype() == dtype) continue;
    bool rg = slot->requires_grad();
    Tensor converted = slot->detach().to(dtype).contiguous();
    if (converted.same(*slot) || converted.storage() == slot->storage())
      converted = converted.clone();
    if (rg) converted.requires_grad_(true);
    *slot = converted;
  }
}

void Module::to(Device device) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect_slots("", slots);
  for (auto& [name, slot] : slots) {
    // Integer buffers (BatchNorm's num_batches_tracked) are counters the host updates.
    if (slot->device() == device || !is_floating(slot->dtype())) continue;
    bool rg = slot->requires_grad();
    Tensor moved = slot->detach().to(device);
    if (rg) moved.requires_grad_(true);
    *slot = moved;
  }
}

NamedTensors clone_tensors(const NamedTensors& tensors) {
  NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.detach().clone());
  return out;
}

}  // namespace gl::models
