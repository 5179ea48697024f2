// Dispatch: unit counts per rank, solvers against the exhaustive optimum, balance on varlen causal.
#include "core/plan/dispatch.h"
#include "core/plan/planner.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

namespace magi {
namespace {

using testing::uniform;

void expect_counts(const std::vector<int>& owner, size_t n, int cp) {
  std::vector<size_t> count(static_cast<size_t>(cp), 0);
  for (int r : owner) {
    ASSERT_GE(r, 0);
    ASSERT_LT(r, cp);
    ++count[static_cast<size_t>(r)];
  }
  const size_t base = n / static_cast<size_t>(cp);
  size_t ceil_ranks = 0;
  for (size_t c : count) {
    EXPECT_TRUE(c == base || c == base + 1) << c;
    ceil_ranks += c == base + 1 ? 1 : 0;
  }
  EXPECT_EQ(ceil_ranks, n % static_cast<size_t>(cp));
}

TEST(Dispatch, ChunkUnitsShortLastChunk) {
  const auto u = chunk_units(10, 4);
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[2], (Range{8, 10}));
  const auto z = zigzag_units(10, 2);
  ASSERT_EQ(z.size(), 4u);
  EXPECT_EQ(z[0], (Range{0, 2}));
  EXPECT_EQ(z[3], (Range{7, 10}));
}

TEST(Dispatch, SplitRowsAreasSumToMask) {
  std::mt19937_64 rng(testing::test_seed("Dispatch.SplitRowsAreasSumToMask", 5));
  for (int i = 0; i < 200; ++i) {
    const int64_t S = uniform(rng, 1, 300);
    const auto mask = testing::random_mask(rng, S);
    const RowPieces rp = split_rows(mask, chunk_units(S, uniform(rng, 1, 40)));
    int64_t a = 0;
    for (int64_t x : rp.areas) a += x;
    EXPECT_EQ(a, mask_area(mask));
  }
}

TEST(Dispatch, SolversKeepUnitCounts) {
  std::mt19937_64 rng(testing::test_seed("Dispatch.SolversKeepUnitCounts", 6));
  for (int i = 0; i < 300; ++i) {
    const int cp = static_cast<int>(uniform(rng, 1, 16));
    const size_t n = static_cast<size_t>(uniform(rng, cp, 200));
    std::vector<int64_t> areas(n);
    for (auto& a : areas) a = uniform(rng, 0, 1000);
    expect_counts(assign_greedy(areas, cp), n, cp);
    const auto refined = assign_refine(areas, cp);
    expect_counts(refined, n, cp);
    // The last unit is short: it must sit on a rank with the ceil count.
    const int64_t su = static_cast<int64_t>(n) - 1;
    for (const auto& o : {assign_greedy(areas, cp, su), assign_refine(areas, cp, su)}) {
      expect_counts(o, n, cp);
      if (n % static_cast<size_t>(cp) != 0) {
        EXPECT_EQ(std::count(o.begin(), o.end(), o.back()), static_cast<std::ptrdiff_t>(n / static_cast<size_t>(cp) + 1));
      }
    }
    EXPECT_LE(max_rank_load(areas, refined, cp), max_rank_load(areas, assign_greedy(areas, cp), cp));
  }
}

// On tiny instances both solvers are compared with the exhaustive optimum. Stated ratios
// (asserted): refine <= 1.1 x optimum, greedy <= 1.25 x optimum (seen with seed 7: 1.039 and
// 1.101; refine is optimal on 385 of 400); the worst seen is printed.
TEST(Dispatch, WithinStatedRatioOfExhaustiveOptimum) {
  std::mt19937_64 rng(testing::test_seed("Dispatch.WithinStatedRatioOfExhaustiveOptimum", 7));
  double worst_greedy = 1, worst_refine = 1, sum_refine = 0;
  int optimal_refine = 0, count = 0;
  for (int i = 0; i < 400; ++i) {
    const int cp = static_cast<int>(uniform(rng, 2, 4));
    const size_t n = static_cast<size_t>(uniform(rng, cp, 12));
    std::vector<int64_t> areas(n);
    for (auto& a : areas) a = uniform(rng, 1, 100) * (uniform(rng, 0, 3) == 0 ? 10 : 1);
    const int64_t su = uniform(rng, 0, 1) ? static_cast<int64_t>(n) - 1 : -1;
    const auto opt = assign_exhaustive(areas, cp, su);
    expect_counts(opt, n, cp);
    const double o = static_cast<double>(max_rank_load(areas, opt, cp));
    const double g = static_cast<double>(max_rank_load(areas, assign_greedy(areas, cp, su), cp)) / o;
    const double r = static_cast<double>(max_rank_load(areas, assign_refine(areas, cp, su), cp)) / o;
    EXPECT_GE(g, 1.0 - 1e-12);
    EXPECT_GE(r, 1.0 - 1e-12);
    worst_greedy = std::max(worst_greedy, g);
    worst_refine = std::max(worst_refine, r);
    sum_refine += r;
    optimal_refine += r <= 1.0 + 1e-12 ? 1 : 0;
    ++count;
  }
  std::printf("[dispatch vs optimum] %d instances: greedy worst %.3f; refine worst %.3f, mean %.4f, optimal in %d\n",
              count, worst_greedy, worst_refine, sum_refine / count, optimal_refine);
  EXPECT_LE(worst_refine, 1.1);
  EXPECT_LE(worst_greedy, 1.25);
}

// Refine's move choice on a hand-worked instance: areas {8, 8, 4, 5, 9, 4, 10}, cp 2 (3 or 4
// units per rank, one rank gets 4). Greedy, largest first onto the least-loaded rank (ties: lower
// rank): u6 10 -> r0, u4 9 -> r1, u0 8 -> r1, u1 8 -> r0, u3 5 -> r1, u2 4 -> r0, u5 4 -> r0 (tie at
// 22): loads 26 | 22. Refine, r0 against r1, gap 4: a move (delta 4) is not below the gap; the swaps
// u6-u0 (delta 2), u6-u4 (1) and u1-u3 (3) lower the pair's larger load to 24, 25 and 25. The best
// is u6-u0: 24 | 24, the optimum (48 / 2), and no move improves on it. Taking any other improving
// move ends at 25.
TEST(Dispatch, RefineTakesTheBestMoveHandWorked) {
  const std::vector<int64_t> areas{8, 8, 4, 5, 9, 4, 10};
  EXPECT_EQ(assign_greedy(areas, 2), (std::vector<int>{1, 0, 0, 1, 1, 0, 0}));
  const std::vector<int> refined = assign_refine(areas, 2);
  EXPECT_EQ(refined, (std::vector<int>{0, 0, 0, 1, 1, 0, 1}));
  EXPECT_EQ(max_rank_load(areas, refined, 2), 24);
}

// Greedy against a reference written independently of its heap: a linear scan for the
// least-loaded rank with room (ties: lower rank), units by area descending (ties: lower index).
std::vector<int> greedy_by_scan(const std::vector<int64_t>& areas, int cp) {
  const size_t n = areas.size(), ucp = static_cast<size_t>(cp), base = n / ucp, extra = n % ucp;
  std::vector<size_t> order(n);
  for (size_t u = 0; u < n; ++u) order[u] = u;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return areas[a] > areas[b]; });
  std::vector<int64_t> load(ucp, 0);
  std::vector<size_t> count(ucp, 0);
  size_t ceil_ranks = 0;
  std::vector<int> owner(n, -1);
  for (size_t u : order) {
    size_t best = ucp;
    for (size_t r = 0; r < ucp; ++r) {
      const bool room = count[r] < base || (count[r] == base && ceil_ranks < extra);
      if (room && (best == ucp || load[r] < load[best])) best = r;
    }
    owner[u] = static_cast<int>(best);
    load[best] += areas[u];
    if (++count[best] == base + 1) ++ceil_ranks;
  }
  return owner;
}

TEST(Dispatch, GreedyMatchesALinearScan) {
  std::mt19937_64 rng(testing::test_seed("Dispatch.GreedyMatchesALinearScan", 8));
  for (int i = 0; i < 500; ++i) {
    const int cp = static_cast<int>(uniform(rng, 1, 12));
    const size_t n = static_cast<size_t>(uniform(rng, cp, 120));
    std::vector<int64_t> areas(n);
    for (auto& a : areas) a = uniform(rng, 0, 50);  // many ties, in loads and in areas
    ASSERT_EQ(assign_greedy(areas, cp), greedy_by_scan(areas, cp)) << "cp " << cp << " n " << n;
  }
}

// Every unit on exactly one rank, in each solver's assignment and in the plan built from it:
// the ranks' units are disjoint and cover 0..n-1, and so do their token ranges [0, S).
TEST(Dispatch, EachUnitOnExactlyOneRank) {
  std::mt19937_64 rng(testing::test_seed("Dispatch.EachUnitOnExactlyOneRank", 9));
  for (int i = 0; i < 100; ++i) {
    const int cp = static_cast<int>(uniform(rng, 1, 8));
    const int64_t chunk = uniform(rng, 1, 8);
    const int64_t S = uniform(rng, cp * chunk, 200);
    const auto solver = uniform(rng, 0, 1) ? DispatchSolver::refine : DispatchSolver::greedy;
    const Plan p = build_plan(testing::random_mask(rng, S), testing::make_case(S, cp, chunk, Strategy::magi, 1, solver));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    std::vector<int> hosts(static_cast<size_t>(p.num_units), 0);
    std::vector<Range> all;
    for (const RankPlan& rk : p.ranks) {
      for (int64_t u : rk.units) ++hosts.at(static_cast<size_t>(u));
      all.insert(all.end(), rk.q_ranges.begin(), rk.q_ranges.end());
    }
    for (size_t u = 0; u < hosts.size(); ++u) EXPECT_EQ(hosts[u], 1) << "unit " << u;
    EXPECT_EQ(total_size(all), S);                                  // no token twice ...
    EXPECT_EQ(merge_ranges(all), (std::vector<Range>{Range{0, S}}));  // ... and none missing
  }
}

// Varlen causal from the real-corpus histogram, 16 chunks per rank: max/mean <= 1.05 for the
// default solver on every one of 50 seeds; the distribution is printed.
TEST(Dispatch, BalanceVarlenCausalFiftySeeds) {
  const uint64_t seed0 = testing::test_seed("Dispatch.BalanceVarlenCausalFiftySeeds", 100);
  for (int cp : {8, 32}) {
    const int64_t chunk = 512, S = int64_t{16} * cp * chunk;
    std::vector<double> greedy, refine;
    for (uint64_t seed = seed0; seed < seed0 + 50; ++seed) {
      std::mt19937_64 rng(seed);
      const auto mask = testing::varlen_causal(testing::corpus_documents(rng, S));
      const RowPieces rp = split_rows(mask, chunk_units(S, chunk));
      const double total = static_cast<double>(mask_area(mask));
      const double mean = total / cp;
      greedy.push_back(static_cast<double>(max_rank_load(rp.areas, assign_greedy(rp.areas, cp), cp)) / mean);
      const auto owner = assign_units(rp.areas, cp, ParallelSpec{}.solver);
      refine.push_back(static_cast<double>(max_rank_load(rp.areas, owner, cp)) / mean);
      EXPECT_LE(refine.back(), 1.05) << "cp " << cp << " seed " << seed;
    }
    for (auto* v : {&greedy, &refine}) std::sort(v->begin(), v->end());
    auto q = [](const std::vector<double>& v, double f) { return v[static_cast<size_t>(f * static_cast<double>(v.size() - 1))]; };
    std::printf("[balance] varlen causal S=%lld cp=%d chunk=512, max/mean over 50 seeds:\n"
                "  greedy: min %.4f p50 %.4f p90 %.4f max %.4f\n  refine: min %.4f p50 %.4f p90 %.4f max %.4f\n",
                static_cast<long long>(S), cp, greedy.front(), q(greedy, 0.5), q(greedy, 0.9), greedy.back(),
                refine.front(), q(refine, 0.5), q(refine, 0.9), refine.back());
  }
}

}  // namespace
}  // namespace magi
