// The tile shapes of the flexible attention kernels, per pass and head dim: the one place they are
// chosen. Plain C++ (no CUDA types), so the host builds the work lists with the same tiles the
// kernels are compiled with, and the CPU tests check the lists at those tiles.
#pragma once

#include "common/flex_work_list.h"

namespace magi::kernels::cuda {

enum class FlexPass { forward, backward };

// rows: the query rows of a forward item (warpgroups of 64 rows) or of a backward query tile;
// keys: the key tile of the forward, or the keys of a backward item (two warpgroups of 64).
// Both kernels run one block per SM (__launch_bounds__(..., 1)).
struct FlexTiles {
  int rows, keys;
};

// Registers per thread and shared memory scale with the head dim, so the tiles depend on it.
constexpr FlexTiles flex_tiles(FlexPass pass, int head_dim) {
  if (pass == FlexPass::forward) {
    // Two consumer warpgroups of 64 query rows (128 rows per item) and 128-key tiles, one block
    // per SM: with a producer warpgroup loading by TMA, the consumers hold O, S and the packed P
    // of the tile before (64 + 64 + 32 registers at head dim 128) in the 240 registers they take
    // from it. Head dim 64 takes 192-key tiles (S 96 registers, P 48, O 32): a tile's products
    // are half as long there, and the larger tile pays its fixed costs (turn, waits, row max and
    // sum, O's rescale) over more of them. The two-blocks-per-SM and three-warpgroup variants of
    // the earlier, unspecialised kernel: results/kernel/NOTES.md.
    return FlexTiles{128, head_dim == 64 ? 192 : 128};
  }
  // Backward: dK and dV of 128 keys stay in registers (each warpgroup 64 keys), walking query
  // tiles, double-buffered, whose Q, dO, dS and fp32 dQ staging fill the shared memory of one
  // block per SM. 64-row tiles at head dim 128, 128-row ones at 64: the same bytes of Q and dO a
  // tile, a 64 x 64 block of dQ per warpgroup (flex_bwd.cuh), and a tile's fixed costs (barriers,
  // waits, its dQ reduce-add) spread over twice the products.
  return FlexTiles{head_dim == 64 ? 128 : 64, 128};
}

// The work-list tiles of both passes at one head dim.
constexpr flex::TileShape flex_work_list_tiles(int head_dim) {
  const FlexTiles f = flex_tiles(FlexPass::forward, head_dim), b = flex_tiles(FlexPass::backward, head_dim);
  return flex::TileShape{f.rows, f.keys, b.rows, b.keys};
}

}  // namespace magi::kernels::cuda
