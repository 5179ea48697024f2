// What the flexible attention kernel does for a list of slices, counted without building its work
// lists: tiles visited and work items per pass, per head. The counts follow the work lists of
// kernels/common/flex_work_list.h (items start at each slice's first row when no two slices share
// a row on the item axis, else on a fixed grid; key or query tiles start at the band's first
// key or row inside each item; the forward's over the slices with runs down the rows joined,
// common/row_runs.h); tests/core/sim checks them against build_work_lists. The CPU
// reference is described by the same counts with 1 x 1 tiles: tiles = pairs, items = rows.
// Cost: O(slices + tiles along the item axis), independent of the number of heads.
#pragma once

#include "core/base/slice.h"

#include <cstdint>
#include <vector>

namespace magi {

// Tile sizes: forward items of fwd_rows query rows walking fwd_keys-key tiles; backward items of
// bwd_keys keys walking bwd_rows-row query tiles.
struct KernelTiles {
  int fwd_rows = 128, fwd_keys = 128, bwd_rows = 64, bwd_keys = 128;
  friend bool operator==(const KernelTiles&, const KernelTiles&) = default;
};

// Counts for one head (multiply tiles by the query heads; forward items by the query heads,
// backward items by the key/value heads, since a backward item walks its whole GQA group; the
// kernel splits a group whose walk is long (kernels/common/flex_work_list.h), counted here as one
// item: the item term stands for fixed per-item costs, small beside such a walk's tiles).
struct KernelWork {
  int64_t area = 0;       // visible (q, k) pairs
  int64_t fwd_tiles = 0;  // (query block, key tile) pairs visited
  int64_t fwd_items = 0;  // query blocks with work
  int64_t bwd_tiles = 0;  // (key block, query tile) pairs visited
  int64_t bwd_items = 0;  // key blocks with work
  KernelWork& operator+=(const KernelWork& o);
  bool empty() const { return area == 0; }
};

KernelWork count_kernel_work(const std::vector<AttnSlice>& slices, const KernelTiles& tiles);

}  // namespace magi
