// Collective mainloop: TMA producer and WGMMA consumers over a PipelineTmaAsync.
//
// One elected producer thread loads (BM,BK) of A and (BN,BK) of B per stage with TMA into
// 128-byte-swizzled shared memory; the transaction count on the stage's full barrier tells
// the consumers when it has landed. Consumer warp groups (BM/64 of them, each owning 64 rows
// of the tile) issue WGMMA straight from shared memory, keep one K-tile of WGMMAs in flight,
// and release a stage once the WGMMAs that read it have retired.
//
// TMA descriptors cover the real M, N, K: loads past the edges are zero-filled, so any shape
// works as long as base addresses and leading dimensions are 16-byte aligned (checked by
// Rust's launch.rs, which the launchers trust).
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "gemm/tile_scheduler.cuh"

namespace ckb {

using namespace cute;

// The compile-time shape of a variant: the few lines that make one.
template <class TIn_, int BM_, int BN_, int BK_, int Stages_, bool AKMajor_, bool BKMajor_>
struct WsGemmConfig {
  using TIn = TIn_;
  static constexpr int BM = BM_, BN = BN_, BK = BK_, Stages = Stages_;
  // K-major: K is the contiguous dimension in global memory (row-major A, column-major B).
  static constexpr bool AKMajor = AKMajor_, BKMajor = BKMajor_;
};

template <class Cfg>
struct MainloopTmaWgmma {
  using T = typename Cfg::TIn;
  static constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, Stages = Cfg::Stages;
  static constexpr int ConsumerWarpGroups = BM / 64;
  static constexpr int ConsumerThreads = ConsumerWarpGroups * 128;

  static_assert(sizeof(T) == 2 || (sizeof(T) == 4 && Cfg::AKMajor && Cfg::BKMajor),
                "WGMMA reads 16-bit inputs from shared memory either way, tf32 K-major only");
  static_assert(BM == 64 || BM == 128, "each consumer warp group owns 64 rows of the tile");
  static_assert(BN % 16 == 0 && BN >= 64 && BN <= 256, "one WGMMA spans the tile's N");
  static_assert(BK * sizeof(T) == 128, "one 128-byte swizzle row of K per stage row");
  static_assert(Stages >= 3, "at least three stages keep TMA ahead of the math");

  // tf32: the tensor cores add into their accumulators with truncation, a bias that grows
  // with K (3xTF32 over K' = 3 * 4096 measured 4.2e-5 relative, 40x SGEMM's error). So the
  // WGMMAs sum PromoteEvery K-tiles (128 of K) into a fresh fragment, which the threads then
  // add into the tile's accumulators in rounded fp32. 0: the WGMMAs accumulate all of K.
  static constexpr int PromoteEvery = sizeof(T) == 4 ? 4 : 0;
  static_assert(PromoteEvery == 0 || BM * BN / (ConsumerWarpGroups * 128) <= 64,
                "two fp32 fragments of the tile per thread fit the consumers' registers");

  using TileShape = Shape<Int<BM>, Int<BN>, Int<BK>>;  // (BLK_M,BLK_N,BLK_K)
  static constexpr GMMA::Major MajorA = Cfg::AKMajor ? GMMA::Major::K : GMMA::Major::MN;
  static constexpr GMMA::Major MajorB = Cfg::BKMajor ? GMMA::Major::K : GMMA::Major::MN;

  // Global strides: one of each pair is a compile-time 1, as TMA needs.
  using StrideA = conditional_t<Cfg::AKMajor, Stride<int64_t, _1>, Stride<_1, int64_t>>;  // (M,K)
  using StrideB = conditional_t<Cfg::BKMajor, Stride<int64_t, _1>, Stride<_1, int64_t>>;  // (N,K)

  using SmemAtomA = conditional_t<Cfg::AKMajor, GMMA::Layout_K_SW128_Atom<T>, GMMA::Layout_MN_SW128_Atom<T>>;
  using SmemAtomB = conditional_t<Cfg::BKMajor, GMMA::Layout_K_SW128_Atom<T>, GMMA::Layout_MN_SW128_Atom<T>>;
  // MN-major atoms are tiled along K first, which keeps each TMA box as large as possible.
  using SmemLayoutA = decltype(tile_to_shape(SmemAtomA{}, make_shape(Int<BM>{}, Int<BK>{}, Int<Stages>{}),
                                             conditional_t<Cfg::AKMajor, Step<_1, _2, _3>, Step<_2, _1, _3>>{}));  // (BM,BK,PIPE)
  using SmemLayoutB = decltype(tile_to_shape(SmemAtomB{}, make_shape(Int<BN>{}, Int<BK>{}, Int<Stages>{}),
                                             conditional_t<Cfg::BKMajor, Step<_1, _2, _3>, Step<_2, _1, _3>>{}));  // (BN,BK,PIPE)

  // One 64xBNx16 (tf32: 64xBNx8) WGMMA per consumer warp group, stacked along M.
  using TiledMma = decltype(make_tiled_mma(GMMA::ss_op_selector<T, T, float, TileShape, MajorA, MajorB>(),
                                           Layout<Shape<Int<ConsumerWarpGroups>, _1, _1>>{}));

  using GmemA = decltype(make_tensor(make_gmem_ptr(static_cast<T const*>(nullptr)), make_shape(int32_t(0), int32_t(0)), StrideA{}));
  using GmemB = decltype(make_tensor(make_gmem_ptr(static_cast<T const*>(nullptr)), make_shape(int32_t(0), int32_t(0)), StrideB{}));
  using TmaA = decltype(make_tma_atom(SM90_TMA_LOAD{}, std::declval<GmemA>(), SmemLayoutA{}(_, _, 0), make_shape(Int<BM>{}, Int<BK>{})));
  using TmaB = decltype(make_tma_atom(SM90_TMA_LOAD{}, std::declval<GmemB>(), SmemLayoutB{}(_, _, 0), make_shape(Int<BN>{}, Int<BK>{})));

  using Pipeline = cutlass::PipelineTmaAsync<Stages>;
  using PipelineState = cutlass::PipelineState<Stages>;
  static constexpr uint32_t StageBytes = uint32_t((BM + BN) * BK * sizeof(T));

  struct SharedStorage {
    // 1024-byte alignment: the 128-byte swizzle pattern repeats every 8 rows of 128 bytes.
    alignas(1024) cute::ArrayEngine<T, cosize_v<SmemLayoutA>> a;
    alignas(1024) cute::ArrayEngine<T, cosize_v<SmemLayoutB>> b;
    typename Pipeline::SharedStorage pipeline;
  };

  struct Params {
    TmaA tma_a;
    TmaB tma_b;
  };

  // Host: TMA descriptors over the whole operands.
  static Params make_params(T const* a, int64_t lda, T const* b, int64_t ldb, int m, int n, int k) {
    StrideA stride_a{};
    StrideB stride_b{};
    if constexpr (Cfg::AKMajor) get<0>(stride_a) = lda; else get<1>(stride_a) = lda;
    if constexpr (Cfg::BKMajor) get<0>(stride_b) = ldb; else get<1>(stride_b) = ldb;
    Tensor mA = make_tensor(make_gmem_ptr(a), make_shape(int32_t(m), int32_t(k)), stride_a);  // (M,K)
    Tensor mB = make_tensor(make_gmem_ptr(b), make_shape(int32_t(n), int32_t(k)), stride_b);  // (N,K)
    return {make_tma_atom(SM90_TMA_LOAD{}, mA, SmemLayoutA{}(_, _, 0), make_shape(Int<BM>{}, Int<BK>{})),
            make_tma_atom(SM90_TMA_LOAD{}, mB, SmemLayoutB{}(_, _, 0), make_shape(Int<BN>{}, Int<BK>{}))};
  }

  CUTE_DEVICE static void prefetch_descriptors(Params const& params) {
    prefetch_tma_descriptor(params.tma_a.get_tma_descriptor());
    prefetch_tma_descriptor(params.tma_b.get_tma_descriptor());
  }

  // Producer, one elected thread: the K-tiles of one work unit (its tile's K slice) into the
  // ring of stages.
  CUTE_DEVICE static void load(Params const& params, Pipeline& pipeline, PipelineState& write_state,
                              SharedStorage& smem, int m, int n, int k, TileCoord tile) {
    Tensor sA = make_tensor(make_smem_ptr(smem.a.begin()), SmemLayoutA{});    // (BM,BK,PIPE)
    Tensor sB = make_tensor(make_smem_ptr(smem.b.begin()), SmemLayoutB{});    // (BN,BK,PIPE)
    Tensor mA = params.tma_a.get_tma_tensor(make_shape(m, k));                // (M,K) TMA coordinates
    Tensor mB = params.tma_b.get_tma_tensor(make_shape(n, k));                // (N,K) TMA coordinates
    Tensor gA = local_tile(mA, Shape<Int<BM>, Int<BK>>{}, make_coord(tile.m_blk, _));  // (BM,BK,k)
    Tensor gB = local_tile(mB, Shape<Int<BN>, Int<BK>>{}, make_coord(tile.n_blk, _));  // (BN,BK,k)
    // The TMA unit moves all of mode 0 per copy: (TMA,k) from global, (TMA,PIPE) into shared.
    auto [tAgA, tAsA] = tma_partition(params.tma_a, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sA), group_modes<0, 2>(gA));
    auto [tBgB, tBsB] = tma_partition(params.tma_b, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sB), group_modes<0, 2>(gB));
    CUTE_NO_UNROLL
    for (int kt = tile.k_tile_begin; kt < tile.k_tile_begin + tile.k_tile_count; ++kt) {
      pipeline.producer_acquire(write_state);  // waits for the stage to be free, then expects StageBytes
      auto* full = pipeline.producer_get_barrier(write_state);
      int const stage = write_state.index();
      copy(params.tma_a.with(*full), tAgA(_, kt), tAsA(_, stage));
      copy(params.tma_b.with(*full), tBgB(_, kt), tBsB(_, stage));
      ++write_state;
    }
  }

  // Consumers: accum = A_tile * B_tile^T over the unit's `k_tiles` (>= 1) K-tiles. Leaves
  // no WGMMA in flight and every stage it read released.
  template <class Accum>
  CUTE_DEVICE static void mma(Pipeline& pipeline, PipelineState& read_state, Accum& accum, int k_tiles,
                             int consumer_thread, SharedStorage& smem) {
    Tensor sA = make_tensor(make_smem_ptr(smem.a.begin()), SmemLayoutA{});  // (BM,BK,PIPE)
    Tensor sB = make_tensor(make_smem_ptr(smem.b.begin()), SmemLayoutB{});  // (BN,BK,PIPE)
    TiledMma tiled_mma;
    auto thr_mma = tiled_mma.get_slice(consumer_thread);
    Tensor tCrA = thr_mma.make_fragment_A(thr_mma.partition_A(sA));         // (MMA,MMA_M,MMA_K,PIPE) descriptors
    Tensor tCrB = thr_mma.make_fragment_B(thr_mma.partition_B(sB));         // (MMA,MMA_N,MMA_K,PIPE) descriptors
    CUTE_STATIC_ASSERT_V(size<1>(tCrA) == size<1>(accum));                  // MMA_M
    CUTE_STATIC_ASSERT_V(size<1>(tCrB) == size<2>(accum));                  // MMA_N

    PipelineState release_state = read_state;

    if constexpr (PromoteEvery > 0) {
      Tensor partial = make_fragment_like(accum);  // (MMA,MMA_M,MMA_N) one chunk's WGMMA sums
      CUTE_UNROLL
      for (int i = 0; i < size(accum); ++i) accum(i) = 0.0f;
      CUTE_NO_UNROLL
      for (int kt = 0; kt < k_tiles; kt += PromoteEvery) {
        int const chunk = min(PromoteEvery, k_tiles - kt);
        tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;
        CUTE_NO_UNROLL
        for (int c = 0; c < chunk; ++c) {
          pipeline.consumer_wait(read_state);
          warpgroup_fence_operand(partial);
          warpgroup_arrive();
          CUTE_UNROLL
          for (int kb = 0; kb < size<2>(tCrA); ++kb) {
            cute::gemm(tiled_mma, tCrA(_, _, kb, read_state.index()), tCrB(_, _, kb, read_state.index()), partial);
            tiled_mma.accumulate_ = GMMA::ScaleOut::One;
          }
          warpgroup_commit_batch();
          if (c > 0) {
            warpgroup_wait<1>();  // the chunk's previous K-tile is done: its stage can go back
            pipeline.consumer_release(release_state);
            ++release_state;
          }
          warpgroup_fence_operand(partial);
          ++read_state;
        }
        warpgroup_wait<0>();
        warpgroup_fence_operand(partial);
        pipeline.consumer_release(release_state);
        ++release_state;
        CUTE_UNROLL
        for (int i = 0; i < size(accum); ++i) accum(i) += partial(i);
      }
      return;
    }

    // First K-tile: the first WGMMA overwrites the accumulators, so no clear is needed.
    tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;
    warpgroup_fence_operand(accum);
    pipeline.consumer_wait(read_state);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int kb = 0; kb < size<2>(tCrA); ++kb) {
      cute::gemm(tiled_mma, tCrA(_, _, kb, read_state.index()), tCrB(_, _, kb, read_state.index()), accum);
      tiled_mma.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
    ++read_state;
    warpgroup_fence_operand(accum);

    CUTE_NO_UNROLL
    for (int kt = 1; kt < k_tiles; ++kt) {
      pipeline.consumer_wait(read_state);
      warpgroup_fence_operand(accum);
      warpgroup_arrive();
      cute::gemm(tiled_mma, tCrA(_, _, _, read_state.index()), tCrB(_, _, _, read_state.index()), accum);
      warpgroup_commit_batch();
      warpgroup_wait<1>();  // the previous K-tile's WGMMAs are done: its stage can go back
      warpgroup_fence_operand(accum);
      pipeline.consumer_release(release_state);
      ++read_state;
      ++release_state;
    }

    warpgroup_wait<0>();
    warpgroup_fence_operand(accum);
    pipeline.consumer_release(release_state);
  }
};

}  // namespace ckb
