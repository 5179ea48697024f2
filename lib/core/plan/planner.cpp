#include "core/plan/planner.h"

#include "core/base/error.h"
#include "core/plan/hybrid_plan.h"

namespace magi {

std::string skip_reason(Strategy strategy, const Case& c) {
  const int cp = c.parallel.cp;
  const int64_t S = c.total_tokens;
  if (cp < 1) return fmt::format("cp = {} < 1", cp);
  if (c.parallel.heads > 1) {
    if (std::string why = hybrid_skip_reason(strategy, c); !why.empty()) return why;
  }
  switch (strategy) {
    case Strategy::magi: {
      const int64_t ct = c.parallel.chunk_tokens;
      if (ct == 0) {  // auto: the finest candidate must give every rank a chunk
        if ((S + kSplitTileTokens - 1) / kSplitTileTokens < cp) {
          return fmt::format("chunk_tokens auto: S = {} gives fewer than cp = {} chunks even of {} tokens", S, cp,
                             kSplitTileTokens);
        }
        return "";
      }
      if (ct < 1) return fmt::format("chunk_tokens = {} < 1", ct);
      const int64_t n = (S + ct - 1) / ct;
      if (n < cp) {
        return fmt::format("{} chunks of {} tokens for cp = {}: fewer chunks than ranks (lower chunk_tokens)",
                           n, ct, cp);
      }
      return "";
    }
    case Strategy::ring:
    case Strategy::allgather:
      if (S < 2LL * cp) return fmt::format("S = {} < 2 x cp = {}: zigzag needs two blocks per rank", S, 2 * cp);
      return "";
    case Strategy::ulysses:
      if (cp > c.model.heads_kv) return fmt::format("cp = {} > heads_kv = {}", cp, c.model.heads_kv);
      if (c.model.heads_kv % cp != 0) return fmt::format("heads_kv = {} not divisible by cp = {}", c.model.heads_kv, cp);
      if (c.model.heads_q % cp != 0) return fmt::format("heads_q = {} not divisible by cp = {}", c.model.heads_q, cp);
      if (S < cp) return fmt::format("S = {} < cp = {}", S, cp);
      return "";
  }
  return "";
}

Plan build_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level) {
  for (const AttnSlice& s : mask) {
    MAGI_CHECK(s.q.start >= 0 && s.q.end <= c.total_tokens && s.k.start >= 0 && s.k.end <= c.total_tokens,
               "slice {} outside [0, {})", s, c.total_tokens);
  }
  if (c.parallel.heads > 1) return build_hybrid_plan(mask, c, level);
  switch (c.parallel.strategy) {
    case Strategy::magi: return build_magi_plan(mask, c);
    case Strategy::ring: return build_ring_plan(mask, c, level);
    case Strategy::ulysses: return build_ulysses_plan(mask, c, level);
    case Strategy::allgather: return build_allgather_plan(mask, c, level);
  }
  return build_magi_plan(mask, c);
}

StrategySummary strategy_summary(const Plan& plan) {
  StrategySummary s;
  s.strategy = plan.strategy;
  s.skipped = plan.skipped;
  s.skip_reason = plan.skip_reason;
  s.volume = plan.volume;
  s.own_bound = plan.zero_redundancy_bound;
  s.max_rank_area = plan.max_rank_area;
  s.imbalance = plan.imbalance;
  s.stages = plan.skipped ? 0 : plan.overlap_degree + 1;  // the host (or only) stage + the remote ones
  return s;
}

std::vector<StrategySummary> compare_strategies(const std::vector<AttnSlice>& mask, const Case& c) {
  std::vector<StrategySummary> out;
  for (Strategy s : {Strategy::magi, Strategy::ring, Strategy::ulysses, Strategy::allgather}) {
    Case cs = c;
    cs.parallel.strategy = s;
    out.push_back(strategy_summary(build_plan(mask, cs, PlanDetail::outline)));
  }
  return out;
}

}  // namespace magi
