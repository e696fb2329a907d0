// gemm.cpp: the CPU GEMM driver.
//
// Computes C[M,N] = act(alpha * op(A) op(B) + beta * C + bias[col]) for f32 and f64, all
// matrices row-major with row strides lda/ldb/ldc; op(A) = A (M x K) or A^T (A stored K x M),
// op(B) = B (K x N) or B^T (B stored N x K). beta == 0 never reads C.
//
// BLIS structure: for each nc-wide column block of B and kc-deep slice of K, B is packed once
// per call into NR-column panels (shared by all threads), each thread packs its mc-row blocks
// of A into MR-row panels, and the register-blocked micro-kernel (gemm_avx512.cpp,
// gemm_avx2.cpp, gemm_scalar.cpp; chosen at run time) walks NR panels (outer) x MR panels
// (inner). Packing absorbs the transpose flags and zero-pads the edges, so NN, NT, TN and TT
// all run the same micro-kernel. The epilogue (beta, bias, activation) is applied by the
// micro-kernel while the C tile is in registers, never as a second pass over C.
// Threads (OpenMP): the threads pack B together (one barrier), then take row chunks of C
// dynamically (or, for M of a few panels, split the N panels with no shared state);
// problems below ~2 MFLOP run on the calling thread because a fork costs more than they do.
// sgemm_batched (same-shape problems, one per model of a fused training step) hands whole
// problems, or row chunks of whole MR panels, to the threads, each computed by the serial path:
// every element keeps the k-order, micro-kernel and epilogue of a lone call.
// A product of zeros (one operand all +-0, the other finite: the hidden layers of a zero-
// initialized net under relu, tanh or GELU, whose weights and activations stay exactly zero)
// runs the micro-kernels with no k steps, the epilogue alone: the same bits, no arithmetic.
//
// Measured on AMD EPYC Zen 3 (2 cores, AVX2 kernel), side by side with OpenBLAS 0.3.21
// cblas_sgemm in one run, medians of 7 interleaved repetitions, on a heavily shared machine
// (bench/results/gemm_cpu.md), ours / OpenBLAS GFLOP/s with OMP_WAIT_POLICY=passive:
//   128x784x128 NN: 0.98 (1 thread), 0.92 (2)   1024^3: 0.62 (1), 0.85 (2)
//   784x128x128 TN: 0.87, 0.92   128x784x128 NT: 0.98, 1.10   128x10x128 NN: 0.56, 0.51
// With libgomp's default (spinning) wait policy on the oversubscribed machine, 2-thread
// small shapes collapsed to 0.01-0.07 of OpenBLAS (see the results file).
//
// Training shapes (Linear with W [out, in], batch 128, width 128), measured changes. Timings:
// bench/results/gemm_minbatch.cpp (minimum per-call time over 150 batches of 5 calls, ours and
// OpenBLAS alternating: the load average was 15-23 on 2 cores, so medians were meaningless),
// 1 thread, ours / OpenBLAS before -> after; instructions: callgrind Ir per call.
// - B^T packed through 8x8 in-register transposes (gemm_pack_avx.inc) instead of a stride-NR
//   scatter, and full MR panels of A read in place when N <= 8 NR (use_direct_a):
//   fwd NT 128x128x128 0.96 -> 1.14 (58.5 -> 50.3 us; Ir 679,520 -> 603,690)
//   fwd NT 128x128x784 0.91 -> 1.02 (385 -> 336 us; Ir 3,991,133 -> 3,543,949)
//   fwd NT 128x10x128  0.61 -> 0.81 (14.5 -> 11.9 us; Ir 162,128 -> 105,844)
//   dX NN 128x128x128  0.92 -> 1.05 (68.8 -> 52.8 us; Ir 666,487 -> 628,799)
//   dW TN 128x128x128  0.96 -> 1.04 (59.3 -> 54.8 us; Ir 636,123 -> 627,014)
//   dW TN 128x784x128 (A packed, N > 8 NR): 1.01 -> 1.08, unchanged code path (noise).
//   Slightly slower: dX NN 128x128x10 1.12 -> 1.06, dW TN 10x128x128 0.79 -> 0.73.
// - With A read in place, full NR panels of a row-major B (NN and TN: the dX and dW GEMMs) are
//   read in place too (use_direct_b), so those calls pack nothing. Warm in cache (bench_gemm,
//   AMD EPYC family 26, AVX-512, 3 alternating runs): dX NN 128x128x128 21.0 -> 20.9 us, dW TN
//   128x128x128 21.8 -> 21.1 us; within a training step, where B comes from outside the cache,
//   a fused tanh depth-30 group of 8 ran 1% faster.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu/vecmath.h"
#include "kernels/kernels.h"

namespace gl::kernels::cpu {
namespace {

using detail::ActRows;
using detail::KernelSet;
using detail::PackA;
using detail::PackB;
using detail::TileEpilogue;

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f");
  }
  return false;
}

Isa best_isa() {
  if (cpu_has(Isa::avx512)) return Isa::avx512;
  if (cpu_has(Isa::avx2)) return Isa::avx2;
  return Isa::scalar;
}

std::atomic<int> g_isa{-1};  // -1: not chosen yet

Isa current_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(best_isa());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

const KernelSet<float>& kernels_for(Isa isa, float*) {
  switch (isa) {
    case Isa::avx512:
      return detail::avx512_sgemm_kernel();
    case Isa::avx2:
      return detail::avx2_sgemm_kernel();
    case Isa::scalar:
      break;
  }
  return detail::scalar_sgemm_kernel();
}
const KernelSet<double>& kernels_for(Isa isa, double*) {
  switch (isa) {
    case Isa::avx512:
      return detail::avx512_dgemm_kernel();
    case Isa::avx2:
      return detail::avx2_dgemm_kernel();
    case Isa::scalar:
      break;
  }
  return detail::scalar_dgemm_kernel();
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t round_up(int64_t a, int64_t b) {
  return ceil_div(a, b) * b;
}

// Per-thread scratch that only grows, so steady-state calls never allocate.
struct AlignedDelete {
  void operator()(unsigned char* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
struct Workspace {
  std::unique_ptr<unsigned char[], AlignedDelete> data;
  size_t bytes = 0;
  void* get(size_t need) {
    if (need > bytes) {
      data.reset();
      data.reset(static_cast<unsigned char*>(::operator new[](need, std::align_val_t(64))));
      bytes = need;
    }
    return data.get();
  }
};
thread_local Workspace t_workspace;

template <class T>
void check_args(const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A,
                int64_t lda, const T* B, int64_t ldb, const T* C, int64_t ldc) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string(op) + "(trans_a=" + (ta ? "1" : "0") +
                                ", trans_b=" + (tb ? "1" : "0") + ", M=" + std::to_string(M) +
                                ", N=" + std::to_string(N) + ", K=" + std::to_string(K) +
                                "): " + why);
  };
  if (M < 0 || N < 0 || K < 0) fail("negative dimension");
  const int64_t a_cols = ta ? M : K, b_cols = tb ? K : N;
  if (lda < a_cols) fail("lda=" + std::to_string(lda) + " < " + std::to_string(a_cols));
  if (ldb < b_cols) fail("ldb=" + std::to_string(ldb) + " < " + std::to_string(b_cols));
  if (ldc < N) fail("ldc=" + std::to_string(ldc) + " < " + std::to_string(N));
  if (M > 0 && N > 0 && C == nullptr) fail("C is null");
  if (M > 0 && N > 0 && K > 0 && (A == nullptr || B == nullptr)) fail("A or B is null");
}

// The in-place map the epilogue applies to each finished tile: f32 tanh and sigmoid take the
// vectorized activation (bit for bit the separate pass over the output); the rest, and f64,
// are evaluated per element.
ActRows<float> act_rows_for(Activation act, float*) {
  return act == Activation::tanh || act == Activation::sigmoid ? activation_rows_f32(act) : nullptr;
}
ActRows<double> act_rows_for(Activation, double*) {
  return nullptr;
}

// One GEMM call after validation: operands, epilogue and the kernel set in use.
template <class T>
struct Problem {
  bool ta, tb;
  int64_t M, N, K;
  T alpha;
  const T* A;
  int64_t lda;
  const T* B;
  int64_t ldb;
  T beta;
  T* C;
  int64_t ldc;
  const T* bias;
  Activation act;
  const KernelSet<T>* ks;
  PackA<T> pack_a;
  PackB<T> pack_b;
  int64_t kc_max;  // equal-sized k-blocks, so K slightly above kc leaves no sliver block
  bool direct_a;   // full MR panels of A are read in place, not packed (see use_direct_a)
  bool direct_b;   // full NR panels of a row-major B are read in place too (see use_direct_b)
  ActRows<T> act_rows = nullptr;  // f32 tanh / sigmoid: the vectorized map per tile
  // One operand is all zeros and the other all finite: every product is +-0, so every
  // accumulator stays +0 through its k loop and each tile is its epilogue alone. The kernels
  // then run with no k steps (same k-blocks, same epilogue), so C is bit for bit what the full
  // product gives, without its arithmetic (see zero_product).
  bool zero_product = false;
};

// Whether to skip packing A. Packing A costs a pass over the mc x kc block and is repaid by
// every NR panel of the nc block that reuses the packed panels, so it pays when N is wide; when
// N is a few panels (training GEMMs: N = 10..784 with M = K = 128) the pass is a large share of
// the call, and the micro-kernel reads A as fast in place (rows or columns of A are contiguous
// in k or in i, so each MR x 16 step still touches MR cache lines at most).
template <class T>
bool use_direct_a(int64_t N, const KernelSet<T>& ks) {
  return N <= 8 * int64_t(ks.nr);
}

// Whether to skip packing B as well, reading full NR-column panels of a row-major B (tb false)
// in place; the last partial panel is still packed. Only with A read in place by kernels that
// take every row (edge kernels present), since the packed-A kernel reads packed B.
template <class T>
bool use_direct_b(bool tb, bool direct_a, const KernelSet<T>& ks) {
  return !tb && direct_a && ks.edge_direct_a[1] != nullptr;
}
// The first NR panel of an nc-wide block that is packed: all of them, or with direct_b the
// partial one at the end.
template <class T>
int64_t first_packed_panel(const Problem<T>& p, int64_t nc) {
  return p.direct_b ? nc / p.ks->nr : 0;
}

template <class T>
const T* a_block(const Problem<T>& p, int64_t ic, int64_t pc) {
  return p.ta ? p.A + pc * p.lda + ic : p.A + ic * p.lda + pc;
}
template <class T>
const T* b_block(const Problem<T>& p, int64_t pc, int64_t jc) {
  return p.tb ? p.B + jc * p.ldb + pc : p.B + pc * p.ldb + jc;
}

// Where the micro-kernel reads A for one mc x kc block: full MR panels in place (rows
// [0, direct_rows), element (i, k) at direct[i * rs + k * cs]), the remaining rows packed.
template <class T>
struct ABlock {
  const T* direct;
  int64_t rs, cs, direct_rows;
  const T* packed;
};

// Packs what the micro-kernel cannot read in place: the whole block, or with direct_a only the
// last partial MR panel.
template <class T>
ABlock<T> prepare_a(const Problem<T>& p, int64_t ic, int64_t mc, int64_t pc, int64_t kc, T* Ap) {
  ABlock<T> a{nullptr, 0, 0, 0, Ap};
  if (p.direct_a) {
    a.direct = a_block(p, ic, pc);
    a.rs = p.ta ? 1 : p.lda;
    a.cs = p.ta ? p.lda : 1;
    a.direct_rows = mc / p.ks->mr * p.ks->mr;
    if (p.ks->edge_direct_a[1] != nullptr) a.direct_rows = mc;  // the edge kernels take the rest
  }
  if (a.direct_rows < mc && !p.zero_product)
    p.pack_a(p.ta, a_block(p, ic + a.direct_rows, pc), p.lda, mc - a.direct_rows, kc, Ap);
  return a;
}

// The last `rows` (< MR) rows of a tile column, A element (i, k) at A[i * rs + k * cs]: with
// the kernel set's edge kernel of that many rows, else one MR kernel on a packed partial panel
// (rs = 1, cs = MR).
template <class T>
void edge_rows(const Problem<T>& p, int64_t kc, const T* A, int64_t rs, int64_t cs, const T* bpanel,
               int64_t rs_b, T* C, int64_t rows, int64_t ncur, const TileEpilogue<T>& e) {
  if (p.ks->edge_direct_a[1] == nullptr) {
    p.ks->kernel(kc, A, bpanel, C, p.ldc, rows, ncur, e);
    return;
  }
  p.ks->edge_direct_a[std::size_t(rows)](kc, A, rs, cs, bpanel, rs_b, C, p.ldc, rows, ncur, e);
}

// Memory to be read after the current GEMM (the next entry's B in a batch, or what the caller
// named with prefetch_during_next_gemm), brought into L2 by the full micro-tiles, a cache line
// every 2^shift k steps of each (TileEpilogue::side), so the fetches overlap the arithmetic
// instead of stalling a burst of loads or prefetches. A tile may fetch a few lines past the end
// of a range (prefetches never fault); lines the call has no tiles left for are dropped.
struct SidePrefetch {
  static constexpr int kMaxRanges = 4;
  struct Range {
    const char* base = nullptr;
    int64_t lines = 0;
  };
  Range range[kMaxRanges];
  int nranges = 0, cur = 0;
  int64_t line = 0;  // the next line of range[cur]
  int shift = 0;     // the micro-kernel fetches a line every 2^shift k steps

  // rows of row_bytes, stride bytes apart: taken when contiguous (stride == row_bytes or one
  // row), else left out (a hint may be dropped).
  void add(const void* base, int64_t rows, int64_t row_bytes, int64_t stride) {
    if (nranges == kMaxRanges || base == nullptr || rows <= 0 || row_bytes <= 0) return;
    if (rows > 1 && stride != row_bytes) return;
    range[nranges++] =
        Range{static_cast<const char*>(base), ceil_div(rows * row_bytes, int64_t(64))};
  }
  // Spreads the lines over `tiles` micro-tiles of kc steps: as far apart as covers them all.
  void spread_over(int64_t tiles, int64_t kc) {
    int64_t lines = 0;
    for (int i = 0; i < nranges; ++i) lines += range[i].lines;
    const int64_t per_tile = ceil_div(lines, std::max<int64_t>(tiles, 1));
    shift = 0;
    while (shift < 4 && (kc >> (shift + 1)) >= per_tile) ++shift;
  }
  // Where the next micro-tile of kc steps fetches from (null when done), advancing past it.
  const char* take(int64_t kc) {
    while (cur < nranges && line >= range[cur].lines) {
      ++cur;
      line = 0;
    }
    if (cur >= nranges) return nullptr;
    const char* p = range[cur].base + line * 64;
    line += ceil_div(kc, int64_t(1) << shift);
    return p;
  }
};
thread_local SidePrefetch t_side;  // the current call's
thread_local SidePrefetch t_hint;  // the caller's, for the next call

// The k-block size for K: equal-sized blocks of at most kc, so K slightly above kc leaves no
// sliver block.
int64_t equal_kc(int64_t K, int64_t kc) {
  return ceil_div(K, ceil_div(K, kc));
}

// The micro-tiles of one call that fetch for t_side (full MR tiles, every k-block).
int64_t stepping_tiles(int64_t M, int64_t N, int64_t K, int64_t mr, int64_t nr, int64_t kc) {
  return M / mr * ceil_div(N, nr) * ceil_div(K, kc);
}

// Rows [ic, ic+mc) x columns [jc, jc+nc) of C against k-block [pc, pc+kc), with A and B
// already packed (or read in place): NR panels outer (the B micro-panel stays in L1), MR
// panels inner.
template <class T>
void macro_kernel(const Problem<T>& p, int64_t ic, int64_t mc, int64_t jc, int64_t nc, int64_t pc,
                  int64_t kc, const ABlock<T>& a, const T* Bp) {
  const int64_t MR = p.ks->mr, NR = p.ks->nr;
  TileEpilogue<T> e{p.alpha, pc == 0 ? p.beta : T(1), nullptr, p.act, pc + kc >= p.K};
  e.side_shift = t_side.shift;
  e.act_rows = p.act_rows;
  const int64_t steps = p.zero_product ? 0 : kc;  // the micro-kernels' k steps
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int64_t j = jc + jr;
    e.bias = p.bias ? p.bias + j : nullptr;
    const int64_t ncur = std::min(NR, nc - jr);
    const bool b_in_place = p.direct_b && ncur == NR;
    const T* bpanel = b_in_place ? b_block(p, pc, j) : Bp + jr * kc;
    const int64_t rs_b = b_in_place ? p.ldb : NR;
    T* c = p.C + ic * p.ldc + j;
    int64_t ir = 0;
    for (; ir + MR <= a.direct_rows; ir += MR) {
      e.side = t_side.take(kc);
      p.ks->kernel_direct_a(steps, a.direct + ir * a.rs, a.rs, a.cs, bpanel, rs_b, c + ir * p.ldc,
                            p.ldc, MR, ncur, e);
    }
    e.side = nullptr;
    if (ir < a.direct_rows) {  // rows below a whole panel, read in place by the edge kernels
      edge_rows(p, steps, a.direct + ir * a.rs, a.rs, a.cs, bpanel, rs_b, c + ir * p.ldc,
                a.direct_rows - ir, ncur, e);
      ir = a.direct_rows;
    }
    for (; ir + MR <= mc; ir += MR) {
      e.side = t_side.take(kc);
      p.ks->kernel(steps, a.packed + (ir - a.direct_rows) * kc, bpanel, c + ir * p.ldc, p.ldc, MR,
                   ncur, e);
    }
    e.side = nullptr;
    if (ir < mc)
      edge_rows(p, steps, a.packed + (ir - a.direct_rows) * kc, 1, MR, bpanel, rs_b, c + ir * p.ldc,
                mc - ir, ncur, e);
  }
}

template <class T>
size_t a_pack_bytes(const Problem<T>& p, int64_t mc) {
  return size_t(round_up(int64_t(sizeof(T)) * p.kc_max * round_up(mc, p.ks->mr), 64));
}

// Columns [j0, j1) of C on the calling thread (the classic BLIS loop nest jc/pc/ic).
template <class T>
void gemm_serial(const Problem<T>& p, int64_t j0, int64_t j1) {
  const KernelSet<T>& ks = *p.ks;
  const int64_t NR = ks.nr;
  const int64_t mc_max = std::min(round_up(p.M, ks.mr), round_up(ks.mc, ks.mr));
  const int64_t nc_max = std::min(ks.nc, round_up(j1 - j0, NR));
  const size_t b_bytes = size_t(round_up(int64_t(sizeof(T)) * p.kc_max * nc_max, 64));
  auto* ws = static_cast<unsigned char*>(t_workspace.get(b_bytes + a_pack_bytes(p, mc_max)));
  T* Bp = reinterpret_cast<T*>(ws);
  T* Ap = reinterpret_cast<T*>(ws + b_bytes);
  for (int64_t jc = j0; jc < j1; jc += ks.nc) {
    const int64_t nc = std::min(ks.nc, j1 - jc);
    for (int64_t pc = 0; pc < p.K; pc += p.kc_max) {
      const int64_t kc = std::min(p.kc_max, p.K - pc);
      const int64_t p0 = first_packed_panel(p, nc), p1 = ceil_div(nc, NR);
      if (p0 < p1 && !p.zero_product) p.pack_b(p.tb, b_block(p, pc, jc), p.ldb, kc, nc, p0, p1, Bp);
      for (int64_t ic = 0; ic < p.M; ic += mc_max) {
        const int64_t mc = std::min(mc_max, p.M - ic);
        macro_kernel(p, ic, mc, jc, nc, pc, kc, prepare_a(p, ic, mc, pc, kc, Ap), Bp);
      }
    }
  }
}

// Below this many flops (2*M*N*K) the work runs on the calling thread.
constexpr double kParallelMinFlops = 2.0e6;
// Upper bound on the B block packed for all k-blocks at once by the threaded path.
constexpr int64_t kSharedBElems = int64_t(4) << 20;

// Threaded path, M long enough: the threads pack a K x nc block of B together (one barrier
// per nc block, the only synchronization), then take row chunks of C dynamically, each
// packing its own A and running every k-block over its chunk. Other processes on the same
// cores then delay a call by at most one barrier, and the k-order of every C element is the
// same as on one thread, so results do not depend on the thread count.
template <class T>
void gemm_parallel_rows(const Problem<T>& p, int threads) {
  const KernelSet<T>& ks = *p.ks;
  const int64_t MR = ks.mr, NR = ks.nr;
  const int64_t n_kblocks = ceil_div(p.K, p.kc_max);
  int64_t nc_blk = std::min(ks.nc, round_up(p.N, NR));
  nc_blk = std::max(NR, std::min(nc_blk, kSharedBElems / (n_kblocks * p.kc_max) / NR * NR));
  const int64_t panels_per_k = ceil_div(nc_blk, NR);
  const size_t kblock_elems = size_t(p.kc_max * panels_per_k * NR);
  const size_t b_bytes = size_t(round_up(int64_t(sizeof(T) * kblock_elems) * n_kblocks, 64));

  // Row chunks in whole MR panels: at least two per thread for balance, none above mc.
  const int64_t m_panels = ceil_div(p.M, MR);
  int64_t chunks = std::max<int64_t>(ceil_div(p.M, ks.mc), 2 * threads);
  chunks = std::min(m_panels, round_up(chunks, threads));
  const int64_t chunk_rows_max = ceil_div(m_panels, chunks) * MR;
  const size_t a_bytes = a_pack_bytes(p, chunk_rows_max);

  auto* ws = static_cast<unsigned char*>(t_workspace.get(b_bytes + a_bytes * size_t(threads)));
  T* Bp = reinterpret_cast<T*>(ws);

#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    T* Ap = reinterpret_cast<T*>(ws + b_bytes + a_bytes * size_t(tid));
    for (int64_t jc = 0; jc < p.N; jc += nc_blk) {
      const int64_t nc = std::min(nc_blk, p.N - jc);
      // Pack (k-block, panel) pairs split evenly across the threads: panels [p0, p1) of
      // each k-block (p0 > 0 when full panels are read in place).
      const int64_t p0 = first_packed_panel(p, nc), p1 = ceil_div(nc, NR), np = p1 - p0;
      const int64_t pairs = n_kblocks * np;
      for (int64_t q = pairs * tid / nt, q1 = pairs * (tid + 1) / nt; q < q1;) {
        const int64_t kb = q / np, pc = kb * p.kc_max;
        const int64_t kc = std::min(p.kc_max, p.K - pc);
        const int64_t pe = std::min(np, q1 - kb * np);
        p.pack_b(p.tb, b_block(p, pc, jc), p.ldb, kc, nc, p0 + q % np, p0 + pe,
                 Bp + size_t(kb) * kblock_elems);
        q = kb * np + pe;
      }
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t ic = (m_panels * c / chunks) * MR;
        const int64_t mc = std::min(p.M, (m_panels * (c + 1) / chunks) * MR) - ic;
        for (int64_t kb = 0; kb < n_kblocks; ++kb) {
          const int64_t pc = kb * p.kc_max, kc = std::min(p.kc_max, p.K - pc);
          macro_kernel(p, ic, mc, jc, nc, pc, kc, prepare_a(p, ic, mc, pc, kc, Ap),
                       Bp + size_t(kb) * kblock_elems);
        }
      }  // implicit barrier: B is repacked only after every chunk is done with it
    }
  }
}

// The product-free case K == 0: only beta * C and the epilogue.
template <class T>
void gemm_no_product(int64_t M, int64_t N, T beta, T* C, int64_t ldc, const T* bias,
                     Activation act) {
  const ActRows<T> rows = act_rows_for(act, static_cast<T*>(nullptr));
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) {
      T v = beta != T(0) ? beta * c[j] : T(0);
      if (bias) v += bias[j];
      c[j] = rows ? v : detail::apply_activation(v, act);
    }
  }
  if (rows) rows(C, ldc, M, N);
}

// An element's bits, for the scans below.
template <class T>
using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

// Whether every element of the rows x cols block at X (row stride ld) is +0 or -0. Stops at
// the first nonzero chunk, so a dense operand costs a few loads.
template <class T>
inline __attribute__((always_inline)) bool all_zero_impl(const T* X, int64_t rows, int64_t cols,
                                                         int64_t ld) {
  using U = Bits<T>;
  constexpr int64_t kChunk = 64;
  for (int64_t i = 0; i < rows; ++i) {
    const T* x = X + i * ld;
    for (int64_t j0 = 0; j0 < cols; j0 += kChunk) {
      const int64_t j1 = std::min(cols, j0 + kChunk);
      U bits = 0;
      for (int64_t j = j0; j < j1; ++j) {
        U u;
        std::memcpy(&u, x + j, sizeof(T));
        bits |= u << 1;  // the sign bit shifted out: -0 counts as zero
      }
      if (bits != 0) return false;
    }
  }
  return true;
}

// Whether no element of the block is an infinity or a NaN (exponent bits all ones).
template <class T>
inline __attribute__((always_inline)) bool all_finite_impl(const T* X, int64_t rows, int64_t cols,
                                                           int64_t ld) {
  using U = Bits<T>;
  constexpr U kExp = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  for (int64_t i = 0; i < rows; ++i) {
    const T* x = X + i * ld;
    U bad = 0;
    for (int64_t j = 0; j < cols; ++j) {
      U u;
      std::memcpy(&u, x + j, sizeof(T));
      bad |= (u & kExp) == kExp ? U(1) : U(0);
    }
    if (bad != 0) return false;
  }
  return true;
}

// The scans, cloned for AVX-512 and AVX2 (a zero operand and the finite one opposite it are
// read whole: at 16 lanes these passes cost a few percent of the product they replace).
#define GL_SCAN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
GL_SCAN_CLONES bool all_zero(const float* X, int64_t rows, int64_t cols, int64_t ld) {
  return all_zero_impl(X, rows, cols, ld);
}
GL_SCAN_CLONES bool all_zero(const double* X, int64_t rows, int64_t cols, int64_t ld) {
  return all_zero_impl(X, rows, cols, ld);
}
GL_SCAN_CLONES bool all_finite(const float* X, int64_t rows, int64_t cols, int64_t ld) {
  return all_finite_impl(X, rows, cols, ld);
}
GL_SCAN_CLONES bool all_finite(const double* X, int64_t rows, int64_t cols, int64_t ld) {
  return all_finite_impl(X, rows, cols, ld);
}
#undef GL_SCAN_CLONES

// Whether op(A) op(B) is a product of zeros: one operand all +-0 and the other finite (0 * inf
// is NaN, so an infinity or a NaN opposite the zeros keeps the full product). Training meets
// it in layers whose weights or inputs are exactly zero (a zero initialization under an
// activation with act(0) = 0 keeps every hidden weight at zero; a layer of dead ReLUs); for
// any other operand the check ends at its first nonzero chunk.
template <class T>
bool zero_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                  const T* B, int64_t ldb) {
  // Dense operands mostly start with a nonzero: decided here, with no call (the Winograd
  // convolution makes hundreds of small GEMM calls per layer).
  auto starts_nonzero = [](const T* X) {
    Bits<T> u;
    std::memcpy(&u, X, sizeof(T));
    return (u << 1) != 0;
  };
  if (starts_nonzero(A) && starts_nonzero(B)) return false;
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  if (all_zero(A, a_rows, a_cols, lda)) return all_finite(B, b_rows, b_cols, ldb);
  if (all_zero(B, b_rows, b_cols, ldb)) return all_finite(A, a_rows, a_cols, lda);
  return false;
}

template <class T>
Problem<T> make_problem(const KernelSet<T>& ks, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                        T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                        int64_t ldc, const T* bias, Activation act) {
  const bool direct_a = use_direct_a(N, ks);
  return Problem<T>{ta,
                    tb,
                    M,
                    N,
                    K,
                    alpha,
                    A,
                    lda,
                    B,
                    ldb,
                    beta,
                    C,
                    ldc,
                    bias,
                    act,
                    &ks,
                    ks.pack_a,
                    ks.pack_b,
                    equal_kc(K, ks.kc),
                    direct_a,
                    use_direct_b(tb, direct_a, ks),
                    act_rows_for(act, static_cast<T*>(nullptr)),
                    zero_product(ta, tb, M, N, K, A, lda, B, ldb)};
}

template <class T>
void gemm(const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, Epilogue ep) {
  check_args(op, ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
  SidePrefetch hint = std::exchange(t_hint, SidePrefetch{});
  if (M == 0 || N == 0) return;
  const T* bias = static_cast<const T*>(ep.bias);
  if (K == 0) {
    gemm_no_product(M, N, beta, C, ldc, bias, ep.act);
    return;
  }

  const KernelSet<T>& ks = kernels_for(current_isa(), static_cast<T*>(nullptr));
  const Problem<T> p =
      make_problem(ks, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, ep.act);

  int threads = 1;
  if (!omp_in_parallel() && 2.0 * double(M) * double(N) * double(K) >= kParallelMinFlops) {
    const int64_t tiles = ceil_div(M, ks.mr) * ceil_div(N, ks.nr);
    threads = int(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(1, tiles / 4)));
  }
  if (threads <= 1 || p.zero_product) {  // no product: the epilogue alone, on this thread
    t_side = hint;
    t_side.spread_over(stepping_tiles(M, N, K, ks.mr, ks.nr, p.kc_max), p.kc_max);
    gemm_serial(p, 0, N);
    t_side = SidePrefetch{};
  } else if (ceil_div(M, ks.mr) >= 2 * threads) {
    gemm_parallel_rows(p, threads);
  } else {
    // M is a few panels: each thread takes whole NR panels of columns, with no shared state.
    const int64_t n_panels = ceil_div(N, ks.nr);
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t j0 = n_panels * tid / nt * ks.nr;
      const int64_t j1 = std::min(N, n_panels * (tid + 1) / nt * ks.nr);
      if (j0 < j1) gemm_serial(p, j0, j1);
    }
  }
}

// A batch of same-shape GEMMs. Work items are (entry, row chunk) pairs, the chunks whole MR
// panels, so every C element sees the same micro-kernel (full or edge tile, packed or direct
// A), the same k-blocks and the same epilogue as in a lone call: gemm_serial over rows
// [r0, r1) of an entry is that entry's lone result restricted to those rows. Each item packs
// its own B (entries share nothing); chunks are only cut when there are fewer entries than
// two per thread.
template <class T>
void gemm_batched(const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha,
                  const T* const* A, int64_t lda, const T* const* B, int64_t ldb, T beta,
                  T* const* C, int64_t ldc, const T* const* bias, Activation act, int64_t count) {
  const SidePrefetch hint = std::exchange(t_hint, SidePrefetch{});
  if (count < 0) throw std::invalid_argument(std::string(op) + ": negative count");
  if (count > 0 && (A == nullptr || B == nullptr || C == nullptr))
    throw std::invalid_argument(std::string(op) + ": null pointer array");
  for (int64_t i = 0; i < count; ++i)
    check_args(op, ta, tb, M, N, K, A[i], lda, B[i], ldb, C[i], ldc);
  if (count == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < count; ++i)
      gemm_no_product(M, N, beta, C[i], ldc, bias ? bias[i] : nullptr, act);
    return;
  }
  const KernelSet<T>& ks = kernels_for(current_isa(), static_cast<T*>(nullptr));
  const int64_t m_panels = ceil_div(M, ks.mr);
  int threads = 1;
  if (!omp_in_parallel() &&
      2.0 * double(M) * double(N) * double(K) * double(count) >= kParallelMinFlops)
    threads = int(std::min<int64_t>(omp_get_max_threads(), count * m_panels));
  const int64_t chunks = std::min(m_panels, std::max<int64_t>(1, ceil_div(2 * threads, count)));
  const int64_t items = count * chunks;
  auto run_item = [&](int64_t q) {
    const int64_t i = q / chunks, c = q % chunks;
    const int64_t r0 = m_panels * c / chunks * ks.mr;
    const int64_t r1 = std::min(M, m_panels * (c + 1) / chunks * ks.mr);
    if (r0 >= r1) return;
    const Problem<T> p =
        make_problem(ks, ta, tb, r1 - r0, N, K, alpha, ta ? A[i] + r0 : A[i] + r0 * lda, lda, B[i],
                     ldb, beta, C[i] + r0 * ldc, ldc, bias ? bias[i] : nullptr, act);
    gemm_serial(p, 0, N);
  };
  if (threads <= 1) {
    // While entry i computes, the next entry's B (the weights, or the layer input for dW: in a
    // training step last touched long before) comes into L2; while the last one computes, what
    // the caller asked for.
    const int64_t sz = int64_t(sizeof(T));
    for (int64_t q = 0; q < items; ++q) {
      const int64_t i = q / chunks;
      if (q % chunks == 0) {
        t_side = SidePrefetch{};
        if (i + 1 < count)
          t_side.add(B[i + 1], tb ? N : K, (tb ? K : N) * sz, ldb * sz);
        else
          t_side = hint;
        const int64_t kc = equal_kc(K, ks.kc);
        t_side.spread_over(stepping_tiles(M, N, K, ks.mr, ks.nr, kc), kc);
      }
      run_item(q);
    }
    t_side = SidePrefetch{};
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t q = 0; q < items; ++q) run_item(q);
}

}  // namespace

const char* isa_name() {
  switch (current_isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::scalar:
      break;
  }
  return "scalar";
}

int isa_level() {
  return static_cast<int>(current_isa());
}

int64_t sgemm_tile_rows() {
  return kernels_for(current_isa(), static_cast<float*>(nullptr)).mr;
}

void set_isa(const char* name) {
  const std::string s = name ? name : "";
  Isa isa;
  if (s == "auto") {
    isa = best_isa();
  } else if (s == "avx512") {
    isa = Isa::avx512;
  } else if (s == "avx2") {
    isa = Isa::avx2;
  } else if (s == "scalar") {
    isa = Isa::scalar;
  } else {
    throw std::invalid_argument("set_isa: unknown ISA '" + s +
                                "' (expected avx512, avx2, scalar or auto)");
  }
  if (!cpu_has(isa))
    throw std::invalid_argument("set_isa: this CPU cannot run the '" + s + "' GEMM kernels");
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           Epilogue ep) {
  gemm("sgemm", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}
void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
           int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc,
           Epilogue ep) {
  gemm("dgemm", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}

void prefetch_during_next_gemm(const void* base, int64_t rows, int64_t row_bytes,
                               int64_t stride_bytes) {
  t_hint.add(base, rows, row_bytes, stride_bytes);
}

void sgemm_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* const* A, int64_t lda, const float* const* B, int64_t ldb,
                   float beta, float* const* C, int64_t ldc, const float* const* bias,
                   Activation act, int64_t count) {
  gemm_batched("sgemm_batched", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act,
               count);
}
void dgemm_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                   const double* const* A, int64_t lda, const double* const* B, int64_t ldb,
                   double beta, double* const* C, int64_t ldc, const double* const* bias,
                   Activation act, int64_t count) {
  gemm_batched("dgemm_batched", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act,
               count);
}

}  // namespace gl::kernels::cpu
