// A Comparison (core/results/compare.h) for people and for programs: the table `magi-bench
// compare` prints and the JSON document of its verdicts (docs/compare.md).
#pragma once

#include "core/results/compare.h"

#include <nlohmann/json.hpp>

#include <string>

namespace magi {

// Header, one line per (case, timing metric) and per exact metric that differs, the cases found
// on one side only, the geometric means and the verdict line.
std::string comparison_table(const Comparison& c);

// The verdicts as a document tagged kCompareSchema (core/base/schema.h).
nlohmann::json to_json(const Comparison& c);

}  // namespace magi
