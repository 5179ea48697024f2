#include "core/plan/node_routing.h"

#include "core/base/checked.h"
#include "core/base/error.h"
#include "core/plan/comm_volume.h"
#include "core/plan/rank_layout.h"

#include <algorithm>
#include <tuple>

namespace magi::detail {

namespace {

// The unit holding token t (units are consecutive and ascending).
size_t unit_of(const RowPieces& rp, int64_t t) {
  auto it = std::upper_bound(rp.units.begin(), rp.units.end(), t,
                             [](int64_t x, const Range& u) { return x < u.end; });
  MAGI_CHECK(it != rp.units.end() && it->contains(t), "token {} in no dispatch unit", t);
  return static_cast<size_t>(it - rp.units.begin());
}

// Calls f(range, local ranks needing it) for each maximal run of node `n`'s union of remote keys
// over which the set of its ranks needing the tokens does not change, ascending.
template <class F>
void for_each_needed_run(const Plan& p, int n, F&& f) {
  const int rpn = p.ranks_per_node;
  struct Event {
    int64_t t;
    int local;
    int delta;
  };
  std::vector<Event> ev;
  for (int i = 0; i < rpn; ++i) {
    for (const Range& r : p.ranks[static_cast<size_t>(n * rpn + i)].remote_kv_ranges) {
      ev.push_back({r.start, i, +1});
      ev.push_back({r.end, i, -1});
    }
  }
  std::sort(ev.begin(), ev.end(), [](const Event& a, const Event& b) { return a.t < b.t; });
  std::vector<char> active(static_cast<size_t>(rpn), 0);
  std::vector<int> needers;
  for (size_t i = 0; i < ev.size();) {
    const int64_t t = ev[i].t;
    for (; i < ev.size() && ev[i].t == t; ++i) active[static_cast<size_t>(ev[i].local)] += static_cast<char>(ev[i].delta);
    if (i == ev.size()) break;
    needers.clear();
    for (int l = 0; l < rpn; ++l) {
      if (active[static_cast<size_t>(l)]) needers.push_back(l);
    }
    if (!needers.empty()) f(Range{t, ev[i].t}, needers);
  }
}

}  // namespace

int planned_ranks_per_node(const Case& c) {
  return c.parallel.ranks_per_node > 0 ? c.parallel.ranks_per_node : c.parallel.cp;
}

void route_node_aware(Plan& p, const RowPieces& rp, const std::vector<int>& owner,
                      const std::vector<std::vector<AttnSlice>>& pieces, int degree) {
  const int rpn = p.ranks_per_node;
  MAGI_CHECK(rpn > 0 && p.cp % rpn == 0 && p.cp / rpn > 1 && degree >= 1,
             "node routing of cp {} with {} ranks per node, degree {}", p.cp, rpn, degree);
  const int nodes = p.cp / rpn;
  // The messages are those of a map (stage, src, dst, from_stage) -> ranges in routing order.
  // Every message of node n has its dst on n, so each node's pieces are gathered in routing
  // order, stably sorted by key and merged on their own (one node's at a time, in cache). A
  // rank's stage buffer thus takes its messages in key order, all from its node's list, and the
  // nodes' lists concatenated are the plan's messages (sort_transfers lists them by key).
  struct Piece {
    int stage, src, dst, from;
    Range r;
  };
  auto key_less = [](const Piece& a, const Piece& b) {
    return std::tie(a.stage, a.src, a.dst, a.from) < std::tie(b.stage, b.src, b.dst, b.from);
  };
  std::vector<Piece> node_pieces;
  p.transfers.clear();
  bool forwards = false;
  std::vector<int64_t> relayed(static_cast<size_t>(rpn));
  for (int n = 0; n < nodes; ++n) {
    int64_t union_tokens = 0;
    for_each_needed_run(p, n, [&](Range r, const std::vector<int>&) { union_tokens += r.size(); });
    std::fill(relayed.begin(), relayed.end(), 0);
    node_pieces.clear();
    int64_t pos = 0;
    auto unit = rp.units.begin();
    for_each_needed_run(p, n, [&](Range run, const std::vector<int>& needers) {
      // Runs ascend, so the unit holding run.start is never behind the last one.
      unit = std::upper_bound(unit, rp.units.end(), run.start, [](int64_t x, const Range& u) { return x < u.end; });
      for (int64_t t = run.start; t < run.end;) {
        while (unit != rp.units.end() && unit->end <= t) ++unit;
        MAGI_CHECK(unit != rp.units.end() && unit->contains(t), "token {} in no dispatch unit", t);
        const int k = static_cast<int>(pos * degree / union_tokens) + 1;
        const int64_t next_round = (static_cast<int64_t>(k) * union_tokens + degree - 1) / degree;
        const int64_t e = std::min({run.end, unit->end, t + (next_round - pos)});
        const Range piece{t, e};
        const int o = owner[static_cast<size_t>(unit - rp.units.begin())];
        if (o / rpn == n) {
          for (int l : needers) node_pieces.push_back({k, o, n * rpn + l, 0, piece});
        } else {
          int relay = needers.front();
          for (int l : needers) {
            if (relayed[static_cast<size_t>(l)] < relayed[static_cast<size_t>(relay)]) relay = l;
          }
          node_pieces.push_back({k, o, n * rpn + relay, 0, piece});
          for (int l : needers) {
            if (l == relay) continue;
            node_pieces.push_back({k + 1, n * rpn + relay, n * rpn + l, k, piece});
            relayed[static_cast<size_t>(relay)] += piece.size();
            forwards = true;
          }
        }
        pos += e - t;
        t = e;
      }
    });
    std::stable_sort(node_pieces.begin(), node_pieces.end(), key_less);
    for (size_t i = 0; i < node_pieces.size(); ++i) {
      const Piece& x = node_pieces[i];
      if (i == 0 || key_less(node_pieces[i - 1], x)) {
        p.transfers.push_back(Transfer{x.stage, x.src, x.dst, {x.r}, 0, x.from});
      } else if (std::vector<Range>& v = p.transfers.back().ranges; v.back().end == x.r.start) {
        v.back().end = x.r.end;
      } else {
        v.push_back(x.r);
      }
    }
  }
  const int stages = 1 + degree + (forwards ? 1 : 0);
  for (RankPlan& rk : p.ranks) {
    rk.stages.assign(static_cast<size_t>(stages), Stage{});
    rk.stages[0].kv_ranges = rk.q_ranges;
  }
  for (Transfer& t : p.transfers) {
    t.tokens = total_size(t.ranges);
    std::vector<Range>& layout = p.ranks[static_cast<size_t>(t.dst)].stages[static_cast<size_t>(t.stage)].kv_ranges;
    layout.insert(layout.end(), t.ranges.begin(), t.ranges.end());
  }
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    RankPlan& rk = p.ranks[r];
    MAGI_CHECK(total_size(rk.remote_kv_ranges) ==
                   [&] {
                     int64_t n = 0;
                     for (size_t s = 1; s < rk.stages.size(); ++s) n += total_size(rk.stages[s].kv_ranges);
                     return n;
                   }(),
               "rank {}: node routing delivers a different number of tokens than it needs", r);
    std::vector<StageKeyRange> keys = host_key_ranges(rk);
    for (int s = 1; s < stages; ++s) add_stage_key_ranges(keys, rk.stages[static_cast<size_t>(s)].kv_ranges, s);
    fill_stage_slices(rk, pieces[r], std::move(keys));
  }
}

void fill_tier_bytes(Plan& p, const RowPieces& rp, const std::vector<int>& owner) {
  const int rpn = p.ranks_per_node;
  const int64_t kv = kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype));
  constexpr const char* kTier = "a tier's bytes (tokens x K/V bytes per token)";
  auto bytes = [&](int64_t tokens) { return checked_mul(tokens, kv, kTier); };
  // Tokens of `r` (ascending, merged ranges) owned on another node than `node`.
  auto off_node = [&](const std::vector<Range>& ranges, int node) {
    int64_t n = 0;
    for (const Range& r : ranges) {
      for (int64_t t = r.start; t < r.end;) {
        const size_t u = unit_of(rp, t);
        const int64_t e = std::min(r.end, rp.units[u].end);
        if (owner[u] / rpn != node) n += e - t;
        t = e;
      }
    }
    return n;
  };
  const bool one_node = p.cp / rpn == 1;  // nothing is off-node: skip the walks over every range
  int64_t remote = 0, flat_inter = 0, bound_inter = 0;
  for (const RankPlan& rk : p.ranks) {
    remote += rk.remote_kv_tokens;
    if (!one_node) flat_inter += off_node(rk.remote_kv_ranges, rk.rank / rpn);
  }
  for (int n = 0; n < (one_node ? 0 : p.cp / rpn); ++n) {
    std::vector<Range> needed;
    for_each_needed_run(p, n, [&](Range r, const std::vector<int>&) {
      if (!needed.empty() && needed.back().end == r.start) {
        needed.back().end = r.end;
      } else {
        needed.push_back(r);
      }
    });
    bound_inter += off_node(needed, n);
  }
  p.tier_bound = TierBytes{bytes(remote - bound_inter), bytes(bound_inter)};
  p.tier_flat = TierBytes{bytes(remote - flat_inter), bytes(flat_inter)};
  p.tier_volume = TierBytes{};
  for (const Transfer& t : p.transfers) {
    if (t.src == t.dst) continue;
    int64_t& tier = t.src / rpn == t.dst / rpn ? p.tier_volume.intra_node : p.tier_volume.inter_node;
    tier = checked_add(tier, bytes(t.tokens), kTier);
  }
}

}  // namespace magi::detail
