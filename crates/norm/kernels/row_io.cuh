// How one thread of a row kernel reaches its share of a row: the pack-to-column map, and pack
// loads and stores (16-byte vectors where the row allows, element by element otherwise).
// Element types, packs and the vector accesses come from ckb-common's headers.
#pragma once

#include "common/vector_io.cuh"

namespace ckb::norm {

using namespace cute;

// One thread's register share of a row part: N packs, pack j at columns col(j) .. col(j)+PACK.
template <class T, int N>
using RowFrag = decltype(make_tensor<T>(Shape<Int<kPackElems<T>>, Int<N>>{}));  // (PACK,N)

// How a thread's elements lie in its row part of group * N * PACK columns.
//  - kVector: consecutive threads take consecutive packs, so a warp moves 512 contiguous
//    bytes per access, 16 bytes at a time. The host picks it only when every row, gamma and
//    beta start 16-byte aligned and cols % PACK == 0: a pack lies wholly inside or wholly
//    outside the row.
//  - kContiguous: the same packs, accessed element by element (any alignment). For rows
//    staged in shared memory, whose global traffic is coalesced by the staging itself.
//  - kStrided: element k of pack j is `group` columns after element k - 1, so that each
//    element access is coalesced across the warp on its own (any alignment).
enum class Access { kVector, kContiguous, kStrided };

template <int P, Access A>
struct PackMap {
  int cols;   // row length
  int base;   // column of the thread's element (k, j) = (0, 0)
  int step;   // columns from pack j to pack j + 1: group * P
  int group;  // threads sharing the row part

  CUTE_DEVICE int col(int j, int k) const { return base + j * step + k * (A == Access::kStrided ? group : 1); }
  CUTE_DEVICE bool valid(int j, int k) const { return A == Access::kVector ? col(j, 0) < cols : col(j, k) < cols; }
};

// The map of thread `lane` of a group of `group` threads over the group * N * PACK columns
// from `first_col` on.
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

// Pack j of `row` into r (PACK); `fill` outside the row (a value neutral for the op's
// statistics, so that they need no predicates).
template <Cache kCache, int P, Access A, class T, class Pack>
CUTE_DEVICE void load_pack(T const* row, PackMap<P, A> const& m, int j, Pack&& r, T fill) {
  if constexpr (A == Access::kVector) {
    if (m.valid(j, 0)) {
      if constexpr (kCache == Cache::kStream) {
        ld_stream_128(row + m.col(j, 0), as_vector(r));
      } else {
        ld_cached_128(row + m.col(j, 0), as_vector(r));
      }
    } else {
      cute::fill(r, fill);
    }
  } else {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      r(k) = m.valid(j, k) ? row[m.col(j, k)] : fill;
    }
  }
}

// Every pack of the thread's share into r (PACK,N).
template <Cache kCache, int P, Access A, class T, class Frag>
CUTE_DEVICE void load_packs(T const* row, PackMap<P, A> const& m, Frag& r, T fill = T(0.0f)) {
  CUTE_UNROLL
  for (int j = 0; j < size<1>(r); ++j) {
    load_pack<kCache>(row, m, j, r(_, j), fill);
  }
}

// Pack j from a row part staged in shared memory: `part` holds the row's columns from
// `part_begin` on, densely, 16-byte aligned, and a pack never crosses its end. `fill`
// outside the row.
template <int P, Access A, class T, class Pack>
CUTE_DEVICE void load_pack_smem(T const* part, int part_begin, PackMap<P, A> const& m, int j, Pack&& r, T fill) {
  static_assert(A != Access::kStrided, "staged parts are read a pack at a time");
  ld_shared_128(part + (m.col(j, 0) - part_begin), as_vector(r));
  CUTE_UNROLL
  for (int k = 0; k < P; ++k) {
    r(k) = m.valid(j, k) ? r(k) : fill;
  }
}

// Pack j of `row` from r (PACK); only columns inside the row are written.
template <int P, Access A, class T, class Pack>
CUTE_DEVICE void store_pack(T* row, PackMap<P, A> const& m, int j, Pack&& r) {
  if constexpr (A == Access::kVector) {
    if (m.valid(j, 0)) {
      st_128(row + m.col(j, 0), as_vector(r));
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
