// magi (plan.h): chunks (adaptive: the heavy ones cut into tiles; chunk_tokens auto: the size the
// cost model prefers) dispatched by the solver, remote KV received exactly once per rank in
// overlap_degree stages (GroupCast), dK/dV sent back the same way (GroupReduce).
#include "common/slice_band.h"
#include "core/base/error.h"
#include "core/cost/cost_model.h"
#include "core/plan/clip.h"
#include "core/plan/comm_volume.h"
#include "core/plan/magi_dispatch.h"
#include "core/plan/node_routing.h"
#include "core/plan/planner.h"
#include "core/plan/rank_layout.h"

#include <algorithm>
#include <utility>

namespace magi {
namespace {

// How many rows a stage boundary at key y splits: rows that see a key below y and a key at or above
// it, each then computed in two stages and merged. In one slice both are runs of rows, as band_lo
// and band_hi never decrease with the row (kernels/common/slice_band.h); a row may get them from
// different slices (a shared question's keys and its document's).
int64_t rows_split_at(const std::vector<AttnSlice>& mask, int64_t y) {
  std::vector<Range> below, above;
  for (const AttnSlice& sl : mask) {
    const kernels::KernelSlice ks = to_kernel_slice(sl);
    const kernels::RowRun<int64_t> run = kernels::nonempty_rows(ks.type, ks.q_start, ks.q_end, ks.k_start, ks.k_end);
    const Range keyed{run.first, std::max(run.first, run.end)};
    // band_lo(q) < y, band_hi(q) > y
    const int64_t below_end = kernels::band_has_lower_diagonal(ks.type) ? sl.q.start + (y - sl.k.start)
                                                                          : (sl.k.start < y ? sl.q.end : sl.q.start);
    const int64_t above_start = kernels::band_has_upper_diagonal(ks.type) ? sl.q.end - sl.k.end + y
                                                                            : (sl.k.end > y ? sl.q.start : sl.q.end);
    below.push_back(intersect(keyed, Range{sl.q.start, below_end}));
    above.push_back(intersect(keyed, Range{above_start, sl.q.end}));
  }
  below = merge_ranges(std::move(below));
  above = merge_ranges(std::move(above));
  int64_t n = 0;
  for (size_t i = 0, j = 0; i < below.size() && j < above.size();) {
    n += intersect(below[i], above[j]).size();
    if (below[i].end < above[j].end) ++i; else ++j;
  }
  return n;
}

// Where the keys are cut into `stages` local stages at cp 1 (cut[0] = 0, cut[stages] = tokens):
// nearly equal runs of keys, each inner cut then moved to the slice boundary (a document's end)
// between the cut before it and the next equal cut that splits the fewest rows (the nearest of
// those), if that is fewer than the equal cut splits. A split row is computed in two stages and
// merged, and each item a cut adds costs 3-5 us on an H100 (32k varlen causal forward at 5
// stages: 313 items a head with equal cuts, 266 at document ends, as in one launch;
// results/runtime/NOTES.md). Stages need not be balanced at cp 1: nothing overlaps them. Only the
// kCutCandidates boundaries nearest the equal cut are counted, each count walking every slice:
// counting all of them planned 16M tokens of documents at cp 1, degree 4, in 4.3 s (61 ms so,
// 65 ms with equal cuts). A cut left inside a slice moves to the nearest tile boundary
// (kSplitTileTokens) of the widest slice whose keys it falls inside: the kernels tile a slice's
// keys from its start, so a cut inside a tile has them visit that tile in both stages, each time
// in part and masked (at 5 stages of 32k, 1.6% more forward tiles on the full mask). A cut no
// slice straddles stays; so do all of them when the tile boundaries would not leave every stage a
// key. Equal keys rather than equal area: on a causal mask, stages of equal area ran the forward
// 1-3% slower on an H100 (more of them hold many rows, so more row epilogues:
// results/runtime/NOTES.md).
constexpr int kCutCandidates = 32;
std::vector<int64_t> local_stage_cuts(const std::vector<AttnSlice>& mask, int64_t tokens, int stages) {
  const auto at = [](int s) { return static_cast<size_t>(s); };
  std::vector<int64_t> exact(at(stages) + 1);
  for (int s = 0; s <= stages; ++s) exact[at(s)] = tokens * s / stages;
  std::vector<int64_t> edges;  // the slices' key boundaries, sorted
  for (const AttnSlice& sl : mask) edges.insert(edges.end(), {sl.k.start, sl.k.end});
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  std::vector<int64_t> moved = exact;  // strictly increasing: each lies between its neighbours' bounds
  for (int s = 1; s < stages; ++s) {
    const int64_t x = exact[at(s)];
    int64_t fewest = rows_split_at(mask, x);
    // The candidates nearest x first (the lower of two as near), at most kCutCandidates of them,
    // until one splits no row: each count walks every slice.
    auto lo = std::upper_bound(edges.begin(), edges.end(), moved[at(s - 1)]);
    auto hi = std::lower_bound(lo, edges.end(), exact[at(s + 1)]);
    auto below = std::lower_bound(lo, hi, x), above = below;  // [below, above): visited
    for (int tried = 0; fewest > 0 && tried < kCutCandidates && (below != lo || above != hi); ++tried) {
      const bool take_below = above == hi || (below != lo && x - *std::prev(below) <= *above - x);
      const int64_t e = take_below ? *--below : *above++;
      const int64_t n = rows_split_at(mask, e);
      if (n < fewest) {  // the equal cut, then the nearer, keeps its ties
        moved[at(s)] = e;
        fewest = n;
      }
    }
  }
  std::vector<int64_t> cut = moved;
  for (int s = 1; s < stages; ++s) {
    const int64_t x = moved[at(s)];
    const AttnSlice* widest = nullptr;
    for (const AttnSlice& sl : mask) {
      if (sl.k.start < x && x < sl.k.end && (widest == nullptr || sl.k.size() > widest->k.size())) widest = &sl;
    }
    if (widest == nullptr) continue;
    const int64_t ks = widest->k.start;
    cut[at(s)] = ks + (x - ks + kSplitTileTokens / 2) / kSplitTileTokens * kSplitTileTokens;
  }
  for (int s = 1; s <= stages; ++s) {
    if (cut[at(s)] <= cut[at(s - 1)]) return moved;
  }
  return cut;
}

}  // namespace

Plan build_magi_plan(const std::vector<AttnSlice>& mask, const Case& c) {
  if (std::string why = skip_reason(Strategy::magi, c); !why.empty()) {
    return detail::skipped_plan(c, Strategy::magi, why);
  }
  // The cut dispatch, or the same chunks uncut where the cost model prices the cuts slower
  // (magi_dispatch.h); the uncut chunks' balance and bytes for the report either way. chunk_tokens
  // auto hands over the one it chose.
  std::vector<ChunkCandidate> candidates;
  detail::GatedDispatch g;
  if (c.parallel.chunk_tokens == 0) {
    detail::AutoChunk a = detail::auto_chunk(mask, c);
    candidates = std::move(a.candidates);
    g = a.chunk_tokens > 0 ? std::move(a.chosen) : detail::gated_dispatch(mask, c, 0);
  } else {
    g = detail::gated_dispatch(mask, c, c.parallel.chunk_tokens);
  }
  detail::MagiDispatch& md = g.md;
  Plan p = std::move(md.plan);
  p.chunk_candidates = std::move(candidates);
  p.fixed_chunk_imbalance = g.fixed_imbalance;
  p.fixed_chunk_bound = g.fixed_bound;
  p.cuts_declined = g.cuts_declined;
  p.cut_gate = g.gate;
  const int cp = p.cp;
  const RowPieces& rp = md.dispatch.units;
  const std::vector<int>& owner = md.dispatch.owner;
  const std::vector<std::vector<AttnSlice>> pieces = std::move(md.pieces);

  int degree = c.parallel.overlap_degree;
  // At cp 1 nothing is remote and there is nothing to overlap. An explicit overlap_degree d there
  // cuts the rank's keys into d + 1 contiguous stages (local_stage_cuts: nearly equal runs of
  // keys, cut at document ends where that splits fewer rows), computed one after another and
  // merged, with no transfer: what a rank runs at cp > 1 without the communication, so that the
  // runtime's per-stage cost is measured alone (docs/execution.md).
  const bool local_stages = cp == 1 && degree > 0;
  if (local_stages) {
    degree = static_cast<int>(std::min<int64_t>(degree, std::max<int64_t>(p.ranks[0].tokens - 1, 0)));
  } else if (p.zero_redundancy_bound.fwd_bytes == 0) {  // nothing remote anywhere: the host stage only
    degree = 0;
  } else if (degree <= 0) {
    degree = choose_overlap_degree(detail::stage_costs(p, pieces),
                                   CostRates{c.parallel.compute_tflops, c.parallel.comm_gbps});
  }
  p.overlap_degree = degree;
  if (p.cp % p.ranks_per_node != 0) {
    throw ConfigError(fmt::format("parallel.ranks_per_node = {} does not divide parallel.cp = {}",
                                  p.ranks_per_node, p.cp));
  }

  // Messages in order, bytes per rank and tier: the last step of every magi plan.
  auto finish = [&] {
    detail::sort_transfers(p);
    p.volume = p.zero_redundancy_bound;
    detail::fill_rank_bytes(p);
    p.zero_redundancy_bound.max_rank_fwd_bytes = p.volume.max_rank_fwd_bytes;
    detail::fill_tier_bytes(p, rp, owner);
    return std::move(p);
  };
  if (p.cp / p.ranks_per_node > 1 && degree > 0) {
    detail::route_node_aware(p, rp, owner, pieces, degree);
    return finish();
  }
  if (local_stages) {
    RankPlan& rk = p.ranks[0];
    rk.stages.assign(static_cast<size_t>(degree) + 1, Stage{});
    std::vector<detail::StageKeyRange> keys;
    const std::vector<int64_t> cut = local_stage_cuts(mask, rk.tokens, degree + 1);
    for (int s = 0; s <= degree; ++s) {
      const int64_t b = cut[static_cast<size_t>(s)], e = cut[static_cast<size_t>(s) + 1];
      rk.stages[static_cast<size_t>(s)].kv_ranges = {Range{b, e}};
      keys.push_back(detail::StageKeyRange{Range{b, e}, s, 0, s});
    }
    detail::fill_stage_slices(rk, pieces[0], std::move(keys));
    return finish();
  }
  std::vector<std::vector<std::pair<int, Range>>> runs(static_cast<size_t>(degree) + 1);
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    RankPlan& rk = p.ranks[r];
    rk.stages.assign(static_cast<size_t>(degree) + 1, Stage{});
    rk.stages[0].kv_ranges = rk.q_ranges;
    std::vector<detail::StageKeyRange> keys = detail::host_key_ranges(rk);
    // Remote tokens, ascending, cut into `degree` runs of equal token count, each run split at
    // unit boundaries by owner, then grouped by owner ascending.
    const int64_t R = rk.remote_kv_tokens;
    for (auto& run : runs) run.clear();
    int64_t pos = 0;
    auto unit = rp.units.begin();
    for (const Range& rr : rk.remote_kv_ranges) {
      // The unit holding rr.start: remote ranges ascend, so it is never behind the last one.
      unit = std::upper_bound(unit, rp.units.end(), rr.start, [](int64_t x, const Range& u) { return x < u.end; });
      int64_t t = rr.start;
      while (t < rr.end) {
        while (unit->end <= t) ++unit;
        const size_t u = static_cast<size_t>(unit - rp.units.begin());
        const int s = degree > 0 ? static_cast<int>(pos * degree / R) + 1 : 0;
        const int64_t stage_end_pos = (static_cast<int64_t>(s) * R + degree - 1) / degree;  // first pos of stage s + 1
        const int64_t e = std::min({rr.end, unit->end, t + (stage_end_pos - pos)});
        MAGI_CHECK(e > t, "empty remote piece at {}", t);
        auto& run = runs[static_cast<size_t>(s)];
        if (!run.empty() && run.back().first == owner[u] && run.back().second.end == t) {
          run.back().second.end = e;
        } else {
          run.emplace_back(owner[u], Range{t, e});
        }
        pos += e - t;
        t = e;
      }
    }
    for (int s = 1; s <= degree; ++s) {
      auto& run = runs[static_cast<size_t>(s)];
      std::stable_sort(run.begin(), run.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      Stage& st = rk.stages[static_cast<size_t>(s)];
      for (size_t i = 0; i < run.size(); ++i) {
        st.kv_ranges.push_back(run[i].second);
        if (i == 0 || run[i - 1].first != run[i].first) {
          p.transfers.push_back(Transfer{s, run[i].first, rk.rank, {}, 0});
        }
        p.transfers.back().ranges.push_back(run[i].second);
        p.transfers.back().tokens += run[i].second.size();
      }
      detail::add_stage_key_ranges(keys, st.kv_ranges, s);
    }
    detail::fill_stage_slices(rk, pieces[r], std::move(keys));
    // At cp 1 the dispatch is the identity (local = global coordinates): the mask's own slices
    // (made tight), not their cuts at chunk boundaries, which only cost the kernel (a causal
    // mask cut into 512-token chunks ran about 4% slower on an H200 than in one piece).
    if (cp == 1) rk.stages[0].slices = tight_slices(mask);
  }
  return finish();
}

}  // namespace magi
