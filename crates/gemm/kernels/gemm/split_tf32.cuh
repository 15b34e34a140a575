// f32 operands for the tf32 tensor-core kernels.
//
// fp32 accuracy from tf32 products (3xTF32): each element is x = hi + lo with hi = tf32(x) and
// lo = tf32(x - hi), both exact in tf32, and a*b ~ a_hi*b_hi + a_hi*b_lo + a_lo*b_hi (the
// dropped a_lo*b_lo and the rounding of lo are below 2^-21 of |a*b|). The three products are
// one K-major GEMM over K' = 3 * seg_pitch when A's rows are [a_hi | a_hi | a_lo] and B's
// [b_hi | b_lo | b_hi]; with one term ([x_hi]) it is plain TF32. This kernel writes such rows.
// Every input is read once, from any strides, and each output row is written contiguously.
//
// A non-finite input (inf, NaN, or a value that rounds to inf) goes whole into segment 0 and
// leaves 0 in the others, so its one product keeps SGEMM's +-inf or NaN instead of the NaN
// that inf * 0 in the cross terms would give.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace ckb {

constexpr int kSplitTile = 32;         // a block moves 32 rows x 32 K of the operand
constexpr int kSplitRowsPerPass = 8;   // threads: 32 along the tile's fast side x 8

// Round to nearest tf32 (ties away from zero); the low 13 mantissa bits come back zero.
__device__ inline float round_to_tf32(float x) {
  uint32_t bits;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(x));
  return __uint_as_float(bits);
}

// dst(r, s * seg_pitch + k) = term s of src(r, k) for r < rows, k < k_len, and 0 for
// k_len <= k < seg_pitch; term s is lo when bit s of `lo_terms` is set, else hi. src(r, k) is
// at src + r * stride_r + k * stride_k: tiles go through shared memory so that both the read
// (along whichever stride is 1) and the write (along k) are coalesced.
__global__ void __launch_bounds__(kSplitTile * kSplitRowsPerPass)
    split_tf32_kernel(float const* __restrict__ src, int64_t stride_r, int64_t stride_k, float* __restrict__ dst,
                      int64_t dst_pitch, int64_t seg_pitch, int64_t rows, int64_t k_len, int terms,
                      unsigned lo_terms) {
  __shared__ float tile[kSplitTile][kSplitTile + 1];  // [row][k], padded against bank conflicts
  int64_t const k0 = int64_t(blockIdx.x) * kSplitTile;
  bool const k_contiguous = stride_k == 1;  // else the lanes walk rows (column-major source)
  int const lane = int(threadIdx.x), pass = int(threadIdx.y);
  for (int64_t r0 = int64_t(blockIdx.y) * kSplitTile; r0 < rows; r0 += int64_t(gridDim.y) * kSplitTile) {
    for (int i = pass; i < kSplitTile; i += kSplitRowsPerPass) {
      int const row = k_contiguous ? i : lane;
      int const col = k_contiguous ? lane : i;
      int64_t const r = r0 + row, k = k0 + col;
      tile[row][col] = (r < rows && k < k_len) ? __ldg(src + r * stride_r + k * stride_k) : 0.0f;
    }
    __syncthreads();
    for (int i = pass; i < kSplitTile; i += kSplitRowsPerPass) {
      int64_t const r = r0 + i, k = k0 + lane;
      if (r < rows && k < seg_pitch) {
        float const x = tile[i][lane];
        float const hi = round_to_tf32(x);
        bool const finite = isfinite(hi);
        float const lo = finite ? round_to_tf32(x - hi) : 0.0f;
        float* out = dst + r * dst_pitch + k;
        for (int s = 0; s < terms; ++s) {
          out[s * seg_pitch] = !finite ? (s == 0 ? hi : 0.0f) : (lo_terms >> s & 1u) ? lo : hi;
        }
      }
    }
    __syncthreads();  // the tile is refilled for the next rows
  }
}

// Enqueues the split of one `rows x k_len` operand on `stream`.
inline int launch_split_tf32(float const* src, int64_t stride_r, int64_t stride_k, float* dst, int64_t dst_pitch,
                             int64_t seg_pitch, int64_t rows, int64_t k_len, int terms, unsigned lo_terms,
                             cudaStream_t stream) {
  if (rows <= 0 || seg_pitch <= 0) return int(cudaSuccess);
  int64_t const k_blocks = (seg_pitch + kSplitTile - 1) / kSplitTile;
  int64_t const row_blocks = (rows + kSplitTile - 1) / kSplitTile;
  if (k_blocks > INT32_MAX) return int(cudaErrorInvalidValue);
  dim3 const grid(unsigned(k_blocks), unsigned(row_blocks < 65535 ? row_blocks : 65535));
  split_tf32_kernel<<<grid, dim3(kSplitTile, kSplitRowsPerPass), 0, stream>>>(
      src, stride_r, stride_k, dst, dst_pitch, seg_pitch, rows, k_len, terms, lo_terms);
  return int(cudaGetLastError());
}

}  // namespace ckb
