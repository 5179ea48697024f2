// clip_slice against brute force: the pieces cover exactly the original's pairs inside the
// rectangle, each once; at most 3 pieces; every piece tight (no empty row or key column).
#include "core/plan/clip.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

using testing::uniform;

TEST(ClipSlice, CausalCutAtTheRightBecomesCausalPlusFull) {
  // Causal 8x8 clipped to keys [0, 4): rows 0..3 keep the diagonal, rows 4..7 see all of [0, 4).
  const auto pieces = clip_slice(AttnSlice{{0, 8}, {0, 8}, SliceType::causal}, Range{0, 8}, Range{0, 4});
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0], (AttnSlice{{0, 4}, {0, 4}, SliceType::causal}));
  EXPECT_EQ(pieces[1], (AttnSlice{{4, 8}, {0, 4}, SliceType::full}));
}

TEST(ClipSlice, BiCausalCutOnBothSidesGivesThreePieces) {
  // Band of width 5 over rows [0, 10), keys [0, 14): clip keys to [3, 9).
  const AttnSlice s{{0, 10}, {0, 14}, SliceType::bi_causal};
  const auto pieces = clip_slice(s, Range{0, 10}, Range{3, 9});
  int64_t area = 0;
  for (const auto& p : pieces) area += slice_area(p);
  EXPECT_LE(pieces.size(), 3u);
  int64_t want = 0;
  for (int64_t q = 0; q < 10; ++q) want += intersect(visible_keys(s, q), Range{3, 9}).size();
  EXPECT_EQ(area, want);
}

TEST(ClipSlice, EmptyIntersections) {
  EXPECT_TRUE(clip_slice(AttnSlice{{0, 8}, {0, 8}, SliceType::causal}, Range{0, 4}, Range{4, 8}).empty());
  EXPECT_TRUE(clip_slice(AttnSlice{{0, 8}, {0, 8}, SliceType::full}, Range{8, 9}, Range{0, 8}).empty());
  EXPECT_TRUE(clip_slice(AttnSlice{{0, 8}, {0, 4}, SliceType::bi_causal}, Range{0, 8}, Range{0, 8}).empty());
}

TEST(ClipSlice, MatchesBruteForce) {
  std::mt19937_64 rng(testing::test_seed("ClipSlice.MatchesBruteForce", 11));
  for (int iter = 0; iter < 20000; ++iter) {
    const int64_t N = 24;
    AttnSlice s;
    s.q.start = uniform(rng, 0, N - 1);
    s.q.end = uniform(rng, s.q.start, N);
    s.k.start = uniform(rng, 0, N - 1);
    s.k.end = uniform(rng, s.k.start, N);
    s.type = static_cast<SliceType>(uniform(rng, 0, 3));
    Range rows{uniform(rng, 0, N), 0}, keys{uniform(rng, 0, N), 0};
    rows.end = uniform(rng, rows.start, N);
    keys.end = uniform(rng, keys.start, N);
    const auto pieces = clip_slice(s, rows, keys);
    ASSERT_LE(pieces.size(), 3u);
    std::vector<int> want(N * N, 0), got(N * N, 0);
    for (int64_t q = s.q.start; q < s.q.end; ++q) {
      if (!rows.contains(q)) continue;
      const Range v = intersect(visible_keys(s, q), keys);
      for (int64_t k = v.start; k < v.end; ++k) ++want[static_cast<size_t>(q * N + k)];
    }
    for (const AttnSlice& p : pieces) {
      ASSERT_GT(slice_area(p), 0) << fmt::format("{} from {} in {} x {}", p, s, rows, keys);
      std::vector<bool> col_seen(static_cast<size_t>(p.k.size()), false);
      for (int64_t q = p.q.start; q < p.q.end; ++q) {
        const Range v = visible_keys(p, q);
        ASSERT_FALSE(v.empty()) << fmt::format("empty row {} in piece {} of {}", q, p, s);
        for (int64_t k = v.start; k < v.end; ++k) {
          ++got[static_cast<size_t>(q * N + k)];
          col_seen[static_cast<size_t>(k - p.k.start)] = true;
        }
      }
      for (bool b : col_seen) ASSERT_TRUE(b) << fmt::format("empty key column in piece {} of {}", p, s);
    }
    ASSERT_EQ(want, got) << fmt::format("{} clipped to {} x {}", s, rows, keys);
  }
}

}  // namespace
}  // namespace magi
