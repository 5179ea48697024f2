#include "core/base/range.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

TEST(Range, SizeAndEmpty) {
  EXPECT_EQ((Range{3, 7}).size(), 4);
  EXPECT_TRUE((Range{5, 5}).empty());
  EXPECT_EQ((Range{7, 3}).size(), 0);
}

TEST(Range, MergeSortsJoinsAndDropsEmpty) {
  auto m = merge_ranges({{10, 12}, {0, 4}, {4, 6}, {5, 8}, {20, 20}, {11, 15}});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], (Range{0, 8}));
  EXPECT_EQ(m[1], (Range{10, 15}));
  EXPECT_EQ(total_size(m), 13);
}

TEST(Range, BufferOffsetFollowsLayoutOrder) {
  std::vector<Range> layout{{100, 104}, {0, 2}, {50, 51}};
  EXPECT_EQ(buffer_offset(layout, 100), 0);
  EXPECT_EQ(buffer_offset(layout, 103), 3);
  EXPECT_EQ(buffer_offset(layout, 1), 5);
  EXPECT_EQ(buffer_offset(layout, 50), 6);
  EXPECT_EQ(buffer_offset(layout, 51), -1);
}

}  // namespace
}  // namespace magi
