// Slice semantics, closed-form area and double-cover detection, each against brute force.
#include "common/test_seed.h"
#include "core/base/slice.h"

#include <gtest/gtest.h>

#include <ctime>
#include <random>
#include <string>
#include <vector>

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

std::string describe(const std::vector<AttnSlice>& slices) {
  std::string out;
  for (const AttnSlice& s : slices) out += fmt::format("{}; ", s);
  return out;
}

// Whether some (q, k) of [0, n)^2 is covered by two slices of the list, by brute force.
bool dense_double_cover(const std::vector<AttnSlice>& slices, int64_t n) {
  std::vector<int> count(static_cast<size_t>(n * n), 0);
  for (const AttnSlice& s : slices)
    for (int64_t q = 0; q < n; ++q)
      for (int64_t k = 0; k < n; ++k)
        if (visible(s, q, k) && ++count[static_cast<size_t>(q * n + k)] > 1) return true;
  return false;
}

// Lists of many slices that share query rows without covering a pair twice (each random slice is
// kept only if it covers no pair of the kept ones), then one more random slice that may: the sweep
// must agree with the dense mask, and a pair it names must cover a common pair.
TEST(Slice, FindDoubleCoverMatchesBruteForce) {
  std::mt19937_64 rng(testing::test_seed("Slice.FindDoubleCover", 13));
  const int64_t n = 20;
  int found = 0, clean = 0;
  for (int it = 0; it < 3000; ++it) {
    std::vector<AttnSlice> slices;
    const int attempts = std::uniform_int_distribution<int>(1, 40)(rng);
    for (int a = 0; a < attempts; ++a) {
      slices.push_back(random_slice(rng, n));
      if (dense_double_cover(slices, n)) slices.pop_back();
    }
    std::shuffle(slices.begin(), slices.end(), rng);
    ASSERT_FALSE(find_double_cover(slices).has_value()) << describe(slices);
    slices.push_back(random_slice(rng, n));
    std::shuffle(slices.begin(), slices.end(), rng);
    const auto pair = find_double_cover(slices);
    ASSERT_EQ(pair.has_value(), dense_double_cover(slices, n)) << describe(slices);
    if (pair) {
      ASSERT_LT(pair->first, pair->second);
      ASSERT_TRUE(dense_double_cover({slices[pair->first], slices[pair->second]}, n));
      ++found;
    } else {
      ++clean;
    }
  }
  EXPECT_GT(found, 300);  // both answers are exercised
  EXPECT_GT(clean, 300);
}

// 300,000 slices over one query range with disjoint key ranges (every slice shares every row with
// every other): the check is O(n log n), not quadratic (which takes minutes here). Bounded in
// processor time, so a loaded machine does not fail it; unoptimised (sanitizer) builds get more.
TEST(Slice, FindDoubleCoverIsFastOnSharedRows) {
  const int64_t n = 300000, rows = 4096;
  std::vector<AttnSlice> slices;
  slices.reserve(n + 1);
  for (int64_t i = 0; i < n; ++i) {
    const SliceType type = static_cast<SliceType>(i % 4);
    // bi_causal needs at least as many keys as rows to cover anything.
    const int64_t width = type == SliceType::bi_causal ? rows : 8;
    const int64_t k0 = i * (rows + 8);
    slices.push_back({{0, rows}, {k0, k0 + width}, type});
  }
  std::shuffle(slices.begin(), slices.end(), std::mt19937_64(14));
  const std::clock_t t0 = std::clock();
  EXPECT_FALSE(find_double_cover(slices).has_value());
  // One slice over the keys of the first two: found.
  slices.push_back({{rows - 1, rows}, {0, 2 * (rows + 8)}, SliceType::full});
  const auto pair = find_double_cover(slices);
  const double seconds = static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC;
  ASSERT_TRUE(pair.has_value());
  EXPECT_EQ(pair->second, static_cast<size_t>(n));
#ifdef NDEBUG
  EXPECT_LT(seconds, 2.0);
#else
  EXPECT_LT(seconds, 30.0);
#endif
}

}  // namespace
}  // namespace magi
