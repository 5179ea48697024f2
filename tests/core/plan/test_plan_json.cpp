// plan_to_json: the documented keys (docs/plan_schema.md) and values that round-trip.
#include "core/plan/comm_volume.h"
#include "core/plan/plan_json.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

TEST(PlanJson, HoldsTheSchemaKeys) {
  const std::vector<AttnSlice> mask{{{0, 64}, {0, 64}, SliceType::causal}};
  const Plan p = build_plan(mask, testing::make_case(64, 4, 4, Strategy::magi, 2));
  const nlohmann::json j = plan_to_json(p);
  EXPECT_EQ(j["schema"], kPlanSchema);
  EXPECT_EQ(j["strategy"], "magi");
  ASSERT_EQ(j["ranks"].size(), 4u);
  for (size_t r = 0; r < 4; ++r) {
    const auto& jr = j["ranks"][r];
    std::vector<Range> q;
    for (const auto& x : jr["q_ranges"]) q.push_back(Range{x[0].get<int64_t>(), x[1].get<int64_t>()});
    EXPECT_EQ(q, p.ranks[r].q_ranges);
    EXPECT_EQ(jr["area"], p.ranks[r].area);
    EXPECT_EQ(jr["remote_kv_ranges"].size(), p.ranks[r].remote_kv_ranges.size());
    ASSERT_EQ(jr["stages"].size(), 3u);
    EXPECT_EQ(jr["stages"][0]["slices"].size(), p.ranks[r].stages[0].slices.size());
  }
  EXPECT_EQ(j["group_cast"].size(), p.transfers.size());
  for (const char* k : {"src", "dst", "ranges", "stage", "tokens"}) EXPECT_TRUE(j["group_cast"][0].contains(k)) << k;
  EXPECT_EQ(j["stages"].size(), 3u);
  EXPECT_EQ(j["volume"]["fwd_bytes"], p.volume.fwd_bytes);
  EXPECT_EQ(j["zero_redundancy_bound"]["fwd_bytes"], p.zero_redundancy_bound.fwd_bytes);
  EXPECT_FALSE(plan_to_json(p, PlanJsonOptions{false})["ranks"][0]["stages"][0].contains("slices"));

  const auto all = compare_strategies(mask, testing::make_case(64, 4, 4));
  const nlohmann::json s = strategies_to_json(all, p.zero_redundancy_bound);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[1]["strategy"], "ring");
  EXPECT_TRUE(s[1].contains("fwd_vs_bound"));
}

// The JSON alone passes the coverage and minimality checks: rebuild the plan from it.
Plan plan_from_json(const nlohmann::json& j) {
  auto ranges = [](const nlohmann::json& a) {
    std::vector<Range> r;
    for (const auto& x : a) r.push_back(Range{x[0].get<int64_t>(), x[1].get<int64_t>()});
    return r;
  };
  Plan p;
  p.strategy = j["strategy"] == "ulysses" ? Strategy::ulysses : Strategy::magi;
  p.cp = j["cp"];
  p.total_tokens = j["total_tokens"];
  for (const auto& jr : j["ranks"]) {
    RankPlan rk;
    rk.rank = jr["rank"];
    rk.q_ranges = ranges(jr["q_ranges"]);
    rk.remote_kv_ranges = ranges(jr["remote_kv_ranges"]);
    for (const auto& js : jr["stages"]) {
      Stage st;
      st.kv_ranges = ranges(js["kv_ranges"]);
      for (const auto& x : js["slices"]) {
        st.slices.push_back(AttnSlice{{x[0].get<int64_t>(), x[1].get<int64_t>()}, {x[2].get<int64_t>(), x[3].get<int64_t>()},
                                      *parse_slice_type(x[4].get<std::string>())});
      }
      rk.stages.push_back(std::move(st));
    }
    p.ranks.push_back(std::move(rk));
  }
  for (const auto& jt : j["group_cast"]) {
    p.transfers.push_back(Transfer{jt["stage"], jt["src"], jt["dst"], ranges(jt["ranges"]), jt["tokens"]});
  }
  return p;
}

TEST(PlanJson, JsonAloneCoversTheMaskAndMovesTheBound) {
  std::mt19937_64 rng(testing::test_seed("PlanJson.JsonAloneCoversTheMaskAndMovesTheBound", 31));
  for (int i = 0; i < 40; ++i) {
    const int cp = static_cast<int>(testing::uniform(rng, 1, 8));
    const int64_t S = testing::uniform(rng, 8 * cp, 160);
    const auto mask = testing::random_mask(rng, S);
    for (Strategy st : {Strategy::magi, Strategy::ring, Strategy::allgather, Strategy::ulysses}) {
      const Plan p = build_plan(mask, testing::make_case(S, cp, 4, st, 0));
      if (p.skipped) continue;
      const nlohmann::json j = nlohmann::json::parse(plan_to_json(p).dump());
      const Plan back = plan_from_json(j);
      testing::expect_covers_exactly(back, mask);
      int64_t moved = 0;
      for (const Transfer& t : back.transfers) moved += t.tokens;
      if (st == Strategy::magi) {
        int64_t remote = 0;
        for (const RankPlan& rk : back.ranks) remote += total_size(rk.remote_kv_ranges);
        EXPECT_EQ(moved, remote);
        EXPECT_EQ(j["volume"]["fwd_bytes"].get<int64_t>(), remote * kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype)));
      }
    }
  }
}

TEST(PlanJson, SkippedPlan) {
  const std::vector<AttnSlice> mask{{{0, 64}, {0, 64}, SliceType::causal}};
  const Plan p = build_plan(mask, testing::make_case(64, 16, 4, Strategy::ulysses));
  ASSERT_TRUE(p.skipped);
  const nlohmann::json j = plan_to_json(p);
  EXPECT_TRUE(j["skipped"].get<bool>());
  EXPECT_NE(j["skip_reason"].get<std::string>().find("heads_kv"), std::string::npos);
  EXPECT_TRUE(j["ranks"].empty());
  EXPECT_TRUE(j["group_cast"].empty());
}

}  // namespace
}  // namespace magi
