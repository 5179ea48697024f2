// A Plan as JSON (schema: docs/plan_schema.md, "magi-bench/plan/1").
#pragma once

#include "core/base/schema.h"
#include "core/plan/plan.h"
#include "core/plan/planner.h"

#include <nlohmann/json.hpp>

#include <vector>

namespace magi {

struct PlanJsonOptions {
  bool slices = true;  // ranks[].stages[].slices (the bulk of a large plan)
};

nlohmann::json plan_to_json(const Plan& plan, const PlanJsonOptions& options = {});

// One entry per strategy; `bound` is the zero-redundancy bound the report compares against
// (the magi dispatch's), so every strategy is set against the same figure.
nlohmann::json strategies_to_json(const std::vector<StrategySummary>& strategies, const CommVolume& bound);

}  // namespace magi
