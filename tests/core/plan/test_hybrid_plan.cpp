// Hybrid head x context plans (core/plan/hybrid_plan.h): every (q, k, head) of the mask covered
// once over the world's ranks, each rank's rows and heads, the bytes per dimension against their
// closed forms, the hand-worked example of docs/plan_schema.md ("Hybrid"), and the refusals.
#include "core/base/error.h"
#include "core/plan/comm_volume.h"
#include "core/plan/hybrid_plan.h"
#include "core/plan/planner.h"
#include "core/workload/workload.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace magi {
namespace {

Case hybrid_case(int64_t S, int heads, int cp, int64_t chunk, Strategy s, ModelShape m) {
  Case c = testing::make_case(S, cp, chunk, s);
  c.parallel.heads = heads;
  c.model = m;
  return c;
}

// Counts of (q, k, query head) over every world rank: rank w's group stages on its heads.
std::vector<uint8_t> hybrid_cover(const Plan& p) {
  const int64_t S = p.total_tokens;
  const int64_t H = p.model.heads_q;
  std::vector<uint8_t> n(static_cast<size_t>(S * S * H), 0);
  for (int w = 0; w < world_size(p); ++w) {
    const HybridRank x = hybrid_rank(p, w);
    const RankPlan& g = p.ranks[static_cast<size_t>(x.group)];
    const std::vector<int64_t> q_rows = testing::rows_of(g.q_ranges);
    for (const Stage& st : g.stages) {
      const std::vector<int64_t> k_rows = testing::rows_of(st.kv_ranges);
      for (const AttnSlice& s : st.slices) {
        for (int64_t q = s.q.start; q < s.q.end; ++q) {
          const Range v = visible_keys(s, q);
          for (int64_t k = v.start; k < v.end; ++k) {
            for (int h = x.heads.q_begin; h < x.heads.q_end; ++h) {
              ++n[static_cast<size_t>((q_rows[static_cast<size_t>(q)] * S + k_rows[static_cast<size_t>(k)]) * H + h)];
            }
          }
        }
      }
    }
  }
  return n;
}

struct DimSums {
  int64_t head_fwd = 0, head_bwd = 0, ctx_fwd = 0, ctx_bwd = 0, recv = 0, sent = 0;
};
DimSums dim_sums(const Plan& p, int eb) {
  const HybridBytes b = hybrid_planned_bytes(p, eb);
  DimSums s;
  for (size_t w = 0; w < b.head.fwd.size(); ++w) {
    s.head_fwd += b.head.fwd[w].sent;
    s.head_bwd += b.head.bwd[w].sent;
    s.ctx_fwd += b.context.fwd[w].sent;
    s.ctx_bwd += b.context.bwd[w].sent;
    s.sent += b.head.fwd[w].sent + b.context.fwd[w].sent + b.head.bwd[w].sent + b.context.bwd[w].sent;
    s.recv += b.head.fwd[w].received + b.context.fwd[w].received + b.head.bwd[w].received +
              b.context.bwd[w].received;
  }
  return s;
}

TEST(HybridPlan, CoversEveryQueryKeyHeadOnceRandomMasks) {
  std::mt19937_64 rng(1616);  // replayable
  const int shapes[][2] = {{2, 2}, {2, 4}, {4, 2}, {2, 3}, {4, 4}, {8, 2}};
  for (int trial = 0; trial < 24; ++trial) {
    const int64_t S = testing::uniform(rng, 24, 72);
    const auto mask = testing::random_mask(rng, S);
    const std::vector<uint8_t> want = testing::dense(mask, S);
    for (const auto& hc : shapes) {
      for (Strategy s : {Strategy::magi, Strategy::ring}) {
        const int h = hc[0], c = hc[1];
        const Case cs = hybrid_case(S, h, c, testing::uniform(rng, 2, 6), s, ModelShape{8, 8, 8, DType::fp32});
        const Plan p = build_plan(mask, cs);
        SCOPED_TRACE(fmt::format("trial {} S {} {} heads {} cp {}", trial, S, to_string(s), h, c));
        ASSERT_FALSE(p.skipped) << p.skip_reason;
        ASSERT_EQ(p.heads, h);
        ASSERT_EQ(world_size(p), h * c);
        const std::vector<uint8_t> got = hybrid_cover(p);
        const int64_t H = cs.model.heads_q;
        for (int64_t i = 0; i < S * S; ++i) {
          for (int64_t hd = 0; hd < H; ++hd) {
            ASSERT_EQ(got[static_cast<size_t>(i * H + hd)], want[static_cast<size_t>(i)])
                << "q " << i / S << " k " << i % S << " head " << hd;
          }
        }
        // A group's rows split over its head indices: disjoint, in order, all of them.
        for (int g = 0; g < c; ++g) {
          std::vector<Range> rows;
          int64_t tokens = 0, area = 0;
          for (int i = 0; i < h; ++i) {
            const HybridRank x = hybrid_rank(p, g * h + i);
            EXPECT_EQ(x.group, g);
            EXPECT_EQ(x.head, i);
            EXPECT_EQ(total_size(x.ranges), x.tokens);
            rows.insert(rows.end(), x.ranges.begin(), x.ranges.end());
            tokens += x.tokens;
            area += x.area;
            EXPECT_EQ(hosted_ranges(p, g * h + i), x.ranges);
          }
          EXPECT_EQ(merge_ranges(rows), p.ranks[static_cast<size_t>(g)].q_ranges);
          EXPECT_EQ(tokens, p.ranks[static_cast<size_t>(g)].tokens);
          EXPECT_EQ(area, p.ranks[static_cast<size_t>(g)].area);
        }
        // Bytes per dimension: every rank's figures summed = the closed forms; sent = received.
        const DimSums d = dim_sums(p, 4);
        const CommVolume head = ulysses_volume(h, S, cs.model, 4);
        EXPECT_EQ(d.head_fwd, head.fwd_bytes);
        EXPECT_EQ(d.head_bwd, head.bwd_bytes);
        EXPECT_EQ(d.head_fwd, p.head_volume.fwd_bytes);
        const CommVolume ctx = s == Strategy::ring ? ring_volume(c, S, cs.model, 4) : p.zero_redundancy_bound;
        EXPECT_EQ(d.ctx_fwd, ctx.fwd_bytes);
        EXPECT_EQ(d.ctx_bwd, ctx.bwd_bytes);
        EXPECT_EQ(p.context_volume.fwd_bytes, ctx.fwd_bytes);
        EXPECT_EQ(p.volume.fwd_bytes, head.fwd_bytes + ctx.fwd_bytes);
        EXPECT_EQ(p.volume.bwd_bytes, head.bwd_bytes + ctx.bwd_bytes);
        EXPECT_EQ(d.sent, d.recv);
        // The head slice the ranks of one head index run: the context plan's bytes / h.
        const Plan slice = head_slice_plan(p);
        EXPECT_EQ(slice.heads, 1);
        EXPECT_EQ(slice.model.heads_q, cs.model.heads_q / h);
        EXPECT_EQ(slice.volume.fwd_bytes * h, ctx.fwd_bytes);
        EXPECT_EQ(slice.volume.bwd_bytes * h, ctx.bwd_bytes);
      }
    }
  }
}

// docs/plan_schema.md, "Hybrid": S = 16 causal, Hq = 4, Hkv = 2, D = 8, fp32 (b = 4), heads 2 x cp 2.
TEST(HybridPlan, HandWorkedExample) {
  const std::vector<AttnSlice> mask{{Range{0, 16}, Range{0, 16}, SliceType::causal}};
  const ModelShape m{4, 2, 8, DType::fp32};
  // ring: zigzag blocks of 4; group 0 = [0,4)+[12,16), group 1 = [4,12); 8 tokens each.
  {
    const Plan p = build_plan(mask, hybrid_case(16, 2, 2, 4, Strategy::ring, m));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    EXPECT_EQ(p.ranks[0].q_ranges, (std::vector<Range>{{0, 4}, {12, 16}}));
    EXPECT_EQ(p.ranks[1].q_ranges, (std::vector<Range>{{4, 12}}));
    EXPECT_EQ(hybrid_rank(p, 1).ranges, (std::vector<Range>{{12, 16}}));  // group 0, head index 1
    EXPECT_EQ(hybrid_rank(p, 2).ranges, (std::vector<Range>{{4, 8}}));    // group 1, head index 0
    EXPECT_EQ(hybrid_rank(p, 3).heads.q_begin, 2);
    EXPECT_EQ(hybrid_rank(p, 3).heads.kv_begin, 1);
    const HybridBytes b = hybrid_planned_bytes(p, 4);
    for (int w = 0; w < 4; ++w) {
      // head: 4 x (2 + 2 x 1) x 32 + 4 x 2 x 32 = 768; context: (16 - 8) x 128 / 2 = 512.
      EXPECT_EQ(b.head.fwd[static_cast<size_t>(w)].sent, 768);
      EXPECT_EQ(b.head.bwd[static_cast<size_t>(w)].sent, 768);
      EXPECT_EQ(b.context.fwd[static_cast<size_t>(w)].sent, 512);
      EXPECT_EQ(b.context.bwd[static_cast<size_t>(w)].sent, 512 + 16 * 128 / 2);
    }
    EXPECT_EQ(p.head_volume.fwd_bytes, 3072);     // (2-1) x 16 x 12 / 2 x 8 x 4
    EXPECT_EQ(p.context_volume.fwd_bytes, 2048);  // (2-1) x 16 x 128
    EXPECT_EQ(p.context_volume.bwd_bytes, 6144);  // (2x2-1) x 16 x 128
    EXPECT_EQ(p.volume.fwd_bytes, 5120);
    EXPECT_EQ(p.volume.bwd_bytes, 9216);
  }
  // magi, chunks of 4 (areas 10, 26, 42, 58): group 0 = [0,4)+[12,16), group 1 = [4,12);
  // remote K/V: group 0 needs [4,12) (8 tokens), group 1 needs [0,4) (4 tokens).
  {
    Case c = hybrid_case(16, 2, 2, 4, Strategy::magi, m);
    c.parallel.overlap_degree = 1;
    const Plan p = build_plan(mask, c);
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    EXPECT_EQ(p.ranks[0].q_ranges, (std::vector<Range>{{0, 4}, {12, 16}}));
    EXPECT_EQ(p.ranks[1].q_ranges, (std::vector<Range>{{4, 12}}));
    EXPECT_EQ(p.ranks[0].remote_kv_tokens, 8);
    EXPECT_EQ(p.ranks[1].remote_kv_tokens, 4);
    const HybridBytes b = hybrid_planned_bytes(p, 4);
    const int64_t ctx_fwd[] = {256, 256, 512, 512};  // group 0 sends 4 tokens, group 1 8; / 2 heads
    for (int w = 0; w < 4; ++w) {
      EXPECT_EQ(b.head.fwd[static_cast<size_t>(w)].sent, 768);
      EXPECT_EQ(b.context.fwd[static_cast<size_t>(w)].sent, ctx_fwd[w]);
      EXPECT_EQ(b.context.bwd[static_cast<size_t>(w)].sent, 768);  // K/V again + dK/dV back: 384 each way
    }
    EXPECT_EQ(p.head_volume.fwd_bytes, 3072);
    EXPECT_EQ(p.context_volume.fwd_bytes, 1536);  // 12 x 128
    EXPECT_EQ(p.context_volume.bwd_bytes, 3072);
    EXPECT_EQ(p.volume.fwd_bytes, 4608);
    EXPECT_EQ(p.volume.max_rank_fwd_bytes, 768 + 512);
  }
}

TEST(HybridPlan, SkipsWithReasons) {
  const std::vector<AttnSlice> mask{{Range{0, 64}, Range{0, 64}, SliceType::causal}};
  const Plan kv = build_plan(mask, hybrid_case(64, 4, 2, 8, Strategy::magi, ModelShape{8, 2, 8, DType::fp32}));
  EXPECT_TRUE(kv.skipped);
  EXPECT_NE(kv.skip_reason.find("heads_kv = 2 not divisible by heads = 4"), std::string::npos) << kv.skip_reason;
  const Plan uly = build_plan(mask, hybrid_case(64, 2, 2, 8, Strategy::ulysses, ModelShape{8, 8, 8, DType::fp32}));
  EXPECT_TRUE(uly.skipped);
  EXPECT_NE(uly.skip_reason.find("magi or ring"), std::string::npos) << uly.skip_reason;
  // The context strategy's own reasons still apply (fewer chunks than groups).
  const Plan few = build_plan(mask, hybrid_case(64, 2, 16, 8, Strategy::magi, ModelShape{8, 8, 8, DType::fp32}));
  EXPECT_TRUE(few.skipped);
  EXPECT_NE(few.skip_reason.find("fewer chunks than ranks"), std::string::npos) << few.skip_reason;
}

TEST(HybridPlan, WorkloadRefusesHeadsWithUlyssesOrAllgather) {
  nlohmann::json doc = {{"name", "h"},
                        {"model", {{"heads_q", 8}, {"heads_kv", 8}, {"head_dim", 8}}},
                        {"sequence", {{"total_tokens", 64}}},
                        {"parallel", {{"cp", 2}, {"heads", 2}, {"strategy", {"magi", "ulysses"}}}}};
  try {
    parse_workload(doc, "w.json");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("parallel.heads"), std::string::npos) << what;
    EXPECT_NE(what.find("ulysses"), std::string::npos) << what;
  }
  doc["parallel"]["strategy"] = {"magi", "ring"};
  const Workload w = parse_workload(doc, "w.json");
  ASSERT_EQ(w.cases.size(), 2u);
  EXPECT_EQ(w.cases[0].parallel.heads, 2);
  EXPECT_EQ(resolved_config(w.cases[0])["parallel"]["heads"], 2);
  doc["parallel"].erase("heads");
  EXPECT_FALSE(resolved_config(parse_workload(doc, "w.json").cases[0])["parallel"].contains("heads"));
}

}  // namespace
}  // namespace magi
