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

// One GEMM as the ops make it: out[M,N] (contiguous) = a[M,K] @ b[K,N] (+ bias).
struct GemmCall {
  Operand A, B;
  int64_t M, N, K;
  Tensor bias;  // contiguous, or undefined
};

GemmCall gemm_call(const Tensor& a, const Tensor& b, const Tensor& bias) {
  return {as_operand(a), as_operand(b), a.shape()[0],
          b.shape()[1],  a.shape()[1],  bias.defined() ? bias.contiguous() : Tensor()};
}

void run_gemm(const GemmCall& g, Tensor& out, kernels::Activation act = kernels::Activation::none) {
  kernels::Epilogue ep;
  if (g.bias.defined()) ep.bias = g.bias.raw_data();
  ep.act = act;
  const int64_t ldc = std::max<int64_t>(g.N, 1);
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(out)) {
    cuda_ops::sgemm(out.device(), g.A.trans, g.B.trans, g.M, g.N, g.K,
                    static_cast<const float*>(g.A.data), g.A.ld,
                    static_cast<const float*>(g.B.data), g.B.ld,
                    static_cast<float*>(out.raw_data()), ldc, static_cast<const float*>(ep.bias));
    return;
  }
#endif
  if (out.dtype() == DType::f32) {
    kernels::cpu::sgemm(g.A.trans, g.B.trans, g.M, g.N, g.K, 1.0f,
                        static_cast<const float*>(g.A.data), g.A.ld,
                        static_cast<const float*>(g.B.data), g.B.ld, 0.0f,
                        static_cast<float*>(out.raw_data()), ldc, ep);
  } else {
    kernels::cpu::dgemm(g.A.trans, g.B.trans, g.M, g.N, g.K, 1.0,
                        static_cast<const double*>(g.A.data), g.A.ld,
                        static_cast<const double*>(g.B.data), g.B.ld, 0.0,
                        static_cast<double*>(out.raw_data()), ldc, ep);
  }
}

void gemm_into(const Tensor& a, const Tensor& b, Tensor& out, const Tensor& bias) {
  run_gemm(gemm_call(a, b, bias), out);
}

// outs[i] = a[i] @ b[i] (+ bias[i]) for same-shape problems: one batched GEMM when every
// problem hands the kernel the same layout (it does for equal shapes and strides) on one device,
// else (mixed layouts) one call each. Either way each output is what gemm_into computes.
void gemm_batch_into(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                     std::vector<Tensor>& outs, const std::vector<Tensor>& bias) {
  std::vector<GemmCall> calls;
  for (std::size_t i = 0; i < a.size(); ++i)
    calls.push_back(gemm_call(a[i], b[i], bias.empty() ? Tensor() : bias[i]));
  bool uniform = !calls.empty();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    const GemmCall &g = calls[i], &f = calls[0];
    uniform = uniform && outs[i].device() == outs[0].device() &&
              outs[i].dtype() == outs[0].dtype() && g.A.trans == f.A.trans && g.A.ld == f.A.ld &&
              g.B.trans == f.B.trans && g.B.ld == f.B.ld && g.M == f.M && g.N == f.N && g.K == f.K;
  }
  if (!uniform) {
    for (std::size_t i = 0; i < calls.size(); ++i) run_gemm(calls[i], outs[i]);
    return;
  }
  const GemmCall& f = calls[0];
  const int64_t ldc = std::max<int64_t>(f.N, 1), n = int64_t(calls.size());
  auto run = [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> pa, pb, pbias;
    std::vector<T*> pc;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      pa.push_back(static_cast<const T*>(calls[i].A.data));
      pb.push_back(static_cast<const T*>(calls[i].B.data));
      pbias.push_back(calls[i].bias.defined() ? static_cast<const T*>(calls[i].bias.raw_data())
                                              : nullptr);
      pc.push_back(static_cast<T*>(outs[i].raw_data()));
    }
#if defined(GRADLENS_HAVE_CUDA)
    if (detail::on_cuda(outs[0])) {
      if constexpr (std::is_same_v<T, float>)
        cuda_ops::sgemm_batched(outs[0].device(), f.A.trans, f.B.trans, f.M, f.N, f.K, pa.data(),
                                f.A.ld, pb.data(), f.B.ld, pc.data(), ldc, pbias.data(), n);
      else
        GL_CHECK(false, "matmul: f64 on {} (the GPU GEMMs are f32)", outs[0].device().str());
      return;
    }
#endif
    if constexpr (std::is_same_v<T, float>)
      kernels::cpu::sgemm_batched(f.A.trans, f.B.trans, f.M, f.N, f.K, 1.0f, pa.data(), f.A.ld,
                                  pb.data(), f.B.ld, 0.0f, pc.data(), ldc, pbias.data(),
                                  kernels::Activation::none, n);
    else
      kernels::cpu::dgemm_batched(f.A.trans, f.B.trans, f.M, f.N, f.K, 1.0, pa.data(), f.A.ld,
                                  pb.data(), f.B.ld, 0.0, pc.data(), ldc, pbias.data(),
                                  kernels::Activation::none, n);
  };
  if (outs[0].dtype() == DType::f32)
    run(float{});
  else
    run(double{});
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
    GL_CHECK(a.shape()[1] == b.shape()[0],
             "matmul: shapes {} and {} are not aligned (inner {} vs {})", shape_str(a.shape()),
             shape_str(b.shape()), a.shape()[1], b.shape()[0]);
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
    attach_grad_fn(
        out, "matmul", {a, b},
        [sa, sb, need_a, need_b](const Tensor& g) -> std::vector<Tensor> {
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
        },
        {a.shape(), b.shape()});
  }
  return out;
}

namespace {
void check_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
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
    GL_CHECK(b.dim() == 1 && b.shape()[0] == w.shape()[0], "linear: bias {} for weight {}", b.str(),
             w.str());
  }
}

void check_matmul_2d(const Tensor& a, const Tensor& b) {
  check_operand(a, "matmul");
  check_operand(b, "matmul");
  detail::check_same_dtype(a, b, "matmul");
  GL_CHECK(a.dim() == 2 && b.dim() == 2, "matmul_batched: shapes {} and {} must be 2-D",
           shape_str(a.shape()), shape_str(b.shape()));
  GL_CHECK(a.shape()[1] == b.shape()[0],
           "matmul: shapes {} and {} are not aligned (inner {} vs {})", shape_str(a.shape()),
           shape_str(b.shape()), a.shape()[1], b.shape()[0]);
}

// The batched ops take one tensor per problem in each list and record no autograd history.
void check_batch(const char* op, const std::vector<Tensor>& list, std::size_t problems) {
  GL_CHECK(list.size() == problems, "{}: {} problems but a list of {} tensors", op, problems,
           list.size());
  for (const Tensor& t : list)
    GL_CHECK(!t.defined() || !needs_grad({&t}),
             "{}: records no autograd history, but input {} requires grad; call it under NoGrad",
             op, t.str());
}
}  // namespace

std::vector<Tensor> linear_batched(const std::vector<Tensor>& x, const std::vector<Tensor>& w,
                                   const std::vector<Tensor>& b) {
  check_batch("linear_batched", x, x.size());
  check_batch("linear_batched", w, x.size());
  if (!b.empty()) check_batch("linear_batched", b, x.size());
  std::vector<Tensor> wt, outs;
  for (std::size_t i = 0; i < x.size(); ++i) {
    check_linear(x[i], w[i], b.empty() ? Tensor() : b[i]);
    wt.push_back(w[i].t());
    outs.push_back(Tensor::empty({x[i].shape()[0], w[i].shape()[0]}, x[i].dtype(), x[i].device()));
  }
  gemm_batch_into(x, wt, outs, b);
  return outs;
}

std::vector<Tensor> matmul_batched(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  check_batch("matmul_batched", a, a.size());
  check_batch("matmul_batched", b, a.size());
  std::vector<Tensor> outs;
  for (std::size_t i = 0; i < a.size(); ++i) {
    check_matmul_2d(a[i], b[i]);
    outs.push_back(Tensor::empty({a[i].shape()[0], b[i].shape()[1]}, a[i].dtype(), a[i].device()));
  }
  gemm_batch_into(a, b, outs, {});
  return outs;
}

void prefetch_during_next_matmul(const Tensor& t) {
  if (!t.defined() || t.device().is_cuda() || !t.is_contiguous() || t.numel() == 0) return;
  const auto bytes = int64_t(t.numel()) * int64_t(dtype_size(t.dtype()));
  kernels::cpu::prefetch_during_next_gemm(t.raw_data(), 1, bytes, bytes);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check_linear(x, w, b);
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
    attach_grad_fn(
        out, "linear", inputs,
        [sx, sw, has_bias, need_x, need_w, need_b](const Tensor& g) -> std::vector<Tensor> {
          std::vector<Tensor> r{need_x ? matmul(g, sw) : Tensor(),
                                need_w ? matmul(g.t(), sx) : Tensor()};
          if (has_bias) r.push_back(need_b ? sum(g, {0}) : Tensor());
          return r;
        },
        {x.shape(), w.shape()});
  }
  return out;
}

Tensor linear_activation(const Tensor& x, const Tensor& w, const Tensor& b, ActivationKind a,
                         double slope) {
  kernels::Activation k = kernels::Activation::none;
  bool in_epilogue = true;
  switch (a) {
    case ActivationKind::identity:
      break;
    case ActivationKind::relu:
      k = kernels::Activation::relu;
      break;
    case ActivationKind::tanh:
      k = kernels::Activation::tanh;
      break;
    case ActivationKind::sigmoid:
      k = kernels::Activation::sigmoid;
      break;
    default:
      in_epilogue = false;
  }
  check_linear(x, w, b);
  if (!in_epilogue || x.dtype() != DType::f32 || !x.device().is_cpu() || needs_grad({&x, &w, &b}))
    return activate(linear(x, w, b), a, slope);
  Tensor out = Tensor::empty({x.shape()[0], w.shape()[0]}, x.dtype(), x.device());
  // The f32 kernels' epilogue gives the activation ops' bits (kernels::cpu::sgemm).
  run_gemm(gemm_call(x, w.t(), b), out, k);
  return out;
}

namespace {
CudaGemmAlgo& gemm_algo_slot() {
  static CudaGemmAlgo algo = CudaGemmAlgo::native;
  return algo;
}
}  // namespace

void set_cuda_gemm_algo(CudaGemmAlgo algo) {
  gemm_algo_slot() = algo;
}
CudaGemmAlgo cuda_gemm_algo() {
  return gemm_algo_slot();
}

CudaGemmAlgo parse_cuda_gemm_algo(const std::string& name) {
  if (name == "native") return CudaGemmAlgo::native;
  if (name == "tf32") return CudaGemmAlgo::tf32;
  if (name == "cublas") return CudaGemmAlgo::cublas;
  throw Error(fmt::format("unknown GEMM backend '{}' (known: native, cublas, tf32)", name));
}

const char* cuda_gemm_algo_name(CudaGemmAlgo algo) {
  switch (algo) {
    case CudaGemmAlgo::native:
      return "native";
    case CudaGemmAlgo::tf32:
      return "tf32";
    case CudaGemmAlgo::cublas:
      return "cublas";
  }
  return "?";
}

}  // namespace gl
