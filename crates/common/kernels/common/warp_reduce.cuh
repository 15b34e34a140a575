// Warp and CTA reductions in a fixed order, over any combining rule `C` with
// `static Acc C::combine(Acc, Acc)`. An accumulator type other than float brings its own
// `shfl_xor(Acc, int)`, found by argument-dependent lookup.
#pragma once

#include <cute/config.hpp>

namespace ckb {

CUTE_DEVICE float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }

// Butterfly over the 32 lanes: every lane ends with a combination of all 32 values. For a
// rule that is not exactly commutative, lanes may differ in the last bit: take one lane's.
template <class C, class Acc>
CUTE_DEVICE Acc warp_butterfly(Acc acc) {
  CUTE_UNROLL
  for (int mask = 16; mask > 0; mask /= 2) {
    acc = C::combine(acc, shfl_xor(acc, mask));
  }
  return acc;
}

// The CTA's result in every thread, from each warp's own result (lane 0's is used): through
// `slots` (blockDim.x / 32 entries of shared memory), folded in warp order by every thread.
// `slots` must not be written again before every thread has passed another __syncthreads.
template <class C, class Acc>
CUTE_DEVICE Acc cta_fold_warps(Acc const& warp_result, Acc* slots) {
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (threadIdx.x % 32 == 0) {
    slots[warp] = warp_result;
  }
  __syncthreads();
  Acc acc = slots[0];
  for (int w = 1; w < warps; ++w) {
    acc = C::combine(acc, slots[w]);
  }
  return acc;
}

}  // namespace ckb
