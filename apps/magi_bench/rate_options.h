// The command-line overrides of the rates the planner's cost model assumes (parallel.compute_tflops
// and parallel.comm_gbps: overlap_degree and chunk_tokens `auto`, and whether adaptive dispatch
// keeps its cuts, core/plan/magi_dispatch.h): --compute-tflops, --comm-gbps.
#pragma once

#include "core/workload/workload.h"

#include <CLI/CLI.hpp>

#include <optional>

namespace magi::app {

struct RateOverrides {
  std::optional<double> compute_tflops, comm_gbps;

  void add_to(CLI::App& cmd);  // registers the two options
  // UsageError naming the option for a value that is not finite or outside (0, kMaxRate], the
  // range the workload's fields accept.
  void validate() const;
  void apply(Case& c) const;  // overrides what was given, in c.parallel
};

}  // namespace magi::app
