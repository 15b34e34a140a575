// What every GEMM launcher takes from Rust, and the element helpers the epilogues share.
//
// Kernel view of a problem (Rust's launch.rs maps BLAS layouts onto it, swapping A and B
// when that suits a variant better):
//   D(M,N) = alpha * sum_k A(M,K) * B(N,K) + beta * C(M,N),   D written over C,
// each operand addressed by two element strides, so row-/column-major and padded leading
// dimensions are all the same thing to the kernels.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include <cutlass/bfloat16.h>
#include <cutlass/half.h>

// Mirrors `ckb_gemm::launch::KernelArgs` (#[repr(C)]); keep the two in step.
struct CkbGemmArgs {
  const void* a;         // A(m,k) at a + m*a_stride_m + k*a_stride_k
  const void* b;         // B(n,k) at b + n*b_stride_n + k*b_stride_k
  void* c;               // C(m,n) at c + m*c_stride_m + n*c_stride_n; read only when beta != 0
  int64_t a_stride_m, a_stride_k;
  int64_t b_stride_n, b_stride_k;
  int64_t c_stride_m, c_stride_n;
  int32_t m, n, k;
  int32_t out_dtype;     // CkbOutDType
  float alpha, beta;
  // Split-K (TMA kernels): `splits` K slices of `split_k_tiles` K-tiles each (the last may
  // be shorter). Slice s writes its fp32 product to `partials + s * partial_slice`, in C's
  // orientation (row-major when c_stride_n == 1) with leading dimension `partial_ld`; a
  // second kernel sums the slices in order into C. splits == 1: straight to C, and
  // split_k_tiles is ignored (the one slice is all of K).
  float* partials;
  int64_t partial_ld, partial_slice;
  int32_t splits;
  int32_t split_k_tiles;
  // 1: the epilogue hands C to TMA (TMA kernels; Rust sets it only for a row-major C whose
  // start, pitch and rows are whole 16-byte granules, beta == 0 and no split). The launcher
  // then builds C's tensor map. 0: the epilogue's own vector stores.
  int32_t c_tma_store;
  int32_t unused_;
};
static_assert(sizeof(CkbGemmArgs) == 136, "layout must match launch.rs");

// Output element type, chosen at run time so one compiled kernel serves f32/f16/bf16 output.
enum CkbOutDType : int32_t { CKB_OUT_F32 = 0, CKB_OUT_F16 = 1, CKB_OUT_BF16 = 2 };

namespace ckb {

// Calls f(OutType{}) for the run-time output dtype; the branch is uniform across the grid.
template <class F>
__host__ __device__ inline void dispatch_out_dtype(int32_t out_dtype, F&& f) {
  switch (out_dtype) {
    case CKB_OUT_F16: f(cutlass::half_t{}); break;
    case CKB_OUT_BF16: f(cutlass::bfloat16_t{}); break;
    default: f(float{}); break;
  }
}

// C = alpha * acc + beta * C for one element; beta == 0 never reads C (it may hold NaN).
template <class TOut>
__device__ inline void axpby_store(TOut* c, float acc, float alpha, float beta) {
  float value = alpha * acc;
  if (beta != 0.0f) value += beta * static_cast<float>(*c);
  *c = static_cast<TOut>(value);
}

// Four consecutive output elements moved as one access (8 or 16 bytes).
template <class T>
struct alignas(4 * sizeof(T)) Vec4 {
  T v[4];
};

// Four consecutive elements of C at `c` (aligned to 4 elements) as one vector store, from
// the accumulators and, when `ReadC` (`beta != 0`, decided once by the caller), the four old
// values the caller loaded.
template <bool ReadC, class TOut>
__device__ inline void axpby_store4(TOut* c, float4 acc, Vec4<TOut> const& old, float alpha, float beta) {
  float r[4] = {alpha * acc.x, alpha * acc.y, alpha * acc.z, alpha * acc.w};
  if constexpr (ReadC) {
#pragma unroll
    for (int e = 0; e < 4; ++e) r[e] += beta * static_cast<float>(old.v[e]);
  }
  Vec4<TOut> out;
#pragma unroll
  for (int e = 0; e < 4; ++e) out.v[e] = static_cast<TOut>(r[e]);
  *reinterpret_cast<Vec4<TOut>*>(c) = out;
}

// As above, loading the old values itself.
template <bool ReadC, class TOut>
__device__ inline void axpby_store4(TOut* c, float4 acc, float alpha, float beta) {
  Vec4<TOut> old{};
  if constexpr (ReadC) old = *reinterpret_cast<Vec4<TOut> const*>(c);
  axpby_store4<ReadC>(c, acc, old, alpha, beta);
}

}  // namespace ckb
