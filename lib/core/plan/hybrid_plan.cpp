// hybrid (plan.h, "Hybrid"): the context strategy's plan over cp groups, the head dimension's
// all-to-alls inside them, and each world rank's part.
#include "core/plan/hybrid_plan.h"

#include "core/base/checked.h"
#include "core/base/error.h"
#include "core/plan/planner.h"
#include "core/plan/rank_layout.h"

#include <algorithm>

namespace magi {

namespace {

constexpr const char* kTotal = "hybrid bytes (head all-to-all + context strategy)";

CommVolume sum(const CommVolume& a, const CommVolume& b) {
  return CommVolume{checked_add(a.fwd_bytes, b.fwd_bytes, kTotal), checked_add(a.bwd_bytes, b.bwd_bytes, kTotal), 0};
}

}  // namespace

std::string hybrid_skip_reason(Strategy strategy, const Case& c) {
  const int h = c.parallel.heads;
  if (strategy != Strategy::magi && strategy != Strategy::ring) {
    return fmt::format("parallel.heads = {} > 1 runs magi or ring between groups, not {}", h, to_string(strategy));
  }
  if (c.model.heads_kv % h != 0) return fmt::format("heads_kv = {} not divisible by heads = {}", c.model.heads_kv, h);
  if (c.model.heads_q % h != 0) return fmt::format("heads_q = {} not divisible by heads = {}", c.model.heads_q, h);
  return "";
}

Plan build_hybrid_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level) {
  const int h = c.parallel.heads;
  MAGI_CHECK(h > 1, "build_hybrid_plan with heads = {}", h);
  if (std::string why = skip_reason(c.parallel.strategy, c); !why.empty()) {
    Plan p = detail::skipped_plan(c, c.parallel.strategy, why);
    p.heads = h;
    return p;
  }
  Case ctx = c;
  ctx.parallel.heads = 1;
  Plan p = build_plan(mask, ctx, level);
  p.heads = h;
  if (p.skipped) return p;
  const int eb = dtype_bytes(p.model.dtype);
  p.context_volume = p.volume;
  p.context_volume.max_rank_fwd_bytes = 0;
  p.head_volume = ulysses_volume(h, p.total_tokens, p.model, eb);
  p.volume = sum(p.head_volume, p.context_volume);
  const HybridBytes b = hybrid_planned_bytes(p, eb);
  for (size_t w = 0; w < b.head.fwd.size(); ++w) {
    p.head_volume.max_rank_fwd_bytes = std::max(p.head_volume.max_rank_fwd_bytes, b.head.fwd[w].sent);
    p.context_volume.max_rank_fwd_bytes = std::max(p.context_volume.max_rank_fwd_bytes, b.context.fwd[w].sent);
    p.volume.max_rank_fwd_bytes =
        std::max(p.volume.max_rank_fwd_bytes, checked_add(b.head.fwd[w].sent, b.context.fwd[w].sent, kTotal));
  }
  return p;
}

int world_size(const Plan& plan) { return plan.cp * plan.heads; }

HybridRank hybrid_rank(const Plan& plan, int world_rank) {
  const int h = plan.heads;
  MAGI_CHECK(world_rank >= 0 && world_rank < world_size(plan), "world rank {} of {}", world_rank, world_size(plan));
  HybridRank x;
  x.group = world_rank / h;
  x.head = world_rank % h;
  const RankPlan& g = plan.ranks.at(static_cast<size_t>(x.group));
  x.rows = Range{g.tokens * x.head / h, g.tokens * (x.head + 1) / h};
  x.tokens = x.rows.size();
  int64_t row = 0;
  for (const Range& r : g.q_ranges) {  // the host buffer is the q_ranges in order
    const int64_t b = std::max(row, x.rows.start), e = std::min(row + r.size(), x.rows.end);
    if (b < e) x.ranges.push_back(Range{r.start + (b - row), r.start + (e - row)});
    row += r.size();
  }
  x.area = g.area / h + (x.head < g.area % h ? 1 : 0);
  const int hq = plan.model.heads_q / h, hkv = plan.model.heads_kv / h;
  x.heads = HeadSplit{x.head * hq, (x.head + 1) * hq, x.head * hkv, (x.head + 1) * hkv};
  return x;
}

std::vector<Range> hosted_ranges(const Plan& plan, int world_rank) {
  if (plan.heads == 1) return plan.ranks.at(static_cast<size_t>(world_rank)).q_ranges;
  return hybrid_rank(plan, world_rank).ranges;
}

Plan head_slice_plan(const Plan& plan) {
  Plan p = plan;
  const int h = plan.heads;
  p.heads = 1;
  p.model.heads_q /= h;
  p.model.heads_kv /= h;
  p.head_volume = p.context_volume = CommVolume{};
  const int eb = dtype_bytes(p.model.dtype);
  const PlannedBytes b = planned_bytes(p, eb);
  p.volume = CommVolume{};
  p.zero_redundancy_bound.fwd_bytes /= h;
  p.zero_redundancy_bound.bwd_bytes /= h;
  p.zero_redundancy_bound.max_rank_fwd_bytes /= h;
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    p.ranks[r].send_bytes_fwd = b.fwd[r].sent;
    p.ranks[r].recv_bytes_fwd = b.fwd[r].received;
    p.volume.fwd_bytes += b.fwd[r].sent;
    p.volume.bwd_bytes += b.bwd[r].sent;
    p.volume.max_rank_fwd_bytes = std::max(p.volume.max_rank_fwd_bytes, b.fwd[r].sent);
  }
  return p;
}

}  // namespace magi
