// The cost model (DESIGN.md §3 "Overlap", §6): time of a rank's stages from plain figures, flops
// and bytes, with no knowledge of how a plan is built. The overlap-degree choice of `auto` uses it,
// and the simulator (core/sim) replays the same schedule (core/cost/overlap_schedule.h) with its
// calibrated kernel and link models (plan -> cost, never back).
#pragma once

#include <cstdint>
#include <vector>

namespace magi {

// Rates of one rank: the attention kernel's throughput and the link's bandwidth.
struct CostRates {
  double compute_tflops = 400.0;  // TFLOP/s of the attention kernel
  double comm_gbps = 100.0;       // GB/s of the rank's link
};

inline constexpr int kMaxOverlapDegree = 8;
inline constexpr double kStageCommLatencyS = 20e-6;     // per stage all-to-all-v latency
inline constexpr double kStageComputeOverheadS = 5e-6;  // per stage kernel launch and tail

// Seconds to compute `flops` in one stage: flops / rate + the per-stage overhead.
double stage_compute_s(double flops, const CostRates& rates);
// Seconds to move `bytes` in one stage: the per-stage latency + bytes / bandwidth.
double stage_comm_s(double bytes, const CostRates& rates);

// What the overlap estimate needs of one rank's forward pass.
struct RankStageCost {
  double host_flops = 0;    // work on host KV
  double remote_flops = 0;  // work on remote KV
  double remote_bytes = 0;  // remote KV received
};

// Estimated forward time of one rank with `degree` >= 1 remote stages of equal size (seconds).
double estimate_rank_time_s(const RankStageCost& rank, int degree, const CostRates& rates);
// The degree in [1, kMaxOverlapDegree] minimising the slowest rank's estimate (ties: smallest).
int choose_overlap_degree(const std::vector<RankStageCost>& ranks, const CostRates& rates);

}  // namespace magi
