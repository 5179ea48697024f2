// The Mann-Whitney U test (Wilcoxon rank-sum): whether two samples of timings differ more than
// their own spread explains, without assuming a distribution (timings are skewed: a run is never
// faster than the machine allows, and any interference only adds). Google Benchmark's compare.py
// uses the same test over repetitions; `magi-bench compare` uses it over timed iterations.
#pragma once

#include <span>

namespace magi {

struct RankTestResult {
  double u = 0;        // U of the first sample: pairs (x in a, y in b) with x > y, ties count 1/2
  double p_value = 1;  // two-sided
  bool exact = false;  // from the exact distribution of U (small samples without ties), else the
                       // normal approximation with tie and continuity corrections
};

// Two-sided Mann-Whitney U test of a against b. Exact when there are no ties and
// |a| * |b| <= kExactRankTestPairs; else the normal approximation. p = 1 when either is empty.
inline constexpr int kExactRankTestPairs = 2500;
RankTestResult mann_whitney_u(std::span<const double> a, std::span<const double> b);

// The smallest two-sided p-value any two samples of these sizes can reach (both samples
// entirely apart): below alpha, the test can say "different"; above it, it never can.
double min_rank_test_p(int n_a, int n_b);

}  // namespace magi
