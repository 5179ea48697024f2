#include "gate_options.h"

#include "core/base/error.h"

#include <cmath>

namespace magi::app {

namespace {

double floor_value(const std::optional<double>& v, const char* option) {
  if (!v) return 0;
  if (!std::isfinite(*v) || *v < 0) {
    throw UsageError(fmt::format("{} {}: expected TFLOP/s per GPU >= 0", option, *v));
  }
  return *v;
}

}  // namespace

void GateOptions::add_to(CLI::App& cmd) {
  cmd.add_option("--min-tflops", min_tflops,
                 "Fail the run (exit 7, rows marked BELOW FLOOR) when a case's fwd or bwd TFLOP/s "
                 "per GPU is below this floor");
  cmd.add_option("--min-fwd-tflops", min_fwd_tflops, "Floor for the forward only (overrides --min-tflops)");
  cmd.add_option("--min-bwd-tflops", min_bwd_tflops, "Floor for the backward only (overrides --min-tflops)");
}

Gate GateOptions::gate() const {
  const double both = floor_value(min_tflops, "--min-tflops");
  Gate g;
  g.min_fwd_tflops = min_fwd_tflops ? floor_value(min_fwd_tflops, "--min-fwd-tflops") : both;
  g.min_bwd_tflops = min_bwd_tflops ? floor_value(min_bwd_tflops, "--min-bwd-tflops") : both;
  return g;
}

}  // namespace magi::app
