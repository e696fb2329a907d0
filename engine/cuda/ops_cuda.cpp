// ops_cuda.cpp: device implementations behind the engine's ops (see ops_cuda.h). Layouts are
// coalesced with the CPU's loops::coalesce before they are handed to the strided kernels, so
// the common cases (contiguous, row broadcast) reach the kernels as 1-2 dims.
#include "engine/cuda/ops_cuda.h"

#include <algorithm>
#include <numeric>

#include "engine/autograd.h"
#include "engine/cuda/kernels.h"
#include "engine/ops/loops.h"
#include "kernels/cuda/reduce.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/sgemm.h"
#include "kernels/cuda/softmax_xent.h"

namespace gl::cuda_ops {

namespace ec = gl::engine_cuda;

namespace {
ec::ElemType elem(DType d) {
  return static_cast<ec::ElemType>(static_cast<int>(d));
}

template <std::size_t N>
kc::StridedLayout make_layout(const Shape& shape, const std::array<Shape, N>& strides,
                              const char* op) {
  loops::Layout<N> c = loops::coalesce<N>(shape, strides);
  GL_CHECK(c.shape.size() <= std::size_t(kc::kMaxDims),
           "{}: {} dims after merging contiguous ones; the CUDA kernels take at most {}", op,
           c.shape.size(), kc::kMaxDims);
  kc::StridedLayout L;
  L.ndim = int(c.shape.size());
  for (int d = 0; d < L.ndim; ++d) {
    L.shape[d] = c.shape[d];
    for (std::size_t k = 0; k < N; ++k) L.stride[k][d] = c.strides[k][d];
  }
  return L;
}

template <class F>
auto float_types(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    default:
      throw Error(
          fmt::format("{}: dtype {} not supported on CUDA (f32 or f64)", op, dtype_name(d)));
  }
}

template <class T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

Tensor contig(const Tensor& x) {
  return x.detach().contiguous();
}
}  // namespace

kc::DeviceScope device_scope(Device d) {
  return kc::DeviceScope(d.is_cuda() ? d.index : -1);
}
kc::DeviceScope device_scope(const Tensor& t) {
  return device_scope(t.defined() ? t.device() : Device::cpu());
}

void check_device_float(const Tensor& x, const char* op, bool f32_only) {
  GL_CHECK(x.defined(), "{}: undefined tensor", op);
  GL_CHECK(x.device().is_cuda(), "{}: expected a CUDA tensor, got {} on {}", op, x.str(),
           x.device().str());
  if (f32_only)
    GL_CHECK(x.dtype() == DType::f32, "{}: dtype {} not supported on {} (f32 only), tensor {}", op,
             dtype_name(x.dtype()), x.device().str(), x.str());
  else
    GL_CHECK(is_floating(x.dtype()), "{}: dtype {} not supported on {} (f32 or f64), tensor {}", op,
             dtype_name(x.dtype()), x.device().str(), x.str());
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  GL_CHECK(a.device() == b.device() && a.dtype() == b.dtype(),
           "{}: operands must share device and dtype, got {} on {} and {} on {}", op, a.str(),
           a.device().str(), b.str(), b.device().str());
}

// ------------------------------------------------------------------ elementwise
Tensor unary(const Tensor& x, kc::UnaryOp f, kc::OpParams p, const char* op) {
  check_device_float(x, op);
  const auto scope = device_scope(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  float_types(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_contiguous()) {
      kc::unary<T>(f, p, x.numel(), ptr<const T>(x), ptr<T>(out));
    } else {
      Shape zero(x.shape().size(), 0);
      kc::StridedLayout L = make_layout<3>(x.shape(), {out.strides(), x.strides(), zero}, op);
      kc::unary_strided<T>(f, p, L, ptr<const T>(x), ptr<T>(out));
    }
    return 0;
  });
  return out;
}

Tensor binary(const Tensor& a, const Tensor& b, kc::BinaryOp f, kc::OpParams p, const char* op) {
  GL_CHECK(a.defined() && b.defined(), "{}: undefined tensor", op);
  check_same(a, b, op);  // first, so a call mixing devices names both of them
  check_device_float(a, op);
  const auto scope = device_scope(a);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  float_types(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
      kc::binary<T>(f, p, out.numel(), ptr<const T>(a), ptr<const T>(b), ptr<T>(out));
    } else {
      Shape sa = loops::broadcast_strides(a.shape(), a.strides(), shape);
      Shape sb = loops::broadcast_strides(b.shape(), b.strides(), shape);
      kc::StridedLayout L = make_layout<3>(shape, {out.strides(), sa, sb}, op);
      kc::binary_strided<T>(f, p, L, ptr<const T>(a), ptr<const T>(b), ptr<T>(out));
    }
    return 0;
  });
  return out;
}

namespace {
// Outputs shaped like a's entries, and the device pointers of a, b (empty for a unary op) and
// the outputs, for launch(pa, pb, po, n, count).
template <class Launch>
std::vector<Tensor> batched_map(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                                Launch&& launch) {
  std::vector<Tensor> out;
  if (a.empty()) return out;
  const auto scope = device_scope(a[0]);
  std::vector<const float*> pa, pb;
  std::vector<float*> po;
  for (std::size_t k = 0; k < a.size(); ++k) {
    out.push_back(Tensor::empty(a[k].shape(), a[k].dtype(), a[k].device()));
    pa.push_back(ptr<const float>(a[k]));
    if (!b.empty()) pb.push_back(ptr<const float>(b[k]));
    po.push_back(ptr<float>(out.back()));
  }
  launch(pa.data(), pb.data(), po.data(), a[0].numel(), int64_t(a.size()));
  return out;
}
}  // namespace

std::vector<Tensor> unary_batched(const std::vector<Tensor>& x, kc::UnaryOp f, kc::OpParams p) {
  return batched_map(x, {},
                     [&](const float* const* px, const float* const*, float* const* po, int64_t n,
                         int64_t count) { kc::unary_batched(f, p, n, px, po, count); });
}

std::vector<Tensor> binary_batched(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                                   kc::BinaryOp f, kc::OpParams p) {
  return batched_map(
      a, b,
      [&](const float* const* pa, const float* const* pb, float* const* po, int64_t n,
          int64_t count) { kc::binary_batched(f, p, n, pa, pb, po, count); });
}

// ------------------------------------------------------------------ copies
void copy(const Tensor& src, const Tensor& dst) {
  GL_CHECK(src.device() == dst.device() && src.device().is_cuda(),
           "copy_: device copy between {} on {} and {} on {}", src.str(), src.device().str(),
           dst.str(), dst.device().str());
  GL_CHECK(src.shape() == dst.shape(), "copy_: shape {} into {}", shape_str(src.shape()),
           shape_str(dst.shape()));
  if (src.numel() == 0) return;
  const auto scope = device_scope(dst);
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    kc::copy_device_to_device(dst.raw_data(), src.raw_data(),
                              std::size_t(src.numel()) * dtype_size(src.dtype()));
    return;
  }
  kc::StridedLayout L = make_layout<3>(
      dst.shape(), {dst.strides(), src.strides(), Shape(dst.shape().size(), 0)}, "copy_");
  ec::strided_copy(L, dst.raw_data(), elem(dst.dtype()), src.raw_data(), elem(src.dtype()),
                   nullptr);
}

void fill(const Tensor& dst, double value) {
  GL_CHECK(dst.device().is_cuda(), "fill_: expected a CUDA tensor, got {}", dst.device().str());
  if (dst.numel() == 0) return;
  const auto scope = device_scope(dst);
  kc::StridedLayout L = make_layout<3>(
      dst.shape(), {dst.strides(), Shape(dst.shape().size(), 0), Shape(dst.shape().size(), 0)},
      "fill_");
  ec::fill(L, dst.raw_data(), elem(dst.dtype()), value, nullptr);
}

// ------------------------------------------------------------------ reductions
Tensor sum_keepdim(const Tensor& x, const std::vector<bool>& mask) {
  check_device_float(x, "sum");
  const auto scope = device_scope(x);
  Shape keep;
  std::vector<int64_t> kept, reduced;
  for (int64_t i = 0; i < x.dim(); ++i) {
    keep.push_back(mask[i] ? 1 : x.shape()[i]);
    (mask[i] ? reduced : kept).push_back(i);
  }
  Tensor out = Tensor::empty(keep, x.dtype(), x.device());
  if (x.numel() == 0) {
    fill(out, 0.0);
    return out;
  }
  int64_t rows = 1, cols = 1;  // kept extent, reduced extent
  for (int64_t d : kept) rows *= x.shape()[d];
  for (int64_t d : reduced) cols *= x.shape()[d];
  // Leading: every reduced dim precedes every kept dim (a column sum, e.g. the bias gradient);
  // trailing: the other way round (a row sum). Anything else is permuted to trailing.
  bool leading = kept.empty() || reduced.empty() || reduced.back() < kept.front();
  bool trailing = kept.empty() || reduced.empty() || kept.back() < reduced.front();
  Tensor xc;
  if (leading || trailing) {
    xc = contig(x);
  } else {
    std::vector<int64_t> perm = kept;
    perm.insert(perm.end(), reduced.begin(), reduced.end());
    xc = x.detach().permute(perm).contiguous();
    trailing = true;
  }
  float_types(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    if (kept.empty())
      kc::sum_all<T>(ptr<const T>(xc), cols, ptr<T>(out));
    else if (trailing)
      kc::sum_rows<T>(ptr<const T>(xc), rows, cols, ptr<T>(out));
    else
      kc::sum_cols<T>(ptr<const T>(xc), cols, rows, ptr<T>(out), false);
    return 0;
  });
  return out;
}

bool uniform_matrix_batch(const std::vector<Tensor>& x) {
  if (x.empty()) return false;
  const Tensor& f = x[0];
  if (!f.defined() || !f.device().is_cuda() || !is_floating(f.dtype()) || f.dim() != 2 ||
      f.numel() == 0)
    return false;
  return std::all_of(x.begin(), x.end(), [&](const Tensor& t) {
    return t.defined() && t.device() == f.device() && t.dtype() == f.dtype() &&
           t.shape() == f.shape() && t.is_contiguous();
  });
}

std::vector<Tensor> column_sums_batched(const std::vector<Tensor>& x) {
  std::vector<Tensor> out;
  if (x.empty()) return out;
  const auto scope = device_scope(x[0]);
  const int64_t rows = x[0].shape()[0], cols = x[0].shape()[1];
  float_types(x[0].dtype(), "column_sums_batched", [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> px;
    std::vector<T*> po;
    for (const Tensor& t : x) {
      out.push_back(Tensor::empty({cols}, t.dtype(), t.device()));
      px.push_back(ptr<const T>(t));
      po.push_back(ptr<T>(out.back()));
    }
    kc::sum_cols_batched<T>(px.data(), rows, cols, po.data(), int64_t(x.size()), false);
    return 0;
  });
  return out;
}

void max_rows(const Tensor& xl, int64_t rows, int64_t n, Tensor* values, Tensor& idx) {
  check_device_float(xl, "max");
  GL_CHECK(xl.is_contiguous() && xl.numel() == rows * n, "max: internal layout error for {}",
           xl.str());
  const auto scope = device_scope(xl);
  idx = Tensor::empty({rows}, DType::i64, xl.device());
  if (values) *values = Tensor::empty({rows}, xl.dtype(), xl.device());
  float_types(xl.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    ec::argmax_rows<T>(ptr<const T>(xl), rows, n, ptr<int64_t>(idx),
                       values ? ptr<T>(*values) : nullptr, nullptr);
    return 0;
  });
}

Tensor scatter_rows(const Tensor& g, const Tensor& idx, const Shape& shape) {
  const auto scope = device_scope(g);
  Tensor out = Tensor::zeros(shape, g.dtype(), g.device());
  Tensor gc = contig(g);
  int64_t rows = idx.numel(), n = rows == 0 ? 0 : out.numel() / rows;
  float_types(g.dtype(), "max_backward", [&](auto tag) {
    using T = decltype(tag);
    ec::scatter_rows<T>(ptr<const T>(gc), ptr<const int64_t>(idx), rows, n, ptr<T>(out), nullptr);
    return 0;
  });
  return out;
}

// ------------------------------------------------------------------ GEMM
void sgemm(Device device, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
           const float* bias) {
  const auto scope = device_scope(device);
  kc::GemmAlgo algo = kc::GemmAlgo::tiled;
  switch (cuda_gemm_algo()) {
    case CudaGemmAlgo::native:
      algo = kc::GemmAlgo::tiled;
      break;
    case CudaGemmAlgo::tf32:
      algo = kc::GemmAlgo::tf32;
      break;
    case CudaGemmAlgo::cublas:
      algo = kc::GemmAlgo::cublas;
      break;
  }
  kernels::Epilogue ep;
  ep.bias = bias;
  kc::sgemm_with(algo, trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, ep);
}

void sgemm_batched(Device device, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                   float* const* C, int64_t ldc, const float* const* bias, int64_t count) {
  if (cuda_gemm_algo() != CudaGemmAlgo::native) {
    for (int64_t i = 0; i < count; ++i)
      sgemm(device, trans_a, trans_b, M, N, K, A[i], lda, B[i], ldb, C[i], ldc,
            bias ? bias[i] : nullptr);
    return;
  }
  const auto scope = device_scope(device);
  kc::sgemm_tiled_batched(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, bias,
                          kernels::Activation::none, count);
}

// ------------------------------------------------------------------ softmax, cross-entropy
Tensor softmax_rows(const Tensor& xl, bool log_form) {
  const char* op = log_form ? "log_softmax" : "softmax";
  check_device_float(xl, op);
  const auto scope = device_scope(xl);
  Tensor y = Tensor::empty(xl.shape(), xl.dtype(), xl.device());
  int64_t n = xl.dim() == 0 ? 1 : xl.shape().back();
  int64_t rows = n == 0 ? 0 : xl.numel() / n;
  if (rows == 0) return y;
  float_types(xl.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (log_form)
      kc::log_softmax_rows<T>(ptr<const T>(xl), rows, n, ptr<T>(y));
    else
      kc::softmax_rows<T>(ptr<const T>(xl), rows, n, ptr<T>(y));
    return 0;
  });
  return y;
}

Tensor xent_forward(const Tensor& logits, const Tensor& labels) {
  check_device_float(logits, "cross_entropy");
  const auto scope = device_scope(logits);
  int64_t N = logits.shape()[0], C = logits.shape()[1];
  Tensor rows = Tensor::empty({N}, logits.dtype(), logits.device());
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  float_types(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    kc::softmax_xent_forward<T>(ptr<const T>(logits), ptr<const int64_t>(labels), N, C,
                                ptr<T>(rows), ptr<T>(loss), false);
    return 0;
  });
  return loss;
}

Tensor xent_backward(const Tensor& logits, const Tensor& labels) {
  const auto scope = device_scope(logits);
  int64_t N = logits.shape()[0], C = logits.shape()[1];
  Tensor d = Tensor::empty({N, C}, logits.dtype(), logits.device());
  float_types(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    kc::softmax_xent_backward<T>(ptr<const T>(logits), ptr<const int64_t>(labels), N, C, T(1),
                                 ptr<T>(d));
    return 0;
  });
  return d;
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> xent_batched(const std::vector<Tensor>& logits,
                                                                 const Tensor& labels) {
  std::vector<Tensor> loss, grad;
  if (logits.empty()) return {loss, grad};
  const auto scope = device_scope(logits[0]);
  const int64_t N = logits[0].shape()[0], C = logits[0].shape()[1];
  const auto count = int64_t(logits.size());
  // Every problem's per-row losses, the scratch of its mean.
  Tensor rows = Tensor::empty({count, N}, logits[0].dtype(), logits[0].device());
  float_types(logits[0].dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> px;
    std::vector<T*> prows, pmean, pgrad;
    for (int64_t k = 0; k < count; ++k) {
      const Tensor& x = logits[std::size_t(k)];
      loss.push_back(Tensor::empty({}, x.dtype(), x.device()));
      grad.push_back(Tensor::empty({N, C}, x.dtype(), x.device()));
      px.push_back(ptr<const T>(x));
      prows.push_back(ptr<T>(rows) + k * N);
      pmean.push_back(ptr<T>(loss.back()));
      pgrad.push_back(ptr<T>(grad.back()));
    }
    kc::softmax_xent_batched<T>(px.data(), ptr<const int64_t>(labels), N, C, prows.data(),
                                pmean.data(), pgrad.data(), count);
    return 0;
  });
  return {loss, grad};
}

// ------------------------------------------------------------------ dropout
Tensor dropout_mask(const Shape& shape, DType dtype, Device device, uint64_t seed, uint64_t offset,
                    double p) {
  const auto scope = device_scope(device);
  Tensor mask = Tensor::empty(shape, dtype, device);
  double keep_scale = 1.0 / (1.0 - p);
  float_types(dtype, "dropout", [&](auto tag) {
    using T = decltype(tag);
    ec::dropout_mask<T>(ptr<T>(mask), mask.numel(), seed, offset, p, keep_scale, nullptr);
    return 0;
  });
  return mask;
}

// ------------------------------------------------------------------ indexing
namespace {
ec::GatherGeom geometry(const Shape& xshape, const Shape& oshape, int64_t dim, bool per_coord,
                        const char* op) {
  GL_CHECK(xshape.size() == oshape.size() && !xshape.empty() &&
               xshape.size() <= std::size_t(kc::kMaxDims),
           "{}: shapes {} and {} unsupported on CUDA (1 to {} dims, equal rank)", op,
           shape_str(xshape), shape_str(oshape), kc::kMaxDims);
  ec::GatherGeom g;
  g.ndim = int(xshape.size());
  g.dim = int(dim);
  g.per_coord = per_coord;
  for (int d = 0; d < g.ndim; ++d) {
    g.xshape[d] = xshape[d];
    g.oshape[d] = oshape[d];
  }
  return g;
}
}  // namespace

Tensor index_gather(const Tensor& x, int64_t dim, const Tensor& index, bool per_coord,
                    const Shape& oshape) {
  const char* op = per_coord ? "index_select" : "gather";
  GL_CHECK(x.device().is_cuda() && index.device() == x.device() && index.dtype() == DType::i64,
           "{}: input {} on {} and index {} on {} must share a CUDA device (index i64)", op,
           x.str(), x.device().str(), index.str(), index.device().str());
  const auto scope = device_scope(x);
  Tensor out = Tensor::empty(oshape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  Tensor xc = contig(x), ic = index.contiguous();
  ec::index_gather(geometry(x.shape(), oshape, dim, per_coord, op), xc.raw_data(), elem(x.dtype()),
                   ptr<const int64_t>(ic), out.raw_data(), nullptr);
  return out;
}

Tensor index_scatter_add(const Tensor& src, int64_t dim, const Tensor& index, bool per_coord,
                         const Shape& xshape) {
  const char* op = per_coord ? "index_select_backward" : "gather_backward";
  check_device_float(src, op);
  const auto scope = device_scope(src);
  Tensor out = Tensor::zeros(xshape, src.dtype(), src.device());
  if (src.numel() == 0) return out;
  Tensor sc = contig(src), ic = index.contiguous();
  ec::index_scatter_add(geometry(xshape, src.shape(), dim, per_coord, op), sc.raw_data(),
                        elem(src.dtype()), ptr<const int64_t>(ic), out.raw_data(), nullptr);
  return out;
}

// ------------------------------------------------------------------ metrics
void count_correct(const Tensor& logits, const Tensor& labels, const Tensor& counter) {
  check_device_float(logits, "count_correct");
  GL_CHECK(logits.dim() == 2 && labels.dim() == 1 && labels.dtype() == DType::i64 &&
               labels.shape()[0] == logits.shape()[0] && labels.device() == logits.device() &&
               counter.device() == logits.device() && counter.dtype() == DType::i64,
           "count_correct: logits {} on {}, labels {} on {}, counter {} on {}", logits.str(),
           logits.device().str(), labels.str(), labels.device().str(), counter.str(),
           counter.device().str());
  const auto scope = device_scope(logits);
  Tensor xl = contig(logits), lc = labels.contiguous();
  Tensor idx;
  max_rows(xl, xl.shape()[0], xl.shape()[1], nullptr, idx);
  ec::count_equal(ptr<const int64_t>(idx), ptr<const int64_t>(lc), idx.numel(),
                  ptr<int64_t>(counter), nullptr);
}

}  // namespace gl::cuda_ops
