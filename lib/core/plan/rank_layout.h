// What the plan builders (core/plan/*_plan.cpp) share: the plan's header, ranks filled from a
// unit -> rank assignment, remote keys, balance and byte figures, and the placement of each
// rank's slices into its stage buffers (local coordinates, plan.h). Internal to core/plan.
#pragma once

#include "core/plan/dispatch.h"
#include "core/plan/plan.h"
#include "core/workload/workload.h"

#include <string>
#include <vector>

namespace magi::detail {

// A global key range and where it lives: stage `stage`'s buffer, from row `offset`. Ranges of one
// `group` are consecutive in their buffer and ascending in global order, so walking them in global
// order walks the buffer forwards (used to merge full slices early).
struct StageKeyRange {
  Range global;
  int stage = 0;
  int64_t offset = 0;
  int group = 0;
};

// A plan with the case's figures and no ranks; skipped_plan adds the reason.
Plan plan_header(const Case& c, Strategy s);
Plan skipped_plan(const Case& c, Strategy s, std::string reason);

// a minus b; both sorted and merged.
std::vector<Range> subtract_ranges(const std::vector<Range>& a, const std::vector<Range>& b);

// Fills ranks[].units, q_ranges, tokens, area and the plan's unit figures from `owner`.
void fill_ranks(Plan& p, const RowPieces& rp, const std::vector<int>& owner);
// total/max/mean area, lower bound, imbalance and token spread from ranks[].area and tokens.
void fill_balance(Plan& p);
// ranks[].remote_kv_ranges (needed keys minus host) and the zero-redundancy bound; returns each
// rank's pieces (global coordinates, unit order).
std::vector<std::vector<AttnSlice>> fill_remote(Plan& p, const RowPieces& rp);
// ranks[].send_bytes_fwd / recv_bytes_fwd and volume.max_rank_fwd_bytes, in the model dtype
// (core/plan/comm_volume.h).
void fill_rank_bytes(Plan& p);
// Transfers by (stage, src, dst, from_stage).
void sort_transfers(Plan& p);

// The rank's host keys (q_ranges at their host buffer offsets), stage 0.
std::vector<StageKeyRange> host_key_ranges(const RankPlan& rk);
// Appends a stage's key ranges (buffer order = kv_ranges order).
void add_stage_key_ranges(std::vector<StageKeyRange>& keys, const std::vector<Range>& kv_ranges, int stage);
// Clips every piece to the key ranges it touches and appends the local slices to rk.stages;
// `keys` must be disjoint. Checks that every pair of the rank's rows lands in some stage.
void fill_stage_slices(RankPlan& rk, const std::vector<AttnSlice>& pieces, std::vector<StageKeyRange> keys);

// Ring's and allgather's dispatch: zigzag blocks (rank r hosts blocks r and 2cp - 1 - r), ranks,
// balance and remote keys; `pieces` gets each rank's pieces.
Plan zigzag_dispatch(const std::vector<AttnSlice>& mask, const Case& c, Strategy strategy,
                     std::vector<std::vector<AttnSlice>>& pieces);

}  // namespace magi::detail
