#include "core/report/report.h"

#include <fmt/format.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace magi {
namespace {

TEST(Stats, MedianMeanMinMax) {
  auto s = summarize({4.0, 1.0, 3.0, 2.0});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.median_ms, 2.5);
  EXPECT_DOUBLE_EQ(s.mean_ms, 2.5);
  EXPECT_DOUBLE_EQ(s.min_ms, 1.0);
  EXPECT_DOUBLE_EQ(s.max_ms, 4.0);
  EXPECT_DOUBLE_EQ(summarize({5.0, 1.0, 9.0}).median_ms, 5.0);
  EXPECT_EQ(summarize({}).count, 0);
}

CaseRow make_row(int cp, std::string strategy, double fwd_ms) {
  CaseRow r;
  r.case_name = fmt::format("w/{}", cp);
  r.mask = "causal";
  r.total_tokens = 1024;
  r.cp = cp;
  r.strategy = std::move(strategy);
  r.backend = "cpu";
  r.dtype = "fp32";
  r.heads_q = 4;
  r.heads_kv = 2;
  r.head_dim = 32;
  r.area = 1024 * 1025 / 2;
  r.case_key = "causal-1024";
  r.fwd_ran = r.bwd_ran = true;
  r.fwd_ms = fwd_ms;
  r.bwd_ms = 2 * fwd_ms;
  r.fwd_ms_mean_rank = fwd_ms * 0.9;
  r.bwd_ms_mean_rank = 2 * fwd_ms * 0.9;
  r.planned_fwd_bytes = 1000;
  r.planned_bwd_bytes = 0;
  r.bound_fwd_bytes = 500;
  for (int k = 0; k < cp; ++k) {
    RankRow rank;
    rank.rank = k;
    rank.fwd_sent_bytes = 1000 / cp;
    rank.fwd_comm_wait_ms = fwd_ms * 0.1 * (k + 1) / cp;
    r.ranks.push_back(rank);
  }
  return r;
}

TEST(Report, DerivedNumbersFollowTheirFormulas) {
  CaseRow r = make_row(2, "magi", 4.0);
  EXPECT_DOUBLE_EQ(r.fwd_flops(), 4.0 * 524800 * 32 * 4);
  EXPECT_DOUBLE_EQ(r.bwd_flops(), 2.5 * r.fwd_flops());
  EXPECT_DOUBLE_EQ(r.fwd_tflops_per_gpu(), r.fwd_flops() / (4e-3 * 2) / 1e12);
  EXPECT_DOUBLE_EQ(r.fwd_tflops_mean_rank(), r.fwd_flops() / (3.6e-3 * 2) / 1e12);
  EXPECT_TRUE(std::isnan(r.fwd_mfu_pct()));
  r.peak_tflops = 989;
  EXPECT_NEAR(r.fwd_mfu_pct(), 100 * r.fwd_tflops_per_gpu() / 989, 1e-12);
  EXPECT_EQ(r.measured_fwd_bytes(), 1000);
  EXPECT_NEAR(r.exposed_comm_pct(), 10.0, 1e-9);
}

TEST(Report, ScalingEfficiencyIsAgainstTheCpOneRow) {
  Report rep;
  rep.rows = {make_row(1, "magi", 8.0), make_row(2, "magi", 5.0), make_row(2, "ring", 8.0)};
  EXPECT_DOUBLE_EQ(rep.scaling_efficiency(0), 1.0);
  EXPECT_DOUBLE_EQ(rep.scaling_efficiency(1), 0.8);  // 8 ms on 1 vs 5 ms on 2 GPUs
  EXPECT_DOUBLE_EQ(rep.scaling_efficiency(2), 0.5);  // no cp=1 ring row: the magi one is used
}

TEST(Report, PrintersCarryEveryRowAndTheVerdict) {
  Report rep;
  rep.metadata = {{"git_sha", "abc"}};
  rep.rows = {make_row(1, "magi", 8.0), make_row(2, "magi", 5.0)};
  rep.rows[1].check = CheckState::failed;
  CaseRow skipped = make_row(4, "ulysses", 1.0);
  skipped.skipped = true;
  skipped.skip_reason = "cp 4 > heads_kv 2";
  rep.rows.push_back(skipped);

  EXPECT_NE(table_header().find("strategy"), std::string::npos);
  EXPECT_NE(table_row(rep, 1).find("FAILED"), std::string::npos);
  // Rates keep three significant digits: 4 * 524800 * 32 * 4 flops in 8 ms = 0.0336 TF/s.
  EXPECT_NE(table_row(rep, 0).find(" 0.0336 "), std::string::npos) << table_row(rep, 0);
  EXPECT_NE(table_row(rep, 2).find("skipped: cp 4 > heads_kv 2"), std::string::npos);
  EXPECT_NE(table_summary(rep).find("#wrong 1"), std::string::npos);
  EXPECT_NE(table_summary(rep).find("== planned : every case"), std::string::npos);
  rep.rows[1].ranks[0].fwd_sent_bytes += 1;
  EXPECT_NE(table_summary(rep).find("NOT in w/2"), std::string::npos) << table_summary(rep);
  EXPECT_FALSE(rep.rows[1].bytes_match_plan());

  const auto j = to_json(rep);
  ASSERT_EQ(j["cases"].size(), 3u);
  EXPECT_EQ(j["cases"][1]["check"], "failed");
  EXPECT_EQ(j["cases"][1]["ranks"].size(), 2u);
  EXPECT_EQ(j["cases"][2]["skip_reason"], "cp 4 > heads_kv 2");
  EXPECT_EQ(j["summary"]["failed_checks"], 1);
  EXPECT_TRUE(j["cases"][0]["fwd_mfu_pct"].is_null());

  const std::string csv = to_csv(rep);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  EXPECT_NE(csv.find(",failed,"), std::string::npos);
}

}  // namespace
}  // namespace magi
