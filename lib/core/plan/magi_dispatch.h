// magi's dispatch of a case at one chunk size, as far as the cost model needs it, and the cost
// model's forward estimate of it: what build_magi_plan and chunk_tokens `auto` share. Internal to
// core/plan.
#pragma once

#include "core/cost/cost_model.h"
#include "core/plan/adaptive_dispatch.h"
#include "core/plan/plan.h"
#include "core/workload/workload.h"

#include <vector>

namespace magi::detail {

struct MagiDispatch {
  Plan plan;                                   // header, ranks (no stages), balance, zero-redundancy
                                               // bound and the adaptive report (unit sizes, cuts)
  AdaptiveDispatch dispatch;
  std::vector<std::vector<AttnSlice>> pieces;  // per rank: its rows' pieces, global coordinates
};

// The adaptive dispatch of `c` (its cp, solver) at `chunk_tokens`.
MagiDispatch magi_dispatch(const std::vector<AttnSlice>& mask, const Case& c, int64_t chunk_tokens);
// magi's dispatch at `chunk_tokens` as plans use it: the adaptive dispatch, unless the cost model
// (forward_estimate at the case's compute_tflops and comm_gbps) estimates the same chunks uncut
// faster, then those (cuts_declined). Cuts that spread a long document over many ranks can cost
// more in K/V than their balance saves. Also what the uncut chunks give, and both sides as the
// gate priced them (the dispatch not kept included), for the plan's report.
struct GatedDispatch {
  MagiDispatch md;
  double forward_s = 0;  // its forward estimate
  int overlap_degree = 1;
  bool cuts_declined = false;
  double fixed_imbalance = 1.0;
  CommVolume fixed_bound;
  CutGate gate;
};
GatedDispatch gated_dispatch(const std::vector<AttnSlice>& mask, const Case& c, int64_t chunk_tokens);

// chunk_tokens `auto` as build_magi_plan runs it (planner.h, chunk_candidates): every candidate,
// and the gated dispatch of the chosen one, kept from the search so that it is not built twice.
struct AutoChunk {
  std::vector<ChunkCandidate> candidates;
  int64_t chunk_tokens = 0;  // chosen_chunk_tokens(candidates); 0: no candidate, `chosen` empty
  GatedDispatch chosen;
};
AutoChunk auto_chunk(const std::vector<AttnSlice>& mask, const Case& c);

// Each rank's forward work and bytes for the cost model: host-stage flops (pairs whose keys the
// rank hosts), remote flops and remote K/V bytes.
std::vector<RankStageCost> stage_costs(const Plan& p, const std::vector<std::vector<AttnSlice>>& pieces);

// The slowest rank's forward estimate (seconds) at the overlap degree `auto` picks for it.
struct ForwardEstimate {
  double seconds = 0;
  int overlap_degree = 1;
};
ForwardEstimate forward_estimate(const std::vector<RankStageCost>& costs, const CostRates& rates);

}  // namespace magi::detail
