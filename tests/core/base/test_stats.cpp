#include "core/base/stats.h"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace magi {
namespace {

TEST(Stats, MedianOfOddAndEvenCounts) {
  EXPECT_DOUBLE_EQ(median({5.0, 1.0, 9.0}), 5.0);
  EXPECT_DOUBLE_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);  // mean of the two middle values
  EXPECT_DOUBLE_EQ(median({}), 0.0);
}

TEST(Stats, SummaryOfTimings) {
  auto s = summarize({4.0, 1.0, 3.0, 2.0});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.median_ms, 2.5);
  EXPECT_DOUBLE_EQ(s.mean_ms, 2.5);
  EXPECT_DOUBLE_EQ(s.min_ms, 1.0);
  EXPECT_DOUBLE_EQ(s.max_ms, 4.0);
  EXPECT_EQ(s.samples_ms, (std::vector<double>{4.0, 1.0, 3.0, 2.0}));  // kept in iteration order
  EXPECT_DOUBLE_EQ(summarize({5.0, 1.0, 9.0}).median_ms, 5.0);
  EXPECT_EQ(summarize({}).count, 0);
}

TEST(Stats, TensorDiffByHand) {
  // got - ref = (0, 3, -4): ||.|| = 5; ||ref|| = ||(3, 0, 4)|| = 5.
  const std::vector<float> ref{3, 0, 4}, got{3, 3, 0};
  const TensorDiff d = tensor_diff(got, ref);
  EXPECT_DOUBLE_EQ(d.rel_l2, 1.0);
  EXPECT_DOUBLE_EQ(d.max_abs, 4.0);
  EXPECT_EQ(d.inf_mismatches, 0);
  // An all-zero reference: the absolute norm.
  EXPECT_DOUBLE_EQ(tensor_diff(std::vector<float>{3, 4}, std::vector<float>{0, 0}).rel_l2, 5.0);
}

TEST(Stats, TensorDiffMatchesInfinitiesOfOneSignOnly) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  constexpr float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> ref{-inf, -inf, 1, 2};
  const TensorDiff d = tensor_diff(std::vector<float>{-inf, inf, nan, 2}, ref);
  EXPECT_EQ(d.inf_mismatches, 2);  // +inf against -inf, NaN against 1
  EXPECT_DOUBLE_EQ(d.rel_l2, 0.0);  // over the finite pair (2, 2) only
  EXPECT_EQ(tensor_diff(std::vector<float>{-inf, -inf, 1, 2}, ref).inf_mismatches, 0);
}

}  // namespace
}  // namespace magi
