// sgemm.cu: row-major SGEMM, C = act(alpha * op(A) op(B) + beta * C + bias), in four backends
// that share one argument check and one epilogue:
//   v1 naive : one thread per C element, a K loop of fused multiply-adds. Any shape.
//   v2 tiled : block tiles in shared memory (stored k-major: As[k][m], Bs[k][n], rows padded by
//              4 floats), 8x8 (large) or 4x4 (small) register tiles per thread laid out by
//              gemm_frag_row() so a warp's shared loads are conflict-free float4s, float4
//              global loads where 16-byte aligned and in range (guarded scalar loads with zero
//              fill elsewhere, so any M, N, K works), two shared buffers (the next tile's
//              global loads are in registers while the current tile is multiplied; one
//              barrier per K step). Large = 128x128x8, 256 threads; small = 32x32x16, 64
//              threads, with optional split-K (partials in a workspace, reduced in a fixed
//              order by a second kernel that applies the epilogue), for shapes like
//              128x784x128 and 128x784x10 that give a 128x128 grid only one or two blocks.
//              All four (trans_a, trans_b) combinations are compiled.
//   tf32     : WMMA m16n16k8 tf32 tensor cores, 64x64x16 tiles, 4 warps of 32x32, single
//              buffered, guarded scalar loads; opt-in (inputs rounded to 10-bit mantissas).
//   cublas   : cublasSgemm with the row-major trick (C^T = op(B)^T op(A)^T in column-major),
//              FP32 math mode, then the bias/activation epilogue kernel when one is asked for.
// speed: not yet measured on a GPU.
#include <mma.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/index_math.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/sgemm.h"
#include "kernels/functors.h"

namespace gl::kernels::cuda {
namespace {

struct GemmParams {
  int M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  const float* bias;
  Activation act;
  bool vec_a, vec_b, vec_c;  // 16-byte aligned base and leading dimension a multiple of 4
  int splits;
  float* workspace;  // [splits, M, N] when splits > 1
  int row_block0;    // block row of blockIdx.y == 0 (launches in chunks of grid rows)
};

__device__ __forceinline__ float activate(float v, Activation act) {
  switch (act) {
    case Activation::none:
      return v;
    case Activation::relu:
      return fn::Relu{}(v);
    case Activation::tanh:
      return fn::Tanh{}(v);
    case Activation::sigmoid:
      return fn::Sigmoid{}(v);
  }
  return v;
}

// act(alpha * acc + beta * c_old + bias), acc = sum_k op(A)[row,k] op(B)[k,col]; c_old is
// used only when beta != 0, bias only when given. Rounded operation by operation (no fused
// multiply-add for the compiler to choose per kernel): every kernel and path that ends in it
// (vector or scalar stores, lone or batched, split-K reduction) gives the same bits.
__device__ __forceinline__ float epilogue_of(float acc, float c_old, const float* bias, int64_t col,
                                             const GemmParams& p) {
  float v = __fmul_rn(p.alpha, acc);
  if (p.beta != 0.0f) v = __fadd_rn(v, __fmul_rn(p.beta, c_old));
  if (bias) v = __fadd_rn(v, bias[col]);
  return activate(v, p.act);
}

__device__ __forceinline__ float epilogue_value(float acc, const GemmParams& p, int64_t row,
                                                int64_t col) {
  return epilogue_of(acc, p.beta != 0.0f ? p.C[row * p.ldc + col] : 0.0f, p.bias, col, p);
}

// ------------------------------------------------------------------------------------------
// v1: naive
__global__ void sgemm_naive_kernel(bool ta, bool tb, GemmParams p) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= p.N) return;
  // 64-bit: the stride may step past 2^31 - 1 from the last rows of a large M.
  for (int64_t row = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; row < p.M;
       row += int64_t(gridDim.y) * blockDim.y) {
    float acc = 0.0f;
    for (int k = 0; k < p.K; ++k) {
      const float a = ta ? p.A[int64_t(k) * p.lda + row] : p.A[int64_t(row) * p.lda + k];
      const float b = tb ? p.B[int64_t(col) * p.ldb + k] : p.B[int64_t(k) * p.ldb + col];
      acc = fmaf(a, b, acc);
    }
    p.C[int64_t(row) * p.ldc + col] = epilogue_value(acc, p, row, col);
  }
}

// ------------------------------------------------------------------------------------------
// v2: tiled

// Four consecutive floats p[idx .. idx+3] of one row, zero beyond `limit` or when the row is
// out of range; one 16-byte load when allowed.
__device__ __forceinline__ float4 load4(const float* row_ptr, int idx, int limit, bool row_ok,
                                        bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (!row_ok) return v;
  if (vec && idx + 3 < limit) return __ldg(reinterpret_cast<const float4*>(row_ptr + idx));
  if (idx + 0 < limit) v.x = __ldg(row_ptr + idx + 0);
  if (idx + 1 < limit) v.y = __ldg(row_ptr + idx + 1);
  if (idx + 2 < limit) v.z = __ldg(row_ptr + idx + 2);
  if (idx + 3 < limit) v.w = __ldg(row_ptr + idx + 3);
  return v;
}

__device__ __forceinline__ float f4_get(const float4& v, int j) {
  return j == 0 ? v.x : (j == 1 ? v.y : (j == 2 ? v.z : v.w));
}

// One block's tile of C (block (blockIdx.x, blockIdx.y)), K split `split` of p.splits.
template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__device__ __forceinline__ void sgemm_tiled_block(const GemmParams& p, int split) {
  constexpr int kThreadsN = BN / TN;
  constexpr int kThreads = (BM / TM) * kThreadsN;
  constexpr int kLoadsA = BM * BK / 4 / kThreads;  // float4 loads per thread per tile
  constexpr int kLoadsB = BN * BK / 4 / kThreads;
  constexpr int kPadM = BM + 4;  // keeps float4 alignment and spreads transposed stores
  constexpr int kPadN = BN + 4;
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "tiles are built from float4s");
  static_assert((BM * BK / 4) % kThreads == 0 && (BN * BK / 4) % kThreads == 0,
                "every thread loads the same number of float4s");
  static_assert(kLoadsA >= 1 && kLoadsB >= 1, "tile too small for the thread count");

  __shared__ __align__(16) float As[2][BK][kPadM];
  __shared__ __align__(16) float Bs[2][BK][kPadN];

  const int tid = threadIdx.x;
  const int tx = tid % kThreadsN;
  const int ty = tid / kThreadsN;
  const int m0 = (p.row_block0 + int(blockIdx.y)) * BM;
  const int n0 = blockIdx.x * BN;

  KRange kr{0, p.K};
  if (p.splits > 1) kr = splitk_range(p.K, p.splits, BK, split);
  const int kbeg = int(kr.begin);
  const int kend = int(kr.end);
  const int ntiles = (kend - kbeg + BK - 1) / BK;

  float4 ra[kLoadsA];
  float4 rb[kLoadsB];

  auto load_tile = [&](int k0) {
#pragma unroll
    for (int l = 0; l < kLoadsA; ++l) {
      const int f = tid + l * kThreads;
      if constexpr (!TA) {  // A row-major M x K: contiguous along k
        const TileCoord t = gemm_load_coord(f, BK);
        const int m = m0 + t.row;
        ra[l] = load4(p.A + int64_t(m < p.M ? m : 0) * p.lda, k0 + t.col, kend, m < p.M, p.vec_a);
      } else {  // A stored K x M: contiguous along m
        const TileCoord t = gemm_load_coord(f, BM);
        const int k = k0 + t.row;
        ra[l] = load4(p.A + int64_t(k < kend ? k : 0) * p.lda, m0 + t.col, p.M, k < kend, p.vec_a);
      }
    }
#pragma unroll
    for (int l = 0; l < kLoadsB; ++l) {
      const int f = tid + l * kThreads;
      if constexpr (!TB) {  // B row-major K x N: contiguous along n
        const TileCoord t = gemm_load_coord(f, BN);
        const int k = k0 + t.row;
        rb[l] = load4(p.B + int64_t(k < kend ? k : 0) * p.ldb, n0 + t.col, p.N, k < kend, p.vec_b);
      } else {  // B stored N x K: contiguous along k
        const TileCoord t = gemm_load_coord(f, BK);
        const int n = n0 + t.row;
        rb[l] = load4(p.B + int64_t(n < p.N ? n : 0) * p.ldb, k0 + t.col, kend, n < p.N, p.vec_b);
      }
    }
  };

  auto store_tile = [&](int buf) {
#pragma unroll
    for (int l = 0; l < kLoadsA; ++l) {
      const int f = tid + l * kThreads;
      if constexpr (!TA) {
        const TileCoord t = gemm_load_coord(f, BK);  // row = m, col = k
#pragma unroll
        for (int j = 0; j < 4; ++j) As[buf][t.col + j][t.row] = f4_get(ra[l], j);
      } else {
        const TileCoord t = gemm_load_coord(f, BM);  // row = k, col = m
        *reinterpret_cast<float4*>(&As[buf][t.row][t.col]) = ra[l];
      }
    }
#pragma unroll
    for (int l = 0; l < kLoadsB; ++l) {
      const int f = tid + l * kThreads;
      if constexpr (!TB) {
        const TileCoord t = gemm_load_coord(f, BN);  // row = k, col = n
        *reinterpret_cast<float4*>(&Bs[buf][t.row][t.col]) = rb[l];
      } else {
        const TileCoord t = gemm_load_coord(f, BK);  // row = n, col = k
#pragma unroll
        for (int j = 0; j < 4; ++j) Bs[buf][t.col + j][t.row] = f4_get(rb[l], j);
      }
    }
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  if (ntiles > 0) {
    load_tile(kbeg);
    store_tile(0);
    __syncthreads();
  }
  for (int t = 0; t < ntiles; ++t) {
    const int cur = t & 1;
    const bool has_next = t + 1 < ntiles;
    if (has_next) load_tile(kbeg + (t + 1) * BK);
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 v =
            *reinterpret_cast<const float4*>(&As[cur][k][gemm_frag_row(ty, g * 4, BM, TM)]);
        a[g * 4 + 0] = v.x;
        a[g * 4 + 1] = v.y;
        a[g * 4 + 2] = v.z;
        a[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 v =
            *reinterpret_cast<const float4*>(&Bs[cur][k][gemm_frag_row(tx, g * 4, BN, TN)]);
        b[g * 4 + 0] = v.x;
        b[g * 4 + 1] = v.y;
        b[g * 4 + 2] = v.z;
        b[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // Writing the other buffer is safe: the barrier that ended the previous step guarantees
    // nobody still reads it; the barrier below publishes it before the next step reads it.
    if (has_next) store_tile(cur ^ 1);
    __syncthreads();
  }

  // Epilogue.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = m0 + gemm_frag_row(ty, i, BM, TM);
    if (row >= p.M) continue;
#pragma unroll
    for (int g = 0; g < TN / 4; ++g) {
      const int col0 = n0 + gemm_frag_row(tx, g * 4, BN, TN);
      if (p.splits > 1) {
        float* w = p.workspace + (int64_t(split) * p.M + row) * p.N;
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (col0 + j < p.N) w[col0 + j] = acc[i][g * 4 + j];
        continue;
      }
      float* crow = p.C + int64_t(row) * p.ldc;
      if (p.vec_c && col0 + 3 < p.N) {
        float4 old = make_float4(0.f, 0.f, 0.f, 0.f);
        if (p.beta != 0.0f) old = *reinterpret_cast<const float4*>(crow + col0);
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
          v[j] = epilogue_of(acc[i][g * 4 + j], f4_get(old, j), p.bias, col0 + j, p);
        *reinterpret_cast<float4*>(crow + col0) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (col0 + j < p.N) crow[col0 + j] = epilogue_value(acc[i][g * 4 + j], p, row, col0 + j);
      }
    }
  }
}

template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN)) sgemm_tiled_kernel(GemmParams p) {
  sgemm_tiled_block<BM, BN, BK, TM, TN, TA, TB>(p, int(blockIdx.z));
}

// A pointer-array batch of GEMMs of one shape and layout, passed by value (kernel parameters:
// no table to copy to the device first). Entry e of a launch computes C[e] = op(A[e]) op(B[e])
// exactly as a lone call with those pointers does: the same block code, plan and split-K.
constexpr int kGemmBatchMax = 32;
struct GemmBatch {
  const float* A[kGemmBatchMax];
  const float* B[kGemmBatchMax];
  float* C[kGemmBatchMax];
  const float* bias[kGemmBatchMax];
};

// p with entry e's pointers; its workspace slice [splits, M, N] follows entry e - 1's.
__device__ __forceinline__ GemmParams batch_entry(const GemmParams& p, const GemmBatch& batch,
                                                  int e) {
  GemmParams q = p;
  q.A = batch.A[e];
  q.B = batch.B[e];
  q.C = batch.C[e];
  q.bias = batch.bias[e];
  if (p.splits > 1) q.workspace = p.workspace + int64_t(e) * p.splits * p.M * p.N;
  return q;
}

// blockIdx.z = entry * splits + split.
template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    sgemm_tiled_batched_kernel(GemmParams p, GemmBatch batch) {
  const int z = int(blockIdx.z);
  sgemm_tiled_block<BM, BN, BK, TM, TN, TA, TB>(batch_entry(p, batch, z / p.splits), z % p.splits);
}

// Split-K second pass: C = epilogue(sum over splits of the workspace), splits in order.
__device__ __forceinline__ void splitk_reduce(const GemmParams& p) {
  const int64_t total = int64_t(p.M) * p.N;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int z = 0; z < p.splits; ++z) s += p.workspace[z * total + e];
    const int64_t row = e / p.N;
    const int64_t col = e % p.N;
    p.C[row * p.ldc + col] = epilogue_value(s, p, row, col);
  }
}

__global__ void splitk_reduce_kernel(GemmParams p) {
  splitk_reduce(p);
}

// blockIdx.y = entry.
__global__ void splitk_reduce_batched_kernel(GemmParams p, GemmBatch batch) {
  splitk_reduce(batch_entry(p, batch, int(blockIdx.y)));
}

// Bias + activation over C after cuBLAS (alpha and beta already applied there).
__global__ void bias_act_kernel(int M, int N, float* C, int64_t ldc, const float* bias,
                                Activation act) {
  const int64_t total = int64_t(M) * N;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = e / N;
    const int64_t col = e % N;
    float v = C[row * ldc + col];
    if (bias) v += bias[col];
    C[row * ldc + col] = activate(v, act);
  }
}

// ------------------------------------------------------------------------------------------
// tf32 tensor cores (WMMA)
namespace wmma = nvcuda::wmma;
constexpr int kWBM = 64, kWBN = 64, kWBK = 16, kWThreads = 128;

__global__ void __launch_bounds__(kWThreads) sgemm_tf32_kernel(bool ta, bool tb, GemmParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // tf32 WMMA needs sm_80+; the host refuses to launch below that
#else
  // Row pitches are multiples of 4 floats (WMMA ldm rule) and every fragment pointer is a
  // multiple of 32 bytes from the 128-byte aligned bases.
  __shared__ __align__(128) float As[kWBM][kWBK + 4];
  __shared__ __align__(128) float Bs[kWBK][kWBN + 4];
  __shared__ __align__(128) float Cs[kWBM][kWBN + 4];

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int wm = warp / 2;  // 2 x 2 warps, each 32 x 32
  const int wn = warp % 2;
  const int m0 = (p.row_block0 + int(blockIdx.y)) * kWBM;
  const int n0 = blockIdx.x * kWBN;

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < p.K; k0 += kWBK) {
    // Coalesced: consecutive threads walk the operand's contiguous dimension.
    for (int e = tid; e < kWBM * kWBK; e += kWThreads) {
      int m, k;
      if (!ta) {
        m = e / kWBK;
        k = e % kWBK;
      } else {
        k = e / kWBM;
        m = e % kWBM;
      }
      const int gm = m0 + m, gk = k0 + k;
      float v = 0.0f;
      if (gm < p.M && gk < p.K)
        v = ta ? p.A[int64_t(gk) * p.lda + gm] : p.A[int64_t(gm) * p.lda + gk];
      As[m][k] = v;
    }
    for (int e = tid; e < kWBK * kWBN; e += kWThreads) {
      int n, k;
      if (!tb) {
        k = e / kWBN;
        n = e % kWBN;
      } else {
        n = e / kWBK;
        k = e % kWBK;
      }
      const int gn = n0 + n, gk = k0 + k;
      float v = 0.0f;
      if (gn < p.N && gk < p.K)
        v = tb ? p.B[int64_t(gn) * p.ldb + gk] : p.B[int64_t(gk) * p.ldb + gn];
      Bs[k][n] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kWBK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], &As[wm * 32 + i * 16][kk], kWBK + 4);
#pragma unroll
        for (int t = 0; t < fa[i].num_elements; ++t) fa[i].x[t] = wmma::__float_to_tf32(fa[i].x[t]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(fb[j], &Bs[kk][wn * 32 + j * 16], kWBN + 4);
#pragma unroll
        for (int t = 0; t < fb[j].num_elements; ++t) fb[j].x[t] = wmma::__float_to_tf32(fb[j].x[t]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();  // before the next tile overwrites As/Bs
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kWBN + 4,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < kWBM * kWBN; e += kWThreads) {
    const int r = e / kWBN, c = e % kWBN;
    const int row = m0 + r, col = n0 + c;
    if (row < p.M && col < p.N)
      p.C[int64_t(row) * p.ldc + col] = epilogue_value(Cs[r][c], p, row, col);
  }
#endif
}

// ------------------------------------------------------------------------------------------
// Host side

std::string shape_text(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                       int64_t ldc) {
  return "trans_a=" + std::to_string(ta) + " trans_b=" + std::to_string(tb) +
         " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
         " lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
         " ldc=" + std::to_string(ldc);
}

// Validates and fills the parameters; returns false when there is nothing to compute.
bool make_params(const char* name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc, Epilogue ep, GemmParams& p) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string(name) + ": " + why + " (" +
                                shape_text(ta, tb, M, N, K, lda, ldb, ldc) + ")");
  };
  constexpr int64_t kIntMax = 0x7fffffff;
  if (M < 0 || N < 0 || K < 0) fail("negative dimension");
  // The kernels index within a tile in 32-bit ints (a row, column or k plus up to 131): keep
  // every such index below 2^31.
  constexpr int64_t kMaxDim = kIntMax - 256;
  if (M > kMaxDim || N > kMaxDim || K > kMaxDim) fail("dimension exceeds 2^31 - 257");
  const int64_t min_lda = ta ? M : K;
  const int64_t min_ldb = tb ? K : N;
  if (lda < (min_lda > 1 ? min_lda : 1)) fail("lda too small");
  if (ldb < (min_ldb > 1 ? min_ldb : 1)) fail("ldb too small");
  if (ldc < (N > 1 ? N : 1)) fail("ldc too small");
  const int act = int(ep.act);
  if (act < 0 || act > int(Activation::sigmoid)) fail("unknown activation " + std::to_string(act));
  if (M == 0 || N == 0) return false;
  if (!C) fail("C is null");
  if (K > 0 && (!A || !B)) fail("A or B is null");
  auto aligned = [](const void* q, int64_t ld) {
    return (reinterpret_cast<uintptr_t>(q) & 15u) == 0 && ld % 4 == 0;
  };
  p = GemmParams{int(M),
                 int(N),
                 int(K),
                 alpha,
                 beta,
                 A,
                 lda,
                 B,
                 ldb,
                 C,
                 ldc,
                 static_cast<const float*>(ep.bias),
                 ep.act,
                 aligned(A, lda),
                 aligned(B, ldb),
                 aligned(C, ldc),
                 1,
                 nullptr,
                 0};
  return true;
}

int elementwise_grid(int64_t total) {
  int64_t g = (total + 255) / 256;
  if (g > 65535) g = 65535;
  return int(g < 1 ? 1 : g);
}

// Column blocks on grid.x (N < 2^31 needs fewer than 2^31 / BN), row blocks on grid.y in
// launches of at most 65535 (for_each_grid_chunk), so any M that make_params accepts works.
template <class Launch>
void for_each_row_chunk(const GemmParams& p, int BM, Launch&& launch) {
  for_each_grid_chunk((int64_t(p.M) + BM - 1) / BM, [&](int64_t first, int64_t count) {
    GemmParams q = p;
    q.row_block0 = int(first);
    launch(q, unsigned(count));
    GL_CUDA_CHECK_LAUNCH();
  });
}

// One launch of the tiled kernel: a lone GEMM (batch null) or `entries` of a batch.
template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
void launch_tiled_as(const dim3& grid, const GemmParams& q, const GemmBatch* batch,
                     cudaStream_t s) {
  constexpr int kThreads = (BM / TM) * (BN / TN);
  if (batch)
    sgemm_tiled_batched_kernel<BM, BN, BK, TM, TN, TA, TB><<<grid, kThreads, 0, s>>>(q, *batch);
  else
    sgemm_tiled_kernel<BM, BN, BK, TM, TN, TA, TB><<<grid, kThreads, 0, s>>>(q);
}

template <int BM, int BN, int BK, int TM, int TN>
void launch_tiled(bool ta, bool tb, const GemmParams& p, cudaStream_t s,
                  const GemmBatch* batch = nullptr, int entries = 1) {
  for_each_row_chunk(p, BM, [&](const GemmParams& q, unsigned rows) {
    const dim3 grid(unsigned((q.N + BN - 1) / BN), rows, unsigned(q.splits * entries));
    if (!ta && !tb) launch_tiled_as<BM, BN, BK, TM, TN, false, false>(grid, q, batch, s);
    if (!ta && tb) launch_tiled_as<BM, BN, BK, TM, TN, false, true>(grid, q, batch, s);
    if (ta && !tb) launch_tiled_as<BM, BN, BK, TM, TN, true, false>(grid, q, batch, s);
    if (ta && tb) launch_tiled_as<BM, BN, BK, TM, TN, true, true>(grid, q, batch, s);
  });
}

// The tiled backend's plan and launches for p (validated), alone or for `entries` entries of a
// batch: every entry gets the tiling and K splits a lone call of its shape gets, so the same
// bits.
void run_tiled(bool ta, bool tb, GemmParams p, cudaStream_t stream,
               const GemmBatch* batch = nullptr, int entries = 1) {
  const GemmPlan plan = plan_sgemm(p.M, p.N, p.K, sm_count());
  if (plan.tiling == GemmTiling::large) {
    launch_tiled<128, 128, 8, 8, 8>(ta, tb, p, stream, batch, entries);
    return;
  }
  if (plan.splits <= 1) {
    launch_tiled<32, 32, 16, 4, 4>(ta, tb, p, stream, batch, entries);
    return;
  }
  p.splits = plan.splits;
  const int64_t mn = int64_t(p.M) * p.N;
  // Freed when this returns or throws; stream-ordered reuse only.
  const DeviceBuffer<float> workspace(size_t(entries) * size_t(plan.splits) * size_t(mn), stream);
  p.workspace = workspace.get();
  launch_tiled<32, 32, 16, 4, 4>(ta, tb, p, stream, batch, entries);
  if (batch)
    splitk_reduce_batched_kernel<<<dim3(unsigned(elementwise_grid(mn)), unsigned(entries)), 256, 0,
                                   stream>>>(p, *batch);
  else
    splitk_reduce_kernel<<<elementwise_grid(mn), 256, 0, stream>>>(p);
  GL_CUDA_CHECK_LAUNCH();
}

}  // namespace

const char* gemm_algo_name(GemmAlgo algo) {
  switch (algo) {
    case GemmAlgo::naive:
      return "naive";
    case GemmAlgo::tiled:
      return "tiled";
    case GemmAlgo::tf32:
      return "tf32";
    case GemmAlgo::cublas:
      return "cublas";
  }
  return "?";
}

void sgemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                 Epilogue ep, cudaStream_t stream) {
  GemmParams p;
  if (!make_params("cuda::sgemm_naive", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep,
                   p))
    return;
  const dim3 block(32, 8);
  int64_t gy = (M + 7) / 8;
  if (gy > 65535) gy = 65535;  // the kernel strides over rows
  const dim3 grid(unsigned((N + 31) / 32), unsigned(gy));
  sgemm_naive_kernel<<<grid, block, 0, resolve_stream(stream)>>>(ta, tb, p);
  GL_CUDA_CHECK_LAUNCH();
}

void sgemm_tiled(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                 Epilogue ep, cudaStream_t stream) {
  GemmParams p;
  if (!make_params("cuda::sgemm_tiled", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep,
                   p))
    return;
  run_tiled(ta, tb, p, resolve_stream(stream));
}

void sgemm_tiled_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                         float beta, float* const* C, int64_t ldc, const float* const* bias,
                         Activation act, int64_t count, cudaStream_t stream) {
  constexpr const char* kName = "cuda::sgemm_tiled_batched";
  if (count < 0)
    throw std::invalid_argument(std::string(kName) + ": count=" + std::to_string(count) +
                                " is negative");
  if (count > 0 && (!A || !B || !C))
    throw std::invalid_argument(std::string(kName) + ": the A, B and C pointer arrays are needed");
  // Every entry is checked before anything runs (no entry is written when one is bad).
  std::vector<GemmParams> params(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    Epilogue ep;
    ep.bias = bias ? bias[i] : nullptr;
    ep.act = act;
    bool work = false;
    try {
      work = make_params(kName, ta, tb, M, N, K, alpha, A[i], lda, B[i], ldb, beta, C[i], ldc, ep,
                         params[size_t(i)]);
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(std::string(error.what()) + " in entry " + std::to_string(i) +
                                  " of " + std::to_string(count));
    }
    if (!work) return;  // M == 0 or N == 0: nothing to compute for any entry
  }
  stream = resolve_stream(stream);
  for (int64_t first = 0; first < count; first += kGemmBatchMax) {
    const int entries = int(std::min<int64_t>(count - first, kGemmBatchMax));
    GemmBatch batch{};
    GemmParams p = params[size_t(first)];
    for (int e = 0; e < entries; ++e) {
      const int64_t i = first + e;
      const GemmParams& q = params[size_t(i)];
      // Vector loads and stores where every entry allows them (the values and the epilogue's
      // arithmetic are the same either way; only the memory accesses differ).
      p.vec_a = p.vec_a && q.vec_a;
      p.vec_b = p.vec_b && q.vec_b;
      p.vec_c = p.vec_c && q.vec_c;
      batch.A[e] = A[i];
      batch.B[e] = B[i];
      batch.C[e] = C[i];
      batch.bias[e] = q.bias;
    }
    run_tiled(ta, tb, p, stream, &batch, entries);
  }
}

void sgemm_tf32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                Epilogue ep, cudaStream_t stream) {
  GemmParams p;
  if (!make_params("cuda::sgemm_tf32", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, p))
    return;
  int major = 0;
  GL_CUDA_CHECK(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, current_device()));
  if (major < 8)
    throw std::invalid_argument(
        "cuda::sgemm_tf32: needs compute capability 8.0 or newer, device has " +
        std::to_string(major) + ".x");
  stream = resolve_stream(stream);
  for_each_row_chunk(p, kWBM, [&](const GemmParams& q, unsigned rows) {
    const dim3 grid(unsigned((q.N + kWBN - 1) / kWBN), rows);
    sgemm_tf32_kernel<<<grid, kWThreads, 0, stream>>>(ta, tb, q);
  });
}

void sgemm_cublas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                  Epilogue ep, cudaStream_t stream) {
  GemmParams p;
  if (!make_params("cuda::sgemm_cublas", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep,
                   p))
    return;
  // cuBLAS takes 32-bit leading dimensions (make_params bounds M, N, K only).
  constexpr int64_t kIntMax = 0x7fffffff;
  for (const auto& [name, ld] :
       {std::pair{"lda", lda}, std::pair{"ldb", ldb}, std::pair{"ldc", ldc}})
    if (ld > kIntMax)
      throw std::invalid_argument("cuda::sgemm_cublas: " + std::string(name) + "=" +
                                  std::to_string(ld) +
                                  " exceeds cuBLAS's 32-bit leading dimension (2^31 - 1); the "
                                  "native backend takes it (" +
                                  shape_text(ta, tb, M, N, K, lda, ldb, ldc) + ")");
  // K = 0 is C = beta C (+ bias, activation) by the BLAS rule; the tiled kernel does exactly
  // that, without relying on how cuBLAS treats an empty inner dimension.
  if (K == 0) return sgemm_tiled(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
  stream = resolve_stream(stream);
  cublasHandle_t h = cublas_handle(stream);
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands and
  // the M/N roles; the transpose flags carry over unchanged.
  GL_CUBLAS_CHECK(cublasSgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                              int(N), int(M), int(K), &alpha, B, int(ldb), A, int(lda), &beta, C,
                              int(ldc)));
  if (ep.bias || ep.act != Activation::none) {
    bias_act_kernel<<<elementwise_grid(M * N), 256, 0, stream>>>(
        int(M), int(N), C, ldc, static_cast<const float*>(ep.bias), ep.act);
    GL_CUDA_CHECK_LAUNCH();
  }
}

void sgemm_with(GemmAlgo algo, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc, Epilogue ep, cudaStream_t stream) {
  switch (algo) {
    case GemmAlgo::naive:
      return sgemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
    case GemmAlgo::tiled:
      return sgemm_tiled(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
    case GemmAlgo::tf32:
      return sgemm_tf32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
    case GemmAlgo::cublas:
      return sgemm_cublas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
  }
  throw std::invalid_argument("cuda::sgemm_with: unknown algorithm " + std::to_string(int(algo)));
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Epilogue ep,
           cudaStream_t stream) {
  sgemm_tiled(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, stream);
}

}  // namespace gl::kernels::cuda
