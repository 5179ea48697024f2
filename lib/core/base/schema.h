// The schema tag of every file magi-bench writes, spelled one way: "magi-bench/<kind>/<version>"
// (docs/results_schema.md). The version goes up when a field is removed, renamed or changes
// meaning or unit; adding a field keeps it, so readers ignore fields they do not know.
#pragma once

#include <string_view>

namespace magi {

// Case rows of `run` and `kernel` (later `simulate`): metadata, cases, summary.
inline constexpr std::string_view kResultsSchema = "magi-bench/results/1";
// The document `plan --json` writes: metadata and one entry per planned case.
inline constexpr std::string_view kPlanReportSchema = "magi-bench/plan-report/2";
// One plan inside it (docs/plan_schema.md).
inline constexpr std::string_view kPlanSchema = "magi-bench/plan/1";
// A fitted cost model (magi-bench calibrate; docs/simulation.md).
inline constexpr std::string_view kCalibrationSchema = "magi-bench/calibration/1";
// The verdicts `compare --json` writes (docs/compare.md).
inline constexpr std::string_view kCompareSchema = "magi-bench/compare/1";

}  // namespace magi
