#include "core/plan/magi_dispatch.h"

#include "core/plan/clip.h"
#include "core/plan/comm_volume.h"
#include "core/plan/rank_layout.h"

#include <algorithm>
#include <map>

namespace magi::detail {

namespace {

MagiDispatch from_dispatch(AdaptiveDispatch dispatch, const Case& c, int64_t chunk_tokens) {
  MagiDispatch md;
  Plan& p = md.plan;
  p = plan_header(c, Strategy::magi);
  p.chunk_tokens = chunk_tokens;
  md.dispatch = std::move(dispatch);
  const AdaptiveDispatch& d = md.dispatch;
  fill_ranks(p, d.units, d.owner);
  p.short_last_unit = c.total_tokens % chunk_tokens != 0;
  p.split_chunks = d.split_chunks;
  p.indivisible_area = d.indivisible_area;
  std::map<int64_t, int64_t> sizes;
  for (const Range& u : d.units.units) ++sizes[u.size()];
  for (const auto& [tokens, count] : sizes) p.unit_sizes.push_back(UnitSizeCount{tokens, count});
  fill_balance(p);
  md.pieces = fill_remote(p, d.units);
  return md;
}

DispatchPrice price(const Plan& p, const ForwardEstimate& e) {
  return DispatchPrice{p.split_chunks, p.imbalance, p.zero_redundancy_bound.fwd_bytes, e.seconds, e.overlap_degree};
}

}  // namespace

MagiDispatch magi_dispatch(const std::vector<AttnSlice>& mask, const Case& c, int64_t chunk_tokens) {
  return from_dispatch(adaptive_dispatch(mask, c.total_tokens, chunk_tokens, c.parallel.cp, c.parallel.solver), c,
                       chunk_tokens);
}

GatedDispatch gated_dispatch(const std::vector<AttnSlice>& mask, const Case& c, int64_t chunk_tokens) {
  GatedDispatch g;
  g.md = magi_dispatch(mask, c, chunk_tokens);
  const CostRates rates{c.parallel.compute_tflops, c.parallel.comm_gbps};
  ForwardEstimate e = forward_estimate(stage_costs(g.md.plan, g.md.pieces), rates);
  g.fixed_imbalance = g.md.plan.imbalance;
  g.fixed_bound = g.md.plan.zero_redundancy_bound;
  if (g.md.plan.split_chunks > 0) {
    AdaptiveDispatch d = g.md.dispatch;
    d.units = d.chunks;
    d.owner = d.chunk_owner;
    d.split_chunks = 0;
    MagiDispatch fixed = from_dispatch(std::move(d), c, chunk_tokens);
    g.fixed_imbalance = fixed.plan.imbalance;
    g.fixed_bound = fixed.plan.zero_redundancy_bound;
    const ForwardEstimate f = forward_estimate(stage_costs(fixed.plan, fixed.pieces), rates);
    g.gate = CutGate{true, rates.compute_tflops, rates.comm_gbps, price(g.md.plan, e), price(fixed.plan, f)};
    if (f.seconds < e.seconds) {
      g.md = std::move(fixed);
      e = f;
      g.cuts_declined = true;
    }
  }
  g.forward_s = e.seconds;
  g.overlap_degree = e.overlap_degree;
  return g;
}

std::vector<RankStageCost> stage_costs(const Plan& p, const std::vector<std::vector<AttnSlice>>& pieces) {
  const ModelShape& m = p.model;
  const double kv = static_cast<double>(kv_bytes_per_token(m, dtype_bytes(m.dtype)));
  std::vector<RankStageCost> costs(p.ranks.size());
  std::vector<AttnSlice> tmp;
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    const RankPlan& rk = p.ranks[r];
    int64_t host_area = 0;
    for (const AttnSlice& s : pieces[r]) {
      auto it = std::upper_bound(rk.q_ranges.begin(), rk.q_ranges.end(), s.k.start,
                                 [](int64_t t, const Range& x) { return t < x.end; });
      for (; it != rk.q_ranges.end() && it->start < s.k.end; ++it) {
        tmp.clear();
        clip_slice_into(s, s.q, *it, tmp);
        for (const AttnSlice& x : tmp) host_area += slice_area(x);
      }
    }
    costs[r] = RankStageCost{attention_fwd_flops(host_area, m.head_dim, m.heads_q),
                             attention_fwd_flops(rk.area - host_area, m.head_dim, m.heads_q),
                             static_cast<double>(rk.remote_kv_tokens) * kv};
  }
  return costs;
}

ForwardEstimate forward_estimate(const std::vector<RankStageCost>& costs, const CostRates& rates) {
  ForwardEstimate e;
  e.overlap_degree = choose_overlap_degree(costs, rates);
  for (const RankStageCost& r : costs) e.seconds = std::max(e.seconds, estimate_rank_time_s(r, e.overlap_degree, rates));
  return e;
}

}  // namespace magi::detail
