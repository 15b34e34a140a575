// Pieces shared by the streaming (memory-bound) kernels of this crate: the int64 launch
// arithmetic. Element types, packs and vector accesses come from ckb-common's headers.
#pragma once

#include "common/vector_io.cuh"

namespace ckb {

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for a kernel that needs `threads_needed` threads of `block_threads` each, capped
// at `grid_limit` blocks (the kernels loop, so any cap >= 1 is correct).
inline unsigned grid_for(int64_t threads_needed, int block_threads, int64_t grid_limit) {
  int64_t blocks = ceil_div(threads_needed > 0 ? threads_needed : 1, block_threads);
  int64_t cap = grid_limit < 1 ? 1 : grid_limit;
  cap = cap < int64_t(INT32_MAX) ? cap : int64_t(INT32_MAX);
  return unsigned(blocks < cap ? blocks : cap);
}

}  // namespace ckb
