// Planned bytes (core/plan/comm_volume.h): per rank and pass, sent and received, against the
// plan's transfers (each message credited to its sender and to its receiver), the closed-form
// volumes, any element size; ulysses' head split; figures beyond int64 refused by name.
#include "core/base/error.h"
#include "core/plan/comm_volume.h"
#include "core/plan/planner.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

using testing::make_case;
using testing::uniform;

constexpr Strategy kStrategies[] = {Strategy::magi, Strategy::ring, Strategy::ulysses, Strategy::allgather};

// Forward bytes per rank computed from the transfers alone, independently of planned_bytes:
// K/V rows for magi, ring and allgather; for ulysses each (src, dst) message is the all-to-all
// pair: Q, K, V of src's tokens on dst's heads into dst, out of the same tokens back into src.
PlannedBytes forward_from_transfers(const Plan& p, int element_bytes) {
  PlannedBytes b;
  b.fwd.assign(p.ranks.size(), RankBytes{});
  const int64_t kv = 2LL * p.model.heads_kv * p.model.head_dim * element_bytes;
  const int group = p.model.heads_q / p.model.heads_kv;
  for (const Transfer& t : p.transfers) {
    RankBytes& src = b.fwd[static_cast<size_t>(t.src)];
    RankBytes& dst = b.fwd[static_cast<size_t>(t.dst)];
    if (p.strategy != Strategy::ulysses) {
      src.sent += t.tokens * kv;
      dst.received += t.tokens * kv;
      continue;
    }
    const RankPlan& d = p.ranks[static_cast<size_t>(t.dst)];
    const int64_t q_heads = d.head_end - d.head_begin;
    const int64_t row = int64_t{p.model.head_dim} * element_bytes;
    const int64_t qkv = t.tokens * (q_heads + 2 * q_heads / group) * row, out = t.tokens * q_heads * row;
    src.sent += qkv;
    dst.received += qkv;
    dst.sent += out;
    src.received += out;
  }
  return b;
}

// Item: a rank's received bytes are what the messages addressed to it carry (a figure credited
// to the sender instead would pass a test of sums only).
TEST(PlannedBytes, EachRankReceivesWhatIsAddressedToIt) {
  std::mt19937_64 rng(testing::test_seed("PlannedBytes.EachRankReceivesWhatIsAddressedToIt", 31));
  for (int iter = 0; iter < 40; ++iter) {
    const int cp = static_cast<int>(uniform(rng, 2, 8));
    const int64_t S = uniform(rng, 8 * cp, 300);  // rarely a multiple of cp or 2 cp: uneven ranks
    const auto mask = testing::random_mask(rng, S);
    for (Strategy st : kStrategies) {
      Case c = make_case(S, cp, uniform(rng, 1, 8), st);
      c.model = ModelShape{8 * cp, cp, 16, DType::bf16};  // ulysses runs at every cp
      const Plan p = build_plan(mask, c);
      ASSERT_FALSE(p.skipped) << p.skip_reason;
      for (int element_bytes : {2, 4}) {
        const PlannedBytes got = planned_bytes(p, element_bytes);
        const PlannedBytes want = forward_from_transfers(p, element_bytes);
        for (size_t r = 0; r < p.ranks.size(); ++r) {
          SCOPED_TRACE(fmt::format("{} cp {} S {} rank {} element {} B", to_string(st), cp, S, r, element_bytes));
          EXPECT_EQ(got.fwd[r].received, want.fwd[r].received);
          EXPECT_EQ(got.fwd[r].sent, want.fwd[r].sent);
          if (element_bytes == 2) {  // the plan's own figures, in its dtype
            EXPECT_EQ(p.ranks[r].recv_bytes_fwd, want.fwd[r].received);
            EXPECT_EQ(p.ranks[r].send_bytes_fwd, want.fwd[r].sent);
          }
        }
      }
    }
  }
}

// magi's backward: K/V again (src -> dst), then dK/dV back (dst -> src), per rank.
TEST(PlannedBytes, MagiBackwardPerRank) {
  std::mt19937_64 rng(testing::test_seed("PlannedBytes.MagiBackwardPerRank", 32));
  for (int iter = 0; iter < 20; ++iter) {
    const int cp = static_cast<int>(uniform(rng, 2, 8));
    const int64_t S = uniform(rng, 8 * cp, 300);
    const Plan p = build_plan(testing::random_mask(rng, S), make_case(S, cp, 4, Strategy::magi, 2));
    const PlannedBytes b = planned_bytes(p, 4);
    const PlannedBytes f = forward_from_transfers(p, 4);
    for (size_t r = 0; r < p.ranks.size(); ++r) {
      EXPECT_EQ(b.bwd[r].sent, f.fwd[r].sent + f.fwd[r].received) << "rank " << r;
      EXPECT_EQ(b.bwd[r].received, f.fwd[r].received + f.fwd[r].sent) << "rank " << r;
    }
  }
}

// Summed over ranks, sent == received == the plan's CommVolume, forward and backward, for every
// strategy, cp and element size (the volume scales with the element size).
TEST(PlannedBytes, SumToTheVolume) {
  std::mt19937_64 rng(testing::test_seed("PlannedBytes.SumToTheVolume", 33));
  for (int iter = 0; iter < 20; ++iter) {
    for (int cp : {1, 2, 3, 4, 8}) {
      const int64_t S = uniform(rng, 8 * cp, 300);
      const auto mask = testing::random_mask(rng, S);
      for (Strategy st : kStrategies) {
        Case c = make_case(S, cp, 4, st, cp % 3);
        c.model = ModelShape{8, 8, 16, DType::fp16};
        const Plan p = build_plan(mask, c);
        if (p.skipped) continue;  // ulysses at cp 3
        for (int element_bytes : {2, 4}) {
          const PlannedBytes b = planned_bytes(p, element_bytes);
          int64_t fs = 0, fr = 0, bs = 0, br = 0;
          for (size_t r = 0; r < p.ranks.size(); ++r) {
            fs += b.fwd[r].sent, fr += b.fwd[r].received, bs += b.bwd[r].sent, br += b.bwd[r].received;
          }
          SCOPED_TRACE(fmt::format("{} cp {} S {} element {} B", to_string(st), cp, S, element_bytes));
          EXPECT_EQ(fs, p.volume.fwd_bytes * element_bytes / 2);
          EXPECT_EQ(fr, fs);
          EXPECT_EQ(bs, p.volume.bwd_bytes * element_bytes / 2);
          EXPECT_EQ(br, bs);
        }
      }
    }
  }
}

// An outline has the full plan's figures without its stages and messages.
TEST(PlannedBytes, OutlineHasTheFullPlansFigures) {
  std::mt19937_64 rng(testing::test_seed("PlannedBytes.OutlineHasTheFullPlansFigures", 34));
  for (int iter = 0; iter < 20; ++iter) {
    const int cp = static_cast<int>(uniform(rng, 1, 8));
    const int64_t S = uniform(rng, 8 * cp, 300);
    const auto mask = testing::random_mask(rng, S);
    for (Strategy st : {Strategy::ring, Strategy::ulysses, Strategy::allgather}) {
      const Case c = make_case(S, cp, 4, st);
      const Plan full = build_plan(mask, c);
      const Plan outline = build_plan(mask, c, PlanDetail::outline);
      if (full.skipped) continue;
      EXPECT_TRUE(outline.transfers.empty());
      ASSERT_EQ(outline.ranks.size(), full.ranks.size());
      for (size_t r = 0; r < full.ranks.size(); ++r) {
        EXPECT_TRUE(outline.ranks[r].stages.empty());
        EXPECT_EQ(outline.ranks[r].send_bytes_fwd, full.ranks[r].send_bytes_fwd);
        EXPECT_EQ(outline.ranks[r].recv_bytes_fwd, full.ranks[r].recv_bytes_fwd);
        EXPECT_EQ(outline.ranks[r].area, full.ranks[r].area);
      }
      const StrategySummary a = strategy_summary(full), b = strategy_summary(outline);
      EXPECT_EQ(a.volume.fwd_bytes, b.volume.fwd_bytes);
      EXPECT_EQ(a.volume.max_rank_fwd_bytes, b.volume.max_rank_fwd_bytes);
      EXPECT_EQ(a.own_bound.fwd_bytes, b.own_bound.fwd_bytes);
      EXPECT_EQ(a.stages, b.stages);
      EXPECT_EQ(a.stages, static_cast<int>(full.ranks[0].stages.size()));
      EXPECT_EQ(a.max_rank_area, b.max_rank_area);
    }
  }
}

TEST(HeadSplit, UlyssesRanksSplitHeadsByGqaGroup) {
  Case c = make_case(64, 4, 8, Strategy::ulysses);
  c.model = ModelShape{16, 4, 32, DType::bf16};
  const Plan p = build_plan({{{0, 64}, {0, 64}, SliceType::causal}}, c);
  for (int r = 0; r < 4; ++r) {
    const HeadSplit h = head_split(p, r);
    EXPECT_EQ(h.q_begin, 4 * r);
    EXPECT_EQ(h.q_end, 4 * r + 4);
    EXPECT_EQ(h.kv_begin, r);
    EXPECT_EQ(h.kv_end, r + 1);
  }
  const Plan magi = build_plan({{{0, 64}, {0, 64}, SliceType::causal}}, make_case(64, 4, 8));
  const HeadSplit all = head_split(magi, 2);
  EXPECT_EQ(all.q_end - all.q_begin, magi.model.heads_q);
  EXPECT_EQ(all.kv_end - all.kv_begin, magi.model.heads_kv);
}

// 65536 K/V heads of 256 fp32 elements over 2^31 tokens: 2^58 bytes per ring step, so at cp 32
// magi's, ring's and allgather's figures exceed int64. They are a ConfigError naming the fields,
// not a negative number.
TEST(PlannedBytes, FiguresBeyondInt64AreRefusedByName) {
  const int64_t S = int64_t{1} << 31;
  const std::vector<AttnSlice> mask{{{0, S}, {0, S}, SliceType::causal}};
  for (Strategy st : {Strategy::magi, Strategy::ring, Strategy::allgather}) {
    Case c = make_case(S, 32, S / 64, st);
    c.model = ModelShape{65536, 65536, 256, DType::fp32};
    SCOPED_TRACE(std::string(to_string(st)));
    try {
      const Plan p = build_plan(mask, c, PlanDetail::outline);
      FAIL() << "built with fwd bytes " << p.volume.fwd_bytes << ", bwd " << p.volume.bwd_bytes;
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("does not fit in a 64-bit integer"), std::string::npos) << what;
      EXPECT_TRUE(what.find("total_tokens") != std::string::npos || what.find("model.head_dim") != std::string::npos)
          << what;
    }
  }
  // What fits is exact: ring at cp 2; ulysses at cp 32 moves (cp - 1) x S x (4 x 65536 / 32) x 256 x 4 B.
  Case c = make_case(S, 2, S / 64, Strategy::ring);
  c.model = ModelShape{65536, 65536, 256, DType::fp32};
  const Plan ring = build_plan(mask, c, PlanDetail::outline);
  EXPECT_EQ(ring.volume.fwd_bytes, int64_t{1} << 58);
  EXPECT_EQ(ring.volume.bwd_bytes, 3 * (int64_t{1} << 58));
  c = make_case(S, 32, S / 64, Strategy::ulysses);
  c.model = ModelShape{65536, 65536, 256, DType::fp32};
  const Plan ulysses = build_plan(mask, c, PlanDetail::outline);
  EXPECT_EQ(ulysses.volume.fwd_bytes, 31 * (int64_t{1} << 54));
}

}  // namespace
}  // namespace magi
