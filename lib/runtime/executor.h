// Runs a Plan (lib/core/plan/plan.h) on the ranks of a Communicator: CPU backend (float32
// storage, the reference kernel of kernels/cpu), every strategy, forward and backward, with
// timing, byte counting from the real messages and an optional check against the
// single-process reference. docs/execution.md describes what each strategy does and measures.
#pragma once

#include "core/base/slice.h"
#include "core/plan/plan.h"
#include "runtime/communicator.h"

#include <cstdint>
#include <string>
#include <vector>

namespace magi {

struct ExecOptions {
  bool fwd = true;
  bool bwd = true;
  bool check = false;
  int warmup = 1;
  int iters = 3;
  uint64_t seed = 1234;
  int threads = 0;          // kernel threads per rank; 0 = hardware threads / ranks (at least 1)
};

struct TensorCheck {
  std::string name;         // out, lse, dq, dk, dv
  double rel_l2 = 0;        // ||dist - ref||_2 / ||ref||_2 over finite reference entries
  double max_abs = 0;       // max |dist - ref| over finite reference entries
  double tolerance = 0;     // rel_l2 must be <= this
  int64_t inf_mismatches = 0;  // entries where exactly one side is -inf (lse) or non-finite
  bool ok = true;
};

struct RankTimes {
  int rank = 0;
  std::string host;
  std::vector<double> fwd_ms, bwd_ms;  // per timed iteration
  int64_t fwd_sent_bytes = 0, bwd_sent_bytes = 0;  // one pass, counted from the real messages
  // Median over iterations of the time this rank waited on communication that compute did not
  // hide (waits after the overlapped compute finished, plus blocking collectives).
  double fwd_comm_wait_ms = 0, bwd_comm_wait_ms = 0;
};

struct ExecResult {
  std::vector<RankTimes> ranks;  // all ranks on rank 0 (in rank order); others: their own only
  bool check_ran = false;
  bool check_passed = true;      // agreed on every rank
  std::vector<TensorCheck> checks;  // out, lse (forward), dq, dk, dv (backward); rank 0 only
};

// Collective over comm (comm.size() must equal plan.cp). `mask` is the global slice list the
// plan was built from (used only by the check). The plan must be built for float32
// (model.dtype == fp32): the CPU backend stores float32, so the bytes counted from its real
// messages equal planned_bytes(plan, 4) (core/plan/comm_volume.h) rank by rank.
// Throws ConfigError for a skipped plan or a wrong dtype, RuntimeError on communication failure.
// Test hook: when the environment has MAGI_FAIL_RANK=<r>, rank r of comm throws a RuntimeError
// at the start (used by the failure tests; never set it otherwise).
ExecResult execute_plan(Communicator& comm, const Plan& plan, const std::vector<AttnSlice>& mask,
                        const ExecOptions& opt);

}  // namespace magi
