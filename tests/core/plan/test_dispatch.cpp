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
