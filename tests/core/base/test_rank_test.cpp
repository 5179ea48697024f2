#include "core/base/rank_test.h"

#include "common/test_seed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace magi {
namespace {

// The oracle: every split of the pooled values into samples of the two sizes, counting those
// whose U is at least as far from its mean as the observed one (ties count 1/2 in U).
double brute_force_p(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> pooled(a);
  pooled.insert(pooled.end(), b.begin(), b.end());
  const int m = static_cast<int>(a.size()), total = static_cast<int>(pooled.size());
  auto u_of = [&](unsigned mask) {
    double u = 0;
    for (int i = 0; i < total; ++i) {
      if (!(mask >> i & 1)) continue;
      for (int j = 0; j < total; ++j) {
        if (mask >> j & 1) continue;
        u += pooled[i] > pooled[j] ? 1 : pooled[i] == pooled[j] ? 0.5 : 0;
      }
    }
    return u;
  };
  const double mean = m * (total - m) / 2.0;
  const double observed = std::abs(u_of((1u << m) - 1) - mean);
  int hits = 0, all = 0;
  for (unsigned mask = 0; mask < (1u << total); ++mask) {
    if (__builtin_popcount(mask) != m) continue;
    ++all;
    if (std::abs(u_of(mask) - mean) >= observed - 1e-9) ++hits;
  }
  return static_cast<double>(hits) / all;
}

TEST(RankTest, UCountsPairsWhereTheFirstIsLarger) {
  const std::vector<double> a{1, 5, 9}, b{2, 3};
  // 5 > 2, 3; 9 > 2, 3: four pairs.
  EXPECT_DOUBLE_EQ(mann_whitney_u(a, b).u, 4);
  EXPECT_DOUBLE_EQ(mann_whitney_u(b, a).u, 2);
}

TEST(RankTest, ExactPMatchesEveryPermutation) {
  std::mt19937_64 rng(testing::test_seed("RankTest.ExactPMatchesEveryPermutation", 11));
  std::normal_distribution<double> noise(0, 1);
  for (int m = 1; m <= 7; ++m) {
    for (int n = 1; n <= 7; ++n) {
      for (double shift : {0.0, 1.0, 3.0}) {
        std::vector<double> a, b;
        for (int i = 0; i < m; ++i) a.push_back(noise(rng) + shift);
        for (int i = 0; i < n; ++i) b.push_back(noise(rng));
        const RankTestResult r = mann_whitney_u(a, b);
        EXPECT_TRUE(r.exact);
        EXPECT_NEAR(r.p_value, brute_force_p(a, b), 1e-12) << m << " x " << n << " shift " << shift;
      }
    }
  }
}

TEST(RankTest, ApartSamplesReachTheSmallestP) {
  const std::vector<double> fast{1, 2, 3, 4, 5}, slow{10, 11, 12, 13, 14};
  const RankTestResult r = mann_whitney_u(fast, slow);
  EXPECT_DOUBLE_EQ(r.u, 0);
  EXPECT_NEAR(r.p_value, min_rank_test_p(5, 5), 1e-12);
  EXPECT_NEAR(min_rank_test_p(5, 5), 2.0 / 252, 1e-12);  // C(10, 5) = 252
  EXPECT_GT(min_rank_test_p(3, 3), 0.05);                // 2 / 20: three iterations prove nothing
}

TEST(RankTest, TiesUseTheNormalApproximationAgreeingWithPermutations) {
  // Timings printed at a coarse clock tie; the corrected approximation stays near the truth.
  const std::vector<double> a{1, 1, 2, 2, 3, 3, 4, 4}, b{3, 3, 4, 4, 5, 5, 6, 6};
  const RankTestResult r = mann_whitney_u(a, b);
  EXPECT_FALSE(r.exact);
  EXPECT_NEAR(r.p_value, brute_force_p(a, b), 0.01);
}

TEST(RankTest, LargeSamplesApproximateWell) {
  // Past the exact limit the approximation is used: a clear shift is found, none is not invented.
  std::mt19937_64 rng(testing::test_seed("RankTest.LargeSamplesApproximateWell", 12));
  std::normal_distribution<double> noise(0, 1);
  std::vector<double> a, b;
  for (int i = 0; i < 60; ++i) a.push_back(noise(rng)), b.push_back(noise(rng) + 2);
  EXPECT_FALSE(mann_whitney_u(a, b).exact);
  EXPECT_LT(mann_whitney_u(a, b).p_value, 1e-6);
  EXPECT_GT(mann_whitney_u(a, a).p_value, 0.99);
}

TEST(RankTest, EmptyOrConstantSamplesShowNoDifference) {
  const std::vector<double> none, one{1.0}, same{2, 2, 2, 2};
  EXPECT_EQ(mann_whitney_u(none, one).p_value, 1);
  EXPECT_EQ(mann_whitney_u(same, same).p_value, 1);
}

}  // namespace
}  // namespace magi
