#include "core/plan/adaptive_dispatch.h"

#include "core/base/error.h"

#include <algorithm>
#include <numeric>

namespace magi {

namespace {

// One round's outcome, in chunk and tile coordinates.
struct Cuts {
  std::vector<char> cut;          // per full-size chunk: cut into tiles
  std::vector<int> chunk_owner;   // per chunk (uncut ones)
  std::vector<int> tile_owner;    // per tile of a full-size chunk (cut ones)
  int64_t split_chunks = 0;
};

}  // namespace

AdaptiveDispatch adaptive_dispatch(const std::vector<AttnSlice>& mask, int64_t total_tokens, int64_t chunk_tokens,
                                   int cp, DispatchSolver solver, int64_t tile_tokens) {
  MAGI_CHECK(chunk_tokens > 0 && tile_tokens > 0 && cp >= 1, "chunk_tokens = {}, tile_tokens = {}, cp = {}",
             chunk_tokens, tile_tokens, cp);
  AdaptiveDispatch d;
  d.chunk_tokens = chunk_tokens;
  d.tile_tokens = tile_tokens;
  d.chunks = split_rows(mask, chunk_units(total_tokens, chunk_tokens));
  const std::vector<int64_t>& area = d.chunks.areas;
  const size_t n = area.size();
  const int64_t short_chunk = total_tokens % chunk_tokens != 0 ? static_cast<int64_t>(n) - 1 : -1;
  const size_t full = short_chunk >= 0 ? n - 1 : n;  // chunks [0, full) have chunk_tokens tokens
  d.chunk_owner = assign_units(area, cp, solver, short_chunk);
  const int64_t total = std::accumulate(area.begin(), area.end(), int64_t{0});
  const double target = kBalanceTarget * static_cast<double>(total) / cp;
  int64_t best = max_rank_load(area, d.chunk_owner, cp);
  const bool can_cut = chunk_tokens % tile_tokens == 0 && chunk_tokens >= 2 * tile_tokens && full > 0;

  d.indivisible_area = n > 0 ? *std::max_element(area.begin(), area.end()) : 0;
  if (!can_cut) {
    d.units = d.chunks;
    d.owner = d.chunk_owner;
    return d;
  }
  const size_t m = static_cast<size_t>(chunk_tokens / tile_tokens);
  // Tile t of chunk u is tile u * m + t; the short chunk's tiles are never used.
  const std::vector<int64_t> tile_area = split_rows(mask, chunk_units(total_tokens, tile_tokens)).areas;
  d.indivisible_area = short_chunk >= 0 ? area[static_cast<size_t>(short_chunk)] : 0;
  for (size_t t = 0; t < full * m; ++t) d.indivisible_area = std::max(d.indivisible_area, tile_area[t]);

  Cuts kept;
  if (static_cast<double>(best) > target) {
    std::vector<size_t> lightest(full);
    std::iota(lightest.begin(), lightest.end(), size_t{0});
    std::stable_sort(lightest.begin(), lightest.end(), [&](size_t a, size_t b) { return area[a] < area[b]; });
    std::vector<int64_t> pool, pool_area, unit_area;
    std::vector<size_t> unit_of(n);
    double threshold = target;
    size_t heavy_before = 0;
    for (int round = 0; round < kMaxSplitRounds; ++round, threshold /= 2) {
      Cuts c;
      c.cut.assign(full, 0);
      size_t heavy = 0;
      for (size_t u = 0; u < full; ++u) {
        if (static_cast<double>(area[u]) > threshold) c.cut[u] = 1, ++heavy;
      }
      if (heavy == heavy_before) continue;  // nothing new to cut at this threshold
      heavy_before = heavy;
      size_t fillers = heavy * (m - 1);
      for (size_t i = 0; i < full && fillers > 0; ++i) {
        if (!c.cut[lightest[i]]) c.cut[lightest[i]] = 1, --fillers;
      }
      pool.clear();
      pool_area.clear();
      for (size_t u = 0; u < full; ++u) {
        if (!c.cut[u]) continue;
        ++c.split_chunks;
        for (size_t t = u * m; t < (u + 1) * m; ++t) {
          pool.push_back(static_cast<int64_t>(t));
          pool_area.push_back(tile_area[t]);
        }
      }
      const size_t slots = pool.size() / m;
      const std::vector<int> slot_of = assign_units(pool_area, static_cast<int>(slots), solver);
      // Dispatch units: the uncut chunks in order, then the slots.
      unit_area.clear();
      for (size_t u = 0; u < n; ++u) {
        if (u < full && c.cut[u]) continue;
        unit_of[u] = unit_area.size();
        unit_area.push_back(area[u]);
      }
      const size_t first_slot = unit_area.size();
      unit_area.resize(first_slot + slots, 0);
      for (size_t i = 0; i < pool.size(); ++i) unit_area[first_slot + static_cast<size_t>(slot_of[i])] += pool_area[i];
      const int64_t short_unit = short_chunk >= 0 ? static_cast<int64_t>(unit_of[n - 1]) : -1;
      const std::vector<int> owner = assign_units(unit_area, cp, solver, short_unit);
      const int64_t load = max_rank_load(unit_area, owner, cp);
      if (load < best) {
        best = load;
        c.chunk_owner.assign(n, -1);
        c.tile_owner.assign(full * m, -1);
        for (size_t u = 0; u < n; ++u) {
          if (u >= full || !c.cut[u]) c.chunk_owner[u] = owner[unit_of[u]];
        }
        for (size_t i = 0; i < pool.size(); ++i) {
          c.tile_owner[static_cast<size_t>(pool[i])] = owner[first_slot + static_cast<size_t>(slot_of[i])];
        }
        kept = std::move(c);
      }
      if (static_cast<double>(best) <= target || heavy + heavy * (m - 1) >= full) break;
    }
  }
  if (kept.split_chunks == 0) {
    d.units = d.chunks;
    d.owner = d.chunk_owner;
    return d;
  }
  d.split_chunks = kept.split_chunks;
  std::vector<Range> units;
  units.reserve(n + static_cast<size_t>(kept.split_chunks) * (m - 1));
  d.owner.reserve(units.capacity());
  for (size_t u = 0; u < n; ++u) {
    const Range r = d.chunks.units[u];
    if (u < full && kept.cut[u]) {
      for (size_t t = 0; t < m; ++t) {
        const int64_t s = r.start + static_cast<int64_t>(t) * tile_tokens;
        units.push_back(Range{s, s + tile_tokens});
        d.owner.push_back(kept.tile_owner[u * m + t]);
      }
    } else {
      units.push_back(r);
      d.owner.push_back(kept.chunk_owner[u]);
    }
  }
  d.units = split_rows(mask, std::move(units));
  return d;
}

}  // namespace magi
