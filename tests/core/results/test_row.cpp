#include "core/results/row.h"
#include "results_test_util.h"

#include <gtest/gtest.h>

#include <cmath>

namespace magi {
namespace {

using test::make_row;

TEST(Row, DerivedNumbersFollowTheirFormulas) {
  CaseRow r = make_row(2, "magi", {4.0, 3.2});
  EXPECT_DOUBLE_EQ(r.fwd_ms(), 4.0);
  EXPECT_DOUBLE_EQ(r.fwd_ms_mean_rank(), 3.6);
  EXPECT_DOUBLE_EQ(r.fwd_flops(), 4.0 * 524800 * 32 * 4);
  EXPECT_DOUBLE_EQ(r.bwd_flops(), 2.5 * r.fwd_flops());
  EXPECT_DOUBLE_EQ(r.fwd_tflops_per_gpu(), r.fwd_flops() / (4e-3 * 2) / 1e12);
  EXPECT_DOUBLE_EQ(r.fwd_tflops_mean_rank(), r.fwd_flops() / (3.6e-3 * 2) / 1e12);
  EXPECT_TRUE(std::isnan(r.fwd_mfu_pct()));
  r.peak_tflops = 989;
  EXPECT_NEAR(r.fwd_mfu_pct(), 100 * r.fwd_tflops_per_gpu() / 989, 1e-12);
  EXPECT_EQ(r.measured_fwd_bytes(), 1000);
  // Rank 1 waits 0.1 * 2 / 2 * 3.2 ms = 0.32 ms of the slowest rank's 4 ms.
  EXPECT_NEAR(r.exposed_comm_pct(), 8.0, 1e-9);
}

// A row worked by hand, apart from the formulas above: area 1000 pairs, head dim 10, 2 query
// heads on cp 2. Forward FLOPs 4 * 1000 * 10 * 2 = 80 000, backward 2.5x = 200 000. Rank
// medians forward 2 and 6 ms (slowest 6, mean 4), backward 4 and 12 ms (slowest 12, mean 8).
TEST(Row, HandComputedRow) {
  CaseRow r;
  r.cp = 2;
  r.area = 1000;
  r.head_dim = 10;
  r.heads_q = 2;
  r.fwd_ran = r.bwd_ran = true;
  for (const auto& [fwd, bwd] : {std::pair{2.0, 4.0}, std::pair{6.0, 12.0}}) {
    RankRow k;
    k.fwd = summarize({fwd});
    k.bwd = summarize({bwd});
    r.ranks.push_back(k);
  }
  EXPECT_DOUBLE_EQ(r.fwd_flops(), 80000.0);
  EXPECT_DOUBLE_EQ(r.bwd_flops(), 200000.0);
  // 80 000 / (6e-3 s * 2 GPUs) = 6.666...e6 FLOP/s; mean rank 80 000 / (4e-3 * 2) = 1e7.
  EXPECT_NEAR(r.fwd_tflops_per_gpu(), 6.666666666666667e-6, 1e-18);
  EXPECT_NEAR(r.fwd_tflops_mean_rank(), 1e-5, 1e-18);
  // 200 000 / (12e-3 * 2) = 8.333...e6 slowest; 200 000 / (8e-3 * 2) = 1.25e7 mean rank.
  EXPECT_NEAR(r.bwd_tflops_per_gpu(), 8.333333333333333e-6, 1e-18);
  EXPECT_NEAR(r.bwd_tflops_mean_rank(), 1.25e-5, 1e-18);
}

// The backward's mean-rank rate must divide by the mean of the rank medians, not the slowest
// rank's (a 3:1 spread makes the two differ by 1.5x).
TEST(Row, BackwardMeanRankRateUsesTheMeanRank) {
  const CaseRow r = make_row(2, "magi", {1.0, 3.0});  // backward medians 2 and 6 ms
  EXPECT_DOUBLE_EQ(r.bwd_ms(), 6.0);
  EXPECT_DOUBLE_EQ(r.bwd_ms_mean_rank(), 4.0);
  EXPECT_DOUBLE_EQ(r.bwd_tflops_mean_rank(), r.bwd_flops() / (4e-3 * 2) / 1e12);
  EXPECT_NEAR(r.bwd_tflops_mean_rank() / r.bwd_tflops_per_gpu(), 1.5, 1e-12);
}

TEST(Row, NoExposedCommWhenNothingIsSent) {
  CaseRow r = make_row(1, "magi", 5.0);
  r.ranks[0].fwd_sent_bytes = 0;
  r.ranks[0].fwd_comm_wait_ms = 0.01;  // the cost of asking for nothing
  EXPECT_DOUBLE_EQ(r.exposed_comm_pct(), 0.0);
  r.ranks[0].fwd_sent_bytes = 1;
  EXPECT_NEAR(r.exposed_comm_pct(), 0.2, 1e-12);
}

TEST(Row, ScalingEfficiencyIsAgainstTheCpOneRow) {
  Report rep;
  rep.rows = {make_row(1, "magi", 8.0), make_row(2, "magi", 5.0), make_row(2, "ring", 8.0)};
  EXPECT_DOUBLE_EQ(rep.scaling_efficiency(0), 1.0);
  EXPECT_DOUBLE_EQ(rep.scaling_efficiency(1), 0.8);  // 8 ms on 1 vs 5 ms on 2 GPUs
  EXPECT_DOUBLE_EQ(rep.scaling_efficiency(2), 0.5);  // no cp=1 ring row: the magi one is used
}

}  // namespace
}  // namespace magi
