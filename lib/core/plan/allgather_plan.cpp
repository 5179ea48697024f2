// allgather (plan.h): zigzag dispatch; stage 1 holds every other rank's host buffer, dK/dV go
// back by reduce-scatter.
#include "core/plan/comm_volume.h"
#include "core/plan/planner.h"
#include "core/plan/rank_layout.h"

namespace magi {

Plan build_allgather_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level) {
  if (std::string why = skip_reason(Strategy::allgather, c); !why.empty()) {
    return detail::skipped_plan(c, Strategy::allgather, why);
  }
  std::vector<std::vector<AttnSlice>> pieces;
  Plan p = detail::zigzag_dispatch(mask, c, Strategy::allgather, pieces);
  const int cp = p.cp;
  p.overlap_degree = cp > 1 ? 1 : 0;
  p.volume = allgather_volume(cp, p.total_tokens, p.model, dtype_bytes(p.model.dtype));
  detail::fill_rank_bytes(p);
  if (level == PlanDetail::outline) return p;
  for (int r = 0; r < cp; ++r) {
    RankPlan& rk = p.ranks[static_cast<size_t>(r)];
    rk.stages.assign(static_cast<size_t>(p.overlap_degree) + 1, Stage{});
    rk.stages[0].kv_ranges = rk.q_ranges;
    std::vector<detail::StageKeyRange> keys = detail::host_key_ranges(rk);
    if (cp > 1) {
      Stage& st = rk.stages[1];
      for (int j = 0; j < cp; ++j) {
        if (j == r) continue;
        const auto& src = p.ranks[static_cast<size_t>(j)].q_ranges;
        st.kv_ranges.insert(st.kv_ranges.end(), src.begin(), src.end());
        p.transfers.push_back(Transfer{1, j, r, src, total_size(src)});
      }
      detail::add_stage_key_ranges(keys, st.kv_ranges, 1);
    }
    detail::fill_stage_slices(rk, pieces[static_cast<size_t>(r)], std::move(keys));
  }
  detail::sort_transfers(p);
  return p;
}

}  // namespace magi
