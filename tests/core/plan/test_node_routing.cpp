// Node-aware magi plans (core/plan/node_routing.h): the hand-worked example of DESIGN.md §3
// ("Node-aware GroupCast") and its closed forms, every (q, k) pair once with each tier at its
// bound on random masks, every token received once from a rank that holds it, one node (and one
// rank per node) equal to the flat plan; and the ranks-per-node resolution against a job's hosts
// (core/plan/node_layout.h).
#include "core/base/error.h"
#include "core/plan/comm_volume.h"
#include "core/plan/node_layout.h"
#include "core/plan/planner.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace magi {
namespace {

using testing::expect_covers_exactly;
using testing::make_case;
using testing::uniform;

Case node_case(int64_t S, int cp, int rpn, int64_t chunk, int degree) {
  Case c = make_case(S, cp, chunk, Strategy::magi, degree);
  c.parallel.ranks_per_node = rpn;
  return c;
}

int64_t kv_bytes(const Plan& p) { return kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype)); }

// Owner of every token.
std::vector<int> owners(const Plan& p) {
  std::vector<int> o(static_cast<size_t>(p.total_tokens), -1);
  for (const RankPlan& rk : p.ranks) {
    for (const Range& r : rk.q_ranges) {
      for (int64_t t = r.start; t < r.end; ++t) o[static_cast<size_t>(t)] = rk.rank;
    }
  }
  return o;
}

// The routing's invariants, checked token by token against the plan's own remote keys: each rank
// receives each remote key it needs exactly once, in the stage its layout says; a token comes from
// its owner's host buffer, or (forwarded) from a node-mate's previous stage buffer that holds it;
// only one rank of a node receives a token from another node; every tier at its bound.
void expect_routed(const Plan& p) {
  const int rpn = p.ranks_per_node;
  const std::vector<int> owner = owners(p);
  // (rank, token) -> stage it arrives in.
  std::map<std::pair<int, int64_t>, int> arrival;
  std::map<std::pair<int, int64_t>, int> crossings;  // (dst node, token) -> inter-node receipts
  for (const Transfer& t : p.transfers) {
    EXPECT_NE(t.src, t.dst);
    EXPECT_EQ(t.tokens, total_size(t.ranges));
    for (const Range& r : t.ranges) {
      for (int64_t k = r.start; k < r.end; ++k) {
        EXPECT_TRUE(arrival.emplace(std::make_pair(t.dst, k), t.stage).second)
            << "rank " << t.dst << " receives token " << k << " twice";
        if (t.from_stage == 0) {
          EXPECT_EQ(owner[static_cast<size_t>(k)], t.src) << "token " << k << " sent by a non-owner";
        } else {
          EXPECT_EQ(t.src / rpn, t.dst / rpn) << "a forward leaves its node";
          EXPECT_EQ(t.from_stage, t.stage - 1);
          const auto it = arrival.find({t.src, k});
          ASSERT_NE(it, arrival.end()) << "relay " << t.src << " forwards token " << k << " it never got";
          EXPECT_EQ(it->second, t.from_stage);
        }
        if (t.src / rpn != t.dst / rpn) ++crossings[{t.dst / rpn, k}];
      }
    }
  }
  for (const auto& [key, n] : crossings) EXPECT_EQ(n, 1) << "token " << key.second << " enters node " << key.first << " " << n << " times";
  for (const RankPlan& rk : p.ranks) {
    std::vector<Range> got;
    for (size_t s = 1; s < rk.stages.size(); ++s) {
      for (const Range& r : rk.stages[s].kv_ranges) {
        got.push_back(r);
        for (int64_t k = r.start; k < r.end; ++k) EXPECT_EQ((arrival[std::make_pair(rk.rank, k)]), static_cast<int>(s));
      }
    }
    EXPECT_EQ(total_size(got), rk.remote_kv_tokens) << "rank " << rk.rank;
    EXPECT_EQ(merge_ranges(got), rk.remote_kv_ranges) << "rank " << rk.rank;
  }
  // Bounds, from the dense pairs: each node's needed keys owned elsewhere, once per node.
  int64_t inter = 0, remote = 0;
  for (int n = 0; n < p.cp / rpn; ++n) {
    std::set<int64_t> need;
    for (int r = n * rpn; r < (n + 1) * rpn; ++r) {
      for (const Range& x : p.ranks[static_cast<size_t>(r)].remote_kv_ranges) {
        for (int64_t k = x.start; k < x.end; ++k) {
          if (owner[static_cast<size_t>(k)] / rpn != n) need.insert(k);
        }
      }
      remote += p.ranks[static_cast<size_t>(r)].remote_kv_tokens;
    }
    inter += static_cast<int64_t>(need.size());
  }
  const int64_t kv = kv_bytes(p);
  EXPECT_EQ(p.tier_bound.inter_node, inter * kv);
  EXPECT_EQ(p.tier_bound.intra_node, (remote - inter) * kv);
  EXPECT_EQ(p.tier_volume.inter_node, p.tier_bound.inter_node);
  EXPECT_EQ(p.tier_volume.intra_node, p.tier_bound.intra_node);
  EXPECT_EQ(p.volume.fwd_bytes, remote * kv);  // the same total as the flat plan
  EXPECT_EQ(p.tier_flat.intra_node + p.tier_flat.inter_node, remote * kv);
  const PlannedBytes b = planned_bytes(p, dtype_bytes(p.model.dtype));
  int64_t sent = 0;
  for (const RankBytes& x : b.fwd) sent += x.sent;
  EXPECT_EQ(sent, p.volume.fwd_bytes);
}

// DESIGN.md §3's example: a full mask over S = 8 tokens, cp 4 as 2 nodes of 2 ranks, chunks of
// one token (each rank hosts 2). Each rank needs the 6 tokens it does not host, 4 of them from the
// other node. Flat: 24 remote receipts, 16 of them between nodes. Node-aware: each node takes the
// other node's 4 tokens once (8 inter-node), the other 16 receipts stay inside the nodes.
TEST(NodeRouting, HandWorkedFullMask) {
  const std::vector<AttnSlice> mask{{Range{0, 8}, Range{0, 8}, SliceType::full}};
  for (int degree : {1, 2, 3}) {
    const Plan p = build_plan(mask, node_case(8, 4, 2, 1, degree));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    const int64_t kv = kv_bytes(p);  // 2 x 8 heads x 128 x 2 B = 4096
    ASSERT_EQ(kv, 4096);
    EXPECT_EQ(p.volume.fwd_bytes, 24 * kv);
    EXPECT_EQ(p.tier_flat.inter_node, 16 * kv);
    EXPECT_EQ(p.tier_flat.intra_node, 8 * kv);
    EXPECT_EQ(p.tier_volume.inter_node, 8 * kv);
    EXPECT_EQ(p.tier_volume.intra_node, 16 * kv);
    EXPECT_EQ(p.tier_bound.inter_node, 8 * kv);
    EXPECT_EQ(p.volume.bwd_bytes, 48 * kv);
    EXPECT_EQ(p.ranks[0].stages.size(), static_cast<size_t>(degree) + 2);  // + the last fan-out
    expect_covers_exactly(p, mask);
    expect_routed(p);
  }
}

// The full mask's closed forms at any size: with n nodes of P / n ranks, node-aware inter-node =
// (n - 1) S tokens, intra-node = (P - n) S; flat inter-node = (P / n)(n - 1) S.
TEST(NodeRouting, FullMaskClosedForms) {
  std::mt19937_64 rng(testing::test_seed("NodeRouting.FullMaskClosedForms", 3));
  for (int iter = 0; iter < 30; ++iter) {
    const int cp = static_cast<int>(std::vector<int>{4, 6, 8, 12}[static_cast<size_t>(uniform(rng, 0, 3))]);
    std::vector<int> divisors;
    for (int d = 1; d < cp; ++d) {
      if (cp % d == 0) divisors.push_back(d);
    }
    const int rpn = divisors[static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(divisors.size()) - 1))];
    const int64_t chunk = uniform(rng, 1, 6);
    const int64_t S = uniform(rng, cp * chunk, 200);
    const int n = cp / rpn;
    const std::vector<AttnSlice> mask{{Range{0, S}, Range{0, S}, SliceType::full}};
    const Plan p = build_plan(mask, node_case(S, cp, rpn, chunk, static_cast<int>(uniform(rng, 0, 4))));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    SCOPED_TRACE(fmt::format("S {} cp {} rpn {} chunk {}", S, cp, rpn, chunk));
    const int64_t kv = kv_bytes(p);
    EXPECT_EQ(p.tier_volume.inter_node, (n - 1) * S * kv);
    EXPECT_EQ(p.tier_volume.intra_node, (cp - n) * S * kv);
    EXPECT_EQ(p.tier_flat.inter_node, rpn * (n - 1) * S * kv);
    expect_routed(p);
  }
}

TEST(NodeRouting, RandomMasksCoverEachPairOnceAtTheBounds) {
  std::mt19937_64 rng(testing::test_seed("NodeRouting.RandomMasksCoverEachPairOnceAtTheBounds", 17));
  for (int iter = 0; iter < 40; ++iter) {
    for (int cp : {2, 4, 6, 8, 12}) {
      std::vector<int> divisors;
      for (int d = 1; d <= cp; ++d) {
        if (cp % d == 0) divisors.push_back(d);
      }
      const int rpn = divisors[static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(divisors.size()) - 1))];
      const int64_t chunk = uniform(rng, 1, 8);
      const int64_t S = uniform(rng, cp * chunk, 160);
      const auto mask = testing::random_mask(rng, S);
      const int degree = static_cast<int>(uniform(rng, 0, 4));
      SCOPED_TRACE(fmt::format("iter {} S {} cp {} rpn {} chunk {} degree {}", iter, S, cp, rpn, chunk, degree));
      const Plan p = build_plan(mask, node_case(S, cp, rpn, chunk, degree));
      ASSERT_FALSE(p.skipped) << p.skip_reason;
      EXPECT_EQ(p.ranks_per_node, rpn);
      expect_covers_exactly(p, mask);
      expect_routed(p);
    }
  }
}

// The message list of node routing (gathered and sorted node by node): one message per (stage,
// src, dst, from_stage), listed in that order; each message's ranges ascending and merged (no two
// touch); a rank's stage buffer the concatenation of the messages into it, in list order.
TEST(NodeRouting, MessagesOncePerKeyInKeyOrderWithMergedRanges) {
  std::mt19937_64 rng(testing::test_seed("NodeRouting.MessagesOncePerKeyInKeyOrderWithMergedRanges", 23));
  for (int iter = 0; iter < 40; ++iter) {
    const int rpn = static_cast<int>(uniform(rng, 1, 4));
    const int cp = rpn * static_cast<int>(uniform(rng, 2, 4));
    const int64_t chunk = uniform(rng, 1, 6);
    const int64_t S = uniform(rng, cp * chunk, 200);
    const auto mask = testing::random_mask(rng, S);
    const int degree = static_cast<int>(uniform(rng, 1, 4));
    SCOPED_TRACE(fmt::format("iter {} S {} cp {} rpn {} chunk {} degree {}", iter, S, cp, rpn, chunk, degree));
    const Plan p = build_plan(mask, node_case(S, cp, rpn, chunk, degree));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    auto key = [](const Transfer& t) { return std::tie(t.stage, t.src, t.dst, t.from_stage); };
    std::map<std::pair<int, int>, std::vector<Range>> into;  // (dst, stage) -> ranges in list order
    for (size_t i = 0; i < p.transfers.size(); ++i) {
      const Transfer& t = p.transfers[i];
      if (i > 0) {
        EXPECT_LT(key(p.transfers[i - 1]), key(t)) << "transfer " << i;
      }
      for (size_t j = 1; j < t.ranges.size(); ++j) {
        EXPECT_GT(t.ranges[j].start, t.ranges[j - 1].end) << "transfer " << i << " range " << j;
      }
      std::vector<Range>& v = into[{t.dst, t.stage}];
      v.insert(v.end(), t.ranges.begin(), t.ranges.end());
    }
    for (const RankPlan& rk : p.ranks) {
      for (size_t s = 1; s < rk.stages.size(); ++s) {
        EXPECT_EQ(rk.stages[s].kv_ranges, (into[{rk.rank, static_cast<int>(s)}])) << "rank " << rk.rank << " stage " << s;
      }
    }
  }
}

void expect_same_plan(const Plan& a, const Plan& b) {
  ASSERT_EQ(a.ranks.size(), b.ranks.size());
  ASSERT_EQ(a.transfers.size(), b.transfers.size());
  for (size_t i = 0; i < a.transfers.size(); ++i) {
    const Transfer& x = a.transfers[i];
    const Transfer& y = b.transfers[i];
    EXPECT_EQ(std::tie(x.stage, x.src, x.dst, x.ranges, x.from_stage), std::tie(y.stage, y.src, y.dst, y.ranges, y.from_stage))
        << "transfer " << i;
  }
  for (size_t r = 0; r < a.ranks.size(); ++r) {
    ASSERT_EQ(a.ranks[r].stages.size(), b.ranks[r].stages.size());
    for (size_t s = 0; s < a.ranks[r].stages.size(); ++s) {
      EXPECT_EQ(a.ranks[r].stages[s].kv_ranges, b.ranks[r].stages[s].kv_ranges);
      EXPECT_EQ(a.ranks[r].stages[s].slices, b.ranks[r].stages[s].slices);
    }
  }
  EXPECT_EQ(a.volume.fwd_bytes, b.volume.fwd_bytes);
  EXPECT_EQ(a.volume.bwd_bytes, b.volume.bwd_bytes);
}

// One node (ranks_per_node = cp, or auto) is today's flat plan; so is one rank per node, where
// no node has two ranks to share a token (the routing's own code path).
TEST(NodeRouting, OneNodeAndOneRankPerNodeAreTheFlatPlan) {
  std::mt19937_64 rng(testing::test_seed("NodeRouting.OneNodeAndOneRankPerNodeAreTheFlatPlan", 5));
  for (int iter = 0; iter < 30; ++iter) {
    const int cp = static_cast<int>(uniform(rng, 2, 9));
    const int64_t chunk = uniform(rng, 1, 6);
    const int64_t S = uniform(rng, cp * chunk, 150);
    const auto mask = testing::random_mask(rng, S);
    const int degree = static_cast<int>(uniform(rng, 0, 3));
    const Plan flat = build_plan(mask, node_case(S, cp, 0, chunk, degree));
    const Plan one_node = build_plan(mask, node_case(S, cp, cp, chunk, degree));
    const Plan singles = build_plan(mask, node_case(S, cp, 1, chunk, degree));
    expect_same_plan(flat, one_node);
    expect_same_plan(flat, singles);
    EXPECT_EQ(flat.ranks_per_node, cp);
    EXPECT_EQ(flat.tier_volume.inter_node, 0);
    EXPECT_EQ(flat.tier_volume.intra_node, flat.volume.fwd_bytes);
    EXPECT_EQ(singles.tier_volume.inter_node, flat.volume.fwd_bytes);
  }
}

TEST(NodeRouting, RanksPerNodeMustDivideCp) {
  const std::vector<AttnSlice> mask{{Range{0, 64}, Range{0, 64}, SliceType::causal}};
  try {
    build_plan(mask, node_case(64, 6, 4, 4, 1));
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.ranks_per_node = 4 does not divide parallel.cp = 6"),
              std::string::npos) << e.what();
  }
}

TEST(NodeLayout, ExplicitValueMustFitTheHosts) {
  const std::vector<int> two_hosts{0, 0, 0, 0, 4, 4, 4, 4};
  EXPECT_EQ(ranks_per_node_for_hosts(2, 8, two_hosts), 2);  // virtual nodes inside a host
  EXPECT_EQ(ranks_per_node_for_hosts(4, 8, two_hosts), 4);
  try {
    ranks_per_node_for_hosts(8, 8, two_hosts);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("parallel.ranks_per_node = 8"), std::string::npos) << m;
    EXPECT_NE(m.find("ranks 0..7"), std::string::npos) << m;
    EXPECT_NE(m.find("only 4 of them"), std::string::npos) << m;
  }
  EXPECT_THROW(ranks_per_node_for_hosts(3, 8, two_hosts), ConfigError);
}

TEST(NodeLayout, AutoIsTheHostSplit) {
  EXPECT_EQ(ranks_per_node_for_hosts(0, 8, {0, 0, 0, 0, 4, 4, 4, 4}), 4);
  EXPECT_EQ(ranks_per_node_for_hosts(0, 4, {0, 0, 0, 0, 0, 0, 0, 0}), 4);  // the first cp ranks
  EXPECT_EQ(ranks_per_node_for_hosts(0, 4, {0, 0, 0, 0, 4, 4, 4, 4}), 4);
  EXPECT_EQ(ranks_per_node_for_hosts(0, 8, {0, 0, 0, 0, 0, 0, 6, 6}), 2);  // 6 + 2: blocks of 2 fit
  EXPECT_EQ(ranks_per_node_for_hosts(0, 4, {0, 1, 0, 1}), 1);              // round-robin placement
}

}  // namespace
}  // namespace magi
