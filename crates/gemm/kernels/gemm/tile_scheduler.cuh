// Persistent tile scheduler: a grid of about one CTA per SM walks the output tiles with a
// stride of the grid size. Tiles are ordered in bands of `band` M-blocks, M fastest inside a
// band, so the CTAs that run at the same time share rows of A and columns of B in L2.
//
// The order is static: the producer and the consumer warp groups of a CTA each walk it on
// their own and agree without talking.
#pragma once

#include <cstdint>

namespace ckb {

struct TileCoord {
  int m_blk;
  int n_blk;
};

struct PersistentTileScheduler {
  int tiles_m;
  int tiles_n;
  int band;  // M-blocks per band, >= 1

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

  // Host: a band about as tall as a wave of CTAs is wide, so a wave covers a near-square
  // patch of C: sqrt(ctas) M-blocks, at most all of them.
  static PersistentTileScheduler make(int tiles_m, int tiles_n, int ctas) {
    int band = 1;
    while (band * band < ctas && band < tiles_m) ++band;
    band = band > 16 ? 16 : band;
    return {tiles_m, tiles_n, band < 1 ? 1 : band};
  }
};

}  // namespace ckb
