// Operand staging for TMA. TMA describes a matrix only when its start and the distance
// between its lines (rows along the contiguous dimension) are multiples of 16 bytes; an
// operand that is not (K = 4095, say) is copied into scratch whose lines are, and the TMA
// kernels read the copy. One read and one write of the operand, against the universal
// kernel's 10x slower mainloop.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace ckb {

constexpr int kStageThreads = 256;
constexpr int kStagePackElems = 8;  // 16-bit elements per 16-byte store

// dst line l = src line l, for `lines` lines of `line_len` 16-bit elements: src lines are
// `src_pitch` elements apart (any pitch, any 2-byte-aligned start), dst lines `dst_pitch`
// apart (a multiple of 8 elements, dst 16-byte aligned). Each thread writes whole 16-byte
// packs; the pack that crosses the end of a line is completed with zeros, which TMA never
// reads (its extent along the line is `line_len`). A block walks whole lines, so no thread
// divides 64-bit indices.
__global__ void __launch_bounds__(kStageThreads)
    stage_lines_kernel(uint16_t const* __restrict__ src, int64_t src_pitch, uint16_t* __restrict__ dst,
                       int64_t dst_pitch, int64_t lines, int64_t line_len) {
  int64_t const packs = (line_len + kStagePackElems - 1) / kStagePackElems;
  for (int64_t line = blockIdx.x; line < lines; line += gridDim.x) {
    uint16_t const* s = src + line * src_pitch;
    uint4* d = reinterpret_cast<uint4*>(dst + line * dst_pitch);
    for (int64_t p = threadIdx.x; p < packs; p += kStageThreads) {
      int64_t const first = p * kStagePackElems;
      uint16_t v[kStagePackElems];
#pragma unroll
      for (int e = 0; e < kStagePackElems; ++e) {
        v[e] = first + e < line_len ? __ldg(s + first + e) : uint16_t(0);
      }
      d[p] = make_uint4(v[0] | uint32_t(v[1]) << 16, v[2] | uint32_t(v[3]) << 16, v[4] | uint32_t(v[5]) << 16,
                        v[6] | uint32_t(v[7]) << 16);
    }
  }
}

// Enqueues the staging of one operand on `stream`; `sms` sizes the grid (eight blocks per SM,
// each looping over lines).
inline int launch_stage_lines(void const* src, int64_t src_pitch, void* dst, int64_t dst_pitch, int64_t lines,
                              int64_t line_len, int sms, cudaStream_t stream) {
  if (lines <= 0 || line_len <= 0) return int(cudaSuccess);
  int64_t const cap = int64_t(sms > 0 ? sms : 1) * 8;
  unsigned const grid = unsigned(lines < cap ? lines : cap);
  stage_lines_kernel<<<grid, kStageThreads, 0, stream>>>(static_cast<uint16_t const*>(src), src_pitch,
                                                         static_cast<uint16_t*>(dst), dst_pitch, lines, line_len);
  return int(cudaGetLastError());
}

}  // namespace ckb
