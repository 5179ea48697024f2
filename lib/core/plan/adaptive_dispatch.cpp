#include "core/plan/adaptive_dispatch.h"

#include "core/base/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>

namespace magi {

namespace {

constexpr size_t kWhole = SIZE_MAX;  // chunk_slot of a cut chunk: its rows are in segments

// A tile-aligned run of a cut chunk's rows and the slot (dispatch unit) that holds it.
struct Segment {
  Range rows;
  size_t slot = 0;
};

// One round's cuts: the slots the solver dispatches (uncut chunks, and heavy pieces each with its
// filler complement), where every row went, and the assignment.
struct Cuts {
  std::vector<size_t> chunk_slot;  // per chunk: its slot when uncut, else kWhole
  std::vector<Segment> segments;   // the rows of cut chunks
  std::vector<int64_t> slot_area;
  std::vector<int> slot_owner;
  int64_t load = 0;                // the largest rank area
};

// Areas of tile-aligned rows from the tiles' prefix sums.
struct TileAreas {
  std::vector<int64_t> prefix;  // prefix[t] = area of tiles [0, t)
  int64_t tile = 1;
  int64_t of(Range r) const {
    return prefix[static_cast<size_t>(r.end / tile)] - prefix[static_cast<size_t>(r.start / tile)];
  }
};

// Cut points of chunk `u` (m tiles from tile `first`) into `p` pieces of nearly equal area: piece
// j ends at the tile boundary whose prefix area is nearest j x area / p, every piece one tile at
// least. Returns the p + 1 boundaries in tiles from the chunk start.
std::vector<size_t> piece_bounds(const TileAreas& ta, size_t first, size_t m, size_t p) {
  std::vector<size_t> b(p + 1, 0);
  b[p] = m;
  const int64_t base = ta.prefix[first];
  const double total = static_cast<double>(ta.prefix[first + m] - base);
  size_t x = 0;
  for (size_t j = 1; j < p; ++j) {
    const double goal = total * static_cast<double>(j) / static_cast<double>(p);
    x = std::max(x, b[j - 1] + 1);
    const size_t last = m - (p - j);  // room for the pieces after j
    while (x < last && static_cast<double>(ta.prefix[first + x + 1] - base) <= goal) ++x;
    if (x < last) {  // x + 1 passes the goal: take whichever boundary is nearer
      const double below = goal - static_cast<double>(ta.prefix[first + x] - base);
      const double above = static_cast<double>(ta.prefix[first + x + 1] - base) - goal;
      if (above < below) ++x;
    }
    b[j] = x;
  }
  return b;
}

// What every round reads.
struct Chunks {
  const std::vector<int64_t>& area;
  const TileAreas& ta;
  size_t n = 0, full = 0, m = 0;  // chunks, full-size ones ([0, full)), tiles per chunk
  int64_t chunk_tokens = 0, short_chunk = -1;
  int cp = 1;
  DispatchSolver solver = DispatchSolver::refine;
  const std::vector<size_t>& heaviest;  // full chunks, heaviest first (ties: index)
  const std::vector<size_t>& lightest;  // the same, lightest first
};

// How a heavy piece's slot is completed to chunk_tokens tokens from the filler chunks.
enum class Fill {
  stream,  // the next rows of the fillers laid end to end: a filler is cut where a slot ends in it
  spread,  // the fillers' tiles, heaviest first, each onto the lightest slot with room (finer)
};

// The slots of one round, `pieces[i]` the piece count of chunk heaviest[i], dispatched.
Cuts make_cuts(const Chunks& ch, const std::vector<size_t>& pieces, Fill fill) {
  const int64_t c = ch.chunk_tokens, tile = ch.ta.tile;
  Cuts cuts;
  cuts.chunk_slot.assign(ch.n, 0);
  std::vector<int64_t> room;  // per heavy-piece slot: the filler tokens it still takes
  for (size_t i = 0; i < pieces.size(); ++i) {
    const size_t h = ch.heaviest[i];
    cuts.chunk_slot[h] = kWhole;
    const std::vector<size_t> b = piece_bounds(ch.ta, h * ch.m, ch.m, pieces[i]);
    for (size_t j = 0; j < pieces[i]; ++j) {
      const int64_t start = static_cast<int64_t>(h) * c;
      const Range rows{start + static_cast<int64_t>(b[j]) * tile, start + static_cast<int64_t>(b[j + 1]) * tile};
      cuts.segments.push_back(Segment{rows, cuts.slot_area.size()});
      cuts.slot_area.push_back(ch.ta.of(rows));
      room.push_back(c - rows.size());
    }
  }
  // The fillers: the lightest chunks not cut as heavy, as many as the pieces' rooms add up to.
  std::vector<size_t> fillers;
  const int64_t needed = std::accumulate(room.begin(), room.end(), int64_t{0}) / c;
  for (size_t i = 0; static_cast<int64_t>(fillers.size()) < needed; ++i) {
    if (cuts.chunk_slot[ch.lightest[i]] != kWhole) fillers.push_back(ch.lightest[i]);
  }
  for (size_t f : fillers) cuts.chunk_slot[f] = kWhole;
  if (fill == Fill::stream) {
    size_t next = 0;
    int64_t offset = 0;  // into fillers[next]
    for (size_t slot = 0; slot < room.size(); ++slot) {
      for (int64_t want = room[slot]; want > 0;) {
        const int64_t start = static_cast<int64_t>(fillers[next]) * c + offset;
        const int64_t take = std::min(want, c - offset);
        const Range rows{start, start + take};
        cuts.segments.push_back(Segment{rows, slot});
        cuts.slot_area[slot] += ch.ta.of(rows);
        want -= take;
        offset += take;
        if (offset == c) offset = 0, ++next;
      }
    }
  } else {
    std::vector<std::pair<int64_t, int64_t>> tiles;  // (area, first row), heaviest first
    for (size_t f : fillers) {
      for (size_t t = f * ch.m; t < (f + 1) * ch.m; ++t) {
        tiles.emplace_back(ch.ta.prefix[t + 1] - ch.ta.prefix[t], static_cast<int64_t>(t) * tile);
      }
    }
    std::stable_sort(tiles.begin(), tiles.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    using Entry = std::pair<int64_t, size_t>;  // (slot area, slot), lightest on top
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> open;
    for (size_t slot = 0; slot < room.size(); ++slot) open.emplace(cuts.slot_area[slot], slot);
    for (const auto& [a, row] : tiles) {
      const size_t slot = open.top().second;
      open.pop();
      cuts.segments.push_back(Segment{Range{row, row + tile}, slot});
      cuts.slot_area[slot] += a;
      room[slot] -= tile;
      if (room[slot] > 0) open.emplace(cuts.slot_area[slot], slot);
    }
  }
  int64_t short_slot = -1;
  for (size_t u = 0; u < ch.n; ++u) {
    if (cuts.chunk_slot[u] == kWhole) continue;
    if (static_cast<int64_t>(u) == ch.short_chunk) short_slot = static_cast<int64_t>(cuts.slot_area.size());
    cuts.chunk_slot[u] = cuts.slot_area.size();
    cuts.slot_area.push_back(ch.area[u]);
  }
  cuts.slot_owner = assign_units(cuts.slot_area, ch.cp, ch.solver, short_slot);
  cuts.load = max_rank_load(cuts.slot_area, cuts.slot_owner, ch.cp);
  return cuts;
}

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
  const int64_t uncut_load = max_rank_load(area, d.chunk_owner, cp);
  const bool can_cut = chunk_tokens % tile_tokens == 0 && chunk_tokens >= 2 * tile_tokens && full > 0;
  d.indivisible_area = n > 0 ? *std::max_element(area.begin(), area.end()) : 0;
  auto uncut = [&] {
    d.units = d.chunks;
    d.owner = d.chunk_owner;
    return std::move(d);
  };
  if (!can_cut) return uncut();

  const size_t m = static_cast<size_t>(chunk_tokens / tile_tokens);
  TileAreas ta;
  ta.tile = tile_tokens;
  {
    const std::vector<int64_t> tile_area = split_rows(mask, chunk_units(full * chunk_tokens, tile_tokens)).areas;
    ta.prefix.assign(full * m + 1, 0);
    for (size_t t = 0; t < tile_area.size(); ++t) ta.prefix[t + 1] = ta.prefix[t] + tile_area[t];
  }
  d.indivisible_area = short_chunk >= 0 ? area[static_cast<size_t>(short_chunk)] : 0;
  for (size_t t = 0; t < full * m; ++t) d.indivisible_area = std::max(d.indivisible_area, ta.prefix[t + 1] - ta.prefix[t]);
  // Where the target is out of reach, within kBalanceTarget of the indivisible floor is enough:
  // further cuts would buy little balance for their bytes.
  const double goal = std::max(target, kBalanceTarget * static_cast<double>(d.indivisible_area));
  if (static_cast<double>(uncut_load) <= goal) return uncut();

  std::vector<size_t> heaviest(full);
  std::iota(heaviest.begin(), heaviest.end(), size_t{0});
  std::stable_sort(heaviest.begin(), heaviest.end(), [&](size_t a, size_t b) { return area[a] > area[b]; });
  const std::vector<size_t> lightest(heaviest.rbegin(), heaviest.rend());
  const Chunks ch{area, ta, n, full, m, chunk_tokens, short_chunk, cp, solver, heaviest, lightest};

  Cuts kept;
  kept.load = uncut_load;
  std::vector<size_t> pieces, previous;  // per heavy chunk (heaviest first): its piece count
  double allowance = target;
  for (int round = 0; round < kMaxSplitRounds && static_cast<double>(kept.load) > goal;
       ++round, allowance *= kAllowanceStep) {
    // Heavy chunks: those above the allowance, each in ceil(area / allowance) pieces (at most m),
    // heaviest first while the lighter chunks can fill the complements (p - 1 chunks each).
    pieces.clear();
    size_t fillers = 0;
    for (size_t h : heaviest) {
      if (static_cast<double>(area[h]) <= allowance) break;
      const size_t p = std::min(m, static_cast<size_t>(std::ceil(static_cast<double>(area[h]) / allowance)));
      if (fillers + (p - 1) > full - (pieces.size() + 1)) break;
      pieces.push_back(p);
      fillers += p - 1;
    }
    if (pieces.empty() || pieces == previous) continue;
    previous = pieces;
    for (Fill fill : {Fill::stream, Fill::spread}) {
      Cuts c = make_cuts(ch, pieces, fill);
      if (c.load < kept.load) kept = std::move(c);
      if (static_cast<double>(kept.load) <= goal) break;
    }
  }
  if (kept.segments.empty()) return uncut();

  // Units: every chunk's rows in order; a cut chunk's segments merged where neighbours landed on
  // the same rank (the cut bought nothing there).
  std::sort(kept.segments.begin(), kept.segments.end(),
            [](const Segment& a, const Segment& b) { return a.rows.start < b.rows.start; });
  std::vector<Range> units;
  units.reserve(n + kept.segments.size());
  d.owner.clear();
  d.owner.reserve(units.capacity());
  auto seg = kept.segments.begin();
  for (size_t u = 0; u < n; ++u) {
    const Range chunk = d.chunks.units[u];
    if (kept.chunk_slot[u] != kWhole) {
      units.push_back(chunk);
      d.owner.push_back(kept.slot_owner[kept.chunk_slot[u]]);
      continue;
    }
    size_t parts = 0;
    for (; seg != kept.segments.end() && seg->rows.start < chunk.end; ++seg) {
      const int r = kept.slot_owner[seg->slot];
      if (parts > 0 && d.owner.back() == r) {
        units.back().end = seg->rows.end;
      } else {
        units.push_back(seg->rows);
        d.owner.push_back(r);
        ++parts;
      }
    }
    d.split_chunks += parts > 1 ? 1 : 0;
  }
  d.units = split_rows(mask, std::move(units));
  return d;
}

}  // namespace magi
