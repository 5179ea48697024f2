// The cost model: stage compute and comm from plain figures, and the worked example of the
// overlap-degree choice in cost_model.cpp (the runtime's schedule, core/cost/overlap_schedule.h).
#include "core/cost/cost_model.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace magi {
namespace {

TEST(CostModel, StageTimesFromRatesLatencyAndOverhead) {
  const CostRates rates{400, 100};
  EXPECT_DOUBLE_EQ(stage_compute_s(4e12, rates), 0.01 + kStageComputeOverheadS);
  EXPECT_DOUBLE_EQ(stage_comm_s(1e9, rates), kStageCommLatencyS + 0.01);
  EXPECT_DOUBLE_EQ(stage_comm_s(0, rates), kStageCommLatencyS);
}

// The worked example of cost_model.cpp: Hq 64, D 128, bf16 K/V of Hkv 8 (4,096 B per token).
TEST(CostModel, WorkedExample) {
  const double flops_per_pair = 4.0 * 128 * 64;
  const RankStageCost r{flops_per_pair * (int64_t{1} << 23), flops_per_pair * (int64_t{1} << 25), 65536.0 * 4096};
  CostRates rates{400, 100};
  double t[kMaxOverlapDegree + 1] = {};
  std::printf("[overlap example] ms by degree:");
  for (int d = 1; d <= kMaxOverlapDegree; ++d) {
    t[d] = estimate_rank_time_s(r, d, rates) * 1e3;
    std::printf(" %d: %.3f", d, t[d]);
  }
  std::printf("\n");
  EXPECT_NEAR(t[1], 5.46, 0.01);
  EXPECT_NEAR(t[2], 4.12, 0.01);
  EXPECT_NEAR(t[3], 3.68, 0.01);
  EXPECT_NEAR(t[4], 3.46, 0.01);
  EXPECT_NEAR(t[5], 3.47, 0.01);
  EXPECT_NEAR(t[8], 3.53, 0.01);
  EXPECT_EQ(choose_overlap_degree({r}, rates), 4);
  // Compute-bound: every degree hides the comm; the smallest wins the tie.
  rates.comm_gbps = 1e6;
  EXPECT_EQ(choose_overlap_degree({RankStageCost{1e15, 1e15, 1024.0 * 4096}}, rates), 1);
}

// The slowest rank decides: a second, comm-heavy rank moves the choice.
TEST(CostModel, SlowestRankDecides) {
  const CostRates rates{400, 100};
  const RankStageCost light{1e9, 1e9, 1e3};
  EXPECT_EQ(choose_overlap_degree({light}, rates), 1);
  const RankStageCost heavy{2.75e11, 1.1e12, 268e6};
  EXPECT_GT(choose_overlap_degree({light, heavy}, rates), 1);
  EXPECT_EQ(choose_overlap_degree({light, heavy}, rates), choose_overlap_degree({heavy}, rates));
}

}  // namespace
}  // namespace magi
