#include "core/cost/cost_model.h"

#include "core/cost/overlap_schedule.h"

#include <algorithm>
#include <limits>

namespace magi {

double stage_compute_s(double flops, const CostRates& rates) {
  return flops / (rates.compute_tflops * 1e12) + kStageComputeOverheadS;
}

double stage_comm_s(double bytes, const CostRates& rates) {
  return kStageCommLatencyS + bytes / (rates.comm_gbps * 1e9);
}

// Forward time of one rank with d remote stages, each holding 1/d of its remote flops and bytes,
// through the runtime's schedule (core/cost/overlap_schedule.h): stage s + 1's K/V is posted when
// stage s starts computing, so the pass takes max(host, c) + (d - 1) max(p, c) + p for stage
// compute p and stage comm c.
// Worked example (tested in test_cost_model.cpp, CostModel.WorkedExample): Hq 64, Hkv 8, D 128,
// bf16, 400 TFLOP/s, 100 GB/s; a rank with host area 2^23 pairs (4 x 2^23 x 128 x 64 = 2.75e11
// flops: 0.687 ms), remote area 2^25 pairs (2.75 ms) and 65,536 remote tokens (4,096 B each:
// 268 MB, 2.68 ms), latency 20 us and compute overhead 5 us per stage:
//   d = 1: the comm ends at 2.70 ms; the remote stage computes 2.70 -> 5.46 ms.
//   d = 2: c = 1.36, p = 1.38: 1.36 + 1.38 + 1.38 = 4.12 ms.
//   d = 4: c = 0.691, p = 0.692: the host stage (0.692) hides the first comm, then compute runs
//          back to back: 0.692 + 4 x 0.692 = 3.46 ms.  <- chosen
//   d = 8: c = 0.356 > p = 0.349: comm-bound from the second stage on: 0.692 + 7 x 0.356 + 0.349
//          = 3.53 ms.
// (3: 3.68, 5: 3.47, 6: 3.49, 7: 3.51 ms.) With comm much cheaper than compute every d hides it,
// and the per-stage overheads make d = 1 the cheapest.
double estimate_rank_time_s(const RankStageCost& rank, int degree, const CostRates& rates) {
  const double d = degree;
  std::vector<StageTime> stages(static_cast<size_t>(degree) + 1);
  stages[0].compute_s = stage_compute_s(rank.host_flops, rates);
  for (int s = 1; s <= degree; ++s) {
    stages[static_cast<size_t>(s)] = StageTime{stage_compute_s(rank.remote_flops / d, rates),
                                               stage_comm_s(rank.remote_bytes / d, rates), 0.0};
  }
  return forward_schedule(stages).total_s;
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
