// Epilogue: D = alpha * accumulators + beta * C, staged through shared memory so that global
// accesses are wide, whatever C's alignment. Two paths, chosen by Rust's plan per launch:
//
// TMA store (args.c_tma_store: row-major C whose start, pitch and rows are whole 16-byte
// granules, beta == 0, no split). Each consumer warp group converts its 64 rows to the output
// type one 128-byte-wide chunk at a time into one of two swizzled boxes, and one thread hands
// the box to TMA, which writes it to C while the warp group fills the other box and then goes
// on to the next tile's WGMMAs. TMA clips at C's edges in 16-byte granules, hence whole-granule
// rows (Rust's tma_store_fits).
//
// Vector stores (any other C): each warp group works through its 64 x BN accumulators 32
// columns at a time:
//   1. its fragment of the chunk goes to shared memory (fp32, so beta*C is added in fp32),
//      laid out with C's contiguous dimension contiguous: row-major or transposed,
//   2. the warp group reads the chunk back in 16-byte vectors and writes C: 8- or 16-byte
//      vectors where C's start and leading dimension are aligned to 4 elements, elements
//      otherwise, predicated at the edges. beta == 0 never reads C.
// The output dtype is a run-time choice, so one compiled kernel serves f32/f16/bf16 output.
#pragma once

#include <cuda.h>
#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/cuda_host_adapter.hpp>

#include "gemm/args.cuh"
#include "gemm/tile_scheduler.cuh"

namespace ckb {

using namespace cute;

// Synchronizes the 128 threads of one warp group on a named barrier (0 is __syncthreads).
CUTE_DEVICE void warp_group_barrier(int barrier_id) {
  asm volatile("bar.sync %0, 128;\n" ::"r"(barrier_id) : "memory");
}

template <class Mainloop>
struct EpilogueSmemStaged {
  static constexpr int BM = Mainloop::BM, BN = Mainloop::BN;
  static constexpr int WgRows = 64;      // rows of the tile per consumer warp group
  static constexpr int ChunkCols = 32;   // accumulator columns staged at a time
  static constexpr int Chunks = BN / ChunkCols;
  // Row-major staging [WgRows][RowPitch]: a pitch of 8 (mod 32) words puts the float2 fragment
  // writes of a half-warp (4 rows x 8 columns) in distinct banks.
  static constexpr int RowPitch = ChunkCols + 8;
  // Transposed staging [ChunkCols][ColPitch] for column-major C: a pitch of 4 (mod 32) words
  // puts a warp's scalar writes (8 rows x 4 column pairs) in distinct banks.
  static constexpr int ColPitch = WgRows + 4;
  static constexpr int StageFloats = (WgRows * RowPitch > ChunkCols * ColPitch) ? WgRows * RowPitch : ChunkCols * ColPitch;
  static constexpr int VectorsPerThread = WgRows * ChunkCols / 4 / 128;

  static_assert(BN % ChunkCols == 0, "whole chunks");
  static_assert(WgRows * ChunkCols % (4 * 128) == 0, "chunk splits into 16-byte vectors evenly over a warp group");
  // The accumulator layout this file relies on: thread (lane l, warp w) holds, for column
  // block j and half h, the pair (row 16w + l/4 + 8h, columns 8j + 2(l%4) + {0,1}) at
  // fragment indices 4j + 2h + {0,1}. So chunk c is indices [c*ChunkCols/2, (c+1)*ChunkCols/2).
  static_assert(is_same_v<typename Mainloop::TiledMma::Atom::CLayout, GMMA::CLayout_64xN<BN>>,
                "WGMMA accumulator layout 64xN");

  // TMA-store boxes: 64 rows x 128 bytes (64 16-bit or 32 fp32 columns), 128-byte swizzled
  // as C's tensor map says, two per warp group so that one fills while TMA reads the other.
  static constexpr int BoxRows = WgRows;
  static constexpr int BoxRowBytes = 128;
  static constexpr int BoxBytes = BoxRows * BoxRowBytes;
  static_assert(BN * 2 % BoxRowBytes == 0 && BN * 4 % BoxRowBytes == 0, "whole boxes for 16-bit and fp32 C");

  struct SharedStorage {
    union {  // a launch uses one path
      alignas(16) float stage[Mainloop::ConsumerWarpGroups][StageFloats];
      alignas(1024) uint8_t box[Mainloop::ConsumerWarpGroups][2][BoxBytes];  // 1024: the swizzle's period
    };
  };

  // Host: C's tensor map for the TMA-store path, C(m,n) row-major with pitch args.c_stride_m,
  // in boxes of 64 rows x 128 bytes. cudaSuccess, or cudaErrorInvalidValue where the driver
  // refuses it (Rust's plan has checked what it needs).
  static int make_store_descriptor(CkbGemmArgs const& args, TmaDescriptor& desc) {
    int code = int(cudaErrorInvalidValue);
    dispatch_out_dtype(args.out_dtype, [&](auto out_tag) {
      using TOut = decltype(out_tag);
      CUtensorMapDataType const type = sizeof(TOut) == 4 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                                       : is_same_v<TOut, cutlass::half_t> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                                         : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
      cuuint64_t const dims[2] = {cuuint64_t(args.n), cuuint64_t(args.m)};          // (N, M): N contiguous
      cuuint64_t const pitch_bytes[1] = {cuuint64_t(args.c_stride_m) * sizeof(TOut)};
      cuuint32_t const box[2] = {cuuint32_t(BoxRowBytes / sizeof(TOut)), cuuint32_t(BoxRows)};
      cuuint32_t const unit[2] = {1, 1};
      CUresult const r = CUTLASS_CUDA_DRIVER_WRAPPER_CALL(cuTensorMapEncodeTiled)(
          &desc, type, 2, args.c, dims, pitch_bytes, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
      code = r == CUDA_SUCCESS ? int(cudaSuccess) : int(cudaErrorInvalidValue);
    });
    return code;
  }

  // Two consecutive output elements, one shared-memory store.
  template <class TOut>
  struct alignas(2 * sizeof(TOut)) Pair {
    TOut v[2];
  };

  // TMA-store path: this warp group's 64 x BN share of the tile, rows from m0, columns from n0.
  template <class TOut, class Accum>
  CUTE_DEVICE static void store_boxes(TmaDescriptor const* c_desc, float alpha, Accum const& accum, int wg,
                                      int thread, int m0, int n0, int n, SharedStorage& smem) {
    constexpr int BoxCols = BoxRowBytes / int(sizeof(TOut));
    constexpr int BoxChunks = BN / BoxCols;
    int const frag_row = thread / 32 * 16 + thread % 32 / 4;  // as in store() below
    int const frag_col = thread % 4 * 2;
    bool const leader = thread == 0;
    if (leader) tma_store_wait<0>();  // the previous tile's boxes have been read (a mainloop ago)
    CUTE_NO_UNROLL
    for (int chunk = 0; chunk < BoxChunks; ++chunk) {
      int const chunk_n0 = n0 + chunk * BoxCols;
      if (chunk_n0 >= n) break;  // uniform over the warp group
      uint8_t* box = smem.box[wg][chunk % 2];
      if (leader && chunk >= 2) tma_store_wait<1>();  // chunk - 2's store has read this box
      warp_group_barrier(1 + wg);
      CUTE_UNROLL
      for (int static_chunk = 0; static_chunk < BoxChunks; ++static_chunk) {
        if (static_chunk != chunk) continue;  // compile-time accumulator indices, as in store()
        CUTE_UNROLL
        for (int j = 0; j < BoxCols / 2; j += 2) {
          int const i = static_chunk * BoxCols / 2 + j;  // fragment index 4 * block + 2 * half
          int const row = frag_row + j / 2 % 2 * 8, col = frag_col + j / 4 * 8;
          int const offset = Swizzle<3, 4, 3>{}(row * BoxRowBytes + col * int(sizeof(TOut)));  // SWIZZLE_128B
          *reinterpret_cast<Pair<TOut>*>(box + offset) =
              Pair<TOut>{{static_cast<TOut>(alpha * accum(i)), static_cast<TOut>(alpha * accum(i + 1))}};
        }
      }
      tma_store_fence();  // this thread's writes are visible to the TMA unit
      warp_group_barrier(1 + wg);
      if (leader) {
        SM90_TMA_STORE_2D::copy(c_desc, box, chunk_n0, m0);
        tma_store_arrive();
      }
    }
  }

  // beta != 0: asks L2 for tile `tile`'s C before its mainloop, so that the epilogue's reads
  // of C hit L2 instead of waiting on DRAM (2048^3 with beta = 1 took 7 us more than beta =
  // 0; cuBLAS takes the same time for both). One 128-byte piece of a line of C per thread.
  CUTE_DEVICE static void prefetch_c(CkbGemmArgs const& args, int consumer_thread, TileCoord tile) {
    bool const row_major = args.c_stride_n == 1;
    int const elem_bytes = args.out_dtype == CKB_OUT_F32 ? 4 : 2;
    int const lines = row_major ? BM : BN;         // lines of C (rows if row-major) in the tile
    int const line_len = row_major ? BN : BM;      // elements of each along C's contiguous side
    int const first_line = row_major ? tile.m_blk * BM : tile.n_blk * BN;
    int const first_elem = row_major ? tile.n_blk * BN : tile.m_blk * BM;
    int const line_bound = row_major ? args.m : args.n, elem_bound = row_major ? args.n : args.m;
    int64_t const ld = row_major ? args.c_stride_m : args.c_stride_n;
    int const pieces = line_len * elem_bytes / 128;  // per line; BM and BN are multiples of 64
    for (int i = consumer_thread; i < lines * pieces; i += Mainloop::ConsumerThreads) {
      int const line = first_line + i / pieces, at = first_elem + i % pieces * (128 / elem_bytes);
      if (line < line_bound && at < elem_bound) {
        char const* p = static_cast<char const*>(args.c) + (int64_t(line) * ld + at) * elem_bytes;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
      }
    }
  }

  // Before the CTA exits: TMA has read every box this warp group handed it.
  CUTE_DEVICE static void store_tail(int consumer_thread) {
    if (consumer_thread % 128 == 0) tma_store_wait<0>();
  }

  // The staged chunk, `Rows` x `Cols` with the contiguous dimension of C along `Cols`, to
  // `out` (row pitch `ld` elements). Rows at or past `rows_left` and columns at or past
  // `cols_left` lie outside C; a chunk wholly inside takes a path without checks. Each
  // thread walks one column of 4-element vectors down the chunk, by pointer increments;
  // without `vectors` (C or its pitch not aligned to 4 elements) it stores them one by one.
  template <int Rows, int Cols, int Pitch, bool ReadC, class TOut>
  CUTE_DEVICE static void store_chunk(float const* stage, TOut* out, int64_t ld, int rows_left, int cols_left,
                                      bool vectors, float alpha, float beta, int thread) {
    constexpr int VectorsPerRow = Cols / 4;
    constexpr int RowsPerPass = 128 / VectorsPerRow;
    static_assert(Rows * Cols / 4 == VectorsPerThread * 128, "whole vectors per thread");
    int const row0 = thread / VectorsPerRow;
    int const col = thread % VectorsPerRow * 4;
    float const* src = stage + row0 * Pitch + col;
    TOut* dst = out + row0 * ld + col;
    int64_t const dst_step = RowsPerPass * ld;
    if (vectors && rows_left >= Rows && cols_left >= Cols) {
      // With beta != 0 every old vector is loaded before the first store: one round trip to
      // C per chunk instead of one per vector.
      Vec4<TOut> old[VectorsPerThread];
      if constexpr (ReadC) {
        CUTE_UNROLL
        for (int i = 0; i < VectorsPerThread; ++i) old[i] = *reinterpret_cast<Vec4<TOut> const*>(dst + i * dst_step);
      }
      CUTE_UNROLL
      for (int i = 0; i < VectorsPerThread; ++i) {
        axpby_store4<ReadC>(dst + i * dst_step, *reinterpret_cast<float4 const*>(src + i * RowsPerPass * Pitch), old[i],
                            alpha, beta);
      }
      return;
    }
    CUTE_UNROLL
    for (int i = 0; i < VectorsPerThread; ++i) {
      int const row = row0 + i * RowsPerPass;
      float const* s = src + i * RowsPerPass * Pitch;
      if (row < rows_left && vectors && col + 4 <= cols_left) {
        axpby_store4<ReadC>(dst, *reinterpret_cast<float4 const*>(s), alpha, beta);
      } else if (row < rows_left) {
        int const cols_here = min(4, cols_left - col);
        for (int e = 0; e < cols_here; ++e) axpby_store(dst + e, s[e], alpha, beta);
      }
      dst += dst_step;
    }
  }

  // Writes this warp group's 64 x BN share of tile `tile`; `c_desc` is C's tensor map when
  // args.c_tma_store.
  template <class Accum>
  CUTE_DEVICE static void store(CkbGemmArgs const& args, TmaDescriptor const* c_desc, Accum const& accum,
                               int consumer_thread, TileCoord tile, SharedStorage& smem) {
    static_assert(decltype(size(accum))::value == BN / 2, "one 64xBN WGMMA fragment per thread");
    int const wg = consumer_thread / 128;
    int const thread = consumer_thread % 128;
    int const m0 = tile.m_blk * BM + wg * WgRows;  // first row of C this warp group writes
    int const n0 = tile.n_blk * BN;
    int const rows_left = args.m - m0;
    if (rows_left <= 0) return;  // the whole warp group is past M: no barrier to keep
    if (args.c_tma_store) {
      dispatch_out_dtype(args.out_dtype, [&](auto out_tag) {
        store_boxes<decltype(out_tag)>(c_desc, args.alpha, accum, wg, thread, m0, n0, args.n, smem);
      });
      return;
    }

    // This thread's first fragment element, from the accumulator layout asserted above:
    // row 16 * warp + lane / 4, column 2 * (lane % 4); the rest are compile-time offsets.
    int const frag_row = thread / 32 * 16 + thread % 32 / 4;
    int const frag_col = thread % 4 * 2;
    float* stage = smem.stage[wg];
    float* row_stage = stage + frag_row * RowPitch + frag_col;  // [row][column] staging
    float* col_stage = stage + frag_col * ColPitch + frag_row;  // [column][row] staging
    bool const row_major = args.c_stride_n == 1;

    // One output-dtype branch per tile; the chunk loop stays rolled so that the code that
    // runs is small (instruction-cache misses dominated the fully unrolled epilogue).
    dispatch_out_dtype(args.out_dtype, [&](auto out_tag) {
      using TOut = decltype(out_tag);
      auto* c = static_cast<TOut*>(args.c);
      // Any C: 4-element vectors where its start and pitch allow them, elements otherwise.
      int64_t const ld = row_major ? args.c_stride_m : args.c_stride_n;
      bool const vectors = (reinterpret_cast<uintptr_t>(c) % (4 * sizeof(TOut))) == 0 && ld % 4 == 0;
      CUTE_NO_UNROLL
      for (int chunk = 0; chunk < Chunks; ++chunk) {
        int const chunk_n0 = n0 + chunk * ChunkCols;
        int const cols_left = args.n - chunk_n0;
        if (cols_left <= 0) break;  // uniform over the warp group
        warp_group_barrier(1 + wg);  // the previous chunk has been read out
        // Accumulator indices must be compile-time constants (a run-time index moves the
        // accumulators to local memory): one static block per chunk, the one that matches
        // runs. Inner loops have constant trip counts so that they unroll first.
        CUTE_UNROLL
        for (int static_chunk = 0; static_chunk < Chunks; ++static_chunk) {
          if (static_chunk != chunk) continue;
          CUTE_UNROLL
          for (int j = 0; j < ChunkCols / 2; j += 2) {
            int const i = static_chunk * ChunkCols / 2 + j;  // fragment index 4 * block + 2 * half
            int const half = j / 2 % 2, block = j / 4;        // row + 8 * half, column + 8 * block
            if (row_major) {
              *reinterpret_cast<float2*>(row_stage + half * 8 * RowPitch + block * 8) = make_float2(accum(i), accum(i + 1));
            } else {
              col_stage[block * 8 * ColPitch + half * 8] = accum(i);
              col_stage[(block * 8 + 1) * ColPitch + half * 8] = accum(i + 1);
            }
          }
        }
        warp_group_barrier(1 + wg);
        // beta == 0 never reads C; decided here, once per chunk, not per vector.
        bool const read_c = args.beta != 0.0f;
        if (row_major) {  // chunk rows are rows of C: 64 x 32
          TOut* out = c + int64_t(m0) * args.c_stride_m + chunk_n0;
          if (read_c) store_chunk<WgRows, ChunkCols, RowPitch, true>(stage, out, args.c_stride_m, rows_left, cols_left, vectors, args.alpha, args.beta, thread);
          else store_chunk<WgRows, ChunkCols, RowPitch, false>(stage, out, args.c_stride_m, rows_left, cols_left, vectors, args.alpha, args.beta, thread);
        } else {          // chunk rows are columns of C: 32 x 64
          TOut* out = c + int64_t(chunk_n0) * args.c_stride_n + m0;
          if (read_c) store_chunk<ChunkCols, WgRows, ColPitch, true>(stage, out, args.c_stride_n, cols_left, rows_left, vectors, args.alpha, args.beta, thread);
          else store_chunk<ChunkCols, WgRows, ColPitch, false>(stage, out, args.c_stride_n, cols_left, rows_left, vectors, args.alpha, args.beta, thread);
        }
      }
    });
  }
};

}  // namespace ckb
