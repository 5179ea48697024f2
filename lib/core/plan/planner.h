// Building plans (DESIGN.md §3): magi (balanced dispatch, zero-redundant GroupCast/GroupReduce,
// multi-stage overlap) and the baselines ring, ulysses and allgather, all as the same Plan value
// (core/plan/plan.h documents each strategy's representation). Pure functions, single-threaded.
#pragma once

#include "core/base/slice.h"
#include "core/plan/plan.h"
#include "core/workload/workload.h"

#include <string>
#include <vector>

namespace magi {

// The plan of `c.parallel.strategy` for `mask` (global slices over c.total_tokens tokens).
// A case the strategy cannot run is a Plan with skipped = true and a reason, never a throw.
Plan build_plan(const std::vector<AttnSlice>& mask, const Case& c);
Plan build_magi_plan(const std::vector<AttnSlice>& mask, const Case& c);
Plan build_ring_plan(const std::vector<AttnSlice>& mask, const Case& c);
Plan build_ulysses_plan(const std::vector<AttnSlice>& mask, const Case& c);
Plan build_allgather_plan(const std::vector<AttnSlice>& mask, const Case& c);

// Why `strategy` cannot run case `c` ("" when it can).
std::string skip_reason(Strategy strategy, const Case& c);

// Closed forms of plan.h's CommVolume table (fwd and bwd; max_rank_fwd_bytes left 0).
CommVolume ring_volume(const Case& c);
CommVolume ulysses_volume(const Case& c);
CommVolume allgather_volume(const Case& c);
// Bytes of K and V for one token: 2 x Hkv x D x dtype_bytes.
int64_t kv_bytes_per_token(const ModelShape& m);

// ---- Overlap degree (`auto`) ----
// What the cost estimate needs of one rank.
struct RankStageCost {
  int64_t host_area = 0;      // pairs computed on host KV
  int64_t remote_area = 0;    // pairs computed on remote KV
  int64_t remote_tokens = 0;  // remote KV tokens received
};
inline constexpr int kMaxOverlapDegree = 8;
inline constexpr double kStageCommLatencyS = 20e-6;    // per stage all-to-all-v latency
inline constexpr double kStageComputeOverheadS = 5e-6;  // per stage kernel launch and tail
// Estimated forward time of one rank with `degree` remote stages of equal size (seconds).
double estimate_rank_time_s(const RankStageCost& r, int degree, const ModelShape& m, const ParallelSpec& p);
// The degree in [1, kMaxOverlapDegree] minimising the slowest rank's estimate (ties: smallest).
int choose_overlap_degree(const std::vector<RankStageCost>& ranks, const ModelShape& m, const ParallelSpec& p);

// ---- Comparing strategies on one case ----
struct StrategySummary {
  Strategy strategy = Strategy::magi;
  bool skipped = false;
  std::string skip_reason;
  CommVolume volume;
  CommVolume own_bound;       // zero-redundancy bound of this strategy's own dispatch
  int64_t max_rank_area = 0;
  double imbalance = 1.0;
  int stages = 0;             // stages per rank
};
StrategySummary summarize(const Plan& plan);
// Builds the plan of every strategy for the case (c.parallel.strategy ignored).
std::vector<StrategySummary> compare_strategies(const std::vector<AttnSlice>& mask, const Case& c);

}  // namespace magi
