// Floors on a run's throughput, as nccl-tests fails a run below a minimum bus bandwidth: a case
// row below a floor is marked in the table and the files, and the command exits with
// ExitCode::regression. Floors are TFLOP/s per GPU (the rows' fwd/bwd_tflops_per_gpu).
#pragma once

#include "core/results/row.h"

#include <string>
#include <vector>

namespace magi {

struct Gate {
  double min_fwd_tflops = 0;  // 0: no floor on the forward
  double min_bwd_tflops = 0;  // 0: no floor on the backward
  bool set() const { return min_fwd_tflops > 0 || min_bwd_tflops > 0; }
};

// The floors `row` misses, in words ("fwd 0.0012 TF/s/GPU < --min-fwd-tflops 0.5"); empty when
// it meets every floor. A skipped row, or a pass that did not run, has nothing to gate.
std::vector<std::string> gate_failures(const CaseRow& row, const Gate& gate);

// Marks `row` (CaseRow::gated, below_floor) before it is printed; true when it missed a floor.
bool apply_gate(CaseRow& row, const Gate& gate);

}  // namespace magi
