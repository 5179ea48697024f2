// "Did you mean": the edit distance and which candidate is close enough to suggest.
#include "core/base/suggest.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

TEST(Suggest, EditDistanceCountsOneByteEdits) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("causal", "casual"), 2u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("window", "window"), 0u);
}

TEST(Suggest, SuggestsTheClosestWithinAThirdOfTheWord) {
  const std::vector<std::string> names = {"causal", "full", "sliding_window"};
  EXPECT_EQ(did_you_mean("casual", names), "; did you mean \"causal\"?");
  EXPECT_EQ(did_you_mean("slidng_windw", names), "; did you mean \"sliding_window\"?");
  EXPECT_EQ(did_you_mean("zzzzzzzz", names), "");
  EXPECT_EQ(did_you_mean(std::string(65, 'f'), {std::string(65, 'f')}), "");  // too long to match
}

}  // namespace
}  // namespace magi
