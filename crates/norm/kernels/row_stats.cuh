// Per-row statistics and how partial ones combine: across the lanes of a warp, the warps of a
// CTA, and the parts of a row (CTAs of a cluster through distributed shared memory, or split
// blocks through global memory). Every combining order is fixed, and every thread of a row
// ends with the same bits: results are reproducible and no float atomics are used.
#pragma once

#include <cooperative_groups.h>

#include "common/warp_reduce.cuh"
#include "row_io.cuh"

namespace ckb::norm {

// K floats of partial statistics.
template <int K>
struct Stat {
  float v[K];
};

// Every float of s through a warp shuffle `shfl(value)`.
template <int K, class Shfl>
CUTE_DEVICE Stat<K> shuffled(Stat<K> s, Shfl&& shfl) {
  CUTE_UNROLL
  for (int i = 0; i < K; ++i) {
    s.v[i] = shfl(s.v[i]);
  }
  return s;
}

template <int K>
CUTE_DEVICE Stat<K> shfl_xor(Stat<K> s, int mask) {
  return shuffled(s, [&](float v) { return __shfl_xor_sync(0xffffffffu, v, mask); });
}

template <int K>
CUTE_DEVICE Stat<K> shfl_from(Stat<K> s, int src_lane) {
  return shuffled(s, [&](float v) { return __shfl_sync(0xffffffffu, v, src_lane); });
}

// --- Combining rules. identity() combined with any x gives x exactly. -------------------

// Sums (sum of squares, dot products): K independent sums.
template <int K>
struct SumCombine {
  static constexpr int kStats = K;
  CUTE_DEVICE static Stat<K> identity() {
    Stat<K> s;
    CUTE_UNROLL
    for (int i = 0; i < K; ++i) {
      s.v[i] = 0.0f;
    }
    return s;
  }
  CUTE_DEVICE static Stat<K> combine(Stat<K> const& a, Stat<K> const& b) {
    Stat<K> s;
    CUTE_UNROLL
    for (int i = 0; i < K; ++i) {
      s.v[i] = a.v[i] + b.v[i];
    }
    return s;
  }
};

// Softmax: (max, sum of exp(x - max)), merged online: each sum is rescaled to the larger max.
// A side whose max equals the result keeps its sum unscaled, so two all -inf sides give
// (-inf, 0) rather than exp(-inf - -inf) = NaN; NaN sums propagate.
struct MaxSumCombine {
  static constexpr int kStats = 2;
  CUTE_DEVICE static Stat<2> identity() { return {{-INFINITY, 0.0f}}; }
  CUTE_DEVICE static float rescaled(Stat<2> const& a, float max) {
    return a.v[0] == max ? a.v[1] : a.v[1] * exp_fast(a.v[0] - max);
  }
  CUTE_DEVICE static Stat<2> combine(Stat<2> const& a, Stat<2> const& b) {
    const float max = fmaxf(a.v[0], b.v[0]);
    return {{max, rescaled(a, max) + rescaled(b, max)}};
  }
};

// LayerNorm: (count, sum of d, sum of d^2, shift), d = x - shift, with the shift an element
// of the row: one pass over the data, no divisions. Sides with different shifts are both
// re-expressed about the left one's (the right one's if the left is empty):
//   sum(x - s) = sum(x - t) + n (t - s),  sum((x - s)^2) = sum((x - t)^2) + (t - s)(2 sum(x - t) + n (t - s)).
// Inside a warp every lane shares a shift (t - s = 0: plain sums, exact). The variance is
// then sum(d^2) / n - (sum(d) / n)^2, whose cancellation is of order
// eps * (1 + (mean - shift)^2 / var): small because the shift is one of the row's values
// (a row with a large mean and a small spread keeps its digits). A constant row has every
// d = 0: mean exactly its value, variance exactly 0.
struct ShiftedSumsCombine {
  static constexpr int kStats = 4;
  CUTE_DEVICE static Stat<4> identity() { return {{0.0f, 0.0f, 0.0f, 0.0f}}; }
  CUTE_DEVICE static Stat<4> combine(Stat<4> const& a, Stat<4> const& b) {
    const float shift = a.v[0] > 0.0f ? a.v[3] : b.v[3];
    const float da = a.v[3] - shift, db = b.v[3] - shift;  // one of them is 0
    const float sum = fmaf(a.v[0], da, a.v[1]) + fmaf(b.v[0], db, b.v[1]);
    const float sq = fmaf(da, fmaf(a.v[0], da, 2.0f * a.v[1]), a.v[2]) + fmaf(db, fmaf(b.v[0], db, 2.0f * b.v[1]), b.v[2]);
    return {{a.v[0] + b.v[0], sum, sq, shift}};
  }
};

// --- Reductions ---------------------------------------------------------------------------

// The statistics of each aligned group of G lanes, in every lane of the group (its first
// lane's bits: a butterfly can differ in the last bit between lanes for a non-commutative
// rule).
template <class C, int G, int K>
CUTE_DEVICE Stat<K> group_reduce(Stat<K> s) {
  static_assert(G >= 1 && G <= 32 && (G & (G - 1)) == 0, "groups of a power of two lanes");
  if constexpr (G == 1) {
    return s;  // a lane's own: no shuffles
  } else {
    CUTE_UNROLL
    for (int mask = G / 2; mask > 0; mask /= 2) {
      s = C::combine(s, shfl_xor(s, mask));
    }
    return shuffled(s, [&](float v) { return __shfl_sync(0xffffffffu, v, 0, G); });
  }
}

// The warp's statistics, in every lane (lane 0's bits).
template <class C, int K>
CUTE_DEVICE Stat<K> warp_reduce(Stat<K> s) {
  return group_reduce<C, 32>(s);
}

// The CTA's statistics, in every thread: warps' results through shared memory, folded in
// warp order by each thread. `slots` (at least blockDim.x / 32 entries) must not be written
// again before every thread has passed another __syncthreads (callers alternate two).
template <class C, int K>
CUTE_DEVICE Stat<K> cta_reduce(Stat<K> s, Stat<K>* slots) {
  return cta_fold_warps<C>(warp_reduce<C>(s), slots);
}

// `load(0) ⊕ load(1) ⊕ ... ⊕ load(count - 1)`, left to right, in every lane of the warp:
// lane i loads entries i, i + 32, ...; all lanes then fold the same values in the same order.
// Every lane of the warp must call it.
template <class C, int K, class Load>
CUTE_DEVICE Stat<K> fold_in_order(int count, Load&& load) {
  const int lane = threadIdx.x % 32;
  Stat<K> acc = C::identity();
  for (int first = 0; first < count; first += 32) {
    const Stat<K> mine = first + lane < count ? load(first + lane) : C::identity();
    const int n = min(32, count - first);
    for (int r = 0; r < n; ++r) {
      acc = C::combine(acc, shfl_from(mine, r));
    }
  }
  return acc;
}

}  // namespace ckb::norm
