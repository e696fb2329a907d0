// init.cpp: the initializers (formulas in init.h), a Householder QR for orthogonal, inverse-CDF
// truncated normals, and the name=value parser.
#include "models/init.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <vector>

#include "engine/autograd.h"
#include "models/layers.h"

namespace gl::models {

// ---------------------------------------------------------------- names
const char* init_name(InitKind k) {
  switch (k) {
    case InitKind::he_normal:
      return "he_normal";
    case InitKind::he_uniform:
      return "he_uniform";
    case InitKind::xavier_normal:
      return "xavier_normal";
    case InitKind::xavier_uniform:
      return "xavier_uniform";
    case InitKind::normal:
      return "normal";
    case InitKind::zero:
      return "zero";
    case InitKind::orthogonal:
      return "orthogonal";
    case InitKind::trunc_normal:
      return "trunc_normal";
  }
  return "?";
}

namespace {
const char* nonlinearity_name(Nonlinearity n) {
  switch (n) {
    case Nonlinearity::relu:
      return "relu";
    case Nonlinearity::leaky_relu:
      return "leaky_relu";
    case Nonlinearity::tanh:
      return "tanh";
    case Nonlinearity::linear:
      return "linear";
    case Nonlinearity::sigmoid:
      return "sigmoid";
  }
  return "?";
}

double parse_number(const std::string& init, const std::string& key, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  GL_CHECK(!v.empty() && end == v.c_str() + v.size() && errno == 0 && std::isfinite(d),
           "init {}: {}='{}' is not a finite number", init, key, v);
  return d;
}
}  // namespace

namespace {
// calculate_gain squared, in closed form (sqrt(2)^2 rounds to 2.0000000000000004): he_* use it
// as their factor, so he_normal and he_normal:factor=2 draw the same weights.
double gain_squared(Nonlinearity nl, double negative_slope) {
  switch (nl) {
    case Nonlinearity::relu:
      return 2.0;
    case Nonlinearity::leaky_relu:
      return 2.0 / (1.0 + negative_slope * negative_slope);
    case Nonlinearity::tanh:
      return 25.0 / 9.0;
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid:
      return 1.0;
  }
  return 1.0;
}
}  // namespace

double calculate_gain(Nonlinearity nl, double negative_slope) {
  // PyTorch's 5/3 for tanh, rounded once (not the root of 25/9, rounded twice).
  return nl == Nonlinearity::tanh ? 5.0 / 3.0 : std::sqrt(gain_squared(nl, negative_slope));
}

double InitSpec::he_factor() const {
  return factor > 0 ? factor : gain_squared(nonlinearity, negative_slope);
}

namespace {
// "name(key=value, ..., bias=...)": every key of the kind, or (draws_only) those the draws
// depend on (he_*: the factor, not the nonlinearity it may come from).
std::string spec_text(const InitSpec& s, bool draws_only) {
  std::string opts;
  switch (s.kind) {
    case InitKind::he_normal:
    case InitKind::he_uniform:
      opts = fmt::format("factor={}, mode={}", s.he_factor(),
                         s.mode == FanMode::fan_in ? "fan_in" : "fan_out");
      if (!draws_only)
        opts += fmt::format(", nonlinearity={}, negative_slope={}",
                            nonlinearity_name(s.nonlinearity), s.negative_slope);
      break;
    case InitKind::xavier_normal:
    case InitKind::xavier_uniform:
    case InitKind::orthogonal:
      opts = fmt::format("gain={}", s.gain);
      break;
    case InitKind::normal:
      opts = fmt::format("mean={}, std={}", s.mean, s.std);
      break;
    case InitKind::trunc_normal:
      opts = fmt::format("mean={}, std={}, a={}, b={}", s.mean, s.std, s.a, s.b);
      break;
    case InitKind::zero:
      break;
  }
  return fmt::format("{}({}{}bias={})", init_name(s.kind), opts, opts.empty() ? "" : ", ",
                     s.bias == BiasInit::zero ? "zero" : "torch");
}
}  // namespace

std::string InitSpec::str() const {
  return spec_text(*this, false);
}
std::string InitSpec::draws() const {
  return spec_text(*this, true);
}

// ---------------------------------------------------------------- parser
InitSpec parse_init(const std::string& name, const std::map<std::string, std::string>& options) {
  static const std::vector<std::pair<const char*, InitKind>> kinds = {
      {"he_normal", InitKind::he_normal},
      {"he_uniform", InitKind::he_uniform},
      {"xavier_normal", InitKind::xavier_normal},
      {"xavier_uniform", InitKind::xavier_uniform},
      {"normal", InitKind::normal},
      {"zero", InitKind::zero},
      {"orthogonal", InitKind::orthogonal},
      {"trunc_normal", InitKind::trunc_normal}};
  InitSpec spec;
  bool found = false;
  for (auto& [n, k] : kinds)
    if (name == n) {
      spec.kind = k;
      found = true;
    }
  GL_CHECK(found,
           "unknown init '{}' (known: he_normal, he_uniform, xavier_normal, xavier_uniform, "
           "normal, zero, orthogonal, trunc_normal)",
           name);
  std::set<std::string> allowed{"bias"};
  switch (spec.kind) {
    case InitKind::he_normal:
    case InitKind::he_uniform:
      allowed.insert({"factor", "mode", "nonlinearity", "negative_slope"});
      break;
    case InitKind::xavier_normal:
    case InitKind::xavier_uniform:
    case InitKind::orthogonal:
      allowed.insert("gain");
      break;
    case InitKind::normal:
      allowed.insert({"mean", "std"});
      break;
    case InitKind::trunc_normal:
      allowed.insert({"mean", "std", "a", "b"});
      break;
    case InitKind::zero:
      break;
  }
  for (const auto& [key, value] : options) {
    GL_CHECK(allowed.count(key), "init {}: unknown key '{}' (known: {})", name, key,
             fmt::join(allowed, ", "));
    if (key == "bias") {
      GL_CHECK(value == "zero" || value == "torch", "init {}: bias='{}' (known: zero, torch)", name,
               value);
      spec.bias = value == "zero" ? BiasInit::zero : BiasInit::torch;
    } else if (key == "mode") {
      GL_CHECK(value == "fan_in" || value == "fan_out",
               "init {}: mode='{}' (known: fan_in, fan_out)", name, value);
      spec.mode = value == "fan_in" ? FanMode::fan_in : FanMode::fan_out;
    } else if (key == "nonlinearity") {
      bool ok = false;
      for (auto nl : {Nonlinearity::relu, Nonlinearity::leaky_relu, Nonlinearity::tanh,
                      Nonlinearity::linear, Nonlinearity::sigmoid})
        if (value == nonlinearity_name(nl)) {
          spec.nonlinearity = nl;
          ok = true;
        }
      GL_CHECK(ok, "init {}: nonlinearity='{}' (known: relu, leaky_relu, tanh, linear, sigmoid)",
               name, value);
    } else {
      double d = parse_number(name, key, value);
      if (key == "factor") {
        GL_CHECK(d > 0, "init {}: factor={} must be positive", name, d);
        spec.factor = d;
      } else if (key == "negative_slope") {
        spec.negative_slope = d;
      } else if (key == "gain") {
        GL_CHECK(d > 0, "init {}: gain={} must be positive", name, d);
        spec.gain = d;
      } else if (key == "mean") {
        spec.mean = d;
      } else if (key == "std") {
        GL_CHECK(d > 0, "init {}: std={} must be positive", name, d);
        spec.std = d;
      } else if (key == "a") {
        spec.a = d;
      } else if (key == "b") {
        spec.b = d;
      }
    }
  }
  GL_CHECK(spec.a < spec.b, "init {}: a={} must be below b={}", name, spec.a, spec.b);
  return spec;
}

InitSpec parse_init_string(const std::string& s) {
  auto colon = s.find(':');
  std::string name = s.substr(0, colon);
  std::map<std::string, std::string> opts;
  if (colon != std::string::npos) {
    std::string rest = s.substr(colon + 1);
    std::size_t pos = 0;
    while (pos <= rest.size()) {
      auto comma = rest.find(',', pos);
      std::string item =
          rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      auto eq = item.find('=');
      GL_CHECK(eq != std::string::npos && eq > 0, "init '{}': option '{}' is not key=value", s,
               item);
      std::string key = item.substr(0, eq);
      GL_CHECK(opts.emplace(key, item.substr(eq + 1)).second, "init '{}': key '{}' given twice", s,
               key);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  return parse_init(name, opts);
}

// ---------------------------------------------------------------- math helpers
std::pair<int64_t, int64_t> compute_fans(const Shape& shape) {
  GL_CHECK(shape.size() >= 2, "init: fan in and fan out need a weight of at least 2 dims, got {}",
           shape_str(shape));
  int64_t receptive = 1;
  for (std::size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  return {shape[1] * receptive, shape[0] * receptive};
}

double normal_cdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

double normal_icdf(double p) {
  if (p <= 0) return -INFINITY;
  if (p >= 1) return INFINITY;
  // Acklam's rational approximation (relative error 1.15e-9), then one Halley step against
  // erfc for full double precision.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double lo = 0.02425;
  double x;
  if (p < lo) {
    double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - lo) {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    double q = std::sqrt(-2 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  double e = normal_cdf(x) - p;
  double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

namespace {
// Q (m x n, m >= n, column-major, thin) of the QR of column-major A (m x n), columns signed
// so that R's diagonal is positive (the sign correction of nn.init.orthogonal_).
std::vector<double> householder_q(std::vector<double> A, int64_t m, int64_t n) {
  std::vector<std::vector<double>> vs(static_cast<std::size_t>(n));
  std::vector<double> rdiag(static_cast<std::size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    double* col = A.data() + k * m;
    double norm2 = 0;
    for (int64_t i = k; i < m; ++i) norm2 += col[i] * col[i];
    double norm = std::sqrt(norm2);
    double alpha = col[k] >= 0 ? -norm : norm;
    std::vector<double> v(col + k, col + m);
    v[0] -= alpha;
    double vnorm2 = norm2 - col[k] * col[k] + v[0] * v[0];
    if (vnorm2 <= 0 || norm == 0) {  // already a multiple of e_k: H = I
      rdiag[std::size_t(k)] = col[k];
      continue;
    }
    double inv = 1.0 / std::sqrt(vnorm2);
    for (double& x : v) x *= inv;
    rdiag[std::size_t(k)] = alpha;
    for (int64_t j = k + 1; j < n; ++j) {
      double* cj = A.data() + j * m + k;
      double dot = 0;
      for (int64_t i = 0; i < m - k; ++i) dot += v[std::size_t(i)] * cj[i];
      dot *= 2;
      for (int64_t i = 0; i < m - k; ++i) cj[i] -= dot * v[std::size_t(i)];
    }
    vs[std::size_t(k)] = std::move(v);
  }
  // Q = H_0 ... H_{n-1} I[:, :n], accumulated backwards: H_k touches only rows >= k and,
  // at that point, only columns >= k are nonzero there.
  std::vector<double> Q(std::size_t(m * n), 0.0);
  for (int64_t j = 0; j < n; ++j) Q[std::size_t(j * m + j)] = 1.0;
  for (int64_t k = n - 1; k >= 0; --k) {
    const auto& v = vs[std::size_t(k)];
    if (v.empty()) continue;
    for (int64_t j = k; j < n; ++j) {
      double* qj = Q.data() + j * m + k;
      double dot = 0;
      for (int64_t i = 0; i < m - k; ++i) dot += v[std::size_t(i)] * qj[i];
      dot *= 2;
      for (int64_t i = 0; i < m - k; ++i) qj[i] -= dot * v[std::size_t(i)];
    }
  }
  for (int64_t j = 0; j < n; ++j)
    if (rdiag[std::size_t(j)] < 0)
      for (int64_t i = 0; i < m; ++i) Q[std::size_t(j * m + i)] = -Q[std::size_t(j * m + i)];
  return Q;
}

Tensor orthogonal_values(const Shape& shape, double gain, Generator& gen) {
  GL_CHECK(shape.size() >= 2, "init orthogonal: needs a weight of at least 2 dims, got {}",
           shape_str(shape));
  int64_t rows = shape[0], cols = shape_numel(shape) / std::max<int64_t>(rows, 1);
  // The Gaussian matrix [rows, cols], row-major, as PyTorch draws it.
  std::vector<double> g = Tensor::randn({rows, cols}, gen, DType::f64).to_vector<double>();
  bool wide = rows < cols;
  int64_t m = wide ? cols : rows, n = wide ? rows : cols;
  // Column-major A (m x n): A = G when tall, A = G^T when wide. G row-major [rows, cols] is
  // G^T column-major, which is exactly A in the wide case.
  std::vector<double> A(std::size_t(m * n));
  if (wide) {
    A = g;
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) A[std::size_t(j * m + i)] = g[std::size_t(i * cols + j)];
  }
  std::vector<double> Q = householder_q(std::move(A), m, n);
  // Result [rows, cols] row-major: Q when tall (Q column-major -> transpose), Q^T when wide
  // (Q column-major m x n read as row-major n x m is Q^T).
  std::vector<double> out(std::size_t(rows * cols));
  if (wide) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = gain * Q[i];
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        out[std::size_t(i * cols + j)] = gain * Q[std::size_t(j * m + i)];
  }
  return Tensor::from_vector(out, shape);
}

Tensor trunc_normal_values(const Shape& shape, double mean, double std, double a, double b,
                           Generator& gen) {
  double alpha = (a - mean) / std, beta = (b - mean) / std;
  // Sample the tail nearer zero's mirror image so the CDF values stay small and exact.
  bool flip = alpha > 0;
  double lo_z = flip ? -beta : alpha, hi_z = flip ? -alpha : beta;
  double lo = normal_cdf(lo_z), hi = normal_cdf(hi_z);
  Tensor u = Tensor::rand(shape, gen, DType::f64);
  double* p = u.data<double>();
  int64_t n = u.numel();
  for (int64_t i = 0; i < n; ++i) {
    double z = normal_icdf(lo + (hi - lo) * p[i]);
    if (flip) z = -z;
    p[i] = std::clamp(mean + std * z, a, b);
  }
  return u;
}
}  // namespace

// ---------------------------------------------------------------- apply
void init_tensor(const Tensor& weight, const InitSpec& spec, Generator& gen) {
  GL_CHECK(weight.defined() && is_floating(weight.dtype()),
           "init {}: weight must be a defined floating tensor", init_name(spec.kind));
  const Shape& shape = weight.shape();
  Tensor values;
  switch (spec.kind) {
    case InitKind::he_normal:
    case InitKind::he_uniform: {
      auto [fan_in, fan_out] = compute_fans(shape);
      double fan = double(spec.mode == FanMode::fan_in ? fan_in : fan_out);
      double var = spec.he_factor() / fan;
      if (spec.kind == InitKind::he_normal) {
        values = Tensor::randn(shape, gen, DType::f64, 0.0, std::sqrt(var));
      } else {
        double bound = std::sqrt(3.0 * var);
        values = Tensor::rand(shape, gen, DType::f64, -bound, bound);
      }
      break;
    }
    case InitKind::xavier_normal:
    case InitKind::xavier_uniform: {
      auto [fan_in, fan_out] = compute_fans(shape);
      double std = spec.gain * std::sqrt(2.0 / double(fan_in + fan_out));
      if (spec.kind == InitKind::xavier_normal)
        values = Tensor::randn(shape, gen, DType::f64, 0.0, std);
      else
        values = Tensor::rand(shape, gen, DType::f64, -std * std::sqrt(3.0), std * std::sqrt(3.0));
      break;
    }
    case InitKind::normal:
      values = Tensor::randn(shape, gen, DType::f64, spec.mean, spec.std);
      break;
    case InitKind::zero:
      weight.fill_(0.0);
      return;
    case InitKind::orthogonal:
      values = orthogonal_values(shape, spec.gain, gen);
      break;
    case InitKind::trunc_normal:
      GL_CHECK(spec.a < spec.b, "init trunc_normal: a={} must be below b={}", spec.a, spec.b);
      values = trunc_normal_values(shape, spec.mean, spec.std, spec.a, spec.b, gen);
      break;
  }
  weight.copy_(values);
}

void init_model(Module& model, const InitSpec& spec, Generator& gen) {
  NoGrad no_grad;
  auto init_layer = [&](const Tensor& weight, const Tensor& bias, int64_t fan_in) {
    init_tensor(weight, spec, gen);
    if (!bias.defined()) return;
    if (spec.bias == BiasInit::zero) {
      bias.fill_(0.0);
    } else {
      double bound = 1.0 / std::sqrt(double(fan_in));
      bias.copy_(Tensor::rand(bias.shape(), gen, DType::f64, -bound, bound));
    }
  };
  for (auto& [name, m] : model.named_modules()) {
    if (auto* lin = dynamic_cast<Linear*>(m))
      init_layer(lin->weight(), lin->bias(), lin->in_features());
    else if (auto* conv = dynamic_cast<Conv2d*>(m))
      init_layer(conv->weight(), conv->bias(), conv->fan_in());
    else if (auto* bn = dynamic_cast<BatchNorm*>(m))
      bn->reset_parameters();
  }
}

}  // namespace gl::models
