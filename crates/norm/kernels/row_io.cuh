// How one thread of a row kernel reaches its share of a row: the pack-to-column map, and pack
// loads and stores (16-byte vectors where the row allows, element by element otherwise).
// Element types, packs and the vector accesses come from ckb-common's headers.
#pragma once

#include "common/vector_io.cuh"

namespace ckb::norm {

using namespace cute;

// One thread's register share of a row part: N packs of W elements, pack j at columns
// col(j) .. col(j)+W. W is the 16-byte pack but for lanes of short rows (lanes-1), whose
// packs are sized to the row: a pack of 8 slots for a row of 2 issued 6 dead predicated
// loads, stores and their tests per row.
template <class T, int N, int W = kPackElems<T>>
using RowFrag = decltype(make_tensor<T>(Shape<Int<W>, Int<N>>{}));  // (PACK,N)

// How a thread's elements lie in its row part of group * N * PACK columns.
//  - kVector: consecutive threads take consecutive packs, so a warp moves 512 contiguous
//    bytes per access, 16 bytes at a time. The host picks it only when every row, gamma and
//    beta start 16-byte aligned and cols % PACK == 0: a pack lies wholly inside or wholly
//    outside the row.
//  - kShifted: kVector's packs laid on the 16-byte granules of the output row, which may
//    start anywhere: pack j starts `shift` columns (the row's offset into its first granule)
//    before kVector's, so that a pack inside the row is stored as one aligned vector. Inputs
//    are read through load_span: one vector where their alignment matches, else the two
//    around the pack, funnel-shifted. Only packs reaching past either end of the row go
//    element by element. Staged forward rows of any alignment (backward column sums need the same
//    columns in a register on every row).
//  - kContiguous: kVector's packs, accessed element by element (any alignment). Backward rows
//    staged in shared memory, whose global loads are coalesced by the staging itself.
//  - kStrided: element k of pack j is `group` columns after element k - 1, so that each
//    element access is coalesced across the warp on its own (any alignment; backward rows).
enum class Access { kVector, kShifted, kContiguous, kStrided };

// Element k of pack j of a register fragment (PACK,N) read through A, as f32. bf16 pairs
// that a 16-byte access filled share a 32-bit register: the low one widens by a shift, the
// high one by a mask, one instruction each (the conversion operator takes two for the high
// one, PRMT and SHF). Elements read one by one (kContiguous, kStrided) sit in registers of
// their own, which pairing would first pack: they convert, as do packs of an odd length.
template <Access A, class Frag>
CUTE_DEVICE float widen(Frag const& x, int k, int j) {
  using T = typename Frag::value_type;
  constexpr int W = decltype(size<0>(x))::value;
  constexpr bool kPaired = A == Access::kVector || A == Access::kShifted;
  if constexpr (kPaired && cute::is_same_v<T, cutlass::bfloat16_t> && W % 2 == 0) {
    const uint32_t pair = reinterpret_cast<uint32_t const*>(&x(0, j))[k / 2];  // constant indices: registers
    return __uint_as_float(k % 2 == 0 ? pair << 16 : pair & 0xffff0000u);
  } else {
    return float(x(k, j));
  }
}

// kInside: a map the caller has found wholly inside the row (PackMap::inside): every
// predicate folds to true at compile time, so the common case takes none of the row ends'
// per-element selects (the compiler if-converts them into the common path otherwise: on
// the H200 the shifted staged kernel spent half its issue slots on them).
template <int P, Access A, bool kInside = false>
struct PackMap {
  static constexpr bool kInsideRow = kInside;
  int cols;       // row length
  int base;       // column of the thread's element (k, j) = (0, 0), before the shift
  int step;       // columns from pack j to pack j + 1: group * P
  int group;      // threads sharing the row part
  int shift = 0;  // kShifted: the output row's offset into its first granule, 0 <= shift < P

  CUTE_DEVICE int col(int j, int k) const {
    return base + j * step + k * (A == Access::kStrided ? group : 1) - (A == Access::kShifted ? shift : 0);
  }
  CUTE_DEVICE bool valid(int j, int k) const {
    if constexpr (kInside) {
      return true;
    } else if constexpr (A == Access::kVector) {
      return col(j, 0) < cols;
    } else {
      return unsigned(col(j, k)) < unsigned(cols);  // shifted packs also start before the row
    }
  }
  // Pack j lies wholly inside the row (contiguous packs: kVector's, kShifted's, kContiguous's).
  CUTE_DEVICE bool whole(int j) const { return kInside || (col(j, 0) >= 0 && col(j, 0) + P <= cols); }
  // Every element of pack j lies inside the row: the common case, which then takes no
  // per-element predicates (on halves, a select per element costs several instructions).
  CUTE_DEVICE bool all_valid(int j) const {
    if constexpr (kInside) {
      return true;
    } else if constexpr (A == Access::kVector) {
      return valid(j, 0);
    } else if constexpr (A == Access::kStrided) {
      return col(j, P - 1) < cols;  // columns grow with k from base >= 0
    } else {
      return whole(j);
    }
  }
  // Whether all N packs lie wholly inside the row (contiguous packs, growing with j);
  // kShifted packs of ops with per-column parameters (kPairs) also with the granule either
  // side (load_span's pair of a parameter of any alignment stays inside its array).
  template <int N, bool kPairs = true>
  CUTE_DEVICE bool packs_inside() const {
    static_assert(A != Access::kStrided, "contiguous packs");
    constexpr int kMargin = A == Access::kShifted && kPairs ? P : 0;
    return kInside || (col(0, 0) >= kMargin && col(N - 1, 0) + P + kMargin <= cols);
  }
  // This map, its predicates folded: only where packs_inside holds.
  CUTE_DEVICE PackMap<P, A, true> inside() const { return {cols, base, step, group, shift}; }
};

// The offset of `ptr` into its 16-byte granule, in elements (kShifted's PackMap::shift).
template <class T>
CUTE_DEVICE int granule_offset(T const* ptr) {
  return int(reinterpret_cast<uintptr_t>(ptr) % kVectorBytes) / int(sizeof(T));
}

// The map of thread `lane` of a group of `group` threads over the group * N * PACK columns
// from `first_col` on (kShifted: before its shift, which the caller sets per row).
template <int P, Access A>
CUTE_DEVICE PackMap<P, A> pack_map_from(int cols, int first_col, int group, int lane) {
  return {cols, first_col + (A == Access::kStrided ? lane : lane * P), group * P, group};
}

// The map of thread `lane` of a group of `group` threads, in part `part` of its row.
template <int P, int N, Access A>
CUTE_DEVICE PackMap<P, A> pack_map(int cols, int part, int group, int lane) {
  return pack_map_from<P, A>(cols, part * group * N * P, group, lane);
}

enum class Cache { kStream, kKeep };

template <Cache kCache>
CUTE_DEVICE void ld_global_128(void const* gmem, uint4& r) {
  if constexpr (kCache == Cache::kStream) {
    ld_stream_128(gmem, r);
  } else {
    ld_cached_128(gmem, r);
  }
}

// A pack of W elements as one vector load (W * sizeof(T) bytes: 16, or 2 to 8 for packs
// sized to short rows), from an address aligned to it.
template <Cache kCache, class T, class Pack>
CUTE_DEVICE void ld_global_vec(T const* gmem, Pack&& r) {
  constexpr int kBytes = decltype(size(r))::value * int(sizeof(T));
  if constexpr (kBytes == kVectorBytes) {
    ld_global_128<kCache>(gmem, as_vector(r));
  } else {
    using Bits = cute::uint_byte_t<kBytes>;
    recast<Bits>(r)(0) = *reinterpret_cast<Bits const*>(gmem);
  }
}
template <class T, class Pack>
CUTE_DEVICE void st_global_vec(T* gmem, Pack&& r) {
  constexpr int kBytes = decltype(size(r))::value * int(sizeof(T));
  if constexpr (kBytes == kVectorBytes) {
    st_128(gmem, as_vector(r));
  } else {
    using Bits = cute::uint_byte_t<kBytes>;
    *reinterpret_cast<Bits*>(gmem) = recast<Bits>(r)(0);
  }
}

// The 16 bytes starting `bytes` (0 <= bytes < 16) into the 32 bytes lo:hi.
CUTE_DEVICE uint4 funnel_bytes(uint4 const& lo, uint4 const& hi, int bytes) {
  const uint32_t w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  const uint32_t bits = uint32_t(bytes % 4) * 8;
  auto from = [&](auto first) {
    constexpr int Q = decltype(first)::value;  // constant indices: w stays in registers
    return uint4{__funnelshift_r(w[Q], w[Q + 1], bits), __funnelshift_r(w[Q + 1], w[Q + 2], bits),
                 __funnelshift_r(w[Q + 2], w[Q + 3], bits), __funnelshift_r(w[Q + 3], w[Q + 4], bits)};
  };
  switch (bytes / 4) {
    case 0: return from(Int<0>{});
    case 1: return from(Int<1>{});
    case 2: return from(Int<2>{});
    default: return from(Int<3>{});
  }
}

// Elements col .. col + PACK of `base`, an array of n (all inside it), into r (PACK): one
// 16-byte load where base + col is aligned, else (kPair) the two granules around it,
// shifted; element loads where those granules reach outside the array, or without kPair.
// kInBounds: the caller knows the granules inside the array (col - PACK >= 0, col + 2 PACK
// <= n), which drops the element loads (if-converted, they issue beside the pair).
// skew = granule_offset(base + col): the same for every pack of a map, whose packs lie whole
// granules apart, so the caller computes it once for all of them.
template <Cache kCache, bool kPair, bool kInBounds = false, class T, class Pack>
CUTE_DEVICE void load_span(T const* base, int n, int col, int skew, Pack&& r) {
  constexpr int P = kPackElems<T>;
  T const* at = base + col;
  if (skew == 0) {
    ld_global_128<kCache>(at, as_vector(r));
  } else if (kPair && (kInBounds || (col - skew >= 0 && col - skew + 2 * P <= n))) {
    uint4 lo, hi;
    ld_global_128<kCache>(at - skew, lo);
    ld_global_128<kCache>(at - skew + P, hi);
    as_vector(r) = funnel_bytes(lo, hi, skew * int(sizeof(T)));
  } else {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      r(k) = base[col + k];
    }
  }
}

// Pack j of `row` into r (PACK); `fill` outside the row (a value neutral for the op's
// statistics, so that they need no predicates).
template <Cache kCache, int P, Access A, bool I, class T, class Pack>
CUTE_DEVICE void load_pack(T const* row, PackMap<P, A, I> const& m, int j, Pack&& r, T fill) {
  if constexpr (A == Access::kVector) {
    if (m.valid(j, 0)) {
      ld_global_vec<kCache>(row + m.col(j, 0), r);
    } else {
      cute::fill(r, fill);
    }
  } else if constexpr (A == Access::kShifted) {
    // Row operands whose alignment differs from the output's (strided views) go element by
    // element, which keeps the pair's registers out of the row's: parameters take the pair.
    if (m.whole(j)) {
      const int skew = granule_offset(row + m.col(0, 0));  // pack 0's: common to all j
      load_span<kCache, kCache == Cache::kKeep, I>(row, m.cols, m.col(j, 0), skew, r);
    } else {
      CUTE_UNROLL
      for (int k = 0; k < P; ++k) {
        r(k) = m.valid(j, k) ? row[m.col(j, k)] : fill;
      }
    }
  } else if (m.all_valid(j)) {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      r(k) = row[m.col(j, k)];
    }
  } else {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      r(k) = m.valid(j, k) ? row[m.col(j, k)] : fill;
    }
  }
}

// Every pack of the thread's share into r (PACK,N).
template <Cache kCache, int P, Access A, bool I, class T, class Frag>
CUTE_DEVICE void load_packs(T const* row, PackMap<P, A, I> const& m, Frag& r, T fill = T(0.0f)) {
  CUTE_UNROLL
  for (int j = 0; j < size<1>(r); ++j) {
    load_pack<kCache>(row, m, j, r(_, j), fill);
  }
}

// Pack j from a row part staged in shared memory: `part` holds the row's columns from
// `origin` on, densely, from a 16-byte aligned address, with room for a granule past the
// last pack read. `fill` outside the row. kShifted packs lie `skew` elements into their
// granules, the same for every pack of a row (its input's alignment less its output's: 0
// for dense rows): two granules, shifted, where it is not 0. The caller's skew keeps the
// generic address (and its shared window) out of every pack's path.
template <int P, Access A, bool I, class T, class Pack>
CUTE_DEVICE void load_pack_smem(T const* part, int origin, int skew, PackMap<P, A, I> const& m, int j, Pack&& r,
                                T fill) {
  static_assert(A != Access::kStrided, "staged parts are read a pack at a time");
  T const* at = part + (m.col(j, 0) - origin);
  if (A == Access::kShifted && skew != 0) {
    uint4 lo, hi;
    ld_shared_128(at - skew, lo);
    ld_shared_128(at - skew + P, hi);
    as_vector(r) = funnel_bytes(lo, hi, skew * int(sizeof(T)));
  } else {
    ld_shared_128(at, as_vector(r));
  }
  if (!m.all_valid(j)) {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      r(k) = m.valid(j, k) ? r(k) : fill;
    }
  }
}

// Pack j of `row` from r (PACK); only columns inside the row are written. kShifted packs
// are aligned on the output row's granules: one vector where the pack is inside the row.
template <int P, Access A, bool I, class T, class Pack>
CUTE_DEVICE void store_pack(T* row, PackMap<P, A, I> const& m, int j, Pack&& r) {
  if constexpr (A == Access::kVector) {
    if (m.valid(j, 0)) {
      st_global_vec(row + m.col(j, 0), r);
    }
  } else if constexpr (A == Access::kShifted) {
    // The map's shift is the output row's: a second output (fused add's h) of another
    // alignment goes element by element.
    if (m.whole(j) && granule_offset(row + m.col(0, 0)) == 0) {  // pack 0's: common to all j
      st_128(row + m.col(j, 0), as_vector(r));
    } else {
      CUTE_UNROLL
      for (int k = 0; k < P; ++k) {
        if (m.valid(j, k)) {
          row[m.col(j, k)] = r(k);
        }
      }
    }
  } else if (m.all_valid(j)) {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      row[m.col(j, k)] = r(k);
    }
  } else {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      if (m.valid(j, k)) {
        row[m.col(j, k)] = r(k);
      }
    }
  }
}

// e^x through the SFU (ex2.approx, about 2 ulp); exp(-inf) = 0 and NaN stays NaN.
CUTE_DEVICE float exp_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
  return y;
}

}  // namespace ckb::norm
