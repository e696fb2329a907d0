// ops.h: every differentiable op of the engine. Each op's forward and backward live side by
// side in engine/ops/<family>.cpp; each has a row in the op table (tests/engine/op_table.cpp).
#pragma once
#include <array>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/generator.h"
#include "engine/tensor.h"
#include "kernels/kernels.h"

namespace gl {

// ---- elementwise (ops/elementwise.cpp); binary ops broadcast by NumPy rules ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor neg(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator-(const Tensor& x) {
  return neg(x);
}
inline Tensor operator+(const Tensor& a, double b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, double b) {
  return add(a, -b);
}
inline Tensor operator*(const Tensor& a, double b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, double b) {
  return mul(a, 1.0 / b);
}
inline Tensor operator*(double a, const Tensor& b) {
  return mul(b, a);
}

// ---- activations (ops/activation.cpp) ----
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// approximate = false: x * Phi(x) (erf form); true: the tanh approximation.
Tensor gelu(const Tensor& x, bool approximate = false);
Tensor silu(const Tensor& x);

enum class ActivationKind { identity, relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh, silu };
ActivationKind parse_activation(const std::string& name);  // throws naming the known ones
const char* activation_name(ActivationKind a);
Tensor activate(const Tensor& x, ActivationKind a, double leaky_slope = 0.01);
// The gradient the tape sends back through y = activate(x) for an upstream gradient `grad`,
// computed by the same code as the op's backward. Reads x or y (tanh and sigmoid read y, the
// others x); the other may be undefined. Identity returns grad itself.
Tensor activate_backward(const Tensor& grad, const Tensor& x, const Tensor& y, ActivationKind a,
                         double leaky_slope = 0.01);
// y = activate(x) and, for the activations whose backward is the upstream gradient times a
// derivative computed from x (gelu, gelu_tanh; f32 on the host), that derivative d: then
// backward_from_derivative(grad, d) is activate_backward's value, bit for bit (NaN inputs aside,
// which give NaN either way), and x need not be kept. Otherwise d is undefined (and y is
// activate(x)). For callers that run their own backward under NoGrad (the fused step): the
// derivative path attaches nothing to the tape.
std::pair<Tensor, Tensor> activate_with_derivative(const Tensor& x, ActivationKind a,
                                                   double leaky_slope = 0.01);
// activate(x) written over x's own buffer, bit for bit activate's values, when x is a
// contiguous f32 host tensor that records no gradient and the activation has a vectorized
// kernel; otherwise activate(x). Either way x must not be read afterwards as the input (for a
// caller that owns x alone: the fused step, whose backward reads only the output here).
Tensor activate_in_place(const Tensor& x, ActivationKind a, double leaky_slope = 0.01);
// activate(x[k], a[k], slope[k]) and activate_backward(grad[k], x[k], y[k], a[k], slope[k]) for
// every k (the fused step on a GPU): when every tensor read is a contiguous f32 tensor of one
// size on one CUDA device, the entries that share an activation are one launch per 32; else
// one call each. Either way each result is bit for bit the lone call's.
std::vector<Tensor> activate_batched(const std::vector<Tensor>& x,
                                     const std::vector<ActivationKind>& a,
                                     const std::vector<double>& slope);
std::vector<Tensor> activate_backward_batched(const std::vector<Tensor>& grad,
                                              const std::vector<Tensor>& x,
                                              const std::vector<Tensor>& y,
                                              const std::vector<ActivationKind>& a,
                                              const std::vector<double>& slope);
// grad * d elementwise (same shapes): the backward through such a derivative.
Tensor backward_from_derivative(const Tensor& grad, const Tensor& d);
// Whether activate_backward of `a` reads the input x (else only the output y: relu, tanh,
// sigmoid).
bool activation_backward_reads_input(ActivationKind a, double leaky_slope = 0.01);

// ---- reductions (ops/reduce.cpp) ----
Tensor sum(const Tensor& x);  // all elements -> 0-d
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);     // values; grad to the argmax
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, not differentiable
// sum(x[k], {0}) for every k (the bias gradients of the fused step on a GPU): when the entries
// are contiguous 2-D f32 or f64 tensors of one shape on one CUDA device that record no
// gradient, one launch per 32 entries; else one call each. Either way each result is bit for
// bit the lone call's.
std::vector<Tensor> column_sums_batched(const std::vector<Tensor>& x);

// ---- linear algebra (ops/matmul.cpp) ----
// [M,K]@[K,N], batched [B,M,K]@[B,K,N] and [B,M,K]@[K,N].
Tensor matmul(const Tensor& a, const Tensor& b);
// x[N,in] W[out,in]^T + b[out], one GEMM with a fused bias epilogue (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// activate(linear(x, weight, bias), a), bit for bit, with the activation applied in the GEMM's
// epilogue to each output tile while it is in cache where the kernel has it (host f32: relu,
// tanh, sigmoid, identity); otherwise, and when a gradient is needed, the two ops.
Tensor linear_activation(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         ActivationKind a, double leaky_slope = 0.01);

// Independent problems solved at once, for training several models in lockstep
// (train/fused.h): out[i] is bit for bit linear(x[i], weight[i], bias[i]) / the 2-D
// matmul(a[i], b[i]). Problems of one shape and layout go to one batched GEMM call (on the CPU
// kernels::cpu::sgemm_batched, which spreads them over the threads; on a GPU
// cuda_ops::sgemm_batched); others take one call each. They record no autograd history: call them
// under NoGrad. bias may be empty (no bias) or hold undefined entries.
std::vector<Tensor> linear_batched(const std::vector<Tensor>& x, const std::vector<Tensor>& weight,
                                   const std::vector<Tensor>& bias);
std::vector<Tensor> matmul_batched(const std::vector<Tensor>& a, const std::vector<Tensor>& b);
// A hint for the next CPU matmul, linear or batched call on this thread: t is read soon after
// it, so while that call computes (on one thread) it brings t's storage into L2 a few cache
// lines at a time, overlapping the fetch with arithmetic. Up to 4 tensors per call; never
// changes a result. Ignored for undefined, non-contiguous or CUDA tensors.
void prefetch_during_next_matmul(const Tensor& t);

// The GEMM behind matmul/linear on CUDA tensors, process-wide: our tiled FP32 kernel (native,
// the default), its TF32 tensor-core variant (opt-in, 10-bit mantissa inputs) or cuBLAS FP32
// (the reference). Ignored by CPU tensors and in builds without CUDA.
enum class CudaGemmAlgo { native, tf32, cublas };
void set_cuda_gemm_algo(CudaGemmAlgo algo);
CudaGemmAlgo cuda_gemm_algo();
CudaGemmAlgo parse_cuda_gemm_algo(const std::string& name);  // throws naming the known ones
const char* cuda_gemm_algo_name(CudaGemmAlgo algo);

// ---- convolution and pooling on NCHW tensors (ops/conv.cpp); CPU, f32 or f64 ----
struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};  // zeros on each side
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
// x [N, C, H, W], weight [OC, C / groups, kH, kW], bias [OC] or undefined -> [N, OC, OH, OW]
// with OH = (H + 2 pad - dilation (kH - 1) - 1) / stride + 1 (PyTorch's F.conv2d).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
              const Conv2dParams& params = {});
// Pooling windows of `kernel`; stride {0, 0} means stride = kernel; padding <= kernel / 2.
// max_pool2d: padding never wins, gradient to the (first) maximum. avg_pool2d: zeros padded,
// divisor kH * kW (count_include_pad).
Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel,
                  std::array<int64_t, 2> stride = {0, 0}, std::array<int64_t, 2> padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel,
                  std::array<int64_t, 2> stride = {0, 0}, std::array<int64_t, 2> padding = {0, 0});
// Averages PyTorch's adaptive bins down to output_size [OH, OW].
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// ---- normalization (ops/norm.cpp) ----
// Batch normalization over dim 1 of [N, C], [N, C, L] or [N, C, H, W]. weight/bias: [C] or both
// undefined; running_mean/var: [C] buffers updated in place when training (both may be
// undefined: batch statistics only). Evaluation (training false) uses the running estimates.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  double momentum = 0.1, double eps = 1e-5);

// ---- softmax and losses (ops/loss.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Mean cross-entropy of logits [N,C] against i64 labels [N]; fused and stable.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
// The loss cross_entropy returns and the gradient its backward gives the logits for an upstream
// gradient of 1 (what loss.backward() computes), by the same code, without the tape (CPU or
// CUDA).
std::pair<Tensor, Tensor> cross_entropy_and_grad(const Tensor& logits, const Tensor& labels);
// cross_entropy_and_grad(logits[k], labels) for every k, as (losses, gradients): when the logits
// are contiguous f32 or f64 tensors of one shape on one CUDA device, three launches per 32
// entries (the labels moved to the device once); else one call each. Either way each loss and
// gradient is bit for bit the lone call's.
std::pair<std::vector<Tensor>, std::vector<Tensor>> cross_entropy_and_grad_batched(
    const std::vector<Tensor>& logits, const Tensor& labels);
// Mean negative log-likelihood of log-probabilities [N,C] at i64 labels [N].
Tensor nll_loss(const Tensor& log_probs, const Tensor& labels);
Tensor mse_loss(const Tensor& a, const Tensor& b);

// ---- dropout (ops/dropout.cpp): zeroes with probability p, scales the rest by 1/(1-p) ----
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);

// ---- indexing (ops/index.cpp) ----
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace gl
