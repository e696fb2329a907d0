// gemm_internal.h: the contract between the GEMM driver (gemm.cpp) and the per-ISA
// micro-kernels (gemm_avx2.cpp, gemm_avx512.cpp, gemm_scalar.cpp). A micro-kernel multiplies
// one packed MR x kc panel of A by one packed kc x NR panel of B and folds the result into an
// m x n (m <= MR, n <= NR) tile of C through the tile epilogue, so C is touched once per
// k-block while it is in registers or L1. The packing routines are part of each ISA's set so
// that the transposing packs can use the ISA's shuffles.
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/functors.h"
#include "kernels/kernels.h"

namespace gl::kernels::cpu::detail {

// What a micro-kernel does with its accumulator `acc` for one C element:
//   v = alpha * acc + (beta == 0 ? 0 : beta * C)   (beta == 0 never reads C: NaN-safe)
//   if last: v = act(v + bias[col])
// The driver passes the caller's beta for the first k-block and 1 for the following ones;
// only the last k-block applies the bias and the activation.
// An in-place activation of an m x n block whose rows are ldc apart (vecmath's RowsMapF32).
template <class T>
using ActRows = void (*)(T* c, int64_t ldc, int64_t m, int64_t n);

template <class T>
struct TileEpilogue {
  T alpha;
  T beta;
  const T* bias;  // already offset to the tile's first column; null = no bias
  Activation act;
  bool last;
  // Memory a later call reads, brought into L2 during the k loop: one cache line every
  // 2^side_shift steps from `side` on (null: none). Not part of the epilogue's arithmetic.
  const char* side = nullptr;
  int side_shift = 0;
  // f32 tanh and sigmoid: the vectorized map (kernels/cpu/vecmath.h) applied to each finished
  // tile in place, so the output is bit for bit the map's over an epilogue-free product. Null:
  // the activation is evaluated per element (the functors).
  ActRows<T> act_rows = nullptr;
};

template <class T>
inline T apply_activation(T v, Activation act) {
  switch (act) {
    case Activation::none:
      return v;
    case Activation::relu:
      return v <= T(0) ? T(0) : v;  // fn::Relu: NaN propagates
    case Activation::tanh:
      return fn::m_tanh(v);
    case Activation::sigmoid:
      return fn::sigmoid_of(v);
  }
  return v;
}

// Epilogue for an accumulator tile already stored to memory (edge tiles, scalar kernel).
template <class T>
inline void tile_epilogue_scalar(const T* acc, int64_t ld_acc, T* C, int64_t ldc, int64_t m,
                                 int64_t n, const TileEpilogue<T>& e) {
  for (int64_t i = 0; i < m; ++i) {
    T* c = C + i * ldc;
    const T* a = acc + i * ld_acc;
    for (int64_t j = 0; j < n; ++j) {
      T v = e.alpha * a[j];
      if (e.beta != T(0)) v += e.beta * c[j];
      if (e.last) {
        if (e.bias) v += e.bias[j];
        if (e.act_rows == nullptr) v = apply_activation(v, e.act);
      }
      c[j] = v;
    }
  }
  if (e.last && e.act_rows != nullptr) e.act_rows(C, ldc, m, n);
}

// The transcendental activations run as a pass over a tile that was just stored (still in
// L1): the vectorized map where there is one, else per element; the cheap parts (alpha, beta,
// bias, relu) are vectorized in the kernels.
template <class T>
inline void tile_transcendental(T* C, int64_t ldc, int64_t m, int64_t n, const TileEpilogue<T>& e) {
  if (e.act_rows != nullptr) {
    e.act_rows(C, ldc, m, n);
    return;
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = apply_activation(C[i * ldc + j], e.act);
}

template <class T>
using MicroKernel = void (*)(int64_t kc, const T* Ap, const T* Bp, T* C, int64_t ldc, int64_t m,
                             int64_t n, const TileEpilogue<T>& e);
// The same product with A read in place: element (i, k) of the MR x kc panel is
// A[i * rs_a + k * cs_a]. All MR rows are read, so only full panels may be passed. Row k of
// the B panel starts at B + k * rs_b: rs_b = NR for a packed panel, or B's row stride for a
// full NR-column panel of a row-major B read in place (all NR columns are read).
template <class T>
using MicroKernelDirectA = void (*)(int64_t kc, const T* A, int64_t rs_a, int64_t cs_a, const T* B,
                                    int64_t rs_b, T* C, int64_t ldc, int64_t m, int64_t n,
                                    const TileEpilogue<T>& e);

// Packs rows [0, mc) x depth [0, kc) of op(A) (origin already applied) into MR-row panels:
// panel p holds op(A)[p*MR + r][k] at dst[p*MR*kc + k*MR + r], zero-padded past mc.
template <class T>
using PackA = void (*)(bool ta, const T* A, int64_t lda, int64_t mc, int64_t kc, T* dst);
// Packs NR-column panels [p_begin, p_end) of op(B) depth [0, kc) x columns [0, nc):
// panel p holds op(B)[k][p*NR + c] at dst[p*NR*kc + k*NR + c], zero-padded past nc.
// dst is 64-byte aligned.
template <class T>
using PackB = void (*)(bool tb, const T* B, int64_t ldb, int64_t kc, int64_t nc, int64_t p_begin,
                       int64_t p_end, T* dst);

// One ISA's kernel for one element type plus its cache blocking and packing routines.
// mc: rows of A packed per block (L2), kc: depth per block (L1 holds a kc x NR B panel),
// nc: columns of B packed per block (L3).
template <class T>
struct KernelSet {
  const char* isa;
  int mr;
  int nr;
  int64_t mc;
  int64_t kc;
  int64_t nc;
  MicroKernel<T> kernel;
  MicroKernelDirectA<T> kernel_direct_a;
  PackA<T> pack_a;
  PackB<T> pack_b;
  // Optional in-place kernels for the last rows of A below a whole MR panel (M = 128 with
  // MR = 14 leaves 2): entry r takes r rows, every r from 1 to MR - 1 set (one call per edge,
  // reading the B panel once, with r rows of accumulators in flight). Without them those rows
  // are packed into an MR panel and pay for MR rows of FMAs.
  std::array<MicroKernelDirectA<T>, 16> edge_direct_a{};
};

const KernelSet<float>& scalar_sgemm_kernel();
const KernelSet<double>& scalar_dgemm_kernel();
const KernelSet<float>& avx2_sgemm_kernel();
const KernelSet<double>& avx2_dgemm_kernel();
const KernelSet<float>& avx512_sgemm_kernel();
const KernelSet<double>& avx512_dgemm_kernel();

}  // namespace gl::kernels::cpu::detail
