#include "rate_options.h"

#include "core/base/error.h"

#include <cmath>

namespace magi::app {

namespace {

void check_rate(const std::optional<double>& v, const char* option, const char* unit) {
  if (v && (!std::isfinite(*v) || *v <= 0 || *v > kMaxRate)) {
    throw UsageError(fmt::format("{} {}: expected {} in (0, {:g}]", option, *v, unit, kMaxRate));
  }
}

}  // namespace

void RateOverrides::add_to(CLI::App& cmd) {
  cmd.add_option("--compute-tflops", compute_tflops,
                 "Override parallel.compute_tflops, the attention kernel's TFLOP/s per GPU that the cost model "
                 "assumes (overlap_degree and chunk_tokens auto, and whether magi keeps its cut chunks)");
  cmd.add_option("--comm-gbps", comm_gbps,
                 "Override parallel.comm_gbps, the per-rank link GB/s that the cost model assumes (a faster "
                 "link makes the cuts' extra K/V cheaper)");
}

void RateOverrides::validate() const {
  check_rate(compute_tflops, "--compute-tflops", "TFLOP/s per GPU");
  check_rate(comm_gbps, "--comm-gbps", "GB/s per rank");
}

void RateOverrides::apply(Case& c) const {
  if (compute_tflops) c.parallel.compute_tflops = *compute_tflops;
  if (comm_gbps) c.parallel.comm_gbps = *comm_gbps;
}

}  // namespace magi::app
