#include "core/results/gate.h"

#include <fmt/format.h>

#include <cmath>

namespace magi {

namespace {

void check_floor(std::vector<std::string>& out, const char* pass, bool ran, double tflops, double floor) {
  if (floor <= 0 || !ran) return;
  // No figure (a time of 0) cannot show that the floor is met.
  if (!(tflops >= floor)) {
    out.push_back(fmt::format("{} {} TF/s/GPU < --min-{}-tflops {:g}", pass,
                              std::isfinite(tflops) ? fmt::format("{:.4g}", tflops) : std::string("none"),
                              pass, floor));
  }
}

}  // namespace

std::vector<std::string> gate_failures(const CaseRow& row, const Gate& gate) {
  std::vector<std::string> out;
  if (row.skipped) return out;
  check_floor(out, "fwd", row.fwd_ran, row.fwd_tflops_per_gpu(), gate.min_fwd_tflops);
  check_floor(out, "bwd", row.bwd_ran, row.bwd_tflops_per_gpu(), gate.min_bwd_tflops);
  return out;
}

bool apply_gate(CaseRow& row, const Gate& gate) {
  row.gated = gate.set();
  row.below_floor = gate_failures(row, gate);
  return !row.below_floor.empty();
}

}  // namespace magi
