// The CUDA kernels' work lists (kernels/common/flex_work_list.h), checked on the CPU against the
// mask's definition: for every head, every visible (q, k) pair of every slice lies in exactly one
// tile of one item (forward: query-row items walking key tiles; backward: key items walking query
// tiles), every row and key belongs to exactly one item (so every output is written), tiles
// flagged "inside the band" hold visible pairs only, document-aligned items never straddle two
// slices, the launch order keeps each group of items together, heaviest first, and the backward
// kernel's walk of an item (BwdTileCursor) visits each of its tiles once per head, in its order.
#include "common/flex_work_list.h"
#include "common/row_pieces.h"

#include "common/test_seed.h"
#include "cuda/flex_tiles.h"
#include "dense_attention.h"

#include "kernels/catalogue_slices.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace magi::kernels::testing {
namespace {

namespace flex = magi::kernels::flex;

KernelSlice sl(int64_t qs, int64_t qe, int64_t ks, int64_t ke, KernelSliceType t) { return {qs, qe, ks, ke, t}; }

bool empty(const KernelSlice& s) { return s.q_end == s.q_start || s.k_end == s.k_start; }

KernelSlice of(const flex::DevSlice& d) { return sl(d.qs, d.qe, d.ks, d.ke, static_cast<KernelSliceType>(d.type)); }

// Which slices contain row r of an axis (query rows for on_q, keys otherwise).
std::vector<int> slices_at(const std::vector<flex::DevSlice>& sl, int r, bool on_q) {
  std::vector<int> out;
  for (size_t i = 0; i < sl.size(); ++i) {
    const int lo = on_q ? sl[i].qs : sl[i].ks, hi = on_q ? sl[i].qe : sl[i].ke;
    if (r >= lo && r < hi) out.push_back(static_cast<int>(i));
  }
  return out;
}

bool ranges_disjoint(const std::vector<flex::DevSlice>& sl, bool on_q) {
  for (size_t i = 0; i < sl.size(); ++i)
    for (size_t j = i + 1; j < sl.size(); ++j) {
      const int a0 = on_q ? sl[i].qs : sl[i].ks, a1 = on_q ? sl[i].qe : sl[i].ke;
      const int b0 = on_q ? sl[j].qs : sl[j].ks, b1 = on_q ? sl[j].qe : sl[j].ke;
      if (a0 < b1 && b0 < a1) return false;
    }
  return true;
}

// Launch order: after the items of at least four times the mean (longest first), items of one
// group (forward: kv head and the first slice; backward: query head and the last slice) are
// contiguous, group totals never increase along the order, and tile counts never increase
// inside a group.
template <typename Item, typename GroupOf>
void expect_grouped_heaviest_first(const std::vector<Item>& items, GroupOf group_of, const std::string& what) {
  std::map<std::pair<int, int>, int64_t> total;
  int64_t all = 0;
  for (const Item& it : items) {
    total[group_of(it)] += it.ntiles;
    all += it.ntiles;
  }
  // The items of at least four times the mean go first, longest first (order_items).
  const int64_t n = static_cast<int64_t>(items.size());
  auto very_long = [&](const Item& it) { return static_cast<int64_t>(it.ntiles) * n >= 4 * all; };
  size_t lead = 0;
  while (lead < items.size() && very_long(items[lead])) {
    if (lead > 0) {
      EXPECT_GE(items[lead - 1].ntiles, items[lead].ntiles) << what << ": leading item " << lead;
    }
    ++lead;
  }
  for (size_t i = lead; i < items.size(); ++i) {
    EXPECT_FALSE(very_long(items[i])) << what << ": a very long item at " << i << ", after the lead";
  }
  std::map<std::pair<int, int>, bool> closed;
  for (size_t i = lead; i < items.size(); ++i) {
    const auto g = group_of(items[i]);
    if (i > lead) {
      const auto p = group_of(items[i - 1]);
      if (p == g) {
        EXPECT_GE(items[i - 1].ntiles, items[i].ntiles) << what << ": item " << i;
      } else {
        closed[p] = true;
        EXPECT_FALSE(closed[g]) << what << ": group split at item " << i;
        EXPECT_GE(total[p], total[g]) << what << ": lighter group first at item " << i;
      }
    }
  }
}

// The launch order with `blocks` items at once against the grouped order (blocks = 1, where no
// item can end past the launch): a prefix of the items at least four times the mean length and of
// the long ones (twice the mean, or a fifth of a block's share) that would end past
// total / blocks where the grouped order starts them, longest first, then every other item in the
// grouped order.
template <typename Item, typename KeyOf>
void expect_long_late_items_first(const std::vector<Item>& grouped, const std::vector<Item>& launched, int blocks,
                                  KeyOf key_of, const std::string& what) {
  ASSERT_EQ(grouped.size(), launched.size()) << what;
  const int64_t n = static_cast<int64_t>(grouped.size());
  int64_t total = 0;
  for (const Item& it : grouped) total += it.ntiles;
  std::set<std::pair<int, int>> moved;
  int64_t before = 0;
  for (const Item& it : grouped) {
    const bool long_item = it.ntiles * n >= 2 * total || static_cast<int64_t>(it.ntiles) * blocks * 5 >= total;
    const bool very_long = it.ntiles * n >= 4 * total;  // first in the grouped order too
    if (very_long || (long_item && before + static_cast<int64_t>(it.ntiles) * blocks > total)) moved.insert(key_of(it));
    before += it.ntiles;
  }
  size_t i = 0;
  for (; i < moved.size(); ++i) {
    EXPECT_TRUE(moved.count(key_of(launched[i]))) << what << ": item " << i << " is not a long late one";
    if (i > 0) {
      EXPECT_GE(launched[i - 1].ntiles, launched[i].ntiles) << what << ": item " << i;
    }
  }
  for (const Item& it : grouped) {
    if (moved.count(key_of(it))) continue;
    ASSERT_LT(i, launched.size()) << what;
    EXPECT_EQ(key_of(launched[i]), key_of(it)) << what << ": item " << i << " out of the grouped order";
    ++i;
  }
}

void check_lists(const AttnShape& sh, const std::vector<KernelSlice>& in, const flex::TileShape& t,
                 const std::string& what, int blocks = 132) {
  SCOPED_TRACE(what + ", " + std::to_string(blocks) + " blocks at once");
  const flex::WorkLists wl = flex::build_work_lists(sh, in.data(), in.size(), t, blocks);
  const flex::WorkLists grouped = flex::build_work_lists(sh, in.data(), in.size(), t, 1);
  const int sq = static_cast<int>(sh.sq), sk = static_cast<int>(sh.sk);
  const int group = sh.hq / sh.hkv;

  // The non-empty slices, in input order; the mask's area and overlap facts.
  std::vector<KernelSlice> kept;
  for (const KernelSlice& s : in)
    if (!empty(s)) kept.push_back(s);
  // Then the forward's, when it joins some of them (checked below by the pairs they cover).
  if (wl.fwd_slices_begin == 0) {
    ASSERT_EQ(wl.slices.size(), kept.size());
  } else {
    ASSERT_EQ(wl.fwd_slices_begin, static_cast<int>(kept.size()));
    ASSERT_LT(wl.slices.size(), 2 * kept.size());
  }
  const std::vector<flex::DevSlice> input_slices(wl.slices.begin(), wl.slices.begin() + static_cast<ptrdiff_t>(kept.size()));
  const std::vector<flex::DevSlice> fwd_slices(wl.slices.begin() + wl.fwd_slices_begin, wl.slices.end());
  std::vector<int> expected(static_cast<size_t>(sq) * sk, 0);
  int64_t area = 0;
  for (size_t i = 0; i < kept.size(); ++i) {
    const flex::DevSlice& d = wl.slices[i];
    ASSERT_TRUE(d.qs == kept[i].q_start && d.qe == kept[i].q_end && d.ks == kept[i].k_start &&
                d.ke == kept[i].k_end && d.type == static_cast<int>(kept[i].type));
    for (int q = 0; q < sq; ++q)
      for (int k = 0; k < sk; ++k)
        if (covers(kept[i], q, k)) {
          ++expected[static_cast<size_t>(q) * sk + k];
          ++area;
        }
  }
  EXPECT_EQ(wl.stats.area, area);
  EXPECT_EQ(wl.stats.q_ranges_overlap, !ranges_disjoint(input_slices, true));

  // Forward: per query head, rows partitioned by items, each visible pair in exactly one tile.
  int64_t fwd_tiles = 0;
  for (const flex::FwdItem& it : wl.fwd_items) fwd_tiles += it.ntiles;
  EXPECT_EQ(wl.stats.forward_items, static_cast<int64_t>(wl.fwd_items.size()));
  EXPECT_EQ(wl.stats.forward_tiles, fwd_tiles);
  const bool fwd_aligned = ranges_disjoint(fwd_slices, true);
  for (int h = 0; h < sh.hq; ++h) {
    std::vector<int> owner(static_cast<size_t>(sq), 0), seen(expected.size(), 0);
    for (const flex::FwdItem& it : wl.fwd_items) {
      if (it.head != h) continue;
      ASSERT_TRUE(it.q0 >= 0 && it.q0 < it.q_end && it.q_end <= sq && it.q_end - it.q0 <= t.fwd_bm);
      for (int q = it.q0; q < it.q_end; ++q) ++owner[static_cast<size_t>(q)];
      if (fwd_aligned) {
        for (int q = it.q0; q < it.q_end; ++q)
          ASSERT_EQ(slices_at(fwd_slices, q, true), slices_at(fwd_slices, it.q0, true)) << "item straddles slices";
      }
      int tiles = 0;
      for (int e = it.entry_begin; e < it.entry_end; ++e) {
        const flex::FwdEntry& en = wl.fwd_entries[static_cast<size_t>(e)];
        ASSERT_TRUE(en.slice >= wl.fwd_slices_begin && en.slice < static_cast<int>(wl.slices.size())) << en.slice;
        const flex::DevSlice& d = wl.slices[static_cast<size_t>(en.slice)];
        const KernelSlice walked = of(d);
        tiles += en.ntiles;
        for (int j = 0; j < en.ntiles; ++j) {
          const int k0 = en.k_lo + j * t.fwd_bn, k1 = k0 + t.fwd_bn;
          const bool inside = flex::tile_inside(d, it.q0, it.q_end, k0, k1);
          for (int q = it.q0; q < it.q_end; ++q)
            for (int k = k0; k < k1; ++k) {
              const bool vis = covers(walked, q, k);
              if (inside) {
                ASSERT_TRUE(vis) << "unmasked tile holds (" << q << ", " << k << ")";
              }
              if (vis) ++seen[static_cast<size_t>(q) * sk + k];
            }
        }
      }
      EXPECT_EQ(it.ntiles, tiles);
      if (tiles > 0) {  // the first key tile, kept in the item
        EXPECT_EQ(it.k_first, wl.fwd_entries[static_cast<size_t>(it.entry_begin)].k_lo);
      }
    }
    for (int q = 0; q < sq; ++q) ASSERT_EQ(owner[static_cast<size_t>(q)], 1) << "forward row " << q << " head " << h;
    for (size_t i = 0; i < seen.size(); ++i)
      ASSERT_EQ(seen[i], expected[i]) << "forward pair (" << i / sk << ", " << i % sk << ") head " << h;
  }
  expect_long_late_items_first(grouped.fwd_items, wl.fwd_items, blocks,
                               [](const flex::FwdItem& it) { return std::make_pair(it.q0, it.head); }, "forward order");
  expect_grouped_heaviest_first(
      grouped.fwd_items,
      [&](const flex::FwdItem& it) {
        return std::make_pair(it.head / group, it.entry_end > it.entry_begin ? wl.fwd_entries[it.entry_begin].slice : -1);
      },
      "forward order");

  // Backward: per query head, keys partitioned by items, each visible pair in exactly one query
  // tile. An item walks a whole GQA group, or, when that walk is longer than kBwdMaxWalkRows, the
  // fewest equal sub-groups of heads whose walks fit; the items of one key block share its dK/dV
  // unit, and a unit is one key block.
  int64_t bwd_tiles = 0;
  bool split = false;
  for (const flex::BwdItem& it : wl.bwd_items) {
    bwd_tiles += static_cast<int64_t>(it.ntiles) * it.nheads;
    ASSERT_TRUE(it.nheads >= 1 && group % it.nheads == 0 && it.head % it.nheads == 0) << "heads " << it.head << "+" << it.nheads;
    const int64_t walk = static_cast<int64_t>(it.ntiles) * t.bwd_bm * it.nheads;
    EXPECT_TRUE(it.nheads == group || it.nheads == 1 || walk <= flex::kBwdMaxWalkRows) << "walk " << walk;
    for (int n = it.nheads + 1; n <= group; ++n) {  // no larger sub-group fits
      if (group % n == 0) {
        EXPECT_GT(static_cast<int64_t>(it.ntiles) * t.bwd_bm * n, flex::kBwdMaxWalkRows) << "heads " << n;
      }
    }
    split = split || it.nheads < group;
  }
  EXPECT_EQ(wl.bwd_split_groups, split);
  // The walk (BwdTileCursor): every (entry, tile, head) of the item once; an item all of whose
  // slices are causal tile by tile from its last, each tile for every head, any other head by
  // head, each head's tiles first to last.
  for (const flex::BwdItem& it : wl.bwd_items) {
    bool all_causal = it.entry_end > it.entry_begin;
    for (int e = it.entry_begin; e < it.entry_end; ++e)
      all_causal = all_causal && wl.slices[static_cast<size_t>(wl.bwd_entries[static_cast<size_t>(e)].slice)].type ==
                                     static_cast<int>(KernelSliceType::causal);
    EXPECT_EQ(it.walk_back, all_causal ? 1 : 0) << "item at key " << it.k0;
    const int steps = it.ntiles * it.nheads;
    if (steps == 0) continue;
    std::vector<std::tuple<int, int, int>> walked;  // (entry, tile, head)
    flex::BwdTileCursor cur(wl.bwd_entries.data(), it);
    for (int n = 0; n < steps; ++n, cur.next(wl.bwd_entries.data(), it)) {
      ASSERT_TRUE(cur.e >= it.entry_begin && cur.e < it.entry_end && cur.t >= 0 &&
                  cur.t < wl.bwd_entries[static_cast<size_t>(cur.e)].ntiles && cur.h >= 0 && cur.h < it.nheads)
          << "step " << n << " of the item at key " << it.k0;
      walked.emplace_back(cur.e, cur.t, cur.h);
    }
    std::vector<std::tuple<int, int, int>> order;  // the expected walk
    if (it.walk_back) {
      for (int e = it.entry_end - 1; e >= it.entry_begin; --e)
        for (int t = wl.bwd_entries[static_cast<size_t>(e)].ntiles - 1; t >= 0; --t)
          for (int h = 0; h < it.nheads; ++h) order.emplace_back(e, t, h);
    } else {
      for (int h = 0; h < it.nheads; ++h)
        for (int e = it.entry_begin; e < it.entry_end; ++e)
          for (int t = 0; t < wl.bwd_entries[static_cast<size_t>(e)].ntiles; ++t) order.emplace_back(e, t, h);
    }
    EXPECT_EQ(walked, order) << "the walk of the item at key " << it.k0;
  }
  EXPECT_EQ(wl.stats.backward_items, static_cast<int64_t>(wl.bwd_items.size()));
  EXPECT_EQ(wl.stats.backward_tiles, bwd_tiles);
  std::vector<std::pair<int, int>> unit_keys(static_cast<size_t>(wl.bwd_kv_units), {-1, -1});
  std::vector<int> unit_heads(static_cast<size_t>(wl.bwd_kv_units) * static_cast<size_t>(sh.hq), 0);
  for (const flex::BwdItem& it : wl.bwd_items) {
    ASSERT_TRUE(it.kv_unit >= 0 && it.kv_unit < wl.bwd_kv_units) << "kv unit " << it.kv_unit;
    ASSERT_TRUE(it.head >= 0 && it.head + it.nheads <= sh.hq) << "head " << it.head;
    auto& keys = unit_keys[static_cast<size_t>(it.kv_unit)];
    if (keys.first < 0) keys = {it.k0, it.k_end};
    EXPECT_EQ(keys, std::make_pair(it.k0, it.k_end)) << "kv unit " << it.kv_unit << " holds two key blocks";
    for (int h = it.head; h < it.head + it.nheads; ++h)
      ++unit_heads[static_cast<size_t>(it.kv_unit) * static_cast<size_t>(sh.hq) + static_cast<size_t>(h)];
  }
  for (int n : unit_heads) EXPECT_EQ(n, 1) << "a (kv unit, head) pair without exactly one item";
  const bool bwd_aligned = ranges_disjoint(input_slices, false);
  // The dQ units of bwd_bm rows: how many of one query head's tiles cover each.
  std::vector<int> unit_tiles(static_cast<size_t>((sq + t.bwd_bm - 1) / t.bwd_bm), 0);
  for (int h = 0; h < sh.hq; ++h) {
    std::vector<int> owner(static_cast<size_t>(sk), 0), seen(expected.size(), 0);
    for (const flex::BwdItem& it : wl.bwd_items) {
      if (h < it.head || h >= it.head + it.nheads) continue;
      ASSERT_TRUE(it.k0 >= 0 && it.k0 < it.k_end && it.k_end <= sk && it.k_end - it.k0 <= t.bwd_bn);
      for (int k = it.k0; k < it.k_end; ++k) ++owner[static_cast<size_t>(k)];
      if (bwd_aligned) {
        for (int k = it.k0; k < it.k_end; ++k)
          ASSERT_EQ(slices_at(input_slices, k, false), slices_at(input_slices, it.k0, false)) << "item straddles slices";
      }
      int tiles = 0;
      for (int e = it.entry_begin; e < it.entry_end; ++e) {
        const flex::BwdEntry& en = wl.bwd_entries[static_cast<size_t>(e)];
        ASSERT_TRUE(en.slice >= 0 && en.slice < static_cast<int>(kept.size())) << en.slice;  // the input's
        const flex::DevSlice& d = wl.slices[static_cast<size_t>(en.slice)];
        tiles += en.ntiles;
        for (int j = 0; j < en.ntiles; ++j) {
          const int q0 = en.q_lo + j * t.bwd_bm, q1 = q0 + t.bwd_bm;
          ASSERT_TRUE(q0 >= 0 && q0 < sq) << "query tile at " << q0;  // the dQ units it covers exist
          if (h == 0)
            for (int u = q0 / t.bwd_bm; u <= (std::min(q1, sq) - 1) / t.bwd_bm; ++u) ++unit_tiles[static_cast<size_t>(u)];
          // As the kernel asks: the item's first key and a full key tile.
          const bool inside = flex::tile_inside(d, q0, q1, it.k0, it.k0 + t.bwd_bn);
          for (int q = std::max(q0, 0); q < std::min(q1, sq); ++q)
            for (int k = it.k0; k < it.k_end; ++k) {
              const bool vis = covers(kept[static_cast<size_t>(en.slice)], q, k);
              if (inside) {
                ASSERT_TRUE(vis) << "unmasked tile holds (" << q << ", " << k << ")";
              }
              if (vis) ++seen[static_cast<size_t>(q) * sk + k];
            }
        }
      }
      EXPECT_EQ(it.ntiles, tiles);
    }
    for (int k = 0; k < sk; ++k) ASSERT_EQ(owner[static_cast<size_t>(k)], 1) << "backward key " << k << " head " << h;
    for (size_t i = 0; i < seen.size(); ++i)
      ASSERT_EQ(seen[i], expected[i]) << "backward pair (" << i / sk << ", " << i % sk << ") head " << h;
  }
  EXPECT_EQ(wl.bwd_unit_tiles, unit_tiles) << "backward tiles per dQ unit";
  expect_long_late_items_first(grouped.bwd_items, wl.bwd_items, blocks,
                               [](const flex::BwdItem& it) { return std::make_pair(it.k0, it.head); }, "backward order");
  expect_grouped_heaviest_first(
      grouped.bwd_items,
      [&](const flex::BwdItem& it) {
        return std::make_pair(it.head, it.entry_end > it.entry_begin ? wl.bwd_entries[it.entry_end - 1].slice : -1);
      },
      "backward order");
}

// The kernels' tiles at both head dims, and small ones (many tiles per slice at test sizes).
constexpr flex::TileShape kKernelTiles = cuda::flex_work_list_tiles(128);
constexpr flex::TileShape kKernelTilesD64 = cuda::flex_work_list_tiles(64);
constexpr flex::TileShape kSmallTiles{32, 16, 16, 32};

TEST(FlexWorkList, RandomSliceLists) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexWorkList.RandomSliceLists");
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const std::vector<std::pair<int32_t, int32_t>> heads{{1, 1}, {2, 1}, {4, 2}};
  for (int i = 0; i < 150; ++i) {
    const auto [hq, hkv] = heads[static_cast<size_t>(i) % heads.size()];
    const AttnShape sh{pick(1, 300), pick(1, 300), hq, hkv, 128};
    const auto slices = random_slices(rng, sh.sq, sh.sk, pick(0, 20));
    const std::string what = "case " + std::to_string(i) + " sq " + std::to_string(sh.sq) + " sk " + std::to_string(sh.sk);
    check_lists(sh, slices, i % 2 == 0 ? kKernelTiles : kKernelTilesD64, what + " kernel tiles", i % 3 == 0 ? 7 : 132);
    check_lists(sh, slices, kSmallTiles, what + " small tiles", i % 3 == 1 ? 3 : 132);
    if (HasFatalFailure()) return;
  }
}

// Document-like lists (disjoint query and key ranges): the aligned items.
TEST(FlexWorkList, CatalogueMasks) {
  const int64_t S = 700;
  for (const CatalogueCase& c : catalogue_cases(S, {130, 7, 300, 1, 262})) {
    check_lists(AttnShape{S, S, 4, 2, 128}, c.slices, kKernelTiles, c.type + " kernel tiles");
    check_lists(AttnShape{S, S, 2, 1, 64}, c.slices, kKernelTilesD64, c.type + " kernel tiles d 64");
    check_lists(AttnShape{S, S, 2, 2, 128}, c.slices, kSmallTiles, c.type + " small tiles");
    // 32 query heads over one kv head: long walks split the group, short ones keep it whole.
    check_lists(AttnShape{S, S, 32, 1, 128}, c.slices, kSmallTiles, c.type + " small tiles, 32:1");
  }
}

// Keys every query sees beside a band (sink tokens): their backward item walks every query tile,
// ten times the band's items, and goes first for every kv head, with 132 blocks at once and with
// one (in its group it would end after the band's items and convert every dQ unit alone). A full
// mask's equal items keep the grouped order.
TEST(FlexWorkList, LongLateItemsGoFirst) {
  const int64_t S = 4096;
  const AttnShape sh{S, S, 4, 2, 128};
  std::vector<KernelSlice> sink;
  for (const CatalogueCase& c : catalogue_cases(S, {S}))
    if (c.type == "sink_sliding_window") sink = c.slices;
  ASSERT_FALSE(sink.empty());
  const flex::WorkLists wl = flex::build_work_lists(sh, sink.data(), sink.size(), kKernelTiles, 132);
  const flex::WorkLists grouped = flex::build_work_lists(sh, sink.data(), sink.size(), kKernelTiles, 1);
  int longest = 0;
  for (const flex::BwdItem& it : wl.bwd_items) longest = std::max(longest, it.ntiles);
  EXPECT_GE(longest, S / kKernelTiles.bwd_bm);
  for (size_t i = 0; i < static_cast<size_t>(sh.hkv); ++i) {
    EXPECT_EQ(wl.bwd_items[i].k0, 0) << "item " << i;
    EXPECT_EQ(wl.bwd_items[i].ntiles, longest) << "item " << i;
  }
  for (size_t i = 0; i < static_cast<size_t>(sh.hkv); ++i) {
    EXPECT_EQ(grouped.bwd_items[i].k0, 0) << "one block at a time, item " << i;
    EXPECT_EQ(grouped.bwd_items[i].ntiles, longest) << "one block at a time, item " << i;
  }
  check_lists(sh, sink, kKernelTiles, "sink + sliding window");
  const std::vector<KernelSlice> full{sl(0, S, 0, S, KernelSliceType::full)};
  const flex::WorkLists f = flex::build_work_lists(sh, full.data(), full.size(), kKernelTiles, 132);
  const flex::WorkLists fg = flex::build_work_lists(sh, full.data(), full.size(), kKernelTiles, 1);
  ASSERT_EQ(f.bwd_items.size(), fg.bwd_items.size());
  for (size_t i = 0; i < f.bwd_items.size(); ++i) {
    EXPECT_EQ(f.bwd_items[i].k0, fg.bwd_items[i].k0) << "item " << i;
    EXPECT_EQ(f.bwd_items[i].head, fg.bwd_items[i].head) << "item " << i;
  }
}

// Slice s cut at row r into the two slices that cover its pairs (the band rule of
// common/slice_band.h: the top keeps the first key and its end moves with the upper diagonal, the
// bottom keeps the end and its first key moves with the lower one); false when a piece would
// have no keys.
bool cut_rows(const KernelSlice& s, int64_t r, KernelSlice& top, KernelSlice& bottom) {
  const bool upper = band_has_upper_diagonal(s.type), lower = band_has_lower_diagonal(s.type);
  top = sl(s.q_start, r, s.k_start, upper ? s.k_end - (s.q_end - r) : s.k_end, s.type);
  bottom = sl(r, s.q_end, lower ? s.k_start + (r - s.q_start) : s.k_start, s.k_end, s.type);
  return top.k_end > top.k_start && bottom.k_end > bottom.k_start;
}

// A mask cut into pieces down its rows, as a stage-wise caller's plan cuts it at chunk
// boundaries: the forward joins the pieces again and runs the items and tiles of the uncut mask;
// the backward walks the pieces.
TEST(FlexWorkList, ForwardJoinsRowPieces) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexWorkList.ForwardJoinsRowPieces");
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  int joined = 0;
  for (int i = 0; i < 60; ++i) {
    const AttnShape sh{pick(1, 300), pick(1, 300), 2, 1, 128};
    const std::vector<KernelSlice> whole = random_slices(rng, sh.sq, sh.sk, pick(0, 20));
    std::vector<KernelSlice> pieces;
    for (const KernelSlice& s : whole) {
      KernelSlice rest = s, top, bottom;
      for (int c = 0; c < 3 && rest.q_end - rest.q_start >= 2; ++c) {
        if (!cut_rows(rest, pick(rest.q_start + 1, rest.q_end - 1), top, bottom)) break;
        pieces.push_back(top);
        rest = bottom;
      }
      pieces.push_back(rest);
    }
    std::shuffle(pieces.begin(), pieces.end(), rng);
    const std::string what = "case " + std::to_string(i) + " sq " + std::to_string(sh.sq) + " sk " + std::to_string(sh.sk);
    check_lists(sh, pieces, i % 2 == 0 ? kKernelTiles : kSmallTiles, what + ", pieces");
    if (HasFatalFailure()) return;
    const flex::TileShape t = i % 2 == 0 ? kKernelTiles : kSmallTiles;
    const flex::WorkLists a = flex::build_work_lists(sh, whole.data(), whole.size(), t, 132);
    const flex::WorkLists b = flex::build_work_lists(sh, pieces.data(), pieces.size(), t, 132);
    EXPECT_EQ(b.stats.forward_items, a.stats.forward_items) << what;
    EXPECT_EQ(b.stats.forward_tiles, a.stats.forward_tiles) << what;
    joined += b.fwd_slices_begin > 0;
  }
  EXPECT_GT(joined, 30);  // the cases did cut slices

  // A causal document in 512-row pieces, each seeing the document from its first key (a stage's
  // list at 2 stages of 32k varlen causal): the document's 64 items and 2080 tiles per head.
  const std::vector<KernelSlice> doc = magi::testing::causal_row_pieces(6606, 14798, 512);
  const AttnShape big{16384, 16384, 1, 1, 128};
  const flex::WorkLists d = flex::build_work_lists(big, doc.data(), doc.size(), kKernelTiles, 132);
  int items = 0;
  for (const flex::FwdItem& it : d.fwd_items) items += it.ntiles > 0;
  EXPECT_EQ(d.slices.size(), doc.size() + 1);
  EXPECT_EQ(items, 64);
  EXPECT_EQ(d.stats.forward_tiles, 64 * 65 / 2);
}

// Two causal documents in 512-row pieces (a stage's list at cp 1), the first ending inside a key
// block: that block walks the first document's last rows and then the whole second one, and is
// grouped with the second document's blocks (the grouped order, one block at a time), first as
// the longest, not alone after them.
TEST(FlexWorkList, BackwardKeepsADocumentsKeyBlocksTogether) {
  std::vector<KernelSlice> sl = magi::testing::causal_row_pieces(0, 600, 512);
  const std::vector<KernelSlice> second = magi::testing::causal_row_pieces(600, 4696, 512);
  sl.insert(sl.end(), second.begin(), second.end());
  const AttnShape sh{4696, 4696, 1, 1, 128};
  check_lists(sh, sl, kKernelTiles, "two documents in pieces");
  const flex::WorkLists wl = flex::build_work_lists(sh, sl.data(), sl.size(), kKernelTiles, 1);
  ASSERT_FALSE(wl.bwd_items.empty());
  EXPECT_EQ(wl.bwd_items[0].k0, 512) << "the straddling key block";
  // 2 tiles of the first document's rows [512, 600), then the second's pieces from row 600: 7 +
  // 7 x 8 + 2 tiles.
  EXPECT_EQ(wl.bwd_items[0].ntiles, 2 + 65);
  EXPECT_EQ(wl.bwd_items[1].k0, 640);
}

// A stage holding the first third of a long causal document's keys, 16 heads on 132 blocks: every
// key block walks from its diagonal to the document's end (192 down to 130 tiles, none twice the
// mean), each block's share is about 620 tiles, so the later heads' items, more than a fifth of
// it and launched in their groups, would end past the launch: they run first, longest first.
TEST(FlexWorkList, BackwardLongItemsOfLateHeadsGoFirst) {
  std::vector<KernelSlice> sl = magi::testing::causal_row_pieces(0, 4096, 512);
  sl.push_back({4096, 12288, 0, 4096, KernelSliceType::full});
  const AttnShape sh{12288, 4096, 16, 16, 128};
  const flex::WorkLists wl = flex::build_work_lists(sh, sl.data(), sl.size(), kKernelTiles, 132);
  ASSERT_FALSE(wl.bwd_items.empty());
  EXPECT_EQ(wl.bwd_items[0].ntiles, 192);
  EXPECT_GE(wl.bwd_items[0].head, 8) << "a head whose group starts in the second half";
}

// Items merge when some of their rows hold an earlier result, and every item merges until told.
TEST(FlexWorkList, MarksTheItemsThatMerge) {
  const std::vector<KernelSlice> docs{{0, 100, 0, 100, KernelSliceType::causal},
                                      {100, 400, 100, 400, KernelSliceType::causal},
                                      {400, 500, 400, 500, KernelSliceType::full}};
  flex::WorkLists wl = flex::build_work_lists(AttnShape{500, 500, 2, 1, 128}, docs.data(), docs.size(), kKernelTiles, 132);
  for (const flex::FwdItem& it : wl.fwd_items) EXPECT_EQ(it.merge, 1);
  // Items (segments of at most 128 rows from each document's start): [0, 100), [100, 228),
  // [228, 356), [356, 400), [400, 500). Rows [150, 230) and [499, 500) hold results.
  flex::mark_merged_items(wl.fwd_items, {{150, 230}, {499, 500}});
  std::map<int, int> merge;
  for (const flex::FwdItem& it : wl.fwd_items) merge[it.q0] = it.merge;
  EXPECT_EQ(merge, (std::map<int, int>{{0, 0}, {100, 1}, {228, 1}, {356, 0}, {400, 1}}));
  flex::mark_merged_items(wl.fwd_items, {});
  for (const flex::FwdItem& it : wl.fwd_items) EXPECT_EQ(it.merge, 0);
  EXPECT_THROW(flex::mark_merged_items(wl.fwd_items, {{10, 20}, {15, 30}}), std::invalid_argument);
  EXPECT_THROW(flex::mark_merged_items(wl.fwd_items, {{10, 10}}), std::invalid_argument);
}

TEST(FlexWorkList, EdgeCases) {
  using T = KernelSliceType;
  const AttnShape sh{300, 200, 2, 1, 128};
  check_lists(sh, {}, kKernelTiles, "no slices");
  check_lists(sh, {sl(5, 5, 0, 100, T::full), sl(0, 300, 50, 50, T::causal)}, kKernelTiles, "empty slices");
  check_lists(sh, {sl(0, 64, 0, 200, T::full), sl(64, 64, 100, 180, T::full)}, kKernelTiles,
              "empty q over shared keys");
  check_lists(sh, {sl(0, 300, 0, 90, T::causal), sl(0, 300, 90, 180, T::inv_causal), sl(0, 250, 180, 200, T::bi_causal)},
              kSmallTiles, "lq > lk");
  check_lists(AttnShape{1, 1, 1, 1, 64}, {sl(0, 1, 0, 1, T::causal)}, kKernelTiles, "1x1");
  const flex::WorkLists none = flex::build_work_lists(sh, nullptr, 0, kKernelTiles, 132);
  EXPECT_EQ(none.stats.area, 0);
  EXPECT_EQ(none.stats.forward_tiles + none.stats.backward_tiles, 0);
  EXPECT_GT(none.stats.forward_items, 0);  // rows that see nothing still get items: outputs are written
}

TEST(FlexWorkList, RejectsBadSlices) {
  const AttnShape sh{10, 10, 1, 1, 128};
  const KernelSlice past_end = sl(0, 11, 0, 10, KernelSliceType::full);
  EXPECT_THROW(flex::build_work_lists(sh, &past_end, 1, kKernelTiles, 132), std::invalid_argument);
  const KernelSlice reversed = sl(0, 10, 6, 5, KernelSliceType::full);
  EXPECT_THROW(flex::build_work_lists(sh, &reversed, 1, kKernelTiles, 132), std::invalid_argument);
  const KernelSlice bad_type = sl(0, 10, 0, 10, static_cast<KernelSliceType>(7));
  EXPECT_THROW(flex::build_work_lists(sh, &bad_type, 1, kKernelTiles, 132), std::invalid_argument);
  EXPECT_THROW(flex::build_work_lists(sh, nullptr, 1, kKernelTiles, 132), std::invalid_argument);
  const KernelSlice fine = sl(0, 10, 0, 10, KernelSliceType::full);
  EXPECT_THROW(flex::build_work_lists(sh, &fine, 1, kKernelTiles, 0), std::invalid_argument);
}

}  // namespace
}  // namespace magi::kernels::testing
