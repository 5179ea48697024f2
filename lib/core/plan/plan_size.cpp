#include "core/plan/plan_size.h"

#include "core/plan/adaptive_dispatch.h"

#include <fmt/format.h>

namespace magi {

namespace {

std::string gigabytes(int64_t bytes) { return fmt::format("{:.1f} GB", static_cast<double>(bytes) / 1e9); }

}  // namespace

PlanSizeEstimate estimate_plan_size(const Case& c) {
  const int64_t cp = c.parallel.cp;
  PlanSizeEstimate e;
  switch (c.parallel.strategy) {
    case Strategy::magi: {
      // Adaptive dispatch may cut chunks into tiles, and auto may pick the finest candidate: the
      // bound counts chunks at the given size (cuts are bounded by the balance they need).
      const int64_t chunk = c.parallel.chunk_tokens > 0 ? c.parallel.chunk_tokens : kSplitTileTokens;
      e.units = (c.total_tokens + chunk - 1) / chunk;
      break;
    }
    case Strategy::ring:
    case Strategy::allgather:
      e.units = 2 * cp;
      e.rank_pairs = cp * cp;
      break;
    case Strategy::ulysses:
      e.units = cp;
      e.rank_pairs = cp * cp;
      break;
  }
  // units <= 2^31 and cp <= 2^20 (workload limits): no overflow.
  e.bytes = e.units * kPlanBytesPerUnit + e.rank_pairs * kPlanBytesPerRankPair;
  return e;
}

std::string plan_size_excess(const Case& c) {
  const PlanSizeEstimate e = estimate_plan_size(c);
  if (e.bytes <= kMaxPlanBytes) return "";
  const std::string strategy(to_string(c.parallel.strategy));
  if (e.rank_pairs * kPlanBytesPerRankPair > e.units * kPlanBytesPerUnit) {
    return fmt::format("parallel.cp = {}: the {} plan holds cp x cp = {} rank pairs (stages and messages), "
                       "about {} (more than {}); lower parallel.cp, or pass --allow-large",
                       c.parallel.cp, strategy, e.rank_pairs, gigabytes(e.bytes), gigabytes(kMaxPlanBytes));
  }
  return fmt::format("parallel.chunk_tokens = {}: {} chunks of total_tokens = {}, a {} plan of about {} "
                     "(more than {}); raise parallel.chunk_tokens, or pass --allow-large",
                     c.parallel.chunk_tokens, e.units, c.total_tokens, strategy, gigabytes(e.bytes),
                     gigabytes(kMaxPlanBytes));
}

}  // namespace magi
