// ulysses (plan.h): contiguous shards; an all-to-all turns them into head shards over the whole
// sequence, so every rank computes the whole mask on Hq / cp query heads.
#include "core/base/error.h"
#include "core/plan/clip.h"
#include "core/plan/comm_volume.h"
#include "core/plan/planner.h"
#include "core/plan/rank_layout.h"

namespace magi {

Plan build_ulysses_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level) {
  if (std::string why = skip_reason(Strategy::ulysses, c); !why.empty()) {
    return detail::skipped_plan(c, Strategy::ulysses, why);
  }
  Plan p = detail::plan_header(c, Strategy::ulysses);
  const int cp = p.cp;
  const int64_t S = c.total_tokens;
  p.chunk_tokens = S / cp;
  p.num_units = cp;
  p.short_last_unit = false;
  std::vector<AttnSlice> slices = tight_slices(mask);  // the keys and rows actually seen
  const int64_t area = mask_area(slices);
  const int hpr = c.model.heads_q / cp;
  p.ranks.assign(static_cast<size_t>(cp), RankPlan{});
  int64_t assigned = 0;
  for (int r = 0; r < cp; ++r) {
    RankPlan& rk = p.ranks[static_cast<size_t>(r)];
    rk.rank = r;
    rk.units = {r};
    rk.q_ranges = {Range{r * S / cp, (r + 1) * S / cp}};
    rk.tokens = rk.q_ranges[0].size();
    rk.head_begin = r * hpr;
    rk.head_end = (r + 1) * hpr;
    // Share of head-work: area x hpr / Hq = area / cp, remainder to the first ranks.
    rk.area = area / cp + (r < area % cp ? 1 : 0);
    assigned += rk.area;
    rk.remote_kv_ranges = detail::subtract_ranges({Range{0, S}}, rk.q_ranges);
    rk.remote_kv_tokens = total_size(rk.remote_kv_ranges);
  }
  MAGI_CHECK(assigned == area, "ulysses area split {} != {}", assigned, area);
  detail::fill_balance(p);
  p.volume = ulysses_volume(cp, S, p.model, dtype_bytes(p.model.dtype));
  detail::fill_rank_bytes(p);
  // The zero-redundancy bound of its contiguous dispatch, for comparison.
  int64_t remote = 0;
  {
    const RowPieces rp = split_rows(mask, [&] {
      std::vector<Range> u;
      for (const RankPlan& rk : p.ranks) u.push_back(rk.q_ranges[0]);
      return u;
    }());
    for (size_t r = 0; r < p.ranks.size(); ++r) {
      std::vector<Range> k;
      for (size_t i = rp.offsets[r]; i < rp.offsets[r + 1]; ++i) k.push_back(rp.pieces[i].k);
      remote += total_size(detail::subtract_ranges(merge_ranges(std::move(k)), p.ranks[r].q_ranges));
    }
  }
  p.zero_redundancy_bound = magi_volume(remote, p.model, dtype_bytes(p.model.dtype));
  if (level == PlanDetail::outline) return p;
  for (RankPlan& rk : p.ranks) {
    Stage st;
    st.kv_ranges = {Range{0, S}};
    st.slices = slices;
    st.area = area;
    rk.stages.push_back(std::move(st));
  }
  for (int src = 0; src < cp; ++src) {
    for (int dst = 0; dst < cp; ++dst) {
      if (src == dst) continue;
      const RankPlan& s = p.ranks[static_cast<size_t>(src)];
      p.transfers.push_back(Transfer{0, src, dst, s.q_ranges, s.tokens});
    }
  }
  return p;
}

}  // namespace magi
