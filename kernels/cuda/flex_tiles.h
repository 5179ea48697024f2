// The tile shapes of the flexible attention kernels, per pass and head dim: the one place they are
// chosen. Plain C++ (no CUDA types), so the host builds the work lists with the same tiles the
// kernels are compiled with, and the CPU tests check the lists at those tiles.
#pragma once

#include "common/flex_work_list.h"

namespace magi::kernels::cuda {

enum class FlexPass { forward, backward };

// rows: the query rows of a forward item (warpgroups of 64 rows) or of a backward query tile;
// keys: the key tile of the forward, or the keys of a backward item (two warpgroups of 64);
// blocks_per_sm: the blocks the kernel is compiled to fit on one SM (__launch_bounds__).
struct FlexTiles {
  int rows, keys, blocks_per_sm;
};

constexpr FlexTiles flex_tiles(FlexPass pass, int head_dim) {
  if (pass == FlexPass::forward) {
    // Two warpgroups of 64 query rows (128 rows per item). A second resident block hides one
    // block's cold start (the first Q/K/V loads) and its softmax behind the other's products, but
    // needs the kernel in 128 registers per thread.
    // Head dim 128: 128-key tiles, one block per SM: O and S take 64 floats each per thread, and
    // at 128 registers the kernel spills (slower than one block). Three warpgroups of 64-key
    // tiles were faster at long sequences only.
    // Head dim 64: O is half as large, so 64-key tiles fit two blocks per SM without spills.
    // (The A/B figures: results/kernel/NOTES.md, v2 and v7.)
    return head_dim == 64 ? FlexTiles{128, 64, 2} : FlexTiles{128, 128, 1};
  }
  // Backward, both head dims: dK and dV of 128 keys stay in registers (each warpgroup 64 keys),
  // walking 64-row query tiles, double-buffered, whose Q, dO, dS and fp32 dQ staging fill the
  // shared memory of one block per SM.
  return FlexTiles{64, 128, 1};
}

// The work-list tiles of both passes at one head dim.
constexpr flex::TileShape flex_work_list_tiles(int head_dim) {
  const FlexTiles f = flex_tiles(FlexPass::forward, head_dim), b = flex_tiles(FlexPass::backward, head_dim);
  return flex::TileShape{f.rows, f.keys, b.rows, b.keys};
}

}  // namespace magi::kernels::cuda
