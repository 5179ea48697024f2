// A plan's size from the case alone, before a document is sampled or a slice built: closed forms,
// so that a valid workload asking for more than the machine has is refused up front, naming the
// field and the estimate (`run` and `plan` check every case; --allow-large lifts it), instead of
// dying in std::bad_alloc after the header.
#pragma once

#include "core/workload/workload.h"

#include <cstdint>
#include <string>

namespace magi {

// Memory of a full plan (core/plan/plan.h) grows with its dispatch units and, for ring,
// allgather and ulysses, with rank pairs. Measured (plan at cp 4096, ring: 3.4 GB for 16.8M
// pairs): about 200 bytes per pair (a stage, its key ranges, a message) and per unit (the unit's
// row pieces, area, owner and the solver's entries).
inline constexpr int64_t kPlanBytesPerUnit = 200;
inline constexpr int64_t kPlanBytesPerRankPair = 200;
// The largest estimated plan built without --allow-large.
inline constexpr int64_t kMaxPlanBytes = 4'000'000'000;

struct PlanSizeEstimate {
  int64_t units = 0;       // chunks (magi: ceil(S / chunk_tokens)), 2 cp zigzag blocks, cp shards
  int64_t rank_pairs = 0;  // ring, allgather: cp x cp stages and messages; ulysses: cp x cp messages;
                           // magi: 0 (its messages follow the mask, not cp x cp)
  int64_t bytes = 0;       // units x kPlanBytesPerUnit + rank_pairs x kPlanBytesPerRankPair
};
PlanSizeEstimate estimate_plan_size(const Case& c);

// "" when the full plan of `c` is estimated within kMaxPlanBytes; else why not, naming the field
// to change (parallel.chunk_tokens or parallel.cp) and the estimate.
std::string plan_size_excess(const Case& c);

}  // namespace magi
