// op_table.h: one row per op (PyTorch's OpInfo, ggml's test-backend-ops). Each row says how to
// make inputs (shapes, broadcasting, non-contiguous views, value ranges away from kinks) and
// its tolerances. The same table drives f64 gradcheck, CPU/CUDA parity and `gradlens
// gradcheck`. Adding an op is one file in engine/ops plus rows here.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace gl::testing {

struct OpCase {
  std::string name;  // "add/broadcast"
  std::string op;    // the op under test, e.g. "add"
  // Makes the differentiable inputs (contiguous leaves) in the given float dtype.
  std::function<std::vector<Tensor>(Generator&, DType)> make_inputs;
  // Applies the op; views (transpose, slice) taken here exercise non-contiguous inputs.
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  double atol = 1e-5;
  double rtol = 1e-3;
};

const std::vector<OpCase>& op_table();
// Names of every op that must have at least one row.
const std::vector<std::string>& required_ops();

struct GradcheckResult {
  std::string name;
  int64_t checked = 0;  // number of input elements perturbed
  double max_abs_err = 0;
  // |analytic - numeric| / max(|analytic|, |numeric|), over the elements where that
  // magnitude is above the row's atol.
  double max_rel_err = 0;
  bool passed = true;
  std::string detail;  // first failing element, if any
};

// Central differences in f64 against the analytic backward of sum(fn(x) * R), R random.
GradcheckResult gradcheck(const OpCase& c, uint64_t seed = 0, double eps = 1e-6);

}  // namespace gl::testing
