// Host launchers: what each generated variant file (build.rs writes one per row of
// src/variants/table.rs) calls with the arguments Rust built.
//
// Rust's launch.rs decides whether a variant can run a problem (input and output dtype,
// majorness, 16-byte alignment and leading dimensions for TMA, grid limits) and builds the
// kernel's view of it; these launchers trust that plan. The asserts only restate the
// preconditions for debug builds (the build passes -DNDEBUG). What is left to fail here is
// the CUDA runtime: the device query, the shared-memory opt-in and the launch itself.
#pragma once

#include <cassert>
#include <cstdint>
#include <cuda_runtime.h>

#include "gemm/args.cuh"
#include "gemm/kernel_ws.cuh"
#include "gemm/split_k.cuh"
#include "gemm/tile_scheduler.cuh"
#include "gemm/universal.cuh"

namespace ckb {

// Multiprocessors of the current device, for persistent grids; 0 when the query fails.
inline int device_sm_count() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return 0;
  return sms;
}

// The warp-specialized TMA + WGMMA kernel of configuration `Cfg`: TMA descriptors over the
// whole operands, then a persistent grid; with split-K (the plan's `splits` > 1), then the
// reduction of the slices into C.
template <class Cfg>
int launch_ws_gemm(CkbGemmArgs const& args, cudaStream_t stream) {
  using Kernel = WsGemmKernel<Cfg>;
  using T = typename Cfg::TIn;
  // The unit strides are where this variant's shared-memory layouts expect them; the other
  // stride of each operand is its leading dimension.
  assert(Cfg::AKMajor ? args.a_stride_k == 1 : args.a_stride_m == 1);
  assert(Cfg::BKMajor ? args.b_stride_k == 1 : args.b_stride_n == 1);
  assert(args.c_stride_n == 1 || args.c_stride_m == 1);
  assert(((reinterpret_cast<uintptr_t>(args.a) | reinterpret_cast<uintptr_t>(args.b)) & 15) == 0);
  int64_t const lda = Cfg::AKMajor ? args.a_stride_m : args.a_stride_k;
  int64_t const ldb = Cfg::BKMajor ? args.b_stride_n : args.b_stride_k;

  int const sms = device_sm_count();
  if (sms <= 0) return int(cudaErrorNoDevice);
  typename Kernel::Params params;
  params.mainloop = Kernel::Mainloop::make_params(static_cast<T const*>(args.a), lda, static_cast<T const*>(args.b),
                                                  ldb, args.m, args.n, args.k);
  params.args = args;
  if (args.c_tma_store) {
    int const made = Kernel::Epilogue::make_store_descriptor(args, params.store_c);
    if (made != int(cudaSuccess)) return made;
  }
  int const k_tiles = int((int64_t(args.k) + Cfg::BK - 1) / Cfg::BK);
  assert(args.splits >= 1 && (args.splits == 1 || args.partials != nullptr));
  assert(args.splits == 1 || (args.split_k_tiles >= 1 && int64_t(args.splits - 1) * args.split_k_tiles < k_tiles));
  params.scheduler =
      Kernel::Scheduler::make(args.m, args.n, Cfg::BM, Cfg::BN, sms, k_tiles, args.splits, args.split_k_tiles);

  auto* kernel = &ws_gemm_kernel<Kernel>;
  // Once per variant and process; cudaFuncSetAttribute is not free.
  static cudaError_t const attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SmemBytes);
  if (attr != cudaSuccess) return int(attr);
  kernel<<<params.scheduler.grid(), dim3(Kernel::Threads), Kernel::SmemBytes, stream>>>(params);
  cudaError_t const launched = cudaGetLastError();
  if (launched != cudaSuccess || args.splits == 1) return int(launched);
  return launch_split_k_reduce(args, sms, stream);
}

// The universal kernel for input type `TIn`: one CTA per tile.
template <class TIn>
int launch_universal_gemm(CkbGemmArgs const& args, cudaStream_t stream) {
  using G = UniversalGemm<TIn>;
  auto const scheduler = OneTilePerCtaScheduler::make(args.m, args.n, G::BM, G::BN);
  assert(int64_t(scheduler.tiles_m) * scheduler.tiles_n <= INT32_MAX);  // launch.rs: the grid limit
  constexpr int smem = int(sizeof(typename G::SharedStorage));
  static_assert(smem <= 48 * 1024, "no opt-in shared memory needed");
  universal_gemm_kernel<TIn><<<scheduler.grid(), dim3(G::Threads), smem, stream>>>(args, scheduler);
  return int(cudaGetLastError());
}

}  // namespace ckb
