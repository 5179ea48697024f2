// The progress lines' time-left model (apps/magi_bench/eta.h): floors left are added as they are,
// the time beyond the floors done sets the rate of the work left.
#include "eta.h"

#include <gtest/gtest.h>

#include <cmath>

namespace magi::app {
namespace {

TEST(Eta, WorkAloneScalesTheTimeSoFar) {
  // 10 s for a quarter of the work: 30 s left.
  EXPECT_DOUBLE_EQ(remaining_seconds(10, {1, 0}, {4, 0}), 30);
  EXPECT_DOUBLE_EQ(remaining_seconds(10, {4, 0}, {4, 0}), 0);
}

TEST(Eta, FloorsAreAddedNotScaled) {
  // Six GPU cases of 6 s floor each and tiny work: after the first (7 s, 1 s of it beyond its
  // floor), five floors and five times that 1 s are left.
  EXPECT_DOUBLE_EQ(remaining_seconds(7, {1, 6}, {6, 36}), 30 + 5);
  // A first case that ran no longer than its floor: only floors are left.
  EXPECT_DOUBLE_EQ(remaining_seconds(5, {1, 6}, {3, 18}), 12);
}

TEST(Eta, UnknownBeforeAnyWork) {
  EXPECT_TRUE(std::isnan(remaining_seconds(3, {0, 6}, {2, 12})));
}

}  // namespace
}  // namespace magi::app
