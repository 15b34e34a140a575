// The warp-specialized persistent kernel: assigns warp-group roles and ties the mainloop,
// the epilogue and the tile scheduler together, plus its host launcher.
//
//   warp group 0       producer: gives registers back (setmaxnreg), one elected thread
//                      issues the TMA loads of every tile this CTA owns;
//   warp groups 1..    consumers, cooperative: together they compute each tile (64 rows
//                      each) with WGMMA, then run the epilogue while the producer already
//                      fills the stages of the next tile.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/cluster_launch.hpp>

#include "gemm/args.cuh"
#include "gemm/epilogue.cuh"
#include "gemm/mainloop_tma_wgmma.cuh"
#include "gemm/tile_scheduler.cuh"

namespace ckb {

template <class Cfg>
struct WsGemmKernel {
  using Mainloop = MainloopTmaWgmma<Cfg>;
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
    PersistentTileScheduler scheduler;
  };

  CUTE_DEVICE static void run(Params const& params, char* smem_raw) {
    auto& smem = *reinterpret_cast<SharedStorage*>(smem_raw);
    int const warp_group = cutlass::canonical_warp_group_idx();
    int const m = params.args.m, n = params.args.n, k = params.args.k;
    int const k_tiles = (k + Cfg::BK - 1) / Cfg::BK;
    int64_t const tiles = params.scheduler.tile_count();

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
        for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
          Mainloop::load(params.mainloop, pipeline, write_state, smem.mainloop, m, n, k, params.scheduler.tile(t), k_tiles);
        }
        // Every stage has been consumed before the CTA may exit.
        pipeline.producer_tail(write_state);
      }
    } else {
      if constexpr (ReconfigureRegisters) cutlass::arch::warpgroup_reg_alloc<ConsumerRegisters>();
      int const consumer_thread = int(threadIdx.x) - 128;
      typename Mainloop::PipelineState read_state;
      typename Mainloop::TiledMma tiled_mma;
      for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        TileCoord const tile = params.scheduler.tile(t);
        Tensor accum = partition_fragment_C(tiled_mma, take<0, 2>(typename Mainloop::TileShape{}));  // (MMA,MMA_M,MMA_N)
        Mainloop::mma(pipeline, read_state, accum, k_tiles, consumer_thread, smem.mainloop);
        Epilogue::store(params.args, accum, consumer_thread, tile, smem.epilogue);
      }
    }
  }
};

template <class Kernel>
__global__ void __launch_bounds__(Kernel::Threads, 1) ws_gemm_kernel(CUTE_GRID_CONSTANT typename Kernel::Params const params) {
  extern __shared__ __align__(1024) char smem_raw[];
  Kernel::run(params, smem_raw);
}

// Host launcher: checks what TMA needs, builds the descriptors, launches a persistent grid.
template <class Cfg>
int launch_ws_gemm(CkbGemmArgs const* args_ptr, cudaStream_t stream) {
  using Kernel = WsGemmKernel<Cfg>;
  using T = typename Cfg::TIn;
  if (!args_ptr || !args_are_sane(*args_ptr)) return int(cudaErrorInvalidValue);
  CkbGemmArgs const& args = *args_ptr;

  // The unit strides must be where this variant's smem layouts expect them.
  int64_t const lda = Cfg::AKMajor ? args.a_stride_m : args.a_stride_k;
  int64_t const ldb = Cfg::BKMajor ? args.b_stride_n : args.b_stride_k;
  bool const a_unit = Cfg::AKMajor ? args.a_stride_k == 1 : args.a_stride_m == 1;
  bool const b_unit = Cfg::BKMajor ? args.b_stride_k == 1 : args.b_stride_n == 1;
  bool const c_unit = args.c_stride_n == 1 || args.c_stride_m == 1;
  auto aligned16 = [](void const* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
  auto ld_ok = [](int64_t ld_elems, int64_t elem_bytes) {
    return ld_elems > 0 && (ld_elems * elem_bytes) % 16 == 0 && ld_elems * elem_bytes < (int64_t(1) << 40);
  };
  int64_t const out_bytes = args.out_dtype == CKB_OUT_F32 ? 4 : 2;
  int64_t const ldc = args.c_stride_n == 1 ? args.c_stride_m : args.c_stride_n;
  if (!a_unit || !b_unit || !c_unit || !aligned16(args.a) || !aligned16(args.b) || !aligned16(args.c) ||
      !ld_ok(lda, sizeof(T)) || !ld_ok(ldb, sizeof(T)) || !(ld_ok(ldc, out_bytes) || ldc == 1))
    return int(cudaErrorInvalidValue);

  typename Kernel::Params params;
  params.mainloop = Kernel::Mainloop::make_params(static_cast<T const*>(args.a), lda, static_cast<T const*>(args.b),
                                                  ldb, args.m, args.n, args.k);
  params.args = args;
  int const tiles_m = (args.m + Cfg::BM - 1) / Cfg::BM;
  int const tiles_n = (args.n + Cfg::BN - 1) / Cfg::BN;
  int const sms = device_sm_count();
  if (sms <= 0) return int(cudaErrorNoDevice);
  int64_t const tiles = int64_t(tiles_m) * tiles_n;
  int const ctas = int(tiles < sms ? tiles : sms);
  params.scheduler = PersistentTileScheduler::make(tiles_m, tiles_n, ctas);

  auto* kernel = &ws_gemm_kernel<Kernel>;
  // Once per variant and process; cudaFuncSetAttribute is not free.
  static cudaError_t const attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SmemBytes);
  if (attr != cudaSuccess) return int(attr);
  kernel<<<dim3(ctas), dim3(Kernel::Threads), Kernel::SmemBytes, stream>>>(params);
  return int(cudaGetLastError());
}

}  // namespace ckb

// A variant: an extern "C" launcher named after it over one configuration.
#define CKB_WS_GEMM_VARIANT(name, ...)                                          \
  extern "C" int name(CkbGemmArgs const* args, cudaStream_t stream) {          \
    return ckb::launch_ws_gemm<ckb::WsGemmConfig<__VA_ARGS__>>(args, stream);   \
  }
