// init.h: the 8 weight initializers, their parser, and init_model. Every draw comes from a
// gl::Generator (Philox), so a seed fixes the weights on any device.
//
// Fans follow PyTorch's _calculate_fan_in_and_fan_out: for a weight [out, in, *k],
// fan_in = in * prod(k) and fan_out = out * prod(k).
//
// he_normal / he_uniform: variance = factor / fan (fan picked by mode, default fan_in);
//   normal: N(0, factor / fan); uniform: U(-b, b) with b = sqrt(3 factor / fan).
//   When factor is not given, factor = gain^2 with gain = PyTorch's calculate_gain:
//   relu 2, leaky_relu 2 / (1 + negative_slope^2) (negative_slope defaults to 0, as
//   kaiming's a = 0 does), tanh (5/3)^2 = 25/9, linear 1, sigmoid 1. With neither given the
//   factor is 2 (relu). An explicit factor wins over nonlinearity.
// xavier_normal: N(0, gain^2 * 2 / (fan_in + fan_out)); xavier_uniform: U(-b, b),
//   b = gain * sqrt(6 / (fan_in + fan_out)). gain defaults to 1.
// normal: N(mean, std^2), defaults mean 0, std 1 (PyTorch's nn.init.normal_).
// zero: all zeros.
// orthogonal: PyTorch's nn.init.orthogonal_: a Gaussian [rows, numel/rows] matrix
//   (transposed when rows < cols) is QR-factorized (Householder, in f64), Q's columns get
//   the signs of R's diagonal, and the result is scaled by gain (default 1).
// trunc_normal: N(mean, std^2) restricted to [a, b] (defaults 0, 1, -2, 2), by inverse-CDF
//   sampling (one uniform per element), clamped to [a, b] against rounding.
//
// Biases: zero by default; bias=torch gives PyTorch's nn.Linear default,
//   U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Linear and Conv2d alike). init_model sets BatchNorm
//   (1d and 2d) weight 1, bias 0 and resets its running statistics.
#pragma once
#include <map>
#include <string>

#include "engine/generator.h"
#include "engine/tensor.h"
#include "models/module.h"

namespace gl::models {

enum class InitKind {
  he_normal,
  he_uniform,
  xavier_normal,
  xavier_uniform,
  normal,
  zero,
  orthogonal,
  trunc_normal
};
enum class FanMode { fan_in, fan_out };
enum class Nonlinearity { relu, leaky_relu, tanh, linear, sigmoid };
enum class BiasInit { zero, torch };

struct InitSpec {
  InitKind kind = InitKind::he_normal;
  // he_*: factor <= 0 (the default) means "derive from nonlinearity".
  double factor = 0.0;
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::relu;
  double negative_slope = 0.0;
  double gain = 1.0;             // xavier_*, orthogonal
  double mean = 0.0, std = 1.0;  // normal, trunc_normal
  double a = -2.0, b = 2.0;      // trunc_normal bounds (absolute, as in PyTorch)
  BiasInit bias = BiasInit::zero;

  // The factor he_* use: explicit, or gain(nonlinearity)^2.
  double he_factor() const;
  // "he_normal(factor=2, mode=fan_in, nonlinearity=relu)", round-trips through parse_init.
  std::string str() const;
  // What the draws depend on, and nothing else: equal for two specs exactly when init_model
  // gives equal weights from equal generators ("he_normal", "he_normal:factor=2.0" and
  // "he_normal:nonlinearity=relu" are one initialization; a key another kind ignores, such as
  // gain for he_normal, plays no part).
  std::string draws() const;
};

const char* init_name(InitKind k);
// Known names: he_normal, he_uniform, xavier_normal, xavier_uniform, normal, zero,
// orthogonal, trunc_normal. Keys per name (values are numbers unless noted):
//   he_*: factor, mode (fan_in|fan_out), nonlinearity (relu|leaky_relu|tanh|linear|sigmoid),
//         negative_slope;  xavier_*, orthogonal: gain;  normal: mean, std;
//   trunc_normal: mean, std, a, b;  every kind: bias (zero|torch).
InitSpec parse_init(const std::string& name,
                    const std::map<std::string, std::string>& options = {});
// "name" or "name:key=value,key=value" (the form used on the command line).
InitSpec parse_init_string(const std::string& spec);

// PyTorch's calculate_gain for the he_* nonlinearities.
double calculate_gain(Nonlinearity nl, double negative_slope = 0.0);
// fan_in and fan_out of a weight of this shape (at least 2-D).
std::pair<int64_t, int64_t> compute_fans(const Shape& shape);

// Fills `weight` in place (its dtype and shape are kept) from `gen`.
void init_tensor(const Tensor& weight, const InitSpec& spec, Generator& gen);
// Every Linear weight gets `spec` (in module order), its bias spec.bias; BatchNorm1d gets
// weight 1, bias 0 and fresh running statistics.
void init_model(Module& model, const InitSpec& spec, Generator& gen);

// Helpers exposed for tests: the standard normal CDF and its inverse (full double precision).
double normal_cdf(double x);
double normal_icdf(double p);

}  // namespace gl::models
