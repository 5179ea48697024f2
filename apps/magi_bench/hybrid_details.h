// `plan`'s lines on a hybrid plan (parallel.heads > 1, plan.h "Hybrid"): the layout and the bytes
// of each dimension, the sum of every world rank's planned bytes against the dimension's closed
// form (docs/plan_schema.md, "Hybrid").
#pragma once

#include "core/plan/plan.h"

#include <string>

namespace magi::app {

std::string explain_hybrid(const Plan& p);

}  // namespace magi::app
