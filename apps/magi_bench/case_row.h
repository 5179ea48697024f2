// Case rows from workload cases: what every command that measures attention (`run`, `kernel`)
// fills the same way before adding its own numbers.
#pragma once

#include "core/results/row.h"
#include "core/workload/workload.h"

#include <string>

namespace magi::app {

// A row with the case's identity (name, key, mask, size, cp, strategy, model), `backend`, and the
// resolved config in details.config; no measurement yet.
CaseRow case_row(const Case& c, const std::string& backend);

// The same row, skipped for `reason`.
CaseRow skipped_row(const Case& c, const std::string& backend, const std::string& reason);

}  // namespace magi::app
