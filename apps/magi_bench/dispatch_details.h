// What the mask-and-dispatch picture (scripts/plot_results.py, docs/results_schema.md) needs of
// a `run` case, kept in its row's details: the mask as slices and the query ranges each rank
// hosts. Bounded so that a row stays small: a mask of more than kMaxPictureSlices slices keeps
// only its count.
#pragma once

#include "core/base/slice.h"
#include "core/plan/plan.h"

#include <nlohmann/json.hpp>

#include <vector>

namespace magi::app {

inline constexpr size_t kMaxPictureSlices = 4096;

// {"rank_q_ranges": [[[start, end], ...] per rank], "mask_slices": [[q_start, q_end, k_start,
// k_end, "causal"], ...] or null, "mask_slice_count": n}
nlohmann::json dispatch_details(const Plan& plan, const std::vector<AttnSlice>& mask);

}  // namespace magi::app
