// Split-K: where the output tiles alone leave SMs idle (skinny or deep-K problems), the K
// loop is cut into slices that run as separate work units (tile_scheduler.cuh). Each unit's
// epilogue writes its fp32 product to its slice of the partials; this kernel then forms
// C = alpha * sum_s partial_s + beta * C, summing slices in order 0, 1, ..., so the result
// is the same bits on every run. The slices' layout follows C's, so both passes are
// coalesced.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "gemm/args.cuh"

namespace ckb {

// The arguments slice `split`'s epilogue writes with: its partial as an f32 C, alpha = 1,
// beta = 0 (never read), C's orientation.
__device__ inline CkbGemmArgs split_partial_args(CkbGemmArgs args, int split) {
  bool const row_major = args.c_stride_n == 1;
  args.c = args.partials + int64_t(split) * args.partial_slice;
  args.c_stride_m = row_major ? args.partial_ld : 1;
  args.c_stride_n = row_major ? 1 : args.partial_ld;
  args.out_dtype = CKB_OUT_F32;
  args.alpha = 1.0f;
  args.beta = 0.0f;
  args.c_tma_store = 0;
  return args;
}

constexpr int kSplitReduceThreads = 256;

// One thread per output element, grid-stride, walking C's contiguous dimension fastest.
template <class TOut>
__global__ void __launch_bounds__(kSplitReduceThreads) split_k_reduce_kernel(CkbGemmArgs const args) {
  bool const row_major = args.c_stride_n == 1;
  int64_t const lines = row_major ? args.m : args.n;     // C's lines (rows if row-major)
  int64_t const line_len = row_major ? args.n : args.m;
  int64_t const c_ld = row_major ? args.c_stride_m : args.c_stride_n;
  int64_t const total = lines * line_len;
  auto* c = static_cast<TOut*>(args.c);
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t const line = e / line_len, at = e - line * line_len;
    float const* p = args.partials + line * args.partial_ld + at;
    // Eight slices loaded at a time (one memory latency, not eight), added in slice order so
    // that every run gives the same bits.
    float sum = 0.0f;
    int s = 0;
    for (; s + 8 <= args.splits; s += 8) {
      float v[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = __ldcs(p + int64_t(s + i) * args.partial_slice);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[i];
    }
    for (; s < args.splits; ++s) sum += __ldcs(p + int64_t(s) * args.partial_slice);
    axpby_store(c + line * c_ld + at, sum, args.alpha, args.beta);
  }
}

// Enqueues the reduction of `args.splits` partials into C.
inline int launch_split_k_reduce(CkbGemmArgs const& args, int sms, cudaStream_t stream) {
  int64_t const total = int64_t(args.m) * args.n;
  int64_t const cap = int64_t(sms > 0 ? sms : 1) * 8;
  int64_t const needed = (total + kSplitReduceThreads - 1) / kSplitReduceThreads;
  unsigned const grid = unsigned(needed < cap ? needed : cap);
  dispatch_out_dtype(args.out_dtype, [&](auto out_tag) {
    split_k_reduce_kernel<decltype(out_tag)><<<grid, kSplitReduceThreads, 0, stream>>>(args);
  });
  return int(cudaGetLastError());
}

}  // namespace ckb
