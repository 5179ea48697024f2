// The slice band rule (kernels/common/slice_band.h) against a brute-force dense mask built from
// DESIGN.md §1's corner-aligned form (dense_attention.h's covers), on random slices of every type,
// including more queries than keys and empty ranges, in int and int64_t.
#include "common/slice_band.h"

#include "common/test_seed.h"
#include "kernels/cpu/dense_attention.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>

namespace magi::kernels::testing {
namespace {

using T = KernelSliceType;

// The rule is usable in constant expressions (the kernels' tile choices and checks are).
static_assert(band_lo(T::inv_causal, 10, 0, 12) == 2 && band_lo(T::causal, 10, 0, 12) == 0);
static_assert(band_hi(T::causal, 13, 6, 10) == 4 && band_hi(T::inv_causal, 13, 6, 10) == 6);
static_assert(band_area(T::bi_causal, 3, 6) == 12 && band_area(T::causal, 5, 3) == 6);

KernelSlice random_slice(std::mt19937_64& rng, int64_t n) {
  std::uniform_int_distribution<int64_t> pos(0, n);
  const int64_t a = pos(rng), b = pos(rng), c = pos(rng), d = pos(rng);
  return {std::min(a, b), std::max(a, b), std::min(c, d), std::max(c, d),
          static_cast<T>(std::uniform_int_distribution<int>(0, 3)(rng))};
}

std::string describe(const KernelSlice& s) {
  return "[" + std::to_string(s.q_start) + "," + std::to_string(s.q_end) + ")x[" + std::to_string(s.k_start) + "," +
         std::to_string(s.k_end) + ") type " + std::to_string(static_cast<int>(s.type));
}

// Every function of slice_band.h on slice s, in integer type I, against the dense mask.
template <typename I>
void check_against_dense(const KernelSlice& s, int64_t n) {
  SCOPED_TRACE(describe(s));
  const I qs = static_cast<I>(s.q_start), qe = static_cast<I>(s.q_end);
  const I ks = static_cast<I>(s.k_start), ke = static_cast<I>(s.k_end);
  const RowRun<I> rows = nonempty_rows(s.type, qs, qe, ks, ke);
  int64_t area = 0;
  for (I q = qs; q < qe; ++q) {
    const I lo = band_lo(s.type, qs, ks, q), hi = band_hi(s.type, qe, ke, q);
    bool any = false;
    for (I k = 0; k < static_cast<I>(n); ++k) {
      const bool dense = covers(s, q, k);
      ASSERT_EQ(dense, k >= lo && k < hi) << "q " << q << " k " << k;
      any = any || dense;
      area += dense;
    }
    ASSERT_EQ(any, q >= rows.first && q < rows.end) << "non-empty rows, q " << q;
  }
  ASSERT_EQ(static_cast<int64_t>(band_area(s.type, qe - qs, ke - ks)), area);
  for (I k = ks; k < ke; ++k) {
    const I lo = rows_lo(s.type, qs, qe, ke, k), hi = rows_hi(s.type, qs, qe, ks, k);
    for (I q = 0; q < static_cast<I>(n); ++q) ASSERT_EQ(covers(s, q, k), q >= lo && q < hi) << "k " << k << " q " << q;
  }
}

TEST(SliceBand, MatchesDenseMaskOnRandomSlices) {
  std::mt19937_64 rng(magi::testing::test_seed("SliceBand.MatchesDenseMask", 21));
  const int64_t n = 26;
  for (int it = 0; it < 4000; ++it) {
    const KernelSlice s = random_slice(rng, n);
    check_against_dense<int>(s, n);
    check_against_dense<int64_t>(s, n);
    if (HasFatalFailure()) return;
  }
}

TEST(SliceBand, CornerCases) {
  // More queries than keys: causal's first rows and inv_causal's last rows see nothing; bi_causal
  // sees nothing at all.
  EXPECT_EQ(nonempty_rows(T::causal, 0, 5, 0, 3).first, 2);
  EXPECT_EQ(nonempty_rows(T::inv_causal, 0, 5, 0, 3).end, 3);
  const RowRun<int> none = nonempty_rows(T::bi_causal, 0, 5, 0, 3);
  EXPECT_GE(none.first, none.end);
  const RowRun<int> no_keys = nonempty_rows(T::full, 0, 5, 4, 4);
  EXPECT_GE(no_keys.first, no_keys.end);
  EXPECT_EQ(band_area(T::full, 0, 7), 0);
}

}  // namespace
}  // namespace magi::kernels::testing
