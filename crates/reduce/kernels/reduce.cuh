// Reductions on one skeleton, accumulated in f32, deterministic: the same input gives the
// same bits on every run (fixed work split for a given shape and alignment, fixed shuffle and
// shared-memory trees, and no floating-point atomics; the only atomic is an integer
// arrival counter).
//
// A problem is (OUTER, LEN, INNER): out[o, i] = reduce_k x[o, k, i], k < LEN.
//  - Rows (INNER == 1, rows `row_stride` elements apart): a group of threads, one warp or one
//    block, per row; each row finds its own 16-byte boundary, so every row takes 16-byte
//    loads whatever its alignment. Few long rows (a full reduction is one row) are split
//    over `splits` blocks, whose partials are combined either by a second kernel
//    (two-stage) or by the last block to finish (single-pass).
//  - Columns (INNER > 1): a block covers 32 column packs (one warp wide, 512 contiguous
//    bytes per row) times 8 rows of the reduced axis; the axis is split over `splits` blocks
//    when the columns alone give too few blocks, then combined by a second kernel.
// Mean is Sum and L2 norm is SumSquares with a final step (Post).
#pragma once

#include "common/warp_reduce.cuh"
#include "streaming.cuh"

namespace ckb::red {

using namespace cute;

enum class Kind : int { Sum, SumSquares, Max, Min, ArgMax, ArgMin };

// A value and its index along the reduced axis (argmax / argmin).
struct alignas(8) ValIdx {
  float v;
  int32_t pad;
  int64_t i;
};
static_assert(sizeof(ValIdx) == 16, "partials layout shared with the host");

// --- Accumulation rules -------------------------------------------------------------------

template <Kind K>
struct Reducer;

template <>
struct Reducer<Kind::Sum> {
  using Acc = float;
  static constexpr bool kArg = false;
  CUTE_DEVICE static Acc identity() { return 0.0f; }
  CUTE_DEVICE static Acc lift(float x, int64_t) { return x; }
  CUTE_DEVICE static Acc combine(Acc a, Acc b) { return a + b; }
};

template <>
struct Reducer<Kind::SumSquares> : Reducer<Kind::Sum> {
  CUTE_DEVICE static float lift(float x, int64_t) { return x * x; }
};

// NaN wins, as in the float64 reference (fmaxf would drop it).
template <>
struct Reducer<Kind::Max> : Reducer<Kind::Sum> {
  CUTE_DEVICE static float identity() { return -INFINITY; }
  CUTE_DEVICE static float combine(float a, float b) { return (a > b || a != a) ? a : b; }
};

template <>
struct Reducer<Kind::Min> : Reducer<Kind::Sum> {
  CUTE_DEVICE static float identity() { return INFINITY; }
  CUTE_DEVICE static float combine(float a, float b) { return (a < b || a != a) ? a : b; }
};

// The first NaN wins, then the strictly better value, then the smaller index. The rule is
// symmetric (it looks at indices, not at argument order), so any combining tree gives the
// reference's answer.
template <bool kMax>
struct ArgReducer {
  using Acc = ValIdx;
  static constexpr bool kArg = true;
  CUTE_DEVICE static Acc identity() { return {kMax ? -INFINITY : INFINITY, 0, INT64_MAX}; }
  CUTE_DEVICE static Acc lift(float x, int64_t i) { return {x, 0, i}; }
  CUTE_DEVICE static bool first_wins(Acc const& a, Acc const& b) {
    if (a.v != a.v) return b.v == b.v || a.i < b.i;
    if (b.v != b.v) return false;
    if (a.v == b.v) return a.i < b.i;
    return kMax ? a.v > b.v : a.v < b.v;
  }
  CUTE_DEVICE static Acc combine(Acc const& a, Acc const& b) { return first_wins(a, b) ? a : b; }
};
template <>
struct Reducer<Kind::ArgMax> : ArgReducer<true> {};
template <>
struct Reducer<Kind::ArgMin> : ArgReducer<false> {};

// --- Parameters, mirrored by `ReduceParams` in src/launch.rs -----------------------------

enum Layout : int32_t { kRowsWarp = 0, kRowsBlock = 1, kColumns = 2 };
enum Combine : int32_t { kTwoStage = 0, kSinglePass = 1 };
enum Post : int32_t { kPostNone = 0, kPostMean = 1, kPostSqrt = 2 };

struct ReduceParams {
  void const* x;       // T: OUTER x LEN x INNER (rows: OUTER rows `row_stride` apart)
  int64_t outer;
  int64_t len;         // elements reduced into each output, >= 1
  int64_t inner;       // 1 for rows
  int64_t row_stride;  // rows only
  void* out;           // OUTER x INNER values, float or T
  int64_t* out_index;  // OUTER x INNER indices along the axis (arg kinds), else null
  void* partials;      // OUTER x splits x INNER accumulators when splits > 1
  uint32_t* counters;  // OUTER zeroed arrival counters (single-pass rows); left zeroed
  int32_t splits;      // blocks along the reduced axis per output
  int32_t layout;      // Layout
  int32_t combine;     // Combine (rows with splits > 1)
  int32_t post;        // Post
  int32_t out_f32;     // 1: out is float, 0: out is T
  int32_t vectorized;  // columns: x and every row of INNER elements are 16-byte aligned
};
static_assert(sizeof(ReduceParams) == 96, "layout shared with src/launch.rs");

constexpr int kThreads = 256;
constexpr int kUnroll = 4;    // 16-byte loads in flight per thread
constexpr int kColLanes = 32;  // column packs per block: one warp across a row
constexpr int kColRows = kThreads / kColLanes;  // rows of the reduced axis per block step

// --- Thread, warp and block combining ----------------------------------------------------

CUTE_DEVICE ValIdx shfl_xor(ValIdx a, int mask) {
  ValIdx r;
  r.v = __shfl_xor_sync(0xffffffffu, a.v, mask);
  r.pad = 0;
  r.i = __shfl_xor_sync(0xffffffffu, static_cast<long long>(a.i), mask);
  return r;
}

CUTE_DEVICE float load_l2(float const* p) { return __ldcg(p); }
CUTE_DEVICE ValIdx load_l2(ValIdx const* p) {
  return {__ldcg(&p->v), 0, static_cast<int64_t>(__ldcg(reinterpret_cast<long long const*>(&p->i)))};
}

// The warp's result, in every lane (lane 0's bits are the ones the CTA fold uses).
template <class R>
CUTE_DEVICE typename R::Acc warp_reduce(typename R::Acc acc) {
  return warp_butterfly<R>(acc);
}

// The block's result, in every thread. Every thread of the block must call it.
template <class R>
CUTE_DEVICE typename R::Acc block_reduce(typename R::Acc acc) {
  __shared__ typename R::Acc warp_results[kThreads / 32];
  acc = warp_reduce<R>(acc);
  __syncthreads();  // a previous call may still be reading warp_results
  return cta_fold_warps<R>(acc, warp_results);
}

// Output o * inner + i from its `splits` partials, by one warp (all lanes call; lane 0 has
// the result). Shared by the two-stage kernel and the single-pass last block, so the two
// give the same bits. Partials come through L2: other blocks wrote them.
template <class R>
CUTE_DEVICE typename R::Acc combine_partials(ReduceParams const& p, int64_t o, int64_t i) {
  using Acc = typename R::Acc;
  Acc const* partials = static_cast<Acc const*>(p.partials);
  Acc acc = R::identity();
  for (int s = threadIdx.x % 32; s < p.splits; s += 32) {
    acc = R::combine(acc, load_l2(&partials[(o * p.splits + s) * p.inner + i]));
  }
  return warp_reduce<R>(acc);
}

template <class R, class T>
CUTE_DEVICE void write_result(ReduceParams const& p, int64_t idx, typename R::Acc const& acc) {
  float v;
  if constexpr (R::kArg) {
    v = acc.v;
    p.out_index[idx] = acc.i;
  } else {
    v = acc;
    if (p.post == kPostMean) {
      v = float(double(v) / double(p.len));
    } else if (p.post == kPostSqrt) {
      v = sqrtf(v);
    }
  }
  if (p.out_f32) {
    static_cast<float*>(p.out)[idx] = v;
  } else {
    static_cast<T*>(p.out)[idx] = T(v);
  }
}

// Folds one register accumulator per pack lane, in a fixed tree.
template <class R, int N>
CUTE_DEVICE typename R::Acc fold_lanes(typename R::Acc (&acc)[N]) {
  CUTE_UNROLL
  for (int s = N / 2; s > 0; s /= 2) {
    CUTE_UNROLL
    for (int k = 0; k < s; ++k) {
      acc[k] = R::combine(acc[k], acc[k + s]);
    }
  }
  return acc[0];
}

// --- Rows ---------------------------------------------------------------------------------

// One thread's share of split `split` of a row of `len` elements, in a group of kGroup
// threads. The row's first 16-byte boundary comes `head` elements in; the packs after it are
// cut into `splits` chunks (multiples of 8 packs, 128 bytes); split 0 also takes the scalar
// head and tail.
template <class R, class T, int kGroup>
CUTE_DEVICE typename R::Acc row_chunk(T const* row, int64_t len, int64_t split, int64_t splits, int lane) {
  using Acc = typename R::Acc;
  constexpr int kPack = pack_elems<T>();
  constexpr int kTilePacks = kGroup * kUnroll;
  // Independent accumulators, one per pack lane for ILP; arg kinds keep two (value + int64
  // index per accumulator would otherwise spill at 8 lanes).
  constexpr int kLanes = R::kArg ? 2 : kPack;
  static_assert(kPack % kLanes == 0, "pack lanes map evenly onto accumulators");
  Acc acc[kLanes];
  CUTE_UNROLL
  for (int k = 0; k < kLanes; ++k) {
    acc[k] = R::identity();
  }
  const int misalign = int(reinterpret_cast<uintptr_t>(row) % kVectorBytes) / int(sizeof(T));
  const int64_t head = misalign == 0 ? 0 : cute::min(int64_t(kPack - misalign), len);
  const int64_t num_packs = (len - head) / kPack;
  const int64_t tail_begin = head + num_packs * kPack;
  const int64_t per_split = ceil_div(ceil_div(num_packs, splits), 8) * 8;
  const int64_t pack_begin = cute::min(split * per_split, num_packs);
  const int64_t pack_end = cute::min(pack_begin + per_split, num_packs);
  T const* body = row + head;  // 16-byte aligned

  // Full tiles: lane l takes packs l, l + kGroup, ... (a warp reads 512 contiguous bytes).
  const int64_t num_tiles = (pack_end - pack_begin) / kTilePacks;
  auto tile_layout = make_layout(make_shape(Int<kPack>{}, Int<kGroup>{}, Int<kUnroll>{}, num_tiles));
  Tensor gTiles = make_tensor(make_gmem_ptr(body + pack_begin * kPack), tile_layout);  // (PACK,GROUP,UNROLL,TILES)
  for (int64_t t = 0; t < num_tiles; ++t) {
    Tensor gT = gTiles(_, lane, _, t);              // (PACK,UNROLL)
    Tensor rT = make_fragment_like<T>(gT.layout());  // (PACK,UNROLL)
    copy_vectors<GmemLoad128>(gT, rT);
    const int64_t first = head + (pack_begin + t * kTilePacks + lane) * kPack;
    CUTE_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      CUTE_UNROLL
      for (int k = 0; k < kPack; ++k) {
        acc[k % kLanes] = R::combine(acc[k % kLanes], R::lift(float(rT(k, u)), first + u * kGroup * kPack + k));
      }
    }
  }
  // Leftover whole packs of the chunk.
  const int64_t rest_begin = pack_begin + num_tiles * kTilePacks;
  const int64_t rest_packs = pack_end - rest_begin;
  Tensor gRest = make_tensor(make_gmem_ptr(body + rest_begin * kPack),
                             make_layout(make_shape(Int<kPack>{}, rest_packs)));  // (PACK,PACKS)
  for (int64_t q = lane; q < rest_packs; q += kGroup) {
    Tensor rP = make_tensor<T>(Shape<Int<kPack>>{});  // (PACK)
    copy_vectors<GmemLoad128>(gRest(_, q), rP);
    const int64_t first = head + (rest_begin + q) * kPack;
    CUTE_UNROLL
    for (int k = 0; k < kPack; ++k) {
      acc[k % kLanes] = R::combine(acc[k % kLanes], R::lift(float(rP(k)), first + k));
    }
  }
  // Scalar head and tail.
  if (split == 0) {
    for (int64_t i = lane; i < head; i += kGroup) {
      acc[0] = R::combine(acc[0], R::lift(float(row[i]), i));
    }
    for (int64_t i = tail_begin + lane; i < len; i += kGroup) {
      acc[0] = R::combine(acc[0], R::lift(float(row[i]), i));
    }
  }
  return fold_lanes<R>(acc);
}

// kGroup == 32: each warp reduces its own row (kThreads / 32 rows per block, splits == 1).
// kGroup == kThreads: one row per block column; blockIdx.y is the split.
template <Kind K, class T, int kGroup>
__global__ void __launch_bounds__(kThreads) rows_kernel(ReduceParams const p) {
  using R = Reducer<K>;
  using Acc = typename R::Acc;
  static_assert(kGroup == 32 || kGroup == kThreads, "a row belongs to one warp or one block");
  constexpr int kGroupsPerBlock = kThreads / kGroup;
  const int lane = threadIdx.x % kGroup;
  const int64_t row = int64_t(blockIdx.x) * kGroupsPerBlock + threadIdx.x / kGroup;
  const int64_t split = blockIdx.y;

  Acc acc = R::identity();
  if (row < p.outer) {
    acc = row_chunk<R, T, kGroup>(static_cast<T const*>(p.x) + row * p.row_stride, p.len, split, p.splits, lane);
  }
  if constexpr (kGroup == 32) {
    acc = warp_reduce<R>(acc);  // the whole warp shares `row`, so this is warp-uniform
  } else {
    acc = block_reduce<R>(acc);
  }
  if (row >= p.outer) {
    return;
  }
  if (p.splits == 1) {
    if (lane == 0) {
      write_result<R, T>(p, row, acc);
    }
    return;
  }

  // Split rows (kGroup == kThreads): publish this block's partial.
  if (threadIdx.x == 0) {
    static_cast<Acc*>(p.partials)[row * p.splits + split] = acc;
  }
  if (p.combine != kSinglePass) {
    return;
  }
  __shared__ bool last_block;
  if (threadIdx.x == 0) {
    __threadfence();  // the partial is visible device-wide before the arrival counts
    last_block = atomicAdd(&p.counters[row], 1u) == unsigned(p.splits - 1);
  }
  __syncthreads();
  if (last_block && threadIdx.x < 32) {
    __threadfence();
    Acc total = combine_partials<R>(p, row, 0);
    if (threadIdx.x == 0) {
      write_result<R, T>(p, row, total);
      p.counters[row] = 0;  // ready for the next launch
    }
  }
}

// --- Columns ------------------------------------------------------------------------------

template <Kind K, class T>
__global__ void __launch_bounds__(kThreads) columns_kernel(ReduceParams const p) {
  using R = Reducer<K>;
  using Acc = typename R::Acc;
  constexpr int kPack = pack_elems<T>();
  constexpr int kTileCols = kColLanes * kPack;
  static_assert(kTileCols <= kThreads, "one finishing thread per column of the tile");
  const int lane = threadIdx.x % kColLanes;
  const int row_lane = threadIdx.x / kColLanes;
  const int64_t col_tiles = ceil_div(p.inner, kTileCols);
  const int64_t o = blockIdx.x / col_tiles;
  const int64_t tile_col0 = (blockIdx.x % col_tiles) * kTileCols;
  const int64_t col0 = tile_col0 + lane * kPack;
  const int64_t split = blockIdx.y;
  const int64_t per_split = ceil_div(p.len, p.splits);
  const int64_t k_begin = cute::min(split * per_split, p.len);
  const int64_t k_end = cute::min(k_begin + per_split, p.len);
  T const* slab = static_cast<T const*>(p.x) + o * p.len * p.inner;  // (LEN,INNER) of this o

  Acc acc[kPack];
  CUTE_UNROLL
  for (int c = 0; c < kPack; ++c) {
    acc[c] = R::identity();
  }
  if (p.vectorized && col0 < p.inner) {
    // INNER % kPack == 0 here, so a pack is whole: (PACK,LEN,INNER/PACK)
    Tensor gPacks = make_tensor(make_gmem_ptr(slab), make_layout(make_shape(Int<kPack>{}, p.len, p.inner / kPack),
                                                                 make_stride(Int<1>{}, p.inner, Int<kPack>{})));
    const int64_t pack_col = col0 / kPack;
    int64_t k = k_begin + row_lane;
    for (; k + (kUnroll - 1) * kColRows < k_end; k += kUnroll * kColRows) {
      Tensor rK = make_tensor<T>(Shape<Int<kPack>, Int<kUnroll>>{});  // (PACK,UNROLL)
      CUTE_UNROLL
      for (int u = 0; u < kUnroll; ++u) {
        copy_vectors<GmemLoad128>(gPacks(_, k + u * kColRows, pack_col), rK(_, u));
      }
      CUTE_UNROLL
      for (int u = 0; u < kUnroll; ++u) {
        CUTE_UNROLL
        for (int c = 0; c < kPack; ++c) {
          acc[c] = R::combine(acc[c], R::lift(float(rK(c, u)), k + u * kColRows));
        }
      }
    }
    for (; k < k_end; k += kColRows) {
      Tensor rP = make_tensor<T>(Shape<Int<kPack>>{});  // (PACK)
      copy_vectors<GmemLoad128>(gPacks(_, k, pack_col), rP);
      CUTE_UNROLL
      for (int c = 0; c < kPack; ++c) {
        acc[c] = R::combine(acc[c], R::lift(float(rP(c)), k));
      }
    }
  } else if (col0 < p.inner) {
    // Unaligned rows: the same columns, one element at a time.
    for (int64_t k = k_begin + row_lane; k < k_end; k += kColRows) {
      CUTE_UNROLL
      for (int c = 0; c < kPack; ++c) {
        if (col0 + c < p.inner) {
          acc[c] = R::combine(acc[c], R::lift(float(slab[k * p.inner + col0 + c]), k));
        }
      }
    }
  }

  // Combine the kColRows row lanes of each column in a fixed order.
  __shared__ Acc lanes[kColRows][kTileCols];
  CUTE_UNROLL
  for (int c = 0; c < kPack; ++c) {
    lanes[row_lane][lane * kPack + c] = acc[c];
  }
  __syncthreads();
  const int col = threadIdx.x;
  const int64_t gcol = tile_col0 + col;
  if (col < kTileCols && gcol < p.inner) {
    Acc total = lanes[0][col];
    CUTE_UNROLL
    for (int r = 1; r < kColRows; ++r) {
      total = R::combine(total, lanes[r][col]);
    }
    if (p.splits == 1) {
      write_result<R, T>(p, o * p.inner + gcol, total);
    } else {
      static_cast<Acc*>(p.partials)[(o * p.splits + split) * p.inner + gcol] = total;
    }
  }
}

// --- Second stage ---------------------------------------------------------------------------

// One warp per output: combines its `splits` partials.
template <Kind K, class T>
__global__ void __launch_bounds__(kThreads) combine_kernel(ReduceParams const p) {
  using R = Reducer<K>;
  const int64_t output = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / 32;
  if (output >= p.outer * p.inner) {
    return;  // warp-uniform
  }
  typename R::Acc total = combine_partials<R>(p, output / p.inner, output % p.inner);
  if (threadIdx.x % 32 == 0) {
    write_result<R, T>(p, output, total);
  }
}

template <Kind K, class T>
int launch(ReduceParams const& p, cudaStream_t stream) {
  if (p.outer <= 0 || p.inner <= 0 || p.len <= 0 || p.splits < 1 || p.splits > 65535) {
    return int(cudaErrorInvalidValue);
  }
  const bool two_stage = p.splits > 1 && (p.layout == kColumns || p.combine == kTwoStage);
  switch (p.layout) {
    case kRowsWarp: {
      int64_t blocks = ceil_div(p.outer, kThreads / 32);
      if (p.splits != 1 || p.inner != 1 || blocks > INT32_MAX) return int(cudaErrorInvalidValue);
      rows_kernel<K, T, 32><<<unsigned(blocks), kThreads, 0, stream>>>(p);
      break;
    }
    case kRowsBlock: {
      if (p.inner != 1 || p.outer > INT32_MAX) return int(cudaErrorInvalidValue);
      rows_kernel<K, T, kThreads><<<dim3(unsigned(p.outer), unsigned(p.splits)), kThreads, 0, stream>>>(p);
      break;
    }
    case kColumns: {
      int64_t blocks = ceil_div(p.inner, kColLanes * pack_elems<T>()) * p.outer;
      if (blocks > INT32_MAX) return int(cudaErrorInvalidValue);
      columns_kernel<K, T><<<dim3(unsigned(blocks), unsigned(p.splits)), kThreads, 0, stream>>>(p);
      break;
    }
    default:
      return int(cudaErrorInvalidValue);
  }
  if (two_stage) {
    int64_t blocks = ceil_div(p.outer * p.inner, kThreads / 32);
    if (blocks > INT32_MAX) return int(cudaErrorInvalidValue);
    combine_kernel<K, T><<<unsigned(blocks), kThreads, 0, stream>>>(p);
  }
  return int(cudaGetLastError());
}

}  // namespace ckb::red

// extern "C" launchers: ckb_reduce_<kind>_<type>(params, stream).
#define CKB_REDUCE(KIND, KNAME, T, TNAME)                                                         \
  extern "C" int ckb_reduce_##KNAME##_##TNAME(ckb::red::ReduceParams const* p, cudaStream_t s) { \
    return ckb::red::launch<ckb::red::Kind::KIND, T>(*p, s);                                     \
  }

#define CKB_REDUCE_ALL_KINDS(T, TNAME)           \
  CKB_REDUCE(Sum, sum, T, TNAME)                 \
  CKB_REDUCE(SumSquares, sum_squares, T, TNAME)  \
  CKB_REDUCE(Max, max, T, TNAME)                 \
  CKB_REDUCE(Min, min, T, TNAME)                 \
  CKB_REDUCE(ArgMax, argmax, T, TNAME)           \
  CKB_REDUCE(ArgMin, argmin, T, TNAME)
