// The simulator (DESIGN.md §6; docs/simulation.md): a case's plan replayed on a described cluster
// without running it. Per rank and stage: compute from the stage's slices through the kernel model
// (core/sim/kernel_model.h), communication from the alpha-beta model of the tier each message takes
// (core/sim/cluster.h), both through the runtime's own schedule per strategy (magi: the overlap
// schedule of core/cost/overlap_schedule.h; ring: double-buffered hops coupled to the neighbours;
// ulysses and allgather: blocking collectives around the compute). The slowest rank is the step.
// Pure: no MPI, no device.
#pragma once

#include "core/base/slice.h"
#include "core/plan/plan.h"
#include "core/sim/cluster.h"
#include "core/sim/kernel_model.h"
#include "core/workload/workload.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace magi {

// One rank's pass.
struct RankPassSim {
  double total_s = 0;    // the pass on this rank
  double compute_s = 0;  // its kernel time
  double exposed_s = 0;  // total_s - compute_s
  std::array<int64_t, kTiers> sent_bytes{};  // bytes sent to other ranks, per tier
};

// One compute step of a rank's pass (one Device::compute call of the runtime: a magi stage, a
// ring step, the one kernel call of ulysses and allgather) and the heads it runs.
struct StepWork {
  KernelWork work;
  int heads_q = 0, heads_kv = 0;
};

struct RankSim {
  int rank = 0;
  int64_t tokens = 0;
  int64_t area = 0;
  RankPassSim fwd, bwd;
  std::vector<StepWork> steps;  // both passes' steps (SimOptions::record_steps)
};

// Measured compute seconds of one rank's steps per pass ([0] fwd, [1] bwd), in step order.
using RankStepSeconds = std::array<std::vector<double>, 2>;

struct SimOptions {
  bool record_steps = false;  // fill RankSim::steps (for calibrate: O(ranks x steps) memory)
  // When set (one entry per rank, its step counts those of RankSim::steps), these times replace
  // the kernel model's: the links are then fitted to what compute does not explain.
  const std::vector<RankStepSeconds>* measured_compute = nullptr;
};

struct CaseSim {
  Strategy strategy = Strategy::magi;
  int cp = 1;
  bool skipped = false;
  std::string skip_reason;
  int overlap_degree = 0;   // the plan's (magi: resolved; ring cp - 1)
  int64_t chunk_tokens = 0;
  double imbalance = 1;     // the plan's max / mean area
  int64_t planned_fwd_bytes = 0, planned_bwd_bytes = 0, bound_fwd_bytes = 0;
  std::vector<RankSim> ranks;
  double fwd_s() const;     // slowest rank
  double bwd_s() const;
};

// Rates a plan's `auto` overlap choice uses on this cluster: the kernel's full-tile rate and the
// slowest tier a rank's messages take at cp.
struct AutoRates {
  double compute_tflops = 0;
  double comm_gbps = 0;
};
AutoRates auto_rates(const ClusterSpec& cluster, const KernelModel& kernel, const ModelShape& m, int cp);

// Simulates case `c` (its strategy, cp, chunk_tokens and overlap degree) on `cluster`.
// ConfigError when cp exceeds the cluster's ranks. A case the strategy cannot run is skipped.
CaseSim simulate_case(const std::vector<AttnSlice>& mask, const Case& c, const ClusterSpec& cluster,
                      const KernelModel& kernel, const SimOptions& options = {});

}  // namespace magi
