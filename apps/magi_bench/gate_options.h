// The command-line floors of a run's throughput (core/results/gate.h): --min-tflops (both
// passes), --min-fwd-tflops, --min-bwd-tflops.
#pragma once

#include "core/results/gate.h"

#include <CLI/CLI.hpp>

#include <optional>

namespace magi::app {

struct GateOptions {
  std::optional<double> min_tflops, min_fwd_tflops, min_bwd_tflops;

  void add_to(CLI::App& cmd);  // registers the three options
  // The floors asked for (a per-pass floor overrides --min-tflops for its pass); UsageError
  // naming the option for a value that is negative or not finite.
  Gate gate() const;
};

}  // namespace magi::app
