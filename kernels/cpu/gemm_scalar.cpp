// gemm_scalar.cpp: the portable micro-kernel of the packed GEMM (4x8 tile, plain C++ that the
// compiler may vectorize with baseline SSE2). Used on CPUs without AVX2+FMA and, through
// set_isa("scalar"), by the tests to cover the driver independently of the SIMD kernels.
#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu/gemm_pack.h"

namespace gl::kernels::cpu::detail {
namespace {

// A element (i, k) at A[i * rs_a + k * cs_a]; packed A is rs_a = 1, cs_a = MR.
template <class T, int MR, int NR>
void scalar_ukernel_direct_a(int64_t kc, const T* __restrict A, int64_t rs_a, int64_t cs_a,
                             const T* __restrict Bp, int64_t rs_b, T* C, int64_t ldc, int64_t m,
                             int64_t n, const TileEpilogue<T>& e) {
  T acc[MR * NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * rs_a];
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += a * Bp[j];
    }
    A += cs_a;
    Bp += rs_b;
  }
  tile_epilogue_scalar(acc, NR, C, ldc, m, n, e);
}

template <class T, int MR, int NR>
void scalar_ukernel(int64_t kc, const T* __restrict Ap, const T* __restrict Bp, T* C, int64_t ldc,
                    int64_t m, int64_t n, const TileEpilogue<T>& e) {
  scalar_ukernel_direct_a<T, MR, NR>(kc, Ap, 1, MR, Bp, NR, C, ldc, m, n, e);
}

}  // namespace

const KernelSet<float>& scalar_sgemm_kernel() {
  static const KernelSet<float> k{"scalar",
                                  4,
                                  8,
                                  128,
                                  256,
                                  4096,
                                  &scalar_ukernel<float, 4, 8>,
                                  &scalar_ukernel_direct_a<float, 4, 8>,
                                  &pack_a_generic<float, 4>,
                                  &pack_b_generic<float, 8>};
  return k;
}
const KernelSet<double>& scalar_dgemm_kernel() {
  static const KernelSet<double> k{"scalar",
                                   4,
                                   8,
                                   64,
                                   256,
                                   4096,
                                   &scalar_ukernel<double, 4, 8>,
                                   &scalar_ukernel_direct_a<double, 4, 8>,
                                   &pack_a_generic<double, 4>,
                                   &pack_b_generic<double, 8>};
  return k;
}

}  // namespace gl::kernels::cpu::detail
