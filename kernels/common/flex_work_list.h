// Work lists of the flexible attention kernels (kernels/cuda), built on the host: the slices in
// the kernels' int32 coordinates, the forward and backward work items with the tile range of every
// slice they walk, and their launch order. Plain C++ (nvcc also compiles the band helpers for the
// device), so that the CPU test suite checks the lists against the mask: every visible (q, k) pair
// of every slice lands in exactly one tile of one item per head.
#pragma once

#include "common/kernel_args.h"
#include "common/row_runs.h"
#include "common/slice_band.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace magi::kernels::flex {

// A slice in the kernel's int32 coordinates. type: 0 full, 1 causal, 2 inv_causal, 3 bi_causal.
struct DevSlice {
  int qs, qe, ks, ke, type;
};

// Forward: one record per (query segment, slice) whose band meets the segment; the slice's key tiles
// are k_lo + t * BN for t in [0, ntiles).
struct FwdEntry {
  int slice, k_lo, ntiles, pad;
};
// Forward work item: (query block, query head), entries [entry_begin, entry_end).
struct FwdItem {
  int q0, head, entry_begin, entry_end, ntiles, q_end;  // rows [q0, q_end)
  int k_first;  // the first key tile's start (entry_begin's k_lo), so the kernel's first load waits on no entry
  // Into::accumulate: 1 merges into what the rows hold; 0 writes them as Into::write does, reading
  // nothing, none of them holding an earlier result (mark_merged_items).
  int merge;
};
// Backward: one record per (key block, slice); query tiles q_lo + t * BM, t in [0, ntiles).
struct BwdEntry {
  int slice, q_lo, ntiles, pad;
};
// Backward work item: (key block, query heads [head, head + nheads) of one GQA group), walking
// each head's query tiles in turn; its kv head is head / (hq / hkv). An item walks the whole group
// (nheads = hq / hkv, dK and dV summed in registers) unless that walk is longer than
// kBwdMaxWalkRows: items started together drift apart over long walks until the query tiles they
// read no longer share the L2 (64:8 at 32k read 91 GB from HBM for 4x the work of 16:16's 2.8 GB:
// results/kernel/NOTES.md, v14). Such a key block is split into the fewest equal sub-groups of
// heads whose walks fit, each item adding its dK/dV into an fp32 workspace; the last to finish
// converts it (cuda/flex_bwd.cuh). Short walks stay whole: split, each would load K and V, add
// and count its dK/dV for a few dozen tiles (v14 lost up to 20% on such masks).
struct BwdItem {
  int k0, head, entry_begin, entry_end, ntiles, k_end;  // keys [k0, k_end); ntiles per head
  int kv_unit;  // the key block's index among the backward's blocks: dK/dV unit kv_unit * hkv + kv head
  int nheads;   // query heads walked
  // 1 when every slice the item walks is causal: it walks its query tiles last to first, each
  // tile for all of its heads in turn (BwdTileCursor), so that the items of a document's key
  // blocks start together on the document's last rows, which every one of them sees, and the
  // later ones find them in the L2 (64:8 varlen causal backward +6-18%: results/kernel/NOTES.md,
  // v35). Any other item walks its heads one after another, each head's tiles first to last:
  // there, heads innermost cost 2-38% (full, sliding windows, shared question; v35a).
  int walk_back;
};

// The order in which every role of the backward kernel walks an item's query tiles: entry e, its
// tile t (rows entries[e].q_lo + t * BM) and query head item.head + h, ntiles * nheads steps.
// Either head by head, each head's entries and tiles first to last, or (walk_back) tile by tile
// from the last, each for every head.
struct BwdTileCursor {
  int e, t, h;
  MAGI_HOST_DEVICE BwdTileCursor(const BwdEntry* entries, const BwdItem& item)
      : e(item.walk_back ? item.entry_end - 1 : item.entry_begin), t(item.walk_back ? entries[e].ntiles - 1 : 0), h(0) {}
  MAGI_HOST_DEVICE void next(const BwdEntry* entries, const BwdItem& item) {
    if (item.walk_back) {
      if (++h < item.nheads) return;
      h = 0;
      if (--t < 0 && --e >= item.entry_begin) t = entries[e].ntiles - 1;
    } else if (++t == entries[e].ntiles) {
      t = 0;
      if (++e == item.entry_end) {
        e = item.entry_begin;
        ++h;
      }
    }
  }
};
// The longest walk (query rows of its tiles over the heads walked) of a backward item that is split
// further: a 16:16 item of a 32k full mask, whose blocks read from L2 97.5% of the time (v14's
// profile, 512 tiles of 64 rows).
constexpr int kBwdMaxWalkRows = 32768;

// The band rule (common/slice_band.h) on a DevSlice.
MAGI_HOST_DEVICE inline int band_lo(const DevSlice& s, int q) {
  return kernels::band_lo(static_cast<KernelSliceType>(s.type), s.qs, s.ks, q);
}
MAGI_HOST_DEVICE inline int band_hi(const DevSlice& s, int q) {
  return kernels::band_hi(static_cast<KernelSliceType>(s.type), s.qe, s.ke, q);
}
// Whether every (q, k) of [q0, q1) x [k0, k1) is visible in slice s (lo and hi are
// non-decreasing in q, and lo >= ks, hi <= ke).
MAGI_HOST_DEVICE inline bool tile_inside(const DevSlice& s, int q0, int q1, int k0, int k1) {
  return q0 >= s.qs && q1 <= s.qe && band_lo(s, q1 - 1) <= k0 && k1 <= band_hi(s, q0);
}

// Statistics of the work lists, for reports and tests.
struct WorkListStats {
  int64_t forward_items = 0;      // (query block, head) work items
  int64_t forward_tiles = 0;      // (query block, key tile, head) tiles visited
  int64_t backward_items = 0;     // (key block, query heads) work items
  int64_t backward_tiles = 0;     // (key block, query tile, query head) tiles visited
  int64_t area = 0;               // visible (q, k) pairs of the mask (one head)
  bool q_ranges_overlap = false;  // whether some query row is in several slices
};

// Tile sizes of the kernels: forward items of fwd_bm query rows walking fwd_bn-key tiles,
// backward items of bwd_bn keys walking bwd_bm-row query tiles.
// (The kernels' own choice: cuda/flex_tiles.h.)
struct TileShape {
  int fwd_bm, fwd_bn, bwd_bm, bwd_bn;
};

struct WorkLists {
  // The non-empty input slices, which the backward walks, followed by the forward's own when it
  // joins some of them (join_row_runs): the forward walks slices [fwd_slices_begin, end).
  std::vector<DevSlice> slices;
  int fwd_slices_begin = 0;
  std::vector<FwdEntry> fwd_entries;
  std::vector<FwdItem> fwd_items;  // in launch order
  std::vector<BwdEntry> bwd_entries;
  std::vector<BwdItem> bwd_items;  // in launch order
  // For each unit of bwd_bm query rows [u * bwd_bm, (u + 1) * bwd_bm), the number of backward query
  // tiles that cover some of its rows, per query head (the same for every head): the backward adds
  // each tile's dQ into the units it covers and converts a unit once all of them have.
  std::vector<int> bwd_unit_tiles;
  int bwd_kv_units = 0;  // key blocks of the backward (BwdItem::kv_unit in [0, bwd_kv_units))
  bool bwd_split_groups = false;  // some backward item walks part of its GQA group (needs the dK/dV workspace)
  WorkListStats stats;
};

// Validates the slices against the shape (std::invalid_argument naming the slice) and builds the
// lists. Items of an axis start at each slice's first row when no two slices share a row on that
// axis (documents), so no tile straddles two; otherwise they follow a fixed grid of tiles. The
// forward walks the slices joined (join_row_runs), so that a mask cut into row pieces runs the
// items and tiles of the uncut mask; the backward walks the input slices (joined, its items and
// launch groups changed and it ran up to 5% slower at 5 stages of 32k varlen causal).
// blocks: how many items run at once (the CUDA kernels: one per SM); it only decides which items
// are long enough to go first in the launch order (see order_items).
WorkLists build_work_lists(const AttnShape& shape, const KernelSlice* slices, size_t num_slices,
                           const TileShape& tiles, int blocks);

// Sets FwdItem::merge: 1 for the items whose rows [q0, q_end) meet `merged` (query rows that hold
// earlier results when an accumulating call runs; sorted, disjoint), 0 for the others.
// build_work_lists leaves every item at 1.
void mark_merged_items(std::vector<FwdItem>& items, const std::vector<RowSpan>& merged);

}  // namespace magi::kernels::flex
