#include "core/plan/dispatch.h"

#include "core/base/error.h"
#include "core/plan/clip.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <queue>
#include <set>
#include <utility>

namespace magi {

std::vector<Range> chunk_units(int64_t total_tokens, int64_t unit_tokens) {
  MAGI_CHECK(unit_tokens > 0, "unit_tokens = {}", unit_tokens);
  std::vector<Range> units;
  units.reserve(static_cast<size_t>((total_tokens + unit_tokens - 1) / unit_tokens));
  for (int64_t t = 0; t < total_tokens; t += unit_tokens) {
    units.push_back(Range{t, std::min(total_tokens, t + unit_tokens)});
  }
  return units;
}

std::vector<Range> zigzag_units(int64_t total_tokens, int cp) {
  const int64_t n = 2 * static_cast<int64_t>(cp);
  std::vector<Range> units;
  units.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) units.push_back(Range{i * total_tokens / n, (i + 1) * total_tokens / n});
  return units;
}

RowPieces split_rows(const std::vector<AttnSlice>& mask, std::vector<Range> units) {
  RowPieces rp;
  rp.units = std::move(units);
  const size_t n = rp.units.size();
  std::vector<std::pair<size_t, AttnSlice>> tagged;
  tagged.reserve(mask.size() * 2);
  std::vector<AttnSlice> tmp;
  for (const AttnSlice& s : mask) {
    if (slice_area(s) == 0) continue;
    auto it = std::upper_bound(rp.units.begin(), rp.units.end(), s.q.start,
                               [](int64_t t, const Range& u) { return t < u.end; });
    for (; it != rp.units.end() && it->start < s.q.end; ++it) {
      tmp.clear();
      clip_slice_into(s, *it, s.k, tmp);
      const size_t u = static_cast<size_t>(it - rp.units.begin());
      for (const AttnSlice& p : tmp) tagged.emplace_back(u, p);
    }
  }
  rp.offsets.assign(n + 1, 0);
  for (const auto& [u, p] : tagged) ++rp.offsets[u + 1];
  for (size_t u = 0; u < n; ++u) rp.offsets[u + 1] += rp.offsets[u];
  rp.pieces.resize(tagged.size());
  rp.areas.assign(n, 0);
  std::vector<size_t> fill(rp.offsets.begin(), rp.offsets.end() - 1);
  for (const auto& [u, p] : tagged) {
    rp.pieces[fill[u]++] = p;
    rp.areas[u] += slice_area(p);
  }
  return rp;
}

namespace {

// Units by area descending, ties by index ascending.
std::vector<size_t> by_area_desc(const std::vector<int64_t>& areas) {
  std::vector<size_t> order(areas.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return areas[a] > areas[b]; });
  return order;
}

}  // namespace

std::vector<int> assign_greedy(const std::vector<int64_t>& areas, int cp, int64_t short_unit) {
  MAGI_CHECK(cp >= 1, "cp = {}", cp);
  const size_t n = areas.size();
  const size_t ucp = static_cast<size_t>(cp);
  const size_t base = n / ucp;
  const size_t extra = n % ucp;
  std::vector<int> owner(n, -1);
  std::vector<size_t> count(ucp, 0);
  // A rank is `committed` once it is one of the n % cp ranks allowed base + 1 units.
  std::vector<bool> committed(ucp, false);
  size_t extra_used = 0;
  const bool constrain_short = short_unit >= 0 && extra > 0;
  using Entry = std::pair<int64_t, int>;  // (load, rank), min-heap
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  for (int r = 0; r < cp; ++r) heap.emplace(0, r);
  std::vector<Entry> set_aside;
  bool short_pending = constrain_short;
  for (size_t u : by_area_desc(areas)) {
    const bool is_short = constrain_short && static_cast<int64_t>(u) == short_unit;
    // While the short unit waits, the last free commitment is kept for it.
    const size_t free_commits = extra - extra_used;
    for (;;) {
      MAGI_CHECK(!heap.empty(), "no rank with room for unit {}", u);
      auto [load, r] = heap.top();
      heap.pop();
      const size_t ur = static_cast<size_t>(r);
      const bool may_commit = free_commits > (short_pending && !is_short ? 1u : 0u);
      if (count[ur] > base || (count[ur] == base && !committed[ur] && extra_used >= extra)) {
        continue;  // full for good: a rank never regains room
      }
      const bool room = is_short ? (committed[ur] || may_commit)
                                 : count[ur] < base || (count[ur] == base && (committed[ur] || may_commit));
      if (!room) {
        set_aside.emplace_back(load, r);
        continue;
      }
      owner[u] = r;
      ++count[ur];
      if ((is_short || count[ur] == base + 1) && !committed[ur]) {
        committed[ur] = true;
        ++extra_used;
      }
      if (is_short) short_pending = false;
      heap.emplace(load + areas[u], r);
      break;
    }
    for (const Entry& e : set_aside) heap.push(e);
    set_aside.clear();
  }
  return owner;
}

std::vector<int> assign_refine(const std::vector<int64_t>& areas, int cp, int64_t short_unit) {
  std::vector<int> owner = assign_greedy(areas, cp, short_unit);
  const size_t ucp = static_cast<size_t>(cp);
  const size_t base = owner.size() / ucp;
  const bool constrain_short = short_unit >= 0 && owner.size() % ucp != 0;
  const size_t su = static_cast<size_t>(short_unit);
  // Per rank: its units as (area, unit), sorted ascending.
  std::vector<std::vector<std::pair<int64_t, size_t>>> held(ucp);
  std::vector<int64_t> load(ucp, 0);
  for (size_t u = 0; u < owner.size(); ++u) {
    const size_t r = static_cast<size_t>(owner[u]);
    held[r].emplace_back(areas[u], u);
    load[r] += areas[u];
  }
  for (auto& h : held) std::sort(h.begin(), h.end());
  std::set<std::pair<int64_t, int>> by_load;
  for (int r = 0; r < cp; ++r) by_load.emplace(load[static_cast<size_t>(r)], r);

  const size_t max_iters = 20 * owner.size() + 100;
  for (size_t iter = 0; iter < max_iters; ++iter) {
    const auto [la, ia] = *by_load.rbegin();
    const size_t a = static_cast<size_t>(ia);
    bool improved = false;
    for (const auto& entry : by_load) {
      const int64_t lb = entry.first;  // copies: the entry is erased below
      const int ib = entry.second;
      const size_t b = static_cast<size_t>(ib);
      if (b == a) continue;
      const int64_t gap = la - lb;
      if (gap < 2) break;  // a transfer of delta in (0, gap) lowers max(la, lb) only if gap >= 2
      // Best delta is the one closest to gap / 2. kind 0: move, 1: swap.
      int64_t best_score = -1, best_delta = 0;
      size_t best_x = 0, best_y = 0;
      int best_kind = -1;
      auto consider = [&](int64_t delta, int kind, size_t x, size_t y) {
        if (delta <= 0 || delta >= gap) return;
        const int64_t score = std::max(la - delta, lb + delta);
        if (best_kind < 0 || score < best_score) {
          best_score = score, best_delta = delta, best_kind = kind, best_x = x, best_y = y;
        }
      };
      const auto& ha = held[a];
      const auto& hb = held[b];
      const bool can_move = ha.size() > hb.size();
      // The short unit must end on a rank holding base + 1 units.
      const bool a_holds_short = constrain_short && owner[su] == ia;
      const bool b_holds_short = constrain_short && owner[su] == ib;
      for (size_t x = 0; x < ha.size(); ++x) {
        const int64_t ax = ha[x].first;
        const bool x_short = a_holds_short && ha[x].second == su;
        if (can_move && (!a_holds_short || x_short)) consider(ax, 0, x, 0);
        if (x_short && hb.size() != base + 1) continue;
        // Swap with y: delta = ax - ay, want ay near ax - gap / 2.
        const int64_t want = ax - gap / 2;
        auto it = std::lower_bound(hb.begin(), hb.end(), std::pair<int64_t, size_t>{want, 0});
        for (int k = -1; k <= 0; ++k) {
          auto jt = it + k;
          if (k < 0 && it == hb.begin()) continue;
          if (jt == hb.end()) continue;
          if (b_holds_short && jt->second == su && ha.size() != base + 1) continue;
          consider(ax - jt->first, 1, x, static_cast<size_t>(jt - hb.begin()));
        }
      }
      if (best_kind < 0) continue;
      by_load.erase({load[a], ia});
      by_load.erase({load[b], ib});
      const auto ux = held[a][best_x];
      held[a].erase(held[a].begin() + static_cast<std::ptrdiff_t>(best_x));
      if (best_kind == 1) {
        const auto uy = held[b][best_y];
        held[b].erase(held[b].begin() + static_cast<std::ptrdiff_t>(best_y));
        held[a].insert(std::lower_bound(held[a].begin(), held[a].end(), uy), uy);
        owner[uy.second] = ia;
      }
      held[b].insert(std::lower_bound(held[b].begin(), held[b].end(), ux), ux);
      owner[ux.second] = ib;
      load[a] -= best_delta;
      load[b] += best_delta;
      by_load.emplace(load[a], ia);
      by_load.emplace(load[b], ib);
      improved = true;
      break;
    }
    if (!improved) break;
  }
  return owner;
}

std::vector<int> assign_exhaustive(const std::vector<int64_t>& areas, int cp, int64_t short_unit) {
  const size_t n = areas.size();
  const size_t ucp = static_cast<size_t>(cp);
  MAGI_CHECK(n <= 24 && cp <= 8, "exhaustive dispatch is for tiny instances (n = {}, cp = {})", n, cp);
  const size_t base = n / ucp;
  const size_t extra = n % ucp;
  std::vector<int> best = assign_greedy(areas, cp, short_unit);
  int64_t best_max = max_rank_load(areas, best, cp);
  const bool constrain_short = short_unit >= 0 && extra > 0;
  const std::vector<size_t> order = by_area_desc(areas);
  std::vector<int> owner(n, -1);
  std::vector<int64_t> load(ucp, 0);
  std::vector<size_t> count(ucp, 0);
  size_t extra_used = 0;
  std::function<void(size_t, int64_t)> dfs = [&](size_t i, int64_t cur_max) {
    if (cur_max >= best_max) return;
    if (i == n) {
      if (constrain_short && count[static_cast<size_t>(owner[static_cast<size_t>(short_unit)])] != base + 1) return;
      best_max = cur_max;
      best = owner;
      return;
    }
    const size_t u = order[i];
    for (size_t r = 0; r < ucp; ++r) {
      const bool room = count[r] < base || (count[r] == base && extra_used < extra);
      if (!room) continue;
      bool same_as_earlier = false;  // ranks in the same state are interchangeable
      for (size_t q = 0; q < r && !same_as_earlier; ++q) {
        same_as_earlier = load[q] == load[r] && count[q] == count[r];
      }
      if (same_as_earlier) continue;
      owner[u] = static_cast<int>(r);
      load[r] += areas[u];
      if (++count[r] == base + 1) ++extra_used;
      dfs(i + 1, std::max(cur_max, load[r]));
      if (count[r]-- == base + 1) --extra_used;
      load[r] -= areas[u];
      owner[u] = -1;
    }
  };
  dfs(0, 0);
  return best;
}

std::vector<int> assign_units(const std::vector<int64_t>& areas, int cp, DispatchSolver solver,
                              int64_t short_unit) {
  switch (solver) {
    case DispatchSolver::greedy: return assign_greedy(areas, cp, short_unit);
    case DispatchSolver::refine: return assign_refine(areas, cp, short_unit);
  }
  return assign_refine(areas, cp, short_unit);
}

int64_t max_rank_load(const std::vector<int64_t>& areas, const std::vector<int>& owner, int cp) {
  std::vector<int64_t> load(static_cast<size_t>(cp), 0);
  for (size_t u = 0; u < owner.size(); ++u) load[static_cast<size_t>(owner[u])] += areas[u];
  return load.empty() ? 0 : *std::max_element(load.begin(), load.end());
}

}  // namespace magi
