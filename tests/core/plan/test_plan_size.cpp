// Plan size estimates: closed forms from the case, the bound, the field each refusal names, and
// the estimate against a plan actually built.
#include "core/plan/plan_size.h"
#include "core/plan/planner.h"

#include "plan_test_util.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

using testing::make_case;

TEST(PlanSize, ClosedForms) {
  EXPECT_EQ(estimate_plan_size(make_case(1000, 4, 64)).units, 16);  // ceil(1000 / 64)
  EXPECT_EQ(estimate_plan_size(make_case(1000, 4, 64)).rank_pairs, 0);
  const PlanSizeEstimate ring = estimate_plan_size(make_case(1000, 8, 64, Strategy::ring));
  EXPECT_EQ(ring.units, 16);
  EXPECT_EQ(ring.rank_pairs, 64);
  EXPECT_EQ(ring.bytes, 16 * kPlanBytesPerUnit + 64 * kPlanBytesPerRankPair);
  EXPECT_EQ(estimate_plan_size(make_case(1000, 8, 64, Strategy::ulysses)).units, 8);
}

TEST(PlanSize, RefusalsNameTheField) {
  const int64_t S = int64_t{1} << 31;
  EXPECT_EQ(plan_size_excess(make_case(S, 2, 512)), "");  // 4M chunks: about 0.8 GB
  const std::string chunks = plan_size_excess(make_case(S, 2, 1));
  EXPECT_NE(chunks.find("parallel.chunk_tokens = 1"), std::string::npos) << chunks;
  EXPECT_NE(chunks.find("2147483648 chunks"), std::string::npos) << chunks;
  EXPECT_NE(chunks.find("--allow-large"), std::string::npos) << chunks;
  EXPECT_EQ(plan_size_excess(make_case(S, 4096, 512, Strategy::ring)), "");  // 16.8M pairs: 3.4 GB
  for (Strategy st : {Strategy::ring, Strategy::allgather, Strategy::ulysses}) {
    const std::string pairs = plan_size_excess(make_case(S, 16384, 512, st));
    EXPECT_NE(pairs.find("parallel.cp = 16384"), std::string::npos) << pairs;
    EXPECT_NE(pairs.find("268435456 rank pairs"), std::string::npos) << pairs;
  }
  EXPECT_EQ(plan_size_excess(make_case(S, 16384, 512, Strategy::magi)), "");
}

// The estimate counts what a full plan holds: a ring plan's stages and messages are cp x cp.
TEST(PlanSize, CountsWhatTheFullPlanHolds) {
  const std::vector<AttnSlice> mask{{{0, 4096}, {0, 4096}, SliceType::causal}};
  for (int cp : {2, 8, 32}) {
    const Case c = make_case(4096, cp, 16, Strategy::ring);
    const Plan p = build_plan(mask, c);
    size_t stages = 0;
    for (const RankPlan& rk : p.ranks) stages += rk.stages.size();
    EXPECT_EQ(static_cast<int64_t>(stages), estimate_plan_size(c).rank_pairs);
    EXPECT_EQ(p.num_units, estimate_plan_size(c).units);
    const Case m = make_case(4096, cp, 16);
    EXPECT_EQ(build_plan(mask, m).num_units, estimate_plan_size(m).units);
  }
}

}  // namespace
}  // namespace magi
