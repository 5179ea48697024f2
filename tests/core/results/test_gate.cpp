// The --min-*-tflops floors: which rows miss them, how the table and the JSON mark them.
#include "core/results/gate.h"
#include "core/results/writers.h"

#include "results_test_util.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

// fwd: area 524800, d 32, hq 4 -> 4 * 524800 * 32 * 4 = 268.7 MFLOP; at 1 ms on 1 rank 0.2687
// TFLOP/s; bwd (2.5x the FLOPs, 2 ms) 0.3359.
TEST(Gate, RowsBelowAFloorAreNamedWithTheirFigure) {
  CaseRow row = test::make_row(1, "magi", 1.0);
  Gate g;
  g.min_fwd_tflops = 0.3;
  const std::vector<std::string> below = gate_failures(row, g);
  ASSERT_EQ(below.size(), 1u);
  EXPECT_EQ(below[0], "fwd 0.2687 TF/s/GPU < --min-fwd-tflops 0.3");
  g.min_fwd_tflops = 0.25;
  EXPECT_TRUE(gate_failures(row, g).empty());
  g.min_bwd_tflops = 0.34;
  EXPECT_EQ(gate_failures(row, g).size(), 1u);
}

TEST(Gate, NoFloorSkippedRowsAndPassesNotRunAreNotGated) {
  CaseRow row = test::make_row(1, "magi", 1.0);
  EXPECT_FALSE(Gate{}.set());
  EXPECT_TRUE(gate_failures(row, Gate{}).empty());
  Gate g{1e9, 1e9};
  row.bwd_ran = false;
  EXPECT_EQ(gate_failures(row, g).size(), 1u);  // fwd only
  row.skipped = true;
  EXPECT_TRUE(gate_failures(row, g).empty());
}

TEST(Gate, TheTableMarksTheRowAndTheSummaryCountsIt) {
  Report report;
  report.rows.push_back(test::make_row(1, "magi", 1.0));
  report.rows.push_back(test::make_row(1, "ring", 0.5));
  report.rows[1].case_key = "other";
  Gate g;
  g.min_fwd_tflops = 0.3;
  EXPECT_TRUE(apply_gate(report.rows[0], g));
  EXPECT_FALSE(apply_gate(report.rows[1], g));
  const std::string marked = table_row(report, 0);
  EXPECT_NE(marked.find("BELOW FLOOR: fwd 0.2687 TF/s/GPU < --min-fwd-tflops 0.3\n"), std::string::npos) << marked;
  EXPECT_EQ(table_row(report, 1).find("BELOW"), std::string::npos);
  EXPECT_NE(table_summary(report).find("# Throughput floor (--min-*-tflops) : 1 case BELOW"), std::string::npos);
  const nlohmann::json j = to_json(report);
  EXPECT_EQ(j["cases"][0]["gate"]["passed"], false);
  EXPECT_EQ(j["cases"][0]["gate"]["below_floor"][0], "fwd 0.2687 TF/s/GPU < --min-fwd-tflops 0.3");
  EXPECT_EQ(j["cases"][1]["gate"]["passed"], true);
}

TEST(Gate, WithoutAFloorNothingChanges) {
  Report report;
  report.rows.push_back(test::make_row(1, "magi", 1.0));
  apply_gate(report.rows[0], Gate{});
  EXPECT_EQ(table_summary(report).find("floor"), std::string::npos);
  EXPECT_TRUE(to_json(report)["cases"][0]["gate"].is_null());
  EXPECT_EQ(table_row(report, 0).back(), '\n');
}

}  // namespace
}  // namespace magi
