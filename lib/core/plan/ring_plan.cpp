// ring (plan.h): zigzag dispatch; every rank's host buffer travels cp - 1 hops around the ring,
// one stage per hop.
#include "core/plan/comm_volume.h"
#include "core/plan/planner.h"
#include "core/plan/rank_layout.h"

namespace magi {

Plan build_ring_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level) {
  if (std::string why = skip_reason(Strategy::ring, c); !why.empty()) {
    return detail::skipped_plan(c, Strategy::ring, why);
  }
  std::vector<std::vector<AttnSlice>> pieces;
  Plan p = detail::zigzag_dispatch(mask, c, Strategy::ring, pieces);
  const int cp = p.cp;
  p.overlap_degree = cp - 1;
  p.volume = ring_volume(cp, p.total_tokens, p.model, dtype_bytes(p.model.dtype));
  detail::fill_rank_bytes(p);
  if (level == PlanDetail::outline) return p;
  for (int r = 0; r < cp; ++r) {
    RankPlan& rk = p.ranks[static_cast<size_t>(r)];
    rk.stages.assign(static_cast<size_t>(cp), Stage{});
    std::vector<detail::StageKeyRange> keys;
    for (int s = 0; s < cp; ++s) {
      const int j = ((r - s) % cp + cp) % cp;
      Stage& st = rk.stages[static_cast<size_t>(s)];
      st.kv_ranges = p.ranks[static_cast<size_t>(j)].q_ranges;
      detail::add_stage_key_ranges(keys, st.kv_ranges, s);
      if (s > 0) {
        p.transfers.push_back(Transfer{s, ((r - 1) % cp + cp) % cp, r, st.kv_ranges, total_size(st.kv_ranges)});
      }
    }
    detail::fill_stage_slices(rk, pieces[static_cast<size_t>(r)], std::move(keys));
  }
  detail::sort_transfers(p);
  return p;
}

}  // namespace magi
