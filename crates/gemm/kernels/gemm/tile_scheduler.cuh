// Tile schedulers: which output tiles each CTA computes, and in what order. A kernel's
// launcher asks its scheduler for the grid, and the kernel asks it for its tiles; nothing else
// knows the order, so a stream-K or cluster scheduler is a new struct here, handed to the
// kernel as its `Scheduler` template argument.
//
// Both schedulers number tiles in (BM,BN) blocks of the kernel's M x N output and hand out
// `TileCoord`s in units of blocks.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace ckb {

// ceil(extent / block) without overflowing for extents near 2^31.
inline int blocks(int extent, int block) { return int((int64_t(extent) + block - 1) / block); }

struct TileCoord {
  int m_blk;  // the tile covers rows [m_blk * BM, (m_blk + 1) * BM) of the output
  int n_blk;  // and columns [n_blk * BN, (n_blk + 1) * BN)
  int split;         // which K slice: K-tiles [k_tile_begin, k_tile_begin + k_tile_count)
  int k_tile_begin;
  int k_tile_count;  // >= 1
};

// Persistent: a grid of at most one CTA per SM walks the tiles with a stride of the grid
// size. Tiles are ordered in bands of `band` M-blocks, M fastest inside a band, so the CTAs
// that run at the same time share rows of A and columns of B in L2.
//
// The order is static: the producer and the consumer warp groups of a CTA each walk it on
// their own and agree without talking.
// With split-K the work is `splits` copies of the tile walk, one per K slice, slice-major:
// the CTAs of a wave work on the same K range of neighbouring tiles.
struct PersistentTileScheduler {
  int tiles_m;
  int tiles_n;
  int band;           // M-blocks per band, >= 1
  int ctas;           // the grid: min(work units, SMs), >= 1
  int splits;         // K slices, >= 1 (Rust's plan: every slice has at least one K-tile)
  int split_k_tiles;  // K-tiles per slice; the last slice takes what is left
  int k_tiles;

  // Host: the walk of an m x n output in bm x bn tiles on `sms` multiprocessors, with a band
  // about as tall as a wave of CTAs is wide, so that a wave covers a near-square patch of
  // the output: sqrt(ctas) M-blocks, at most all of them and at most 16.
  static PersistentTileScheduler make(int m, int n, int bm, int bn, int sms, int k_tiles, int splits,
                                      int split_k_tiles) {
    // Without a split the one slice is all of K (the plan leaves split_k_tiles at 0 then).
    bool const split = splits > 1;
    PersistentTileScheduler s{blocks(m, bm), blocks(n, bn), 1, 1, split ? splits : 1, split ? split_k_tiles : k_tiles,
                              k_tiles};
    int64_t const units = s.unit_count();
    s.ctas = int(units < sms ? units : sms);
    int64_t const tiles = s.tile_count();
    int const wave_tiles = int(tiles < s.ctas ? tiles : s.ctas);
    while (s.band * s.band < wave_tiles && s.band < s.tiles_m) ++s.band;
    s.band = s.band > 16 ? 16 : s.band;
    return s;
  }

  __host__ dim3 grid() const { return dim3(unsigned(ctas)); }

  __host__ __device__ int64_t tile_count() const { return int64_t(tiles_m) * tiles_n; }
  __host__ __device__ int64_t unit_count() const { return tile_count() * splits; }

  // Work unit number `linear`: slice linear / tiles, tile linear % tiles of the rasterized order.
  __host__ __device__ TileCoord tile(int64_t linear) const {
    int64_t const tiles = tile_count();
    int const split = int(linear / tiles);
    linear -= int64_t(split) * tiles;
    int64_t const band_tiles = int64_t(band) * tiles_n;
    int64_t const band_idx = linear / band_tiles;
    int const first_m = int(band_idx * band);
    int const rows = band < tiles_m - first_m ? band : tiles_m - first_m;  // the last band may be narrower
    int64_t const within = linear - band_idx * band_tiles;
    int const k_begin = split * split_k_tiles;
    int const k_count = split_k_tiles < k_tiles - k_begin ? split_k_tiles : k_tiles - k_begin;
    return {first_m + int(within % rows), int(within / rows), split, k_begin, k_count};
  }

  // Calls f(TileCoord) for every work unit this CTA owns, in order (the grid is `ctas` wide).
  template <class F>
  __device__ void for_each_tile(F&& f) const {
    int64_t const units = unit_count();
    for (int64_t t = blockIdx.x; t < units; t += gridDim.x) f(tile(t));
  }
};

// Host check of the walk `make` gives, for Rust's unit tests (a wrong walk hangs or skips
// tiles on the GPU): every (tile, slice) exactly once, every slice at least one K-tile, the
// slices of a tile covering K-tiles [0, k_tiles) in order. 0 when right, else the first
// fault: 1 an empty or out-of-range slice, 2 a tile outside the output, 3 a unit seen twice,
// 4 a unit never seen, 5 slices that do not tile K.
inline int check_schedule(PersistentTileScheduler const& s) {
  int64_t const tiles = s.tile_count(), units = s.unit_count();
  if (s.ctas < 1 || s.band < 1 || s.splits < 1) return 1;
  int* seen = new int[units]();
  int fault = 0;
  for (int64_t u = 0; u < units && fault == 0; ++u) {
    TileCoord const t = s.tile(u);
    if (t.k_tile_count < 1 || t.k_tile_begin < 0 || t.k_tile_begin + t.k_tile_count > s.k_tiles) fault = 1;
    else if (t.m_blk < 0 || t.m_blk >= s.tiles_m || t.n_blk < 0 || t.n_blk >= s.tiles_n) fault = 2;
    else if (t.split != (t.split == 0 ? 0 : t.k_tile_begin / s.split_k_tiles) || t.k_tile_begin != t.split * s.split_k_tiles) fault = 5;
    else if (seen[int64_t(t.split) * tiles + int64_t(t.n_blk) * s.tiles_m + t.m_blk]++) fault = 3;
    else if (t.split == s.splits - 1 && t.k_tile_begin + t.k_tile_count != s.k_tiles) fault = 5;
  }
  for (int64_t u = 0; u < units && fault == 0; ++u) {
    if (!seen[u]) fault = 4;
  }
  delete[] seen;
  return fault;
}

// One tile per CTA, M fastest: the grid is the tile count (below 2^31, which Rust checks).
struct OneTilePerCtaScheduler {
  int tiles_m;
  int tiles_n;

  static OneTilePerCtaScheduler make(int m, int n, int bm, int bn) { return {blocks(m, bm), blocks(n, bn)}; }

  __host__ dim3 grid() const { return dim3(unsigned(int64_t(tiles_m) * tiles_n)); }

  // This CTA's tile (the universal kernel walks all of K itself).
  __device__ TileCoord tile() const { return {int(blockIdx.x % tiles_m), int(blockIdx.x / tiles_m), 0, 0, 0}; }
};

}  // namespace ckb
