// matmul.cpp: matmul (2-D and batched 3-D) and linear with a fused bias epilogue. Transposed
// views are passed to the GEMM as transpose flags, so backward's A^T and B^T cost no copy.
#include "engine/ops.h"
#include "engine/ops/map.h"

namespace gl {

namespace {
struct Operand {
  Tensor keep;  // holds a contiguous copy alive when one was needed
  const void* data;
  bool trans;
  int64_t ld;
};

// How a 2-D tensor is handed to the GEMM: as stored, as a transposed matrix, or copied.
Operand as_operand(const Tensor& m) {
  int64_t rows = m.shape()[0], cols = m.shape()[1];
  const Shape& st = m.strides();
  if ((st[1] == 1 || cols == 1) && (st[0] >= std::max<int64_t>(cols, 1) || rows == 1))
    return {m, m.raw_data(), false, rows == 1 ? std::max<int64_t>(cols, 1) : st[0]};
  if ((st[0] == 1 || rows == 1) && (st[1] >= std::max<int64_t>(rows, 1) || cols == 1))
    return {m, m.raw_data(), true, cols == 1 ? std::max<int64_t>(rows, 1) : st[1]};
  Tensor c = m.contiguous();
  return {c, c.raw_data(), false, std::max<int64_t>(cols, 1)};
}

// out[M,N] (contiguous) = a[M,K] @ b[K,N] (+ bias, activation).
void gemm_into(const Tensor& a, const Tensor& b, Tensor& out, const Tensor& bias) {
  int64_t M = a.shape()[0], K = a.shape()[1], N = b.shape()[1];
  Operand A = as_operand(a), B = as_operand(b);
  kernels::Epilogue ep;
  Tensor bias_c;
  if (bias.defined()) {
    bias_c = bias.contiguous();
    ep.bias = bias_c.raw_data();
  }
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(out)) {
    cuda_ops::sgemm(A.trans, B.trans, M, N, K, static_cast<const float*>(A.data), A.ld,
                    static_cast<const float*>(B.data), B.ld, static_cast<float*>(out.raw_data()),
                    std::max<int64_t>(N, 1), static_cast<const float*>(ep.bias));
    return;
  }
#endif
  if (a.dtype() == DType::f32) {
    kernels::cpu::sgemm(A.trans, B.trans, M, N, K, 1.0f, static_cast<const float*>(A.data), A.ld,
                        static_cast<const float*>(B.data), B.ld, 0.0f,
                        static_cast<float*>(out.raw_data()), std::max<int64_t>(N, 1), ep);
  } else {
    kernels::cpu::dgemm(A.trans, B.trans, M, N, K, 1.0, static_cast<const double*>(A.data), A.ld,
                        static_cast<const double*>(B.data), B.ld, 0.0,
                        static_cast<double*>(out.raw_data()), std::max<int64_t>(N, 1), ep);
  }
}

// CPU: f32 or f64. CUDA: f32 (the GPU GEMMs are single precision).
void check_operand(const Tensor& x, const char* op) {
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x)) {
    cuda_ops::check_device_float(x, op, /*f32_only=*/true);
    return;
  }
#endif
  detail::check_float_cpu(x, op);
}

Tensor matmul_forward(const Tensor& a, const Tensor& b) {
  check_operand(a, "matmul");
  check_operand(b, "matmul");
  detail::check_same_dtype(a, b, "matmul");
  if (a.dim() == 2 && b.dim() == 2) {
    GL_CHECK(a.shape()[1] == b.shape()[0], "matmul: shapes {} and {} are not aligned (inner {} vs {})",
             shape_str(a.shape()), shape_str(b.shape()), a.shape()[1], b.shape()[0]);
    Tensor out = Tensor::empty({a.shape()[0], b.shape()[1]}, a.dtype(), a.device());
    gemm_into(a, b, out, Tensor());
    return out;
  }
  GL_CHECK(a.dim() == 3 && (b.dim() == 2 || b.dim() == 3),
           "matmul: unsupported shapes {} and {} (2-D@2-D, 3-D@3-D or 3-D@2-D)",
           shape_str(a.shape()), shape_str(b.shape()));
  int64_t B = a.shape()[0], M = a.shape()[1], K = a.shape()[2];
  int64_t Kb = b.dim() == 3 ? b.shape()[1] : b.shape()[0];
  int64_t N = b.shape()[b.dim() - 1];
  GL_CHECK(K == Kb, "matmul: shapes {} and {} are not aligned (inner {} vs {})",
           shape_str(a.shape()), shape_str(b.shape()), K, Kb);
  if (b.dim() == 3)
    GL_CHECK(b.shape()[0] == B, "matmul: batch sizes differ in {} and {}", shape_str(a.shape()),
             shape_str(b.shape()));
  Tensor out = Tensor::empty({B, M, N}, a.dtype(), a.device());
  for (int64_t i = 0; i < B; ++i) {
    Tensor oi = out.select(0, i);
    gemm_into(a.select(0, i), b.dim() == 3 ? b.select(0, i) : b, oi, Tensor());
  }
  return out;
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGrad ng;  // select() views inside must not record
    out = matmul_forward(a, b);
  }
  if (needs_grad({&a, &b})) {
    Tensor sa = a.detach(), sb = b.detach();
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    attach_grad_fn(out, "matmul", {a, b}, [sa, sb, need_a, need_b](const Tensor& g) -> std::vector<Tensor> {
      if (sa.dim() == 2)
        return {need_a ? matmul(g, sb.t()) : Tensor(), need_b ? matmul(sa.t(), g) : Tensor()};
      Tensor ga = matmul(g, sb.dim() == 3 ? sb.transpose(1, 2) : sb.t());
      Tensor gb;
      if (sb.dim() == 3) {
        gb = matmul(sa.transpose(1, 2), g);
      } else {
        int64_t rows = sa.shape()[0] * sa.shape()[1];
        gb = matmul(sa.reshape({rows, sa.shape()[2]}).t(), g.reshape({rows, g.shape()[2]}));
      }
      return {ga, gb};
    }, {a.shape(), b.shape()});
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check_operand(x, "linear");
  check_operand(w, "linear");
  detail::check_same_dtype(x, w, "linear");
  GL_CHECK(x.dim() == 2 && w.dim() == 2, "linear: input {} and weight {} must be 2-D", x.str(),
           w.str());
  GL_CHECK(x.shape()[1] == w.shape()[1],
           "linear: input {} has {} features but weight {} expects {}", x.str(), x.shape()[1],
           w.str(), w.shape()[1]);
  if (b.defined()) {
    detail::check_same_dtype(x, b, "linear");
    GL_CHECK(b.dim() == 1 && b.shape()[0] == w.shape()[0], "linear: bias {} for weight {}",
             b.str(), w.str());
  }
  Tensor out = Tensor::empty({x.shape()[0], w.shape()[0]}, x.dtype(), x.device());
  gemm_into(x, w.t(), out, b);
  if (needs_grad({&x, &w, &b})) {
    Tensor sx = x.detach(), sw = w.detach();
    bool has_bias = b.defined();
    // The first layer's input needs no gradient: skip that GEMM.
    bool need_x = x.requires_grad(), need_w = w.requires_grad();
    bool need_b = has_bias && b.requires_grad();
    std::vector<Tensor> inputs{x, w};
    if (has_bias) inputs.push_back(b);
    attach_grad_fn(out, "linear", inputs,
                   [sx, sw, has_bias, need_x, need_w, need_b](const Tensor& g) -> std::vector<Tensor> {
      std::vector<Tensor> r{need_x ? matmul(g, sw) : Tensor(), need_w ? matmul(g.t(), sx) : Tensor()};
      if (has_bias) r.push_back(need_b ? sum(g, {0}) : Tensor());
      return r;
    }, {x.shape(), w.shape()});
  }
  return out;
}

namespace {
CudaGemmAlgo& gemm_algo_slot() {
  static CudaGemmAlgo algo = CudaGemmAlgo::native;
  return algo;
}
}  // namespace

void set_cuda_gemm_algo(CudaGemmAlgo algo) { gemm_algo_slot() = algo; }
CudaGemmAlgo cuda_gemm_algo() { return gemm_algo_slot(); }

CudaGemmAlgo parse_cuda_gemm_algo(const std::string& name) {
  if (name == "native") return CudaGemmAlgo::native;
  if (name == "tf32") return CudaGemmAlgo::tf32;
  if (name == "cublas") return CudaGemmAlgo::cublas;
  throw Error(fmt::format("unknown GEMM backend '{}' (known: native, cublas, tf32)", name));
}

const char* cuda_gemm_algo_name(CudaGemmAlgo algo) {
  switch (algo) {
    case CudaGemmAlgo::native: return "native";
    case CudaGemmAlgo::tf32: return "tf32";
    case CudaGemmAlgo::cublas: return "cublas";
  }
  return "?";
}

}  // namespace gl
