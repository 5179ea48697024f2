// Slice semantics, closed-form area and double-cover detection, each against brute force.
#include "common/test_seed.h"
#include "core/base/slice.h"

#include <gtest/gtest.h>

#include <random>

namespace magi {
namespace {

// Brute-force visibility straight from DESIGN.md §1.
bool visible(const AttnSlice& s, int64_t q, int64_t k) {
  if (!s.q.contains(q) || !s.k.contains(k)) return false;
  const bool lower = s.type == SliceType::inv_causal || s.type == SliceType::bi_causal;
  const bool upper = s.type == SliceType::causal || s.type == SliceType::bi_causal;
  if (lower && k < s.k.start + (q - s.q.start)) return false;
  if (upper && k >= s.k.end - (s.q.end - 1 - q)) return false;
  return true;
}

AttnSlice random_slice(std::mt19937_64& rng, int64_t n) {
  std::uniform_int_distribution<int64_t> pos(0, n);
  std::uniform_int_distribution<int> type(0, 3);
  int64_t a = pos(rng), b = pos(rng), c = pos(rng), d = pos(rng);
  return {{std::min(a, b), std::max(a, b)}, {std::min(c, d), std::max(c, d)},
          static_cast<SliceType>(type(rng))};
}

TEST(Slice, ParseAndPrintTypes) {
  for (auto t : {SliceType::full, SliceType::causal, SliceType::inv_causal, SliceType::bi_causal}) {
    EXPECT_EQ(parse_slice_type(to_string(t)), t);
  }
  EXPECT_FALSE(parse_slice_type("causual").has_value());
}

TEST(Slice, CausalIsBottomRightAligned) {
  // 3 queries, 5 keys: the last query sees all keys, the first sees 3.
  AttnSlice s{{0, 3}, {0, 5}, SliceType::causal};
  EXPECT_EQ(visible_keys(s, 0), (Range{0, 3}));
  EXPECT_EQ(visible_keys(s, 2), (Range{0, 5}));
  // More queries than keys: the first rows see nothing.
  AttnSlice t{{0, 5}, {0, 3}, SliceType::causal};
  EXPECT_TRUE(visible_keys(t, 0).empty());
  EXPECT_TRUE(visible_keys(t, 1).empty());
  EXPECT_EQ(visible_keys(t, 2), (Range{0, 1}));
  EXPECT_EQ(slice_area(t), 6);
}

TEST(Slice, BiCausalIsABand) {
  AttnSlice s{{10, 13}, {0, 6}, SliceType::bi_causal};  // width lk - lq + 1 = 4
  EXPECT_EQ(visible_keys(s, 10), (Range{0, 4}));
  EXPECT_EQ(visible_keys(s, 12), (Range{2, 6}));
  EXPECT_EQ(slice_area(s), 12);
  EXPECT_EQ(slice_area(AttnSlice{{0, 6}, {0, 3}, SliceType::bi_causal}), 0);
}

TEST(Slice, ClosedFormAreaEqualsDenseCountAndVisibleKeys) {
  std::mt19937_64 rng(testing::test_seed("Slice.ClosedFormArea", 11));
  for (int it = 0; it < 3000; ++it) {
    const AttnSlice s = random_slice(rng, 24);
    int64_t dense = 0;
    for (int64_t q = 0; q < 24; ++q) {
      int64_t row = 0;
      for (int64_t k = 0; k < 24; ++k) row += visible(s, q, k);
      dense += row;
      if (s.q.contains(q)) {
        const Range r = visible_keys(s, q);
        EXPECT_EQ(r.size(), row) << fmt::format("{} q={}", s, q);
        for (int64_t k = r.start; k < r.end; ++k) EXPECT_TRUE(visible(s, q, k));
      }
    }
    ASSERT_EQ(slice_area(s), dense) << fmt::format("{}", s);
  }
}

TEST(Slice, OverlapDetectionMatchesBruteForce) {
  std::mt19937_64 rng(testing::test_seed("Slice.OverlapDetection", 12));
  int overlaps = 0;
  for (int it = 0; it < 5000; ++it) {
    const AttnSlice a = random_slice(rng, 20), b = random_slice(rng, 20);
    bool brute = false;
    for (int64_t q = 0; q < 20 && !brute; ++q)
      for (int64_t k = 0; k < 20 && !brute; ++k) brute = visible(a, q, k) && visible(b, q, k);
    overlaps += brute;
    ASSERT_EQ(slices_overlap(a, b), brute) << fmt::format("{} vs {}", a, b);
  }
  EXPECT_GT(overlaps, 100);  // the random cases exercise both answers
}

TEST(Slice, FindDoubleCoverNamesThePair) {
  std::vector<AttnSlice> ok{{{0, 4}, {0, 4}, SliceType::causal}, {{4, 8}, {0, 8}, SliceType::causal},
                            {{0, 4}, {4, 8}, SliceType::full}};
  // The third slice covers keys 4..7 for queries 0..3, which the first never sees: no overlap.
  EXPECT_FALSE(find_double_cover(ok).has_value());
  auto bad = ok;
  bad.push_back({{6, 7}, {2, 3}, SliceType::full});
  auto pair = find_double_cover(bad);
  ASSERT_TRUE(pair.has_value());
  EXPECT_EQ(pair->first, 1u);
  EXPECT_EQ(pair->second, 3u);
}

}  // namespace
}  // namespace magi
