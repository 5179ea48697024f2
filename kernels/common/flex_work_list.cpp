// Host-side work lists of the flexible attention kernels: see flex_work_list.h.
#include "common/flex_work_list.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace magi::kernels::flex {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A run of rows [r0, r1) (at most one tile tall) and the slices that may cover it.
struct Segment {
  int r0, r1;
  std::vector<int> slices;
};

// Cuts the rows [0, n) of one axis (queries for the forward, keys for the backward) into segments
// of at most `tile` rows. When no two slices share a row on this axis (`disjoint`: documents, the
// common case), segments start at each slice's first row, so a tile never straddles two
// documents; rows no slice covers get segments with no slice (their outputs are still written).
// Otherwise segments are the fixed grid [b * tile, (b + 1) * tile) with every slice that meets them.
std::vector<Segment> make_segments(int n, int tile, const std::vector<DevSlice>& sl, bool on_q,
                                   bool disjoint) {
  auto lo = [&](const DevSlice& s) { return on_q ? s.qs : s.ks; };
  auto hi = [&](const DevSlice& s) { return on_q ? s.qe : s.ke; };
  std::vector<Segment> segs;
  auto chunk = [&](int a, int b, int slice) {
    for (int r = a; r < b; r += tile) {
      Segment g{r, std::min(b, r + tile), {}};
      if (slice >= 0) g.slices.push_back(slice);
      segs.push_back(std::move(g));
    }
  };
  if (disjoint) {
    std::vector<int> order;
    for (size_t i = 0; i < sl.size(); ++i)
      if (hi(sl[i]) > lo(sl[i])) order.push_back(static_cast<int>(i));
    std::sort(order.begin(), order.end(), [&](int x, int y) { return lo(sl[x]) < lo(sl[y]); });
    int cursor = 0;
    for (int i : order) {
      chunk(cursor, lo(sl[i]), -1);
      chunk(lo(sl[i]), hi(sl[i]), i);
      cursor = hi(sl[i]);
    }
    chunk(cursor, n, -1);
    return segs;
  }
  const int nblocks = static_cast<int>(ceil_div(n, tile));
  for (int b = 0; b < nblocks; ++b) segs.push_back(Segment{b * tile, std::min(n, (b + 1) * tile), {}});
  for (size_t i = 0; i < sl.size(); ++i) {
    if (hi(sl[i]) <= lo(sl[i])) continue;
    for (int b = lo(sl[i]) / tile; b <= (hi(sl[i]) - 1) / tile; ++b)
      segs[static_cast<size_t>(b)].slices.push_back(static_cast<int>(i));
  }
  return segs;
}

bool ranges_overlap(std::vector<std::pair<int, int>> r) {
  std::sort(r.begin(), r.end());
  for (size_t i = 1; i < r.size(); ++i)
    if (r[i].first < r[i - 1].second) return true;
  return false;
}

// Launch order of the work items (the hardware hands out thread blocks roughly in index order).
// Items that stream the same operands (forward: K and V; backward: Q, dO and the dQ accumulator)
// form a group (forward: kv head and the first slice; backward: the item's first query head and
// the slice its walk ends in) and run side by side, so those operands come from HBM once and then
// from L2. The backward keys on the last slice because a document's key blocks all walk down to
// its last rows, however the document is cut into row pieces (a stage's slices at cp 1 cut it at
// every 512-token chunk): keyed on the first slice, a key block straddling two documents started
// in the earlier one's last piece and was launched alone after everything else while it walked
// the whole next document (32k varlen causal at 5 stages: 16 such items, one per head, ran on 16
// SMs for the last quarter of a stage kernel, at 3.7 us per tile against the others' 2.6;
// results/runtime/NOTES.md). Ordered by size alone, the blocks running at one time read
// different documents and heads and the kernel turns memory-bound (H100, 32k varlen causal with
// 4k documents: 346 TFLOP/s forward against 418 with 8k documents, whose equal-size items
// happened to pair up). Groups run heaviest first and so do the items within a group, so the last
// wave is small items. (Grouping by document instead, the slices joined by shared rows or keys,
// measured the same backward and 5-10% slower forward on varlen block-causal.)
// One exception: an item far longer than the others whose group runs late would set the launch's
// end alone (sink + sliding window: the sink keys' backward item walks every query tile, its group
// is one item, and it ran last, on 16 of 132 SMs for a quarter of the kernel). With `blocks`
// items running at once, an item that starts after `before` tiles of the items ahead of it ends
// near before / blocks + ntiles tile-times, the launch near total / blocks; long items that would
// end past it run first, longest first. Long: at least twice the mean item, or at least a fifth of
// a block's share total / blocks (a stage kernel's documents: a few dozen items per head, the
// longest a quarter of the share, each head's run late behind the other heads' groups; 32k varlen
// causal at 5 stages, its two largest stage kernels 5% shorter; results/runtime/NOTES.md).
// Items of at least four times the mean run first wherever they start: such an item (sink keys,
// a shared question's keys) walks its head's every query tile, and started with its group it ends
// after the group's other items and so completes, and converts alone, every dQ unit of the head
// (the end of an item that completes a unit converts it; at about 1.4 us per unit on an H200,
// results/kernel/NOTES.md v25): sink + sliding window's backward lost 6% to that.
// Uniform items are never moved (the last wave's end is the same in any order), nor are long
// items that start early.
template <typename Item, typename GroupOf>
void order_items(std::vector<Item>& items, GroupOf group_of, int blocks) {
  struct Key {
    int64_t group_tiles;
    std::pair<int, int> group;
    int ntiles;
    size_t index;
  };
  std::map<std::pair<int, int>, int64_t> group_tiles;
  for (const Item& it : items) group_tiles[group_of(it)] += it.ntiles;
  std::vector<Key> keys;
  keys.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto g = group_of(items[i]);
    keys.push_back(Key{group_tiles[g], g, items[i].ntiles, i});
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    if (a.group_tiles != b.group_tiles) return a.group_tiles > b.group_tiles;
    if (a.group != b.group) return a.group < b.group;
    if (a.ntiles != b.ntiles) return a.ntiles > b.ntiles;
    return a.index < b.index;
  });
  int64_t total = 0;
  for (const Item& it : items) total += it.ntiles;
  const int64_t n = static_cast<int64_t>(items.size());
  auto very_long = [&](const Item& it) { return static_cast<int64_t>(it.ntiles) * n >= 4 * total; };
  std::vector<Item> first, rest;
  rest.reserve(items.size());
  int64_t before = 0;  // the tiles launched ahead: the very long items, then the grouped order's
  for (const Key& k : keys) {
    if (!very_long(items[k.index])) continue;
    first.push_back(items[k.index]);
    before += items[k.index].ntiles;
  }
  for (const Key& k : keys) {
    const Item& it = items[k.index];
    if (very_long(it)) continue;
    const bool long_item = static_cast<int64_t>(it.ntiles) * n >= 2 * total ||
                           static_cast<int64_t>(it.ntiles) * blocks * 5 >= total;
    const bool ends_late = before + static_cast<int64_t>(it.ntiles) * blocks > total;
    (long_item && ends_late ? first : rest).push_back(it);
    before += it.ntiles;
  }
  std::stable_sort(first.begin(), first.end(), [](const Item& a, const Item& b) { return a.ntiles > b.ntiles; });
  first.insert(first.end(), rest.begin(), rest.end());
  items = std::move(first);
}

// Forward entries and items: one item per (segment of query rows, head); an entry's slice is
// `first_slice` + its index in `sl`. For segment rows [r0, r1) and slice s the rows are
// rr0 = max(r0, qs) .. rr1 = min(r1, qe); their visible keys lie in
// [max(lo(rr0), ks), min(hi(rr1 - 1), ke)) since lo and hi are non-decreasing in q.
void build_forward(const AttnShape& shape, const std::vector<DevSlice>& sl, int first_slice,
                   std::vector<FwdEntry>& entries, std::vector<FwdItem>& items,
                   WorkListStats& stats, const int bm, const int bn, bool disjoint, int blocks) {
  const std::vector<Segment> segs = make_segments(static_cast<int>(shape.sq), bm, sl, true, disjoint);
  for (const Segment& g : segs) {
    const int begin = static_cast<int>(entries.size());
    int tiles = 0;
    for (int i : g.slices) {
      const DevSlice& s = sl[static_cast<size_t>(i)];
      const RowRun<int> rows = nonempty_rows(static_cast<KernelSliceType>(s.type), s.qs, s.qe, s.ks, s.ke);
      if (rows.first >= rows.end) continue;
      const int rr0 = std::max(g.r0, s.qs), rr1 = std::min(g.r1, s.qe);
      if (rr1 <= rr0) continue;
      const int k_lo = std::max(band_lo(s, rr0), s.ks);
      const int k_hi = std::min(band_hi(s, rr1 - 1), s.ke);
      if (k_hi <= k_lo) continue;
      const int n = static_cast<int>(ceil_div(k_hi - k_lo, bn));
      entries.push_back(FwdEntry{first_slice + i, k_lo, n, 0});
      tiles += n;
    }
    for (int h = 0; h < shape.hq; ++h) {
      FwdItem it{};
      it.q0 = g.r0;
      it.head = h;
      it.entry_begin = begin;
      it.entry_end = static_cast<int>(entries.size());
      it.ntiles = tiles;
      it.q_end = g.r1;
      it.k_first = tiles > 0 ? entries[static_cast<size_t>(begin)].k_lo : 0;
      it.merge = 1;
      items.push_back(it);
      stats.forward_tiles += tiles;
    }
  }
  const int group = shape.hq / shape.hkv;
  order_items(
      items,
      [&](const FwdItem& it) {
        return std::make_pair(it.head / group, it.entry_end > it.entry_begin ? entries[it.entry_begin].slice : -1);
      },
      blocks);
  stats.forward_items = static_cast<int64_t>(items.size());
}

// Backward entries and items: one item per (segment of key rows, kv head), or per sub-group of its
// query heads when the group's walk is long (BwdItem); returns the segments (dK/dV units) and
// sets `split` when some item walks part of its group. For segment keys
// [k0, k1) and slice s the keys are kk0 = max(k0, ks) .. kk1 = min(k1, ke); their queries lie in
// [rows_lo(kk0), rows_hi(kk1 - 1)) since both are non-decreasing in k.
int build_backward(const AttnShape& shape, const std::vector<DevSlice>& sl,
                   std::vector<BwdEntry>& entries, std::vector<BwdItem>& items,
                   WorkListStats& stats, const int bm, const int bn, bool disjoint, int blocks, bool& split) {
  const std::vector<Segment> segs = make_segments(static_cast<int>(shape.sk), bn, sl, false, disjoint);
  const int group = shape.hq / shape.hkv;
  for (const Segment& g : segs) {
    const int begin = static_cast<int>(entries.size());
    int tiles = 0;
    for (int i : g.slices) {
      const DevSlice& s = sl[static_cast<size_t>(i)];
      const KernelSliceType t = static_cast<KernelSliceType>(s.type);
      const RowRun<int> rows = nonempty_rows(t, s.qs, s.qe, s.ks, s.ke);
      if (rows.first >= rows.end) continue;
      const int kk0 = std::max(g.r0, s.ks), kk1 = std::min(g.r1, s.ke);
      if (kk1 <= kk0) continue;
      const int q_lo = rows_lo(t, s.qs, s.qe, s.ke, kk0);
      const int q_hi = rows_hi(t, s.qs, s.qe, s.ks, kk1 - 1);
      if (q_hi <= q_lo) continue;
      const int n = static_cast<int>(ceil_div(q_hi - q_lo, bm));
      entries.push_back(BwdEntry{i, q_lo, n, 0});
      tiles += n;
    }
    bool walk_back = static_cast<int>(entries.size()) > begin;
    for (size_t e = static_cast<size_t>(begin); e < entries.size(); ++e)
      walk_back = walk_back && sl[static_cast<size_t>(entries[e].slice)].type == static_cast<int>(KernelSliceType::causal);
    // The most heads of the group (a divisor of it) whose walk fits kBwdMaxWalkRows, at least one.
    int nheads = group;
    while (nheads > 1 && static_cast<int64_t>(tiles) * bm * nheads > kBwdMaxWalkRows) {
      do --nheads; while (group % nheads != 0);
    }
    for (int h = 0; h < shape.hq; h += nheads) {
      BwdItem it{};
      it.k0 = g.r0;
      it.head = h;
      it.entry_begin = begin;
      it.entry_end = static_cast<int>(entries.size());
      it.ntiles = tiles;
      it.k_end = g.r1;
      it.kv_unit = static_cast<int>(&g - segs.data());
      it.nheads = nheads;
      it.walk_back = walk_back ? 1 : 0;
      items.push_back(it);
      stats.backward_tiles += static_cast<int64_t>(tiles) * nheads;
    }
    split = split || nheads < group;
  }
  order_items(
      items,
      [&](const BwdItem& it) {
        return std::make_pair(it.head, it.entry_end > it.entry_begin ? entries[it.entry_end - 1].slice : -1);
      },
      blocks);
  stats.backward_items = static_cast<int64_t>(items.size());
  return static_cast<int>(segs.size());
}

// The tiles covering each unit of bm query rows. Every entry is walked once per query head (by the
// item of its segment and that head's kv head), so one count serves every head. Tile t of an entry
// covers units u0 + t and, unless the entry starts on a unit boundary, u0 + t + 1: two runs of
// +1, added through a difference array.
std::vector<int> unit_tiles(const AttnShape& shape, const std::vector<BwdEntry>& entries, const int bm) {
  const int units = static_cast<int>(ceil_div(shape.sq, bm));
  std::vector<int> diff(static_cast<size_t>(units) + 1, 0);
  auto add_run = [&](int lo, int hi) {  // units [lo, hi), clipped
    hi = std::min(hi, units);
    if (lo >= hi) return;
    ++diff[static_cast<size_t>(lo)];
    --diff[static_cast<size_t>(hi)];
  };
  for (const BwdEntry& e : entries) {
    const int u0 = e.q_lo / bm;
    add_run(u0, u0 + e.ntiles);
    if (e.q_lo % bm != 0) add_run(u0 + 1, u0 + e.ntiles + 1);
  }
  std::vector<int> count(static_cast<size_t>(units), 0);
  for (int u = 0, run = 0; u < units; ++u) count[static_cast<size_t>(u)] = run += diff[static_cast<size_t>(u)];
  return count;
}

}  // namespace

WorkLists build_work_lists(const AttnShape& shape, const KernelSlice* slices, size_t num_slices,
                           const TileShape& tiles, int blocks) {
  if (num_slices > 0 && slices == nullptr) throw std::invalid_argument("FlexAttention: null slices");
  if (blocks < 1) throw std::invalid_argument("FlexAttention: blocks at once " + std::to_string(blocks) + " (need >= 1)");
  WorkLists wl;
  std::vector<std::pair<int, int>> qranges, kranges;
  for (size_t i = 0; i < num_slices; ++i) {
    const KernelSlice& s = slices[i];
    if (s.q_start < 0 || s.q_end < s.q_start || s.q_end > shape.sq || s.k_start < 0 ||
        s.k_end < s.k_start || s.k_end > shape.sk)
      throw std::invalid_argument("FlexAttention: slice " + std::to_string(i) + " out of bounds or reversed");
    const int t = static_cast<int>(s.type);
    if (t < 0 || t > 3) throw std::invalid_argument("FlexAttention: slice " + std::to_string(i) + " has an unknown type");
    // A slice with no query rows or no keys covers nothing. It must not reach the work lists: a
    // key segment of an empty-q slice would make a backward item that writes zero dK/dV over
    // keys that another slice's items write.
    if (s.q_end == s.q_start || s.k_end == s.k_start) continue;
    wl.slices.push_back(DevSlice{static_cast<int>(s.q_start), static_cast<int>(s.q_end),
                                 static_cast<int>(s.k_start), static_cast<int>(s.k_end), t});
    wl.stats.area += band_area(s.type, s.q_end - s.q_start, s.k_end - s.k_start);
    qranges.emplace_back(wl.slices.back().qs, wl.slices.back().qe);
    kranges.emplace_back(wl.slices.back().ks, wl.slices.back().ke);
  }
  wl.stats.q_ranges_overlap = ranges_overlap(qranges);
  wl.bwd_kv_units = build_backward(shape, wl.slices, wl.bwd_entries, wl.bwd_items, wl.stats, tiles.bwd_bm,
                                   tiles.bwd_bn, !ranges_overlap(kranges), blocks, wl.bwd_split_groups);
  const std::vector<DevSlice> joined = join_row_runs(wl.slices);
  if (joined.size() < wl.slices.size()) {
    wl.fwd_slices_begin = static_cast<int>(wl.slices.size());
    wl.slices.insert(wl.slices.end(), joined.begin(), joined.end());
  }
  // Joined query ranges overlap exactly when the input's do.
  build_forward(shape, joined, wl.fwd_slices_begin, wl.fwd_entries, wl.fwd_items, wl.stats, tiles.fwd_bm,
                tiles.fwd_bn, !wl.stats.q_ranges_overlap, blocks);
  wl.bwd_unit_tiles = unit_tiles(shape, wl.bwd_entries, tiles.bwd_bm);
  return wl;
}

void mark_merged_items(std::vector<FwdItem>& items, const std::vector<RowSpan>& merged) {
  for (size_t i = 0; i < merged.size(); ++i) {
    if (merged[i].start >= merged[i].end || (i > 0 && merged[i].start < merged[i - 1].end))
      throw std::invalid_argument("mark_merged_items: the row spans are not sorted, disjoint and non-empty");
  }
  for (FwdItem& it : items) {
    // The first span ending after the item's first row meets it if it starts before its end.
    const auto s = std::upper_bound(merged.begin(), merged.end(), int64_t{it.q0},
                                    [](int64_t q, const RowSpan& r) { return q < r.end; });
    it.merge = s != merged.end() && s->start < it.q_end ? 1 : 0;
  }
}

}  // namespace magi::kernels::flex
