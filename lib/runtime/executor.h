// Runs a Plan (lib/core/plan/plan.h) on the ranks of a Communicator with a Device (device.h):
// every strategy, forward and backward, on any device (the CPU's float32 reference kernel, a
// GPU's flexible kernel), with timing, byte counting from the real messages and an optional
// check against the single-process reference computed through the same device.
// docs/execution.md describes what each strategy does and measures.
#pragma once

#include "core/base/slice.h"
#include "core/plan/plan.h"
#include "runtime/check.h"
#include "runtime/communicator.h"
#include "runtime/device.h"

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
  std::string case_name;    // names the case in the watchdog's messages
};

struct RankTimes {
  int rank = 0;
  std::string host;
  std::vector<double> fwd_ms, bwd_ms;  // per timed iteration
  int64_t fwd_sent_bytes = 0, bwd_sent_bytes = 0;  // one pass, counted from the real messages
  // Of those, the bytes sent to the rank's head group (hybrid plans: the head dimension; the
  // rest is the context dimension), from the data communicator's sent_bytes_to; 0 otherwise.
  int64_t fwd_sent_head_bytes = 0, bwd_sent_head_bytes = 0;
  // Of which to ranks on other nodes (node = rank / plan.ranks_per_node), from sent_bytes_to.
  int64_t fwd_inter_node_sent_bytes = 0, bwd_inter_node_sent_bytes = 0;
  // Median over iterations of the time this rank waited on communication that compute did not
  // hide (waits after the overlapped compute finished, plus blocking collectives).
  double fwd_comm_wait_ms = 0, bwd_comm_wait_ms = 0;
  // Per compute step of a pass (one entry per Device::compute call, in call order), the median
  // over the timed iterations of its time on the device.
  std::vector<double> fwd_compute_ms, bwd_compute_ms;
  int64_t peak_memory_bytes = 0;  // the device's most held at once, after the timed passes
};

struct ExecResult {
  std::vector<RankTimes> ranks;  // all ranks on rank 0 (in rank order); others: their own only
  bool check_ran = false;
  bool check_passed = true;      // agreed on every rank
  std::vector<TensorError> checks;  // out, lse (forward), dq, dk, dv (backward); rank 0 only
};

// Collective over `host` and `data` (both of size plan.cp x plan.heads, the same ranks in the same
// order; a hybrid plan's world rank g heads + i is head index i of group g, plan.h).
// `host` (host memory) carries barriers, the times gathered to rank 0 and the check's gathers and
// verdict; `data` moves the device's buffers, and its sent_bytes() over a pass are the pass's
// bytes (for the CPU device both are the same MPI communicator). `mask` is the global slice list
// the plan was built from (used only by the check). The plan's model.dtype must be dev.dtype():
// the bytes counted from the real messages then equal planned_bytes(plan, dtype_bytes(dtype))
// (core/plan/comm_volume.h) rank by rank.
// Throws ConfigError for a skipped plan or a dtype the device does not store, RuntimeError on
// communication failure. When `host` has a watchdog, each timed iteration and the check's
// reference are steps of it. Test hook: FaultInjection below.
ExecResult execute_plan(Communicator& host, Communicator& data, Device& dev, const Plan& plan,
                        const std::vector<AttnSlice>& mask, const ExecOptions& opt);

// Test hook for the failure tests (never set it otherwise): MAGI_FAIL_RANK=<r>[:<mode>] in the
// environment makes rank r of the communicator misbehave in execute_plan. Modes: `throw` (the
// default) throws a RuntimeError at the start; `stall` stops there for good, as a stopped
// process or a stuck device would (the watchdog's test); `nan` puts one NaN into its forward
// output before the check (the check must fail).
struct FaultInjection {
  enum class Mode { none, fail, stall, nan };
  Mode mode = Mode::none;
  int rank = -1;
  std::string setting;  // the variable's value, for messages
};
// Reads MAGI_FAIL_RANK; throws UsageError naming the variable and its value when malformed.
FaultInjection fault_injection_from_env();

}  // namespace magi
