// The skeletons every row operation runs on, and their launchers.
//
// A row is read from memory once (twice for split rows): its statistics are reduced, then
// the outputs computed from the same data, held in registers or shared memory. The variants
// (src/variants.rs) are configurations of two skeletons sharing the ops, the reductions and
// the pack maps:
//   - warp_rows_kernel: a warp per row (or, for short forward rows, 32 / G rows a warp of G
//     lanes each), 4 warps per CTA, loads straight into registers, shuffles
//     only. Rows up to 32 * N * PACK elements.
//   - staged_rows_kernel: a CTA per row part. The part is staged in shared memory, 1 to
//     kMaxStages rows deep (bulk copies, cp.async.bulk from one thread completing on an
//     mbarrier; plain loads for unaligned rows), and taken through registers a chunk of
//     kChunkElems per thread at a time: once for the statistics, again for the outputs
//     (a one-chunk part stays in registers). Registers stay few whatever the part's length,
//     so several CTAs share an SM and one's reductions and barriers overlap the others'
//     memory traffic. The depth and the grid (persistent: as many CTAs as fit at once) are
//     the Rust planner's (src/variants.rs), from the occupancy staged_residency reports.
//     Modes:
//       kWhole:   one CTA per row: shuffles, then the warps through shared memory;
//       kCluster: `parts` CTAs of a thread-block cluster share a row; each sends its
//                 statistics into every peer's shared memory (st.async on the peer's
//                 mbarrier) and waits on its own: no cluster barrier per row;
//       kSplit:   `parts` independent CTAs per row; a first launch writes each part's
//                 statistics to global memory, a second folds them and writes the outputs
//                 (rows longer than a cluster holds, or clusters the GPU cannot place).
// Grid: (parts, slots); rows are strided over the slots, so any row count works.
//
// The launchers run the plan in RowParams as given: they query nothing and never re-plan.
// They return a cudaError_t, or a Refusal when the plan is not one the kernels can run.
#pragma once

#include <cutlass/arch/barrier.h>

#include "row_ops.cuh"

namespace ckb::norm {

constexpr int kMaxThreads = 512;
constexpr int kWarpRowsPerCta = 4;
constexpr int kMaxStages = 4;
constexpr int kMaxClusterParts = 16;
// Shared memory a staged CTA keeps beside its dynamic ring (barriers, warp slots, the
// cluster inbox); the host allows the ring the opt-in limit less this (src/variants.rs).
constexpr int kStaticSmemReserve = 2048;

// What a launcher returns for a plan it will not run, beside cudaError_t's codes (>= 0);
// mirrored in src/launch.rs.
enum Refusal : int {
  kRefusedPlan = -1,          // the parameters describe no plan the kernels hold
  kRefusedSharedMemory = -2,  // the staging ring exceeds RowParams::smem_limit
};

// A CTA's inbox for its cluster peers' statistics of a row part, two rows deep (row_stats).
struct ClusterExchange {
  float stats[2][kMaxClusterParts][kPartialFloats];  // [buffer][sender's part]
  uint64_t full[2];                                   // every part's statistics landed
};

// Writes a thread's backward column sums for slot `slot`. Warps of a warp-per-row CTA share
// the CTA's slot and add theirs in warp order; every thread of the CTA must call it.
template <bool kWarpRows, class Thread, class Map>
CUTE_DEVICE void store_column_sums(Thread const& th, RowParams const& p, Map const& m) {
  if constexpr (kWarpRows) {
    const int warp = threadIdx.x / 32;
    for (int w = 0; w < kWarpRowsPerCta; ++w) {
      if (warp == w) {
        th.store_columns(p, blockIdx.y, m, w > 0);
      }
      __syncthreads();
    }
  } else {
    th.store_columns(p, blockIdx.y, m, false);
  }
}

// Warp-per-row CTAs an SM must hold: 4 (128 registers a thread), 3 for fused add forward
// ops, whose lanes hold the row and the residual (168).
template <class Op>
constexpr int kWarpMinBlocks = Op::kForward && Op::kInputs == 2 ? 3 : 4;

// The longest row a lane of a lane-per-row warp holds (f32: two 16-byte packs, which only
// element packs take).
constexpr int kLaneRowElems = 8;

// Lane groups take element packs sized to the row, and tiles, on f32 rows only: bf16 rows
// of 33 on 8 lanes of 5 through tiles ran at 0.22-0.45 of copy on the H200, against
// 0.30-0.54 on 8 lanes of the 16-byte pack (f32 rows of 33: 0.46-0.67, from 0.44-0.72).
template <class T>
constexpr bool kGroupElementPacks = sizeof(T) == 4;

// Rows a lane of a lane-per-row warp (G = 1) holds at once: as many as make 16 bytes of a
// row operand, so that packs sized to short rows still keep 16 bytes a lane in flight (bf16
// rows of 2, one a lane: 0.62 of copy on the H200). Lane groups of element packs (G > 1,
// !kVec, kGroupElementPacks) hold enough rows that a warp's rows of any length span whole
// 16-byte vectors (its shared-memory tile), up to 2 (more spilled: those take no tile).
// Mirrored by NormPlan::lane_rows.
template <class T, int G>
constexpr int kGroupTileRows = 32 / G * int(sizeof(T)) >= kVectorBytes ? 1 : kVectorBytes / (32 / G * int(sizeof(T)));
template <class T, int G, int W, bool kVec>
constexpr int kLaneRows = G == 1 ? (W * int(sizeof(T)) < kVectorBytes ? kVectorBytes / (W * int(sizeof(T))) : 1)
                          : !kVec && G < 32 && kGroupElementPacks<T> && kGroupTileRows<T, G> <= 2 ? kGroupTileRows<T, G>
                                                                           : 1;

// A warp per row (G = 32), or 32 / G rows a warp, G lanes each (short forward rows), in
// packs of W elements (W < the 16-byte pack: one lane a row, its pack sized to the row,
// kLaneRows rows a lane at once). Every row takes the same columns of a lane: per-column
// parameters are loaded once (kHold), where the lane's registers hold them.
template <class Op, int N, bool kVec, int G, int W = kPackElems<typename Op::Element>>
__global__ void __launch_bounds__(32 * kWarpRowsPerCta, kWarpMinBlocks<Op>)
    warp_rows_kernel(RowParams const p) {
  using T = typename Op::Element;
  using C = typename Op::Combine;
  constexpr int R = kLaneRows<T, G, W, kVec>;
  constexpr int kRowsPerWarp = 32 / G * R;
  static_assert(N >= 1 && N <= Op::kMaxPacks, "packs per thread within the op's register budget");
  static_assert(G == 32 || Op::kColumnArrays == 0, "column sums are per lane: whole warps per row");
  static_assert(W == kPackElems<T> || (N == 1 && W <= kLaneRowElems && (G == 1 || (G < 32 && !kVec))),
                "one pack sized to the row: a lane per row, or lane groups of element packs");

  // Unaligned rows take strided element accesses: shifted packs (staged_rows_kernel) cost a
  // lane more instructions than they save on rows this short (measured on the H200: bf16
  // rows of 2 at 0.10 of copy on shifted lanes, 0.29 strided; 1023 no longer fit warp-x4).
  constexpr Access A = kVec ? Access::kVector : Access::kStrided;
  const int lane = threadIdx.x % 32, member = lane % G;
  const auto m_row = pack_map<W, N, A>(p.cols, 0, G, member);
  using Thread = typename Op::template Thread<N, A, W, Op::template kHoldsParams<N, W>>;
  Thread th[R];
  CUTE_UNROLL
  for (int r = 0; r < R; ++r) {
    th[r].begin(p, m_row);
  }
  constexpr int kRowsPerCta = kWarpRowsPerCta * kRowsPerWarp;
  // `first` is the warp's first row: uniform across the warp, so every lane takes part in
  // the shuffles; a lane whose row lies past the end sees a row of no columns. Lane rows r
  // of a warp are 32 / G rows apart, so that each access is coalesced across the warp.
  // Lane rows whose slots are exactly the row's columns (a lane's pack sized to its row)
  // take no per-element predicates but in the warp's last, partial, iteration: the map
  // folded (PackMap::inside) wherever all of the warp's rows are live.
  const bool exact = G < 32 && p.cols == G * N * W;
  // Dense short rows of element packs: a warp's rows are one contiguous span, 16-byte
  // aligned (kLaneRows), moved between global and shared memory in 16-byte vectors, the
  // lanes taking their rows from it and writing their outputs into it. Element stores of
  // bf16 rows of 7 had each written 2 bytes into 14 sectors (ncu on the H200: L2 at 92% of
  // its throughput, DRAM at 25%).
  constexpr bool kTiled = !kVec && (G == 1 || (G < 32 && kGroupElementPacks<T> && kGroupTileRows<T, G> <= 2));
  constexpr int kTileBytes = kTiled ? 32 * R * W * int(sizeof(T)) : kVectorBytes;  // the longest span: cols = G * W
  static_assert(!kTiled || kTileBytes % kVectorBytes == 0, "a tile is whole vectors");
  // The row operands in (x, and the residual of fused adds), then the outputs out (y, h).
  __shared__ __align__(16) uint8_t tiles[kWarpRowsPerCta][2][kTileBytes];
  const auto aligned = [](void const* ptr) { return reinterpret_cast<uintptr_t>(ptr) % kVectorBytes == 0; };
  const bool tiled = kTiled && (G > 1 || exact) && p.in_stride == p.cols && p.out_stride == p.cols && aligned(p.x) &&
                     (Op::kInputs == 1 || aligned(p.dy)) && aligned(p.out) && aligned(p.sum_out);
  // m: the rows' map (m_row, or folded where the rows are exactly the lanes' slots).
  auto tile_rows = [&](int64_t first, auto const& m) {
    uint8_t(&tile)[2][kTileBytes] = tiles[threadIdx.x / 32];
    const int64_t span = first * p.cols * int64_t(sizeof(T));  // the rows' first byte
    const int span_bytes = kRowsPerWarp * p.cols * int(sizeof(T));  // whole vectors: kLaneRows
    // Lane i moves vectors i, i + 32, ... of each tile.
    constexpr int kMoves = (kTileBytes / kVectorBytes + 31) / 32;
    auto moved = [&](int i) { return (lane + 32 * i) * kVectorBytes; };
    CUTE_UNROLL
    for (int input = 0; input < Op::kInputs; ++input) {
      CUTE_UNROLL
      for (int i = 0; i < kMoves; ++i) {
        if (moved(i) < span_bytes) {
          uint4 v;
          ld_stream_128(static_cast<uint8_t const*>(input_base(p, input)) + span + moved(i), v);
          *reinterpret_cast<uint4*>(&tile[input][moved(i)]) = v;
        }
      }
    }
    __syncwarp();
    // Lane row r of the warp is row lane / G + 32 / G * r of its tile.
    auto tile_row_of = [&](int r) { return lane / G + 32 / G * r; };
    auto tile_row = [&](int input, int r) { return reinterpret_cast<T*>(tile[input]) + tile_row_of(r) * p.cols; };
    CUTE_UNROLL
    for (int r = 0; r < R; ++r) {
      th[r].load(p, first + tile_row_of(r),
                 [&](int input, auto& frag, T fill) { load_packs<Cache::kStream>(tile_row(input, r), m, frag, fill); });
    }
    __syncwarp();  // every lane holds its rows: the tiles take the outputs
    // The ops address their outputs by row: rows of the tile, and the statistics' arrays
    // from the warp's first row.
    RowParams pt = p;
    pt.out = tile[0];
    pt.sum_out = tile[1];
    pt.out_stride = p.cols;
    pt.mean = p.mean != nullptr ? p.mean + first : nullptr;
    pt.rstd = p.rstd != nullptr ? p.rstd + first : nullptr;
    CUTE_UNROLL
    for (int r = 0; r < R; ++r) {
      const int row = tile_row_of(r);
      const auto s = Op::finish(p, group_reduce<C, G>(th[r].stats(pt, row, m)));
      th[r].apply(pt, row, m, s, member == 0);
    }
    __syncwarp();
    CUTE_UNROLL
    for (int output = 0; output < (p.sum_out != nullptr ? 2 : 1); ++output) {
      CUTE_UNROLL
      for (int i = 0; i < kMoves; ++i) {
        if (moved(i) < span_bytes) {
          const uint4 v = *reinterpret_cast<uint4 const*>(&tile[output][moved(i)]);
          st_128(static_cast<uint8_t*>(output == 0 ? p.out : p.sum_out) + span + moved(i), v);
        }
      }
    }
    __syncwarp();  // the tiles are read before the next rows fill them
  };
  for (int64_t first = int64_t(blockIdx.y) * kRowsPerCta + threadIdx.x / 32 * kRowsPerWarp; first < p.rows;
       first += int64_t(gridDim.y) * kRowsPerCta) {
    auto row_of = [&](int r) { return first + lane / G + int64_t(r) * (32 / G); };
    // Every row's loads first, then their math: R rows' bytes in flight. map_of(row) is
    // the row's map: m_row, emptied past the last row (a warp per row: the loop bound
    // keeps its row live), or folded.
    auto rows = [&](auto&& map_of) {
      CUTE_UNROLL
      for (int r = 0; r < R; ++r) {
        const int64_t row = row_of(r);
        const auto m = map_of(row);
        th[r].load(p, row, [&](int input, auto& frag, T fill) {
          load_packs<Cache::kStream>(in_row<T>(input_base(p, input), p, row), m, frag, fill);
        });
      }
      CUTE_UNROLL
      for (int r = 0; r < R; ++r) {
        const int64_t row = row_of(r);
        const auto m = map_of(row);
        const auto s = Op::finish(p, group_reduce<C, G>(th[r].stats(p, row, m)));
        th[r].apply(p, row, m, s, row < p.rows && member == 0);
      }
    };
    if constexpr (kTiled) {
      if (tiled && first + kRowsPerWarp <= p.rows) {
        if (G == 1 || exact) {
          tile_rows(first, m_row.inside());
        } else if constexpr (G > 1) {
          tile_rows(first, m_row);
        }
        continue;
      }
    }
    if constexpr (G < 32) {
      if (exact && first + kRowsPerWarp <= p.rows) {
        rows([&](int64_t) { return m_row.inside(); });
        continue;
      }
    }
    rows([&](int64_t row) {
      auto m = m_row;
      if constexpr (G < 32) {
        m.cols = row < p.rows ? p.cols : 0;
      }
      return m;
    });
  }
  if constexpr (Op::kColumnArrays > 0) {
    store_column_sums<true>(th[0], p, m_row);
  }
}

// Turns a CTA's statistics `s` of a row part into the whole row's (cluster and split modes).
// Returns false when this launch only publishes them (the first pass of a split).
// Cluster mode: every CTA sends its part's statistics into every CTA's `exchange.stats[b]`
// (st.async), each landing on that CTA's `exchange.full[b]`; a CTA waits for its own
// mbarrier only, never for the whole cluster, and its L1 (gamma, beta) survives: a cluster
// barrier's acquire invalidates it. The buffer b = it % 2 alternates row by row. A peer
// writes buffer b again (row it + 2) only after this CTA sent row it + 1, which it does
// after a __syncthreads (cta_reduce) that follows every thread's reads of row it.
template <class C, int K>
CUTE_DEVICE bool row_stats(RowParams const& p, int64_t row, Stat<K>& s, ClusterExchange& exchange, int it) {
  switch (p.mode) {
    case kCluster: {
      using Barrier = cutlass::arch::ClusterTransactionBarrier;
      const int buffer = it % 2;
      if (threadIdx.x == 0) {
        Barrier::arrive_and_expect_tx(&exchange.full[buffer], uint32_t(p.parts * K * sizeof(float)));
        const uint32_t full = cast_smem_ptr_to_uint(&exchange.full[buffer]);
        for (int r = 0; r < p.parts; ++r) {
          CUTE_UNROLL
          for (int i = 0; i < K; ++i) {
            cute::store_shared_remote(__float_as_uint(s.v[i]),
                                      cast_smem_ptr_to_uint(&exchange.stats[buffer][blockIdx.x][i]), full, r);
          }
        }
      }
      Barrier::wait(&exchange.full[buffer], (it / 2) % 2);
      s = fold_in_order<C, K>(p.parts, [&](int r) {
        Stat<K> part;
        CUTE_UNROLL
        for (int i = 0; i < K; ++i) {
          part.v[i] = exchange.stats[buffer][r][i];
        }
        return part;
      });
      return true;
    }
    case kSplitStats: {
      if (threadIdx.x == 0) {
        float* dst = p.row_partials + (row * p.parts + blockIdx.x) * kPartialFloats;
        CUTE_UNROLL
        for (int i = 0; i < K; ++i) {
          dst[i] = s.v[i];
        }
      }
      return false;
    }
    case kSplitApply: {
      s = fold_in_order<C, K>(p.parts, [&](int r) {
        float const* src = p.row_partials + (row * p.parts + r) * kPartialFloats;
        Stat<K> partial;
        CUTE_UNROLL
        for (int i = 0; i < K; ++i) {
          partial.v[i] = __ldcg(src + i);
        }
        return partial;
      });
      return true;
    }
    default:
      return true;
  }
}

// Forward ops hold one chunk of one operand in registers: three 256-thread CTAs share an
// SM (the most whose 64 KiB parts fit its shared memory); fused add forward ops, two
// operands, two (half parts each: src/variants.rs). Backward ops hold two operands, gamma
// and column sums: one CTA of up to 512 threads.
template <class Op>
constexpr int kStagedMaxThreads = Op::kForward ? 256 : kMaxThreads;
// Shifted parts of softmax and rmsnorm (two statistics or fewer) fit 64 registers, four
// such CTAs: unbounded, their two chunk paths took 74-80, and 160-thread CTAs of f32 rows of
// 4098 fell from five an SM to three (a scheduler's 16K registers hold 6 warps of 80).
// 16-byte parts of the fused adds fit 80, six 128-thread CTAs: bf16 add_layernorm at 84
// held five, and the planner's deeper ring for it (3 CTAs x 2 stages) ran 0.77 of copy
// where 6 x 1 had run 0.85 (H200, rows of 4096 and 8192).
template <class Op, bool kVec>
constexpr int kStagedMinBlocks =
    Op::kForward ? (Op::kInputs == 1 ? (!kVec && Op::Combine::kStats <= 2 ? 4 : 3) : kVec ? 3 : 2) : 1;

template <class Op, bool kVec>
__global__ void __launch_bounds__(kStagedMaxThreads<Op>, (kStagedMinBlocks<Op, kVec>))
    staged_rows_kernel(RowParams const p, int const stages) {
  using T = typename Op::Element;
  using C = typename Op::Combine;
  using Barrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int K = C::kStats;
  constexpr int P = kPackElems<T>;
  constexpr int N = Op::kChunkPacks;
  static_assert(K <= kPartialFloats, "split partials hold at most 4 floats");

  extern __shared__ __align__(128) uint8_t staged_bytes[];
  __shared__ uint64_t full[kMaxStages];  // stage s holds its row (bulk copies landed)
  // Two of each, alternated row by row: a slot is rewritten only after another barrier.
  // As many as the kernel's CTAs have warps (launchable and residency_of refuse more
  // threads): layernorm's 4-float slots sized for 512 threads cost forward CTAs 256 bytes,
  // which left a second 2 x 56 KiB-stage CTA (bf16 rows of 131075) 320 bytes short of an SM.
  __shared__ Stat<K> warp_slots[2][kStagedMaxThreads<Op> / 32];
  __shared__ ClusterExchange exchange;
  // ptxas pads the static block to the ring's 128-byte alignment.
  static_assert((sizeof(full) + sizeof(warp_slots) + sizeof(exchange) + 127) / 128 * 128 <= kStaticSmemReserve,
                "static shared memory within what the host leaves beside the ring");

  const int threads = blockDim.x;
  const int tid = threadIdx.x;
  // A part is `chunks` chunks of threads * N packs; a thread's chunk c is at chunk_cols * c.
  // Column sums are per register element: backward parts are one chunk.
  const int chunks = Op::kColumnArrays > 0 ? 1 : p.packs / N;
  const int chunk_cols = threads * N * P;
  const int part_cols = chunks * chunk_cols;
  const int part_begin = blockIdx.x * part_cols;
  const int part_len = max(0, min(p.cols - part_begin, part_cols));
  constexpr Access A = kVec ? Access::kVector : Op::kColumnArrays == 0 ? Access::kShifted : Access::kContiguous;
  // Bulk copies stage the 16-byte granules (the whole part, or a shifted part's inside);
  // plain stores the rest (a shifted part's ends, or the whole of an element part).
  constexpr bool kBulk = A != Access::kContiguous;
  constexpr bool kPlain = A != Access::kVector;
  // A shifted part is staged at its input's alignment: one granule more than the part.
  constexpr int kPad = A == Access::kShifted ? P : 0;
  // Chunk c of a row whose output starts `shift` columns into its first granule. Each warp
  // takes 32 * N contiguous packs of the chunk (a warp access is still 512 contiguous
  // bytes): only the warps holding a row end take its predicated path (with_inside). Packs
  // interleaved across the CTA had put both ends in every warp of a chunk (layernorm bf16
  // rows of 4098: 3.75 of 9 warp-chunks a row predicated, 700 instructions each against
  // the folded path's 412).
  auto chunk_map = [&](int c, int shift) {
    auto mc = pack_map_from<P, A>(p.cols, part_begin + c * chunk_cols + tid / 32 * 32 * N * P, 32, tid % 32);
    mc.shift = shift;
    return mc;
  };
  auto shift_of = [&](int64_t row) { return A == Access::kShifted ? granule_offset(out_row<T>(p, row)) : 0; };
  // The column a stage of `input`'s part of `row` starts with: the part's first (shifted
  // parts: the first of its input granule, which may lie before the row); and the skew of
  // its packs into their granules there (load_pack_smem).
  struct Origin {
    int col, skew;
  };
  auto origin_of = [&](int input, int64_t row) {
    if constexpr (A == Access::kShifted) {
      const int first = part_begin - shift_of(row);
      const int skew = granule_offset(in_row<T>(input_base(p, input), p, row) + first);
      return Origin{first - skew, skew};
    } else {
      return Origin{part_begin, 0};
    }
  };
  // Calls f with chunk map mc, its predicates folded (PackMap::inside) where every pack of
  // the warp lies inside the row: all chunks of a part but those at the row's ends. Warp
  // by warp, so that the ops' shuffles see every lane on one path.
  // Shifted parts only: vector fills cost a few moves, and the second path's registers cost
  // 16-byte kernels residency (add_rmsnorm bf16 64 -> 95) or spilled (f16 layernorm). Folded
  // outputs of shifted parts also read their parameters' pairs with no element loads.
  // Warps whose packs all lie past the row end skip it: parts are whole chunks of the
  // CTA, and a row a few columns over a chunk (f32 rows of 4098 and 131075) left most of the
  // last chunk's warps loading, reducing and storing nothing.
  auto with_inside = [&](auto const& mc, auto&& f) {
    if (Op::kForward && __all_sync(0xffffffffu, mc.col(0, 0) >= p.cols)) {
      return;
    }
    if constexpr (A != Access::kShifted) {
      f(mc);
    } else if (__all_sync(0xffffffffu, mc.template packs_inside<N, (Op::kParamArrays > 0)>())) {
      f(mc.inside());
    } else {
      f(mc);
    }
  };
  const auto m = chunk_map(0, 0);
  Tensor sRows = make_tensor(make_smem_ptr(reinterpret_cast<T*>(staged_bytes)),
                             make_layout(make_shape(part_cols + kPad, Int<Op::kInputs>{}, stages)));  // (PART,INPUTS,STAGES)

  // Brings the CTA's part of `row` into stage `stage`. The stage was last read before a
  // __syncthreads that every caller has passed (the prologue fills stages never read yet).
  auto stage_row = [&](int64_t row, int stage) {
    if constexpr (A == Access::kVector) {
      if (tid == 0) {
        const uint32_t bytes = uint32_t(part_len) * sizeof(T);
        cutlass::arch::fence_view_async_shared();
        Barrier::arrive_and_expect_tx(&full[stage], bytes * Op::kInputs);
        if (bytes > 0) {
          CUTE_UNROLL
          for (int input = 0; input < Op::kInputs; ++input) {
            SM90_BULK_COPY_G2S::copy(in_row<T>(input_base(p, input), p, row) + part_begin, &full[stage],
                                     &sRows(0, input, stage), int32_t(bytes));
          }
        }
      }
    } else if constexpr (A == Access::kShifted) {
      // The part's columns [lo, hi) of the row, at its input's alignment, as one bulk copy
      // of the 16-byte granules around them. Their bytes outside [lo, hi) (a neighbouring
      // part's or row's, or the gap between rows) land in the stage but are never read as
      // the row's (load_pack_smem fills past the row ends). Only a granule reaching past the
      // operand's last element (the last row's tail: its allocation may end there) goes by
      // plain stores. Plain loads of every row's ends had held each thread that made one,
      // and at the next barrier its CTA, for a memory latency a row.
      const int first = part_begin - shift_of(row);
      const int lo = max(first, 0), hi = min(first + part_cols, p.cols);
      if (tid == 0) {
        cutlass::arch::fence_view_async_shared();
      }
      CUTE_UNROLL
      for (int input = 0; input < Op::kInputs; ++input) {
        T const* src = in_row<T>(input_base(p, input), p, row);
        T const* operand_end = in_row<T>(input_base(p, input), p, p.rows - 1) + p.cols;
        const int origin = first - granule_offset(src + first);
        const int g0 = lo - granule_offset(src + lo);
        int g1 = hi + (P - granule_offset(src + hi)) % P;
        if (src + g1 > operand_end) {
          g1 = hi - granule_offset(src + hi);
        }
        if (hi > lo) {
          for (int e = max(g1, lo) + tid; e < hi; e += threads) {
            sRows(e - origin, input, stage) = src[e];
          }
          if (tid == 0 && g1 > g0) {
            const uint32_t bytes = uint32_t(g1 - g0) * sizeof(T);
            Barrier::expect_transaction(&full[stage], bytes);
            SM90_BULK_COPY_G2S::copy(src + g0, &full[stage], &sRows(g0 - origin, input, stage), int32_t(bytes));
          }
        }
      }
      if (tid == 0) {
        Barrier::arrive(&full[stage]);
      }
    } else {
      CUTE_UNROLL
      for (int input = 0; input < Op::kInputs; ++input) {
        T const* src = in_row<T>(input_base(p, input), p, row) + part_begin;
#pragma unroll 4
        for (int e = tid; e < part_len; e += threads) {
          sRows(e, input, stage) = src[e];
        }
      }
    }
  };

  if constexpr (kBulk) {
    if (tid == 0) {
      for (int s = 0; s < stages; ++s) {
        Barrier::init(&full[s], 1);
      }
      cutlass::arch::fence_barrier_init();
    }
    __syncthreads();
  }
  if (p.mode == kCluster) {
    if (tid == 0) {
      Barrier::init(&exchange.full[0], 1);
      Barrier::init(&exchange.full[1], 1);
      cutlass::arch::fence_barrier_init();
    }
    // Every peer's inbox is initialized before anyone sends.
    cute::cluster_arrive_relaxed();
    cute::cluster_wait();
  }
  const int64_t first_row = blockIdx.y, row_step = gridDim.y;
  // The prologue stages the first stages - 1 rows; each iteration stages one more.
  for (int s = 0; s + 1 < stages && first_row + s * row_step < p.rows; ++s) {
    stage_row(first_row + s * row_step, s);
  }
  if constexpr (kPlain) {
    __syncthreads();  // plain stores of the first rows are visible
  }

  typename Op::template Thread<N, A> th;
  th.begin(p, m);
  int it = 0;
  for (int64_t row = first_row; row < p.rows; row += row_step, ++it) {
    const int stage = it % stages;
    const int64_t ahead = row + int64_t(stages - 1) * row_step;
    if (ahead < p.rows) {
      stage_row(ahead, (it + stages - 1) % stages);
    }
    if constexpr (kBulk) {
      Barrier::wait(&full[stage], (it / stages) % 2);
    }
    if (kPlain && stages == 1) {
      __syncthreads();  // this row's plain stores are visible
    }
    const int shift = shift_of(row);
    Origin origins[Op::kInputs];
    CUTE_UNROLL
    for (int input = 0; input < Op::kInputs; ++input) {
      origins[input] = origin_of(input, row);
    }
    auto load_chunk = [&](auto const& mc) {
      th.load(p, row, [&](int input, auto& frag, T fill) {
        const Origin origin = origins[input];
        CUTE_UNROLL
        for (int j = 0; j < N; ++j) {
          load_pack_smem(&sRows(0, input, stage), origin.col, origin.skew, mc, j, frag(_, j), fill);
        }
      });
    };
    Stat<K> s = C::identity();
#pragma unroll 1  // one chunk's registers at a time
    for (int c = 0; c < chunks; ++c) {
      with_inside(chunk_map(c, shift), [&](auto const& mc) {
        load_chunk(mc);
        s = C::combine(s, th.stats(p, row, mc));
      });
    }
    // Its __syncthreads also orders a single chunk's stage reads before the next row's
    // staging, and (plain staging) the next row's stores before their reads.
    s = cta_reduce<C>(s, warp_slots[it % 2]);
    if (row_stats<C, K>(p, row, s, exchange, it)) {
      s = Op::finish(p, s);
      const bool lead = tid == 0 && blockIdx.x == 0;
      if (chunks == 1) {
        with_inside(chunk_map(0, shift), [&](auto const& mc) { th.apply(p, row, mc, s, lead); });  // still in registers
      } else {
#pragma unroll 1
        for (int c = 0; c < chunks; ++c) {
          with_inside(chunk_map(c, shift), [&](auto const& mc) {
            load_chunk(mc);
            th.apply(p, row, mc, s, lead && c == 0);
          });
        }
      }
    }
    if (chunks > 1) {
      __syncthreads();  // the output pass re-read the stage: done before it is refilled
    }
  }
  if (p.mode == kCluster) {
    cute::cluster_sync();  // no CTA leaves while a peer may still address its shared memory
  }
  if constexpr (Op::kColumnArrays > 0) {
    if (p.mode != kSplitStats) {
      store_column_sums<false>(th, p, m);
    }
  }
}

// out_a[col] = sum over slots of col_partials[a][slot][col], in slot order; a < arrays.
// Block (32, 8): 32 columns, 8 interleaved slot lanes, combined in lane order.
template <class T>
__global__ void __launch_bounds__(256) column_sums_kernel(RowParams const p) {
  __shared__ float lanes[8][33];
  const int64_t col = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int array = blockIdx.y;
  Tensor gSums = make_tensor(make_gmem_ptr(p.col_partials + int64_t(array) * p.slots * p.cols),
                             make_layout(make_shape(int64_t(p.cols), int64_t(p.slots)),
                                         make_stride(Int<1>{}, int64_t(p.cols))));  // (COLS,SLOTS)
  float acc = 0.0f;
  if (col < p.cols) {
    for (int slot = threadIdx.y; slot < p.slots; slot += 8) {
      acc += gSums(col, slot);
    }
  }
  lanes[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < p.cols) {
    float total = lanes[0][threadIdx.x];
    CUTE_UNROLL
    for (int r = 1; r < 8; ++r) {
      total += lanes[r][threadIdx.x];
    }
    static_cast<T*>(array == 0 ? p.dgamma : p.dbeta)[col] = T(total);
  }
}

// --- Launch -------------------------------------------------------------------------------

template <class Op, int N, int G = 32, int W = kPackElems<typename Op::Element>>
int launch_warp_rows(RowParams const& p, cudaStream_t stream) {
  const dim3 grid(1, unsigned(p.slots)), block(32 * kWarpRowsPerCta);
  if (p.flags & kVectorized) {
    warp_rows_kernel<Op, N, true, G, W><<<grid, block, 0, stream>>>(p);
  } else {
    warp_rows_kernel<Op, N, false, G, W><<<grid, block, 0, stream>>>(p);
  }
  return int(cudaGetLastError());
}

// Whether packs of W elements of T take vector accesses (a power of two of bytes up to 16).
template <class T, int W>
constexpr bool kVectorWidth = (W * sizeof(T)) <= kVectorBytes && ((W * sizeof(T)) & (W * sizeof(T) - 1)) == 0;

// Lanes of G lanes a row, in element packs of W (no vector instantiation).
template <class Op, int G, int W>
int launch_element_lanes(RowParams const& p, cudaStream_t stream) {
  if (p.flags & kVectorized) {
    return kRefusedPlan;
  }
  const dim3 grid(1, unsigned(p.slots)), block(32 * kWarpRowsPerCta);
  warp_rows_kernel<Op, 1, false, G, W><<<grid, block, 0, stream>>>(p);
  return int(cudaGetLastError());
}

template <class Op, int W>
int launch_row_lane_width(RowParams const& p, cudaStream_t stream) {
  if constexpr (kVectorWidth<typename Op::Element, W>) {
    return launch_warp_rows<Op, 1, 1, W>(p, stream);
  } else {
    return launch_element_lanes<Op, 1, W>(p, stream);
  }
}

// A lane per row, in packs of p.width elements: the row's length, up to kLaneRowElems.
template <class Op>
int launch_row_lanes(RowParams const& p, cudaStream_t stream) {
  switch (p.width) {
    case 1: return launch_row_lane_width<Op, 1>(p, stream);
    case 2: return launch_row_lane_width<Op, 2>(p, stream);
    case 3: return launch_row_lane_width<Op, 3>(p, stream);
    case 4: return launch_row_lane_width<Op, 4>(p, stream);
    case 5: return launch_row_lane_width<Op, 5>(p, stream);
    case 6: return launch_row_lane_width<Op, 6>(p, stream);
    case 7: return launch_row_lane_width<Op, 7>(p, stream);
    case 8: return launch_row_lane_width<Op, 8>(p, stream);
    default: return kRefusedPlan;
  }
}

// G lanes a row, one pack each: the 16-byte pack, or (rows without vectors) an element
// pack of the row's share of a lane, 5 to kLaneRowElems (narrower shares take G / 2 lanes;
// LANE_GROUP_WIDTHS in src/variants.rs).
template <class Op, int G>
int launch_lane_group(RowParams const& p, cudaStream_t stream) {
  if (p.width == kPackElems<typename Op::Element>) {
    return launch_warp_rows<Op, 1, G>(p, stream);
  }
  auto element = [&](auto width) {
    constexpr int W = decltype(width)::value;
    if constexpr (W == kPackElems<typename Op::Element> || !kGroupElementPacks<typename Op::Element>) {
      return int(kRefusedPlan);  // taken above, or f32 only
    } else {
      return launch_element_lanes<Op, G, W>(p, stream);
    }
  };
  switch (p.width) {
    case 5: return element(Int<5>{});
    case 6: return element(Int<6>{});
    case 7: return element(Int<7>{});
    case 8: return element(Int<8>{});
    default: return kRefusedPlan;
  }
}

// Short forward rows: one pack a lane, `lanes` lanes a row.
template <class Op>
int launch_lane_rows(RowParams const& p, cudaStream_t stream) {
  if constexpr (Op::kForward) {
    switch (p.lanes) {
      case 1: return launch_row_lanes<Op>(p, stream);
      case 2: return launch_lane_group<Op, 2>(p, stream);
      case 4: return launch_lane_group<Op, 4>(p, stream);
      case 8: return launch_lane_group<Op, 8>(p, stream);
      case 16: return launch_lane_group<Op, 16>(p, stream);
      default: break;
    }
  }
  return kRefusedPlan;
}

// The staged kernel's launch configuration: `parts` CTAs per row (one cluster of them in
// cluster mode) on `slots` row slots. Not copyable: config points at its own attribute.
struct StagedLaunch {
  cudaLaunchAttribute cluster{};
  cudaLaunchConfig_t config{};

  StagedLaunch(int threads, int parts, int slots, size_t smem, bool clustered, cudaStream_t stream) {
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = unsigned(parts);
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    config.gridDim = dim3(unsigned(parts), unsigned(slots));
    config.blockDim = dim3(unsigned(threads));
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = clustered ? &cluster : nullptr;
    config.numAttrs = clustered ? 1 : 0;
  }
  StagedLaunch(StagedLaunch const&) = delete;
  StagedLaunch& operator=(StagedLaunch const&) = delete;
};

// An occupancy question about one staged kernel, mirrored by `StagedQuery` in src/launch.rs.
struct StagedQuery {
  int32_t vectorized;  // which instantiation: 16-byte accesses or element accesses
  int32_t threads;     // per CTA
  int32_t smem_bytes;  // dynamic shared memory per CTA
  int32_t smem_limit;  // the most dynamic shared memory any plan of the kernel takes
  int32_t cluster;     // CTAs per cluster; 1: no cluster
  int32_t resident;    // answer: CTAs per SM (cluster 1), else clusters on the device at once
};
static_assert(sizeof(StagedQuery) == 24, "layout shared with src/launch.rs");

// Answers a StagedQuery on the current device. It first sets the kernel's attributes there
// (dynamic shared memory up to smem_limit, cluster sizes past 8), which every launch of a
// plan built from the answer relies on: the Rust planner asks before it plans, once per
// configuration and Normalizer, so launchers set nothing.
template <class Op, bool kVec>
int residency_of(StagedQuery& q) {
  auto* kernel = &staged_rows_kernel<Op, kVec>;
  if (q.threads < 32 || q.threads > kStagedMaxThreads<Op> || q.threads % 32 != 0 || q.smem_bytes < 0 ||
      q.smem_bytes > q.smem_limit || q.cluster < 1 || q.cluster > kMaxClusterParts) {
    return kRefusedPlan;
  }
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, q.smem_limit);
  if (err == cudaSuccess) err = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (err != cudaSuccess) {
    return int(err);
  }
  if (q.cluster == 1) {
    return int(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&q.resident, kernel, q.threads, size_t(q.smem_bytes)));
  }
  const StagedLaunch staged(q.threads, q.cluster, 1, size_t(q.smem_bytes), true, nullptr);
  return int(cudaOccupancyMaxActiveClusters(&q.resident, kernel, &staged.config));
}

template <class Op>
int staged_residency(StagedQuery& q) {
  return q.vectorized ? residency_of<Op, true>(q) : residency_of<Op, false>(q);
}

// Whether the plan's rows take shifted accesses (unaligned staged rows without column
// sums): mirrored by NormPlan::shifted in src/variants.rs.
template <class Op>
bool shifted_rows(RowParams const& p) {
  return !(p.flags & kVectorized) && Op::kColumnArrays == 0 && p.layout == kCtaPerRow;
}

// Granules a stage adds to each row operand's part: one for shifted parts, staged at their
// input's alignment.
template <class Op>
int shifted_pad(RowParams const& p) {
  return p.layout == kCtaPerRow && shifted_rows<Op>(p) ? 1 : 0;
}

// Launches the staged kernel with the plan's depth on the plan's (persistent) grid.
template <class Op, bool kVec>
int launch_staged(RowParams const& p, cudaStream_t stream) {
  auto* kernel = &staged_rows_kernel<Op, kVec>;
  const int64_t smem = int64_t(p.stages) * Op::kInputs * (int64_t(p.threads) * p.packs + shifted_pad<Op>(p)) * kVectorBytes;
  if (smem > p.smem_limit) {
    return kRefusedSharedMemory;
  }
  const StagedLaunch staged(p.threads, p.parts, p.slots, size_t(smem), p.mode == kCluster, stream);
  if (p.mode == kSplit) {
    RowParams stats = p;
    stats.mode = kSplitStats;
    const cudaError_t err = cudaLaunchKernelEx(&staged.config, kernel, stats, p.stages);
    if (err != cudaSuccess) {
      return int(err);
    }
    RowParams apply = p;
    apply.mode = kSplitApply;
    return int(cudaLaunchKernelEx(&staged.config, kernel, apply, p.stages));
  }
  return int(cudaLaunchKernelEx(&staged.config, kernel, p, p.stages));
}

// Refuses what the kernels would get wrong: a grid that does not cover the row, a layout the
// mode does not take, a pack count or depth not compiled, a missing buffer.
template <class Op>
bool launchable(RowParams const& p) {
  constexpr int P = kPackElems<typename Op::Element>;
  const bool warp_rows = p.layout == kWarpPerRow;
  const int64_t group = warp_rows ? p.lanes : p.threads;
  const bool geometry = p.rows >= 1 && p.cols >= 1 && p.threads >= 32 && p.threads % 32 == 0 &&
                        p.slots >= 1 && p.slots <= 65535 && p.parts >= 1 && p.in_stride >= p.cols &&
                        p.out_stride >= p.cols;
  // The staged kernel stages 16-byte and shifted parts asynchronously, several rows deep.
  const bool shifted = shifted_rows<Op>(p);
  const bool deep = p.layout == kCtaPerRow && ((p.flags & kVectorized) || shifted);
  const bool stages = p.stages >= 1 && p.stages <= (deep ? kMaxStages : 1);
  // A lane per row: one pack of its 1 to kLaneRowElems elements (launch_row_lanes); lane
  // groups: element packs of 5 and more (launch_lane_group).
  const int W = p.width;
  const bool lane_pack = p.lanes == 1 ? W >= 1
                                      : kGroupElementPacks<typename Op::Element> && W >= 5 && p.lanes < 32 &&
                                            !(p.flags & kVectorized);
  const bool width = W == P || (warp_rows && p.packs == 1 && lane_pack && W <= kLaneRowElems);
  // Shifted packs start up to P - 1 columns before the row.
  const bool covers = int64_t(p.parts) * group * p.packs * W >= p.cols + (shifted ? P - 1 : 0);
  const bool vectorized =
      !(p.flags & kVectorized) || (p.cols % W == 0 && p.in_stride % W == 0 && p.out_stride % W == 0);
  bool layout = false;
  switch (p.layout) {
    case kWarpPerRow: {
      const bool lane_rows = Op::kForward && p.packs == 1 &&
                             (p.lanes == 1 || p.lanes == 2 || p.lanes == 4 || p.lanes == 8 || p.lanes == 16);
      layout = p.threads == 32 * kWarpRowsPerCta && p.mode == kWhole && p.parts == 1 &&
               (p.packs == 1 || p.packs == 2 || p.packs == 4 || p.packs == 8) && p.packs <= Op::kMaxPacks &&
               (p.lanes == 32 || lane_rows);
      break;
    }
    case kCtaPerRow:
      // Column sums are per register element: backward parts are one chunk.
      layout = p.threads <= kStagedMaxThreads<Op> && p.packs >= Op::kChunkPacks && p.packs % Op::kChunkPacks == 0 &&
               (Op::kColumnArrays == 0 || p.packs == Op::kChunkPacks) &&
               ((p.mode == kWhole && p.parts == 1) || (p.mode == kCluster && p.parts >= 2 && p.parts <= kMaxClusterParts) ||
                (p.mode == kSplit && p.parts >= 2 && p.row_partials != nullptr));
      break;
    default:
      break;
  }
  const bool sums = Op::kColumnArrays == 0 || p.col_partials != nullptr;
  return geometry && width && stages && covers && vectorized && layout && sums;
}

template <class Op>
int launch(RowParams const& params, cudaStream_t stream) {
  if (!launchable<Op>(params)) {
    return kRefusedPlan;
  }
  int err = kRefusedPlan;
  if (params.layout == kCtaPerRow) {
    err = (params.flags & kVectorized) ? launch_staged<Op, true>(params, stream)
                                       : launch_staged<Op, false>(params, stream);
  } else if (params.lanes < 32) {
    err = launch_lane_rows<Op>(params, stream);
  } else {
    switch (params.packs) {
      case 1: err = launch_warp_rows<Op, 1>(params, stream); break;
      case 2: err = launch_warp_rows<Op, 2>(params, stream); break;
      case 4:
        if constexpr (Op::kMaxPacks >= 4) {
          err = launch_warp_rows<Op, 4>(params, stream);
        }
        break;
      case 8:
        if constexpr (Op::kMaxPacks >= 8) {
          err = launch_warp_rows<Op, 8>(params, stream);
        }
        break;
      default: break;
    }
  }
  if (err != cudaSuccess) {
    return err;
  }
  if constexpr (Op::kColumnArrays > 0) {
    const dim3 grid(unsigned((params.cols + 31) / 32), unsigned(Op::kColumnArrays)), block(32, 8);
    column_sums_kernel<typename Op::Element><<<grid, block, 0, stream>>>(params);
    err = int(cudaGetLastError());
  }
  return err;
}

}  // namespace ckb::norm

// extern "C" launchers, ckb_norm_<op>_<type>(params, stream) -> cudaError_t or Refusal, and
// their staged kernels' occupancy, ckb_norm_<op>_<type>_residency(query) -> cudaError_t.
#define CKB_NORM_LAUNCHER(NAME, OP, T, TNAME)                                                   \
  extern "C" int ckb_norm_##NAME##_##TNAME(ckb::norm::RowParams const* p, cudaStream_t s) {    \
    return ckb::norm::launch<ckb::norm::OP<T>>(*p, s);                                         \
  }                                                                                             \
  extern "C" int ckb_norm_##NAME##_##TNAME##_residency(ckb::norm::StagedQuery* q) {            \
    return ckb::norm::staged_residency<ckb::norm::OP<T>>(*q);                                  \
  }

#define CKB_NORM_FORWARD(T, TNAME)                         \
  CKB_NORM_LAUNCHER(softmax, SoftmaxForward, T, TNAME)     \
  CKB_NORM_LAUNCHER(layernorm, LayerNormForward, T, TNAME) \
  CKB_NORM_LAUNCHER(rmsnorm, RmsNormForward, T, TNAME)

#define CKB_NORM_ADD(T, TNAME)                                   \
  CKB_NORM_LAUNCHER(add_layernorm, AddLayerNormForward, T, TNAME) \
  CKB_NORM_LAUNCHER(add_rmsnorm, AddRmsNormForward, T, TNAME)

#define CKB_NORM_BACKWARD(T, TNAME)                                  \
  CKB_NORM_LAUNCHER(softmax_backward, SoftmaxBackward, T, TNAME)     \
  CKB_NORM_LAUNCHER(layernorm_backward, LayerNormBackward, T, TNAME) \
  CKB_NORM_LAUNCHER(rmsnorm_backward, RmsNormBackward, T, TNAME)
