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
};

// Persistent: a grid of at most one CTA per SM walks the tiles with a stride of the grid
// size. Tiles are ordered in bands of `band` M-blocks, M fastest inside a band, so the CTAs
// that run at the same time share rows of A and columns of B in L2.
//
// The order is static: the producer and the consumer warp groups of a CTA each walk it on
// their own and agree without talking.
struct PersistentTileScheduler {
  int tiles_m;
  int tiles_n;
  int band;  // M-blocks per band, >= 1
  int ctas;  // the grid: min(tiles, SMs), >= 1

  // Host: the walk of an m x n output in bm x bn tiles on `sms` multiprocessors, with a band
  // about as tall as a wave of CTAs is wide, so that a wave covers a near-square patch of
  // the output: sqrt(ctas) M-blocks, at most all of them and at most 16.
  static PersistentTileScheduler make(int m, int n, int bm, int bn, int sms) {
    PersistentTileScheduler s{blocks(m, bm), blocks(n, bn), 1, 1};
    int64_t const tiles = s.tile_count();
    s.ctas = int(tiles < sms ? tiles : sms);
    while (s.band * s.band < s.ctas && s.band < s.tiles_m) ++s.band;
    s.band = s.band > 16 ? 16 : s.band;
    return s;
  }

  __host__ dim3 grid() const { return dim3(unsigned(ctas)); }

  __host__ __device__ int64_t tile_count() const { return int64_t(tiles_m) * tiles_n; }

  // Tile number `linear` of the rasterized order.
  __device__ TileCoord tile(int64_t linear) const {
    int64_t const band_tiles = int64_t(band) * tiles_n;
    int64_t const band_idx = linear / band_tiles;
    int const first_m = int(band_idx * band);
    int const rows = min(band, tiles_m - first_m);  // the last band may be narrower
    int64_t const within = linear - band_idx * band_tiles;
    return {first_m + int(within % rows), int(within / rows)};
  }

  // Calls f(TileCoord) for every tile this CTA owns, in order (the grid is `ctas` wide).
  template <class F>
  __device__ void for_each_tile(F&& f) const {
    int64_t const tiles = tile_count();
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) f(tile(t));
  }
};

// One tile per CTA, M fastest: the grid is the tile count (below 2^31, which Rust checks).
struct OneTilePerCtaScheduler {
  int tiles_m;
  int tiles_n;

  static OneTilePerCtaScheduler make(int m, int n, int bm, int bn) { return {blocks(m, bm), blocks(n, bn)}; }

  __host__ dim3 grid() const { return dim3(unsigned(int64_t(tiles_m) * tiles_n)); }

  // This CTA's tile.
  __device__ TileCoord tile() const { return {int(blockIdx.x % tiles_m), int(blockIdx.x / tiles_m)}; }
};

}  // namespace ckb
