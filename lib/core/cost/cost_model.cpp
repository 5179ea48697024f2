#include "core/cost/cost_model.h"

#include <algorithm>
#include <limits>

namespace magi {

double stage_compute_s(double flops, const CostRates& rates) {
  return flops / (rates.compute_tflops * 1e12) + kStageComputeOverheadS;
}

double stage_comm_s(double bytes, const CostRates& rates) {
  return kStageCommLatencyS + bytes / (rates.comm_gbps * 1e9);
}

// Forward time of one rank with d remote stages, each holding 1/d of its remote flops and bytes:
// comm of stage s starts when stage s - 1's comm ends (one link); stage s computes after both its
// comm and stage s - 1's compute; the host stage computes at t = 0.
// Worked example (tested in test_cost_model.cpp, CostModel.WorkedExample): Hq 64, Hkv 8, D 128,
// bf16, 400 TFLOP/s, 100 GB/s; a rank with host area 2^23 pairs (4 x 2^23 x 128 x 64 = 2.75e11
// flops: 0.687 ms), remote area 2^25 pairs (2.75 ms) and 65,536 remote tokens (4,096 B each:
// 268 MB, 2.68 ms), latency 20 us and compute overhead 5 us per stage:
//   d = 1: comm ends 2.70 ms; the remote stage computes 2.70 -> 5.46 ms.
//   d = 2: comms end 1.36, 2.72 ms; stage 1 computes 1.36 -> 2.74, stage 2 2.74 -> 4.12 ms.
//   d = 4: comms of 0.69 ms end at 0.69, 1.38, 2.07, 2.76 ms; stages of 0.69 ms compute
//          back to back from 0.69 ms: the last ends at 3.46 ms.  <- chosen
//   d = 8: comms of 0.36 ms; compute is the bottleneck from the first stage on and each extra
//          stage adds its overhead: 3.48 ms.
// (3: 3.68, 5: 3.47, 6: 3.47, 7: 3.48 ms.) With comm much cheaper than compute every d hides it,
// overheads make d = 1 the cheapest.
double estimate_rank_time_s(const RankStageCost& rank, int degree, const CostRates& rates) {
  const double d = degree;
  const double comp_host = stage_compute_s(rank.host_flops, rates);
  const double comp_stage = stage_compute_s(rank.remote_flops / d, rates);
  const double comm_stage = stage_comm_s(rank.remote_bytes / d, rates);
  double comm_end = 0, comp_end = comp_host;
  for (int s = 1; s <= degree; ++s) {
    comm_end += comm_stage;
    comp_end = std::max(comp_end, comm_end) + comp_stage;
  }
  return comp_end;
}

int choose_overlap_degree(const std::vector<RankStageCost>& ranks, const CostRates& rates) {
  int best = 1;
  double best_t = std::numeric_limits<double>::infinity();
  for (int d = 1; d <= kMaxOverlapDegree; ++d) {
    double t = 0;
    for (const RankStageCost& r : ranks) t = std::max(t, estimate_rank_time_s(r, d, rates));
    if (t < best_t * (1 - 1e-9)) {
      best_t = t;
      best = d;
    }
  }
  return best;
}

}  // namespace magi
