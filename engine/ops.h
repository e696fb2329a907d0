// ops.h: every differentiable op of the engine. Each op's forward and backward live side by
// side in engine/ops/<family>.cpp; each has a row in the op table (tests/engine/op_table.cpp).
#pragma once
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

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }

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

// ---- reductions (ops/reduce.cpp) ----
Tensor sum(const Tensor& x);  // all elements -> 0-d
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);  // values; grad to the argmax
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, not differentiable

// ---- linear algebra (ops/matmul.cpp) ----
// [M,K]@[K,N], batched [B,M,K]@[B,K,N] and [B,M,K]@[K,N].
Tensor matmul(const Tensor& a, const Tensor& b);
// x[N,in] W[out,in]^T + b[out], one GEMM with a fused bias epilogue (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// The GEMM behind matmul/linear on CUDA tensors, process-wide: our tiled FP32 kernel (native,
// the default), its TF32 tensor-core variant (opt-in, 10-bit mantissa inputs) or cuBLAS FP32
// (the reference). Ignored by CPU tensors and in builds without CUDA.
enum class CudaGemmAlgo { native, tf32, cublas };
void set_cuda_gemm_algo(CudaGemmAlgo algo);
CudaGemmAlgo cuda_gemm_algo();
CudaGemmAlgo parse_cuda_gemm_algo(const std::string& name);  // throws naming the known ones
const char* cuda_gemm_algo_name(CudaGemmAlgo algo);

// ---- softmax and losses (ops/loss.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Mean cross-entropy of logits [N,C] against i64 labels [N]; fused and stable.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
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
