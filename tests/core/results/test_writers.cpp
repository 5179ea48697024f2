#include "core/base/schema.h"
#include "core/results/writers.h"
#include "results_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace magi {
namespace {

using test::make_row;

TEST(Writers, PrintersCarryEveryRowAndTheVerdict) {
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
  EXPECT_NE(table_summary(rep).find("values : 1 FAILED"), std::string::npos) << table_summary(rep);
  EXPECT_NE(table_summary(rep).find("== planned : every case"), std::string::npos);
  rep.rows[1].ranks[0].fwd_sent_bytes += 1;
  EXPECT_NE(table_summary(rep).find("NOT in w/2"), std::string::npos) << table_summary(rep);
  EXPECT_FALSE(rep.rows[1].bytes_match_plan());

  const auto j = to_json(rep);
  EXPECT_EQ(j["schema"], std::string(kResultsSchema));
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

// Bytes per link tier (magi rows with ranks_per_node): the JSON's `tiers` splits planned and
// measured bytes into intra- and inter-node, and a measured inter-node tier that differs from the
// plan's fails bytes_match_plan even when the totals agree.
TEST(Writers, TiersSplitAndCheckedPerTier) {
  Report rep;
  rep.rows = {make_row(2, "magi", 8.0)};
  CaseRow& r = rep.rows[0];
  r.ranks_per_node = 1;
  r.planned_fwd_inter_node_bytes = 600;
  r.bound_fwd_inter_node_bytes = 600;
  r.flat_fwd_inter_node_bytes = 900;
  r.planned_bwd_bytes = 2000;
  for (RankRow& k : r.ranks) {
    k.bwd_sent_bytes = 1000;
    k.fwd_inter_node_sent_bytes = 300;
    k.bwd_inter_node_sent_bytes = 600;
  }
  EXPECT_TRUE(r.bytes_match_plan());
  auto t = to_json(rep)["cases"][0]["tiers"];
  EXPECT_EQ(t["ranks_per_node"], 1);
  EXPECT_EQ(t["planned_fwd_intra_node_bytes"], 400);
  EXPECT_EQ(t["measured_fwd_inter_node_bytes"], 600);
  EXPECT_EQ(t["measured_bwd_intra_node_bytes"], 800);
  EXPECT_EQ(t["planned_bwd_inter_node_bytes"], 1200);
  EXPECT_EQ(t["flat_fwd_inter_node_bytes"], 900);
  r.ranks[0].fwd_inter_node_sent_bytes -= 10;  // 10 bytes moved to the intra-node tier
  EXPECT_FALSE(r.bytes_match_plan());
  r.ranks_per_node = 0;  // no tiers planned: the totals alone
  EXPECT_TRUE(r.bytes_match_plan());
  EXPECT_FALSE(to_json(rep)["cases"][0].contains("tiers"));
}

// The device's per-step compute times and peak memory reach the JSON per rank, and the largest
// peak the case fields.
TEST(Writers, CarryComputeStepsAndPeakMemory) {
  Report rep;
  rep.rows = {make_row(2, "magi", 8.0)};
  rep.rows[0].ranks[0].fwd_compute_ms = {1.5, 2.5};
  rep.rows[0].ranks[0].bwd_compute_ms = {3.0};
  rep.rows[0].ranks[0].peak_memory_bytes = 4096;
  rep.rows[0].ranks[1].peak_memory_bytes = 8192;
  EXPECT_EQ(rep.rows[0].max_rank_peak_memory_bytes(), 8192);
  const auto j = to_json(rep);
  const auto& r0 = j["cases"][0]["ranks"][0];
  EXPECT_EQ(r0["fwd_compute_ms"], nlohmann::json({1.5, 2.5}));
  EXPECT_EQ(r0["bwd_compute_ms"], nlohmann::json({3.0}));
  EXPECT_EQ(r0["peak_memory_bytes"], 4096);
  EXPECT_EQ(j["cases"][0]["max_rank_peak_memory_bytes"], 8192);
  const std::string csv = to_csv(rep);
  const std::string header = csv.substr(0, csv.find('\n'));
  const std::string line = csv.substr(header.size() + 1);
  // The column and its value at the same position.
  const auto column = [](const std::string& s, size_t i) {
    size_t at = 0;
    for (size_t k = 0; k < i; ++k) at = s.find(',', at) + 1;
    return s.substr(at, s.find(',', at) - at);
  };
  const size_t i = static_cast<size_t>(std::count(header.begin(), header.begin() + static_cast<long>(
                                          header.find("max_rank_peak_memory_bytes")), ','));
  EXPECT_EQ(column(header, i), "max_rank_peak_memory_bytes");
  EXPECT_EQ(column(line, i), "8192");
}

TEST(Writers, SummaryWithoutChecksGivesNoVerdict) {
  Report rep;
  rep.rows = {make_row(1, "magi", 8.0)};
  EXPECT_NE(table_summary(rep).find("# Out of bounds values : not checked\n"), std::string::npos)
      << table_summary(rep);
  rep.rows[0].check = CheckState::passed;
  EXPECT_NE(table_summary(rep).find("# Out of bounds values : 0 OK\n"), std::string::npos)
      << table_summary(rep);
}

// The JSON's numbers for a row worked by hand (test_row.cpp, HandComputedRow): one rank, area
// 1000, head dim 10, 2 query heads, forward 2 ms, backward 5 ms.
TEST(Writers, JsonNumbersOfAHandComputedRow) {
  Report rep;
  CaseRow r;
  r.area = 1000;
  r.head_dim = 10;
  r.heads_q = 2;
  r.fwd_ran = r.bwd_ran = true;
  RankRow k;
  k.fwd = summarize({2.0});
  k.bwd = summarize({5.0});
  r.ranks.push_back(k);
  r.errors.push_back({"lse", 0.5, 0.01, ErrorBound::max_abs, 0.02, true});
  rep.rows.push_back(r);
  const auto c = to_json(rep)["cases"][0];
  EXPECT_EQ(c["fwd_flops"].get<double>(), 80000.0);
  EXPECT_EQ(c["bwd_flops"].get<double>(), 200000.0);
  EXPECT_NEAR(c["fwd_tflops_per_gpu"].get<double>(), 4e-5, 1e-18);  // 80 000 / 2e-3 s
  EXPECT_NEAR(c["bwd_tflops_per_gpu_mean_rank"].get<double>(), 4e-5, 1e-18);  // 200 000 / 5e-3 s
  EXPECT_EQ(c["errors"][0]["bound"], "max_abs");
}

// Samples are written to 0.1 us (a 2 s GPU window holds thousands); the summary keeps its precision.
TEST(Writers, SamplesWrittenToATenthOfAMicrosecond) {
  Report rep;
  CaseRow r;
  r.fwd_ran = true;
  RankRow k;
  k.fwd = summarize({2.91753698, 0.00004, 1.5});
  r.ranks.push_back(k);
  rep.rows.push_back(r);
  const auto fwd = to_json(rep)["cases"][0]["ranks"][0]["fwd"];
  EXPECT_EQ(fwd["samples_ms"].dump(), "[2.9175,0.0,1.5]");
  EXPECT_EQ(fwd["max_ms"].get<double>(), 2.91753698);
}

// The file's text: indented, arrays of numbers on one line, strings untouched, the same document.
TEST(Writers, JsonTextPutsNumberArraysOnOneLine) {
  Report rep;
  rep.metadata = {{"description", "lengths in [512, 8192], \"quoted [1, 2]\""}, {"sizes", {1, -2.5, 3e-9}}};
  CaseRow r;
  r.fwd_ran = true;
  RankRow k;
  k.fwd = summarize({2.0, 1.25});
  r.ranks.push_back(k);
  rep.rows.push_back(r);
  const std::string text = to_json_text(rep);
  EXPECT_NE(text.find("\"samples_ms\": [2.0,1.25]"), std::string::npos) << text;
  EXPECT_NE(text.find("\"sizes\": [1,-2.5,3e-09]"), std::string::npos) << text;
  EXPECT_NE(text.find("lengths in [512, 8192], \\\"quoted [1, 2]\\\""), std::string::npos) << text;
  EXPECT_NE(text.find("\n  \"cases\": [\n"), std::string::npos) << text;  // arrays of objects stay indented
  EXPECT_EQ(nlohmann::json::parse(text), to_json(rep));
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace magi
