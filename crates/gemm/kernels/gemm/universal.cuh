// The universal GEMM: correct for every M, N, K >= 1, every stride and any alignment.
//
// It is the first CuTe GEMM of the project and the fallback for everything the TMA path
// cannot take (misaligned pointers or leading dimensions, f32 inputs). Operands are read
// element by element with predicates from identity tensors, staged through padded shared
// memory, multiplied with SM80 tensor-core atoms (FMA for f32), and the tile goes back out
// through shared memory with predicates. Speed is secondary: one 64x64 tile per CTA. Its host
// launcher is in launcher.cuh.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/arch/mma_sm80.hpp>

#include "gemm/args.cuh"
#include "gemm/tile_scheduler.cuh"

namespace ckb {

using namespace cute;

template <class TIn>
struct UniversalMma;

// 2x2 warps of m16n8k16, tiled to 32x32x16 so that each warp owns a 16x16 patch per atom step.
template <>
struct UniversalMma<cutlass::bfloat16_t> {
  using type = decltype(make_tiled_mma(SM80_16x8x16_F32BF16BF16F32_TN{}, Layout<Shape<_2, _2, _1>>{},
                                       Tile<_32, _32, _16>{}));
};
template <>
struct UniversalMma<cutlass::half_t> {
  using type = decltype(make_tiled_mma(SM80_16x8x16_F32F16F16F32_TN{}, Layout<Shape<_2, _2, _1>>{},
                                       Tile<_32, _32, _16>{}));
};
// 16x8 threads, each an outer product of 4x8 per k step.
template <>
struct UniversalMma<float> {
  using type = decltype(make_tiled_mma(UniversalFMA<float, float, float, float>{}, Layout<Shape<_16, _8, _1>>{}));
};

template <class TIn>
struct UniversalGemm {
  static constexpr int BM = 64, BN = 64, BK = 32;
  static constexpr int Threads = 128;
  using TiledMma = typename UniversalMma<TIn>::type;
  static_assert(decltype(size(TiledMma{}))::value == Threads, "one MMA thread per CTA thread");

  // K contiguous with 8 elements of padding: the m16n8k16 fragment reads of a warp then fall
  // in 32 distinct banks (row pitch of 20 words).
  using SmemLayoutA = Layout<Shape<Int<BM>, Int<BK>>, Stride<Int<BK + 8>, _1>>;  // (BM,BK)
  using SmemLayoutB = Layout<Shape<Int<BN>, Int<BK>>, Stride<Int<BK + 8>, _1>>;  // (BN,BK)
  // The finished tile, padded by one so that both row and column walks are conflict-free.
  using SmemLayoutC = Layout<Shape<Int<BM>, Int<BN>>, Stride<Int<BN + 1>, _1>>;  // (BM,BN)

  union SharedStorage {
    struct {
      cute::array_aligned<TIn, cosize_v<SmemLayoutA>> a;
      cute::array_aligned<TIn, cosize_v<SmemLayoutB>> b;
    } operands;
    cute::array_aligned<float, cosize_v<SmemLayoutC>> c;
  };
};

// A (ROWS,COLS) tile of a strided global tensor, zero outside `bounds`, on its way to shared
// memory through registers: `fetch` issues all of a thread's loads before any is used (one
// memory latency per tile, not one per element), and `store` writes them to shared memory.
// Consecutive threads walk the contiguous dimension, so loads coalesce whatever the layout;
// elements are read one by one, so no alignment is assumed.
template <int Rows, int Cols, int Threads, class T>
struct TileInRegisters {
  static constexpr int PerThread = Rows * Cols / Threads;
  static_assert(Rows * Cols % Threads == 0, "whole elements per thread");
  T v[PerThread];

  CUTE_DEVICE static int row(int e, bool cols_contiguous) { return cols_contiguous ? e / Cols : e % Rows; }
  CUTE_DEVICE static int col(int e, bool cols_contiguous) { return cols_contiguous ? e % Cols : e / Rows; }

  template <class GTile, class CTile, class Bounds>
  CUTE_DEVICE void fetch(GTile const& g, CTile const& coord, Bounds const& bounds, bool cols_contiguous) {
    CUTE_UNROLL
    for (int i = 0; i < PerThread; ++i) {
      int const e = int(threadIdx.x) + i * Threads;
      int const r = row(e, cols_contiguous), c = col(e, cols_contiguous);
      v[i] = elem_less(coord(r, c), bounds) ? T(g(r, c)) : T(0);
    }
  }

  template <class STile>
  CUTE_DEVICE void store(STile& s, bool cols_contiguous) const {
    CUTE_UNROLL
    for (int i = 0; i < PerThread; ++i) {
      int const e = int(threadIdx.x) + i * Threads;
      s(row(e, cols_contiguous), col(e, cols_contiguous)) = v[i];
    }
  }
};

// One CTA per (BM,BN) tile of C: all of K, then the epilogue.
template <class TIn>
__global__ void __launch_bounds__(UniversalGemm<TIn>::Threads)
    universal_gemm_kernel(CkbGemmArgs const args, OneTilePerCtaScheduler const scheduler) {
  using G = UniversalGemm<TIn>;
  constexpr int BM = G::BM, BN = G::BN, BK = G::BK;

  TileCoord const tile = scheduler.tile();
  int const m_blk = tile.m_blk, n_blk = tile.n_blk;
  auto const shape_mk = make_shape(args.m, args.k);
  auto const shape_nk = make_shape(args.n, args.k);
  auto const shape_mn = make_shape(args.m, args.n);

  Tensor mA = make_tensor(make_gmem_ptr(static_cast<TIn const*>(args.a)), shape_mk,
                          make_stride(args.a_stride_m, args.a_stride_k));              // (M,K)
  Tensor mB = make_tensor(make_gmem_ptr(static_cast<TIn const*>(args.b)), shape_nk,
                          make_stride(args.b_stride_n, args.b_stride_k));              // (N,K)
  Tensor gA = local_tile(mA, Shape<Int<BM>, Int<BK>>{}, make_coord(m_blk, _));         // (BM,BK,k)
  Tensor gB = local_tile(mB, Shape<Int<BN>, Int<BK>>{}, make_coord(n_blk, _));         // (BN,BK,k)
  Tensor cA = local_tile(make_identity_tensor(shape_mk), Shape<Int<BM>, Int<BK>>{}, make_coord(m_blk, _));  // (BM,BK,k) -> (m,k)
  Tensor cB = local_tile(make_identity_tensor(shape_nk), Shape<Int<BN>, Int<BK>>{}, make_coord(n_blk, _));  // (BN,BK,k) -> (n,k)

  extern __shared__ char smem_raw[];
  auto& smem = *reinterpret_cast<typename G::SharedStorage*>(smem_raw);
  Tensor sA = make_tensor(make_smem_ptr(smem.operands.a.data()), typename G::SmemLayoutA{});  // (BM,BK)
  Tensor sB = make_tensor(make_smem_ptr(smem.operands.b.data()), typename G::SmemLayoutB{});  // (BN,BK)
  Tensor sC = make_tensor(make_smem_ptr(smem.c.data()), typename G::SmemLayoutC{});           // (BM,BN)

  typename G::TiledMma tiled_mma;
  auto thr_mma = tiled_mma.get_slice(threadIdx.x);
  Tensor tCsA = thr_mma.partition_A(sA);                                    // (MMA,MMA_M,MMA_K)
  Tensor tCsB = thr_mma.partition_B(sB);                                    // (MMA,MMA_N,MMA_K)
  Tensor tCrA = thr_mma.partition_fragment_A(sA);                           // (MMA,MMA_M,MMA_K)
  Tensor tCrB = thr_mma.partition_fragment_B(sB);                           // (MMA,MMA_N,MMA_K)
  Tensor acc = partition_fragment_C(tiled_mma, Shape<Int<BM>, Int<BN>>{});  // (MMA,MMA_M,MMA_N)
  clear(acc);

  // Both operands' K-tiles are fetched into registers before either goes to shared memory:
  // one memory latency per K-tile. Several CTAs share an SM (about 10 KB of shared memory
  // each), which hides it. (Fetching the next K-tile during the math as well took 254
  // registers and spilled.)
  bool const a_k_contiguous = args.a_stride_k == 1, b_k_contiguous = args.b_stride_k == 1;
  int const k_tiles = (args.k + BK - 1) / BK;
  for (int kt = 0; kt < k_tiles; ++kt) {
    TileInRegisters<BM, BK, G::Threads, TIn> tile_a;
    TileInRegisters<BN, BK, G::Threads, TIn> tile_b;
    tile_a.fetch(gA(_, _, kt), cA(_, _, kt), shape_mk, a_k_contiguous);
    tile_b.fetch(gB(_, _, kt), cB(_, _, kt), shape_nk, b_k_contiguous);
    __syncthreads();  // the previous tile's math is done with shared memory
    tile_a.store(sA, a_k_contiguous);
    tile_b.store(sB, b_k_contiguous);
    __syncthreads();
    copy(tCsA, tCrA);
    copy(tCsB, tCrB);
    cute::gemm(tiled_mma, tCrA, tCrB, acc);
  }

  // Stage the tile in shared memory, then write it walking C's contiguous dimension.
  __syncthreads();
  Tensor tCsC = thr_mma.partition_C(sC);                                    // (MMA,MMA_M,MMA_N)
  // Rows of sC are 65 floats apart: tell copy() to assume 4-byte alignment, not 16.
  copy(AutoVectorizingCopyWithAssumedAlignment<32>{}, acc, tCsC);
  __syncthreads();
  Tensor cC = local_tile(make_identity_tensor(shape_mn), Shape<Int<BM>, Int<BN>>{}, make_coord(m_blk, n_blk));  // (BM,BN) -> (m,n)
  bool const n_contiguous = args.c_stride_n == 1;
  dispatch_out_dtype(args.out_dtype, [&](auto out_tag) {
    using TOut = decltype(out_tag);
    auto* c = static_cast<TOut*>(args.c);
    // Unrolled by 8 over a constant trip count. Not measured on its own: with beta != 0 the
    // compiler may still order each read of C after the stores before it (same pointer).
#pragma unroll 8
    for (int i = 0; i < BM * BN / G::Threads; ++i) {
      int const e = int(threadIdx.x) + i * G::Threads;
      int row = n_contiguous ? e / BN : e % BM;
      int col = n_contiguous ? e % BN : e / BM;
      auto [m, n] = cC(row, col);
      if (m < args.m && n < args.n)
        axpby_store(c + m * args.c_stride_m + n * args.c_stride_n, sC(row, col), args.alpha, args.beta);
    }
  });
}

}  // namespace ckb
