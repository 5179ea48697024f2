// Building plans (DESIGN.md §3): magi (balanced dispatch, zero-redundant GroupCast/GroupReduce,
// multi-stage overlap) and the baselines ring, ulysses and allgather, all as the same Plan value
// (core/plan/plan.h documents each strategy's representation). Pure functions, single-threaded.
// Each strategy's builder has its own file (core/plan/<strategy>_plan.cpp); what they share is in
// core/plan/rank_layout.h, the bytes in core/plan/comm_volume.h, the overlap estimate in
// core/cost/cost_model.h.
#pragma once

#include "core/base/slice.h"
#include "core/plan/adaptive_dispatch.h"
#include "core/plan/plan.h"
#include "core/workload/workload.h"

#include <string>
#include <vector>

namespace magi {

// How much of a plan to build. `outline`: header, dispatch, balance, overlap degree, volumes and
// per-rank bytes, without stages and transfers. For ring, allgather and ulysses those are cp x cp
// while their bytes are closed forms of the dispatch, so an outline costs O(cp + mask) instead of
// O(cp^2). magi's bytes come from its transfers: its outline is the full plan.
enum class PlanDetail { full, outline };

// The plan of `c.parallel.strategy` for `mask` (global slices over c.total_tokens tokens).
// A case the strategy cannot run is a Plan with skipped = true and a reason, never a throw.
// Byte figures that do not fit in int64 throw ConfigError (core/plan/comm_volume.h).
Plan build_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level = PlanDetail::full);
Plan build_magi_plan(const std::vector<AttnSlice>& mask, const Case& c);
Plan build_ring_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level = PlanDetail::full);
Plan build_ulysses_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level = PlanDetail::full);
Plan build_allgather_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level = PlanDetail::full);
// c.parallel.heads > 1: the context strategy's plan over cp groups with heads = h and the volume
// split by dimension (plan.h, "Hybrid"; core/plan/hybrid_plan.h). build_plan calls it.
Plan build_hybrid_plan(const std::vector<AttnSlice>& mask, const Case& c, PlanDetail level = PlanDetail::full);

// chunk_tokens `auto` (magi; parallel.chunk_tokens = 0): the sizes kSplitTileTokens x 2^j up to
// kMaxAutoChunkTokens that give at least cp chunks, each through the adaptive dispatch
// (core/plan/adaptive_dispatch.h) and the cost model of `overlap_degree: auto` (the slowest rank's
// forward estimate at its best degree, at parallel.compute_tflops and comm_gbps). Finer chunks
// balance better and move more K/V; the estimate weighs the two. chosen_chunk_tokens: the fastest
// (ties: the larger chunk), 0 when there is no candidate.
inline constexpr int64_t kMaxAutoChunkTokens = 4096;
std::vector<ChunkCandidate> chunk_candidates(const std::vector<AttnSlice>& mask, const Case& c);
int64_t chosen_chunk_tokens(const std::vector<ChunkCandidate>& candidates);

// Why `strategy` cannot run case `c` ("" when it can).
std::string skip_reason(Strategy strategy, const Case& c);

// ---- Comparing strategies on one case ----
struct StrategySummary {
  Strategy strategy = Strategy::magi;
  bool skipped = false;
  std::string skip_reason;
  CommVolume volume;
  CommVolume own_bound;       // zero-redundancy bound of this strategy's own dispatch
  int64_t max_rank_area = 0;
  double imbalance = 1.0;
  int stages = 0;             // stages per rank (0 when skipped)
};
// The summary of a plan, full or outline.
StrategySummary strategy_summary(const Plan& plan);
// Every strategy's summary for the case (c.parallel.strategy ignored), from outlines: ring,
// allgather and ulysses cost O(cp + mask) whatever cp.
std::vector<StrategySummary> compare_strategies(const std::vector<AttnSlice>& mask, const Case& c);

}  // namespace magi
