// The warp-specialized persistent kernel: assigns warp-group roles and ties the mainloop,
// the epilogue and the tile scheduler together. Its host launcher is in launcher.cuh.
//
//   warp group 0       producer: gives registers back (setmaxnreg), one elected thread
//                      issues the TMA loads of every tile this CTA owns;
//   warp groups 1..    consumers, cooperative: together they compute each tile (64 rows
//                      each) with WGMMA, then run the epilogue while the producer already
//                      fills the stages of the next tile (and, on the TMA-store path, TMA
//                      writes the tile while they go on to the next one).
// With split-K a work unit is one K slice of a tile, and its epilogue writes an fp32 partial
// (split_k.cuh), which a second kernel sums into C.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>

#include "gemm/args.cuh"
#include "gemm/epilogue.cuh"
#include "gemm/mainloop_tma_wgmma.cuh"
#include "gemm/split_k.cuh"
#include "gemm/tile_scheduler.cuh"

namespace ckb {

template <class Cfg, class Scheduler_ = PersistentTileScheduler>
struct WsGemmKernel {
  using Mainloop = MainloopTmaWgmma<Cfg>;
  using Scheduler = Scheduler_;
  using Epilogue = EpilogueSmemStaged<Mainloop>;
  static constexpr int ConsumerWarpGroups = Mainloop::ConsumerWarpGroups;
  static constexpr int Threads = 128 * (1 + ConsumerWarpGroups);
  // With two consumer warp groups the 384 threads start at 168 registers; the producer's
  // give-back pays for the consumers' 232 (128*40 + 256*232 <= 64K). One consumer warp
  // group starts with enough and keeps the compiler's allocation.
  static constexpr bool ReconfigureRegisters = ConsumerWarpGroups == 2;
  static constexpr uint32_t ProducerRegisters = 40;
  static constexpr uint32_t ConsumerRegisters = 232;

  struct SharedStorage {
    typename Mainloop::SharedStorage mainloop;
    typename Epilogue::SharedStorage epilogue;
  };
  static constexpr int SmemBytes = int(sizeof(SharedStorage));
  static_assert(SmemBytes <= 227 * 1024, "fits the opt-in shared memory of an H100 CTA");

  struct Params {
    typename Mainloop::Params mainloop;
    CkbGemmArgs args;
    Scheduler scheduler;
    TmaDescriptor store_c;  // C's tensor map, built when args.c_tma_store
  };

  CUTE_DEVICE static void run(Params const& params, char* smem_raw) {
    auto& smem = *reinterpret_cast<SharedStorage*>(smem_raw);
    int const warp_group = cutlass::canonical_warp_group_idx();
    int const m = params.args.m, n = params.args.n, k = params.args.k;

    typename Mainloop::Pipeline::Params pipeline_params;
    pipeline_params.transaction_bytes = Mainloop::StageBytes;
    pipeline_params.role = warp_group == 0 ? Mainloop::Pipeline::ThreadCategory::Producer
                                           : Mainloop::Pipeline::ThreadCategory::Consumer;
    pipeline_params.is_leader = threadIdx.x == 0;
    pipeline_params.num_consumers = Mainloop::ConsumerThreads;
    // Initializes the barriers from warp 0; visible to all after the __syncthreads below.
    typename Mainloop::Pipeline pipeline(smem.mainloop.pipeline, pipeline_params, Shape<_1, _1, _1>{});
    __syncthreads();

    if (warp_group == 0) {
      if constexpr (ReconfigureRegisters) cutlass::arch::warpgroup_reg_dealloc<ProducerRegisters>();
      if (threadIdx.x == 0) {
        Mainloop::prefetch_descriptors(params.mainloop);
        auto write_state = cutlass::make_producer_start_state<typename Mainloop::Pipeline>();
        params.scheduler.for_each_tile([&](TileCoord tile) {
          Mainloop::load(params.mainloop, pipeline, write_state, smem.mainloop, m, n, k, tile);
        });
        // Every stage has been consumed before the CTA may exit.
        pipeline.producer_tail(write_state);
      }
    } else {
      if constexpr (ReconfigureRegisters) cutlass::arch::warpgroup_reg_alloc<ConsumerRegisters>();
      int const consumer_thread = int(threadIdx.x) - 128;
      typename Mainloop::PipelineState read_state;
      typename Mainloop::TiledMma tiled_mma;
      params.scheduler.for_each_tile([&](TileCoord tile) {
        Tensor accum = partition_fragment_C(tiled_mma, take<0, 2>(typename Mainloop::TileShape{}));  // (MMA,MMA_M,MMA_N)
        if (params.args.beta != 0.0f && params.args.splits == 1) Epilogue::prefetch_c(params.args, consumer_thread, tile);
        Mainloop::mma(pipeline, read_state, accum, tile.k_tile_count, consumer_thread, smem.mainloop);
        if (params.args.splits > 1) {
          Epilogue::store(split_partial_args(params.args, tile.split), nullptr, accum, consumer_thread, tile,
                          smem.epilogue);
        } else {
          Epilogue::store(params.args, &params.store_c, accum, consumer_thread, tile, smem.epilogue);
        }
      });
      if (params.args.c_tma_store) Epilogue::store_tail(consumer_thread);
    }
  }
};

template <class Kernel>
__global__ void __launch_bounds__(Kernel::Threads, 1) ws_gemm_kernel(CUTE_GRID_CONSTANT typename Kernel::Params const params) {
  extern __shared__ __align__(1024) char smem_raw[];
  Kernel::run(params, smem_raw);
}

}  // namespace ckb
