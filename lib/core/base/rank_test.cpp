#include "core/base/rank_test.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace magi {

namespace {

// Number of orderings of m + n distinct values in which U (of the m) equals u, for every u,
// divided by C(m + n, m): the exact null distribution of U. Built by the recurrence on the
// largest value (it belongs to the first sample, adding n to U, or to the second), in doubles
// (probabilities, so no count overflows).
std::vector<double> exact_u_distribution(int m, int n) {
  // f[j][u] for the current i: distribution of U for sizes (i, j).
  std::vector<std::vector<double>> f(static_cast<size_t>(n) + 1);
  for (int j = 0; j <= n; ++j) f[j] = {1.0};  // i = 0: U = 0 surely
  for (int i = 1; i <= m; ++i) {
    std::vector<std::vector<double>> g(static_cast<size_t>(n) + 1);
    g[0] = {1.0};  // j = 0: U = 0 surely
    for (int j = 1; j <= n; ++j) {
      // P(largest is from the first sample) = i / (i + j): U gains j, sizes (i - 1, j).
      const double from_a = static_cast<double>(i) / (i + j);
      std::vector<double> h(static_cast<size_t>(i) * j + 1, 0.0);
      for (size_t u = 0; u < f[j].size(); ++u) h[u + j] += from_a * f[j][u];
      for (size_t u = 0; u < g[j - 1].size(); ++u) h[u] += (1 - from_a) * g[j - 1][u];
      g[j] = std::move(h);
    }
    f = std::move(g);
  }
  return f[n];
}

}  // namespace

RankTestResult mann_whitney_u(std::span<const double> a, std::span<const double> b) {
  RankTestResult r;
  const size_t m = a.size(), n = b.size();
  if (m == 0 || n == 0) return r;
  // Ranks over the pooled sample, ties given their mean rank.
  std::vector<std::pair<double, int>> pooled;
  pooled.reserve(m + n);
  for (double x : a) pooled.emplace_back(x, 0);
  for (double y : b) pooled.emplace_back(y, 1);
  std::sort(pooled.begin(), pooled.end());
  double rank_sum_a = 0, tie_term = 0;
  bool ties = false;
  for (size_t i = 0; i < pooled.size();) {
    size_t j = i;
    while (j < pooled.size() && pooled[j].first == pooled[i].first) ++j;
    const double t = static_cast<double>(j - i);
    const double mean_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k) {
      if (pooled[k].second == 0) rank_sum_a += mean_rank;
    }
    if (t > 1) {
      ties = true;
      tie_term += t * t * t - t;
    }
    i = j;
  }
  const double dm = static_cast<double>(m), dn = static_cast<double>(n);
  r.u = rank_sum_a - dm * (dm + 1) / 2;
  const double mean_u = dm * dn / 2;
  if (!ties && m * n <= static_cast<size_t>(kExactRankTestPairs)) {
    const std::vector<double> dist = exact_u_distribution(static_cast<int>(m), static_cast<int>(n));
    // Two-sided: twice the smaller tail at the observed U (the distribution is symmetric).
    const auto u = static_cast<size_t>(std::llround(r.u));
    const size_t lo = std::min(u, m * n - u);
    double tail = 0;
    for (size_t k = 0; k <= lo; ++k) tail += dist[k];
    r.p_value = std::min(1.0, 2 * tail);
    r.exact = true;
    return r;
  }
  const double total = dm + dn;
  const double var = dm * dn / 12 * ((total + 1) - tie_term / (total * (total - 1)));
  if (var <= 0) return r;  // every value equal: no evidence of a difference
  const double z = (std::abs(r.u - mean_u) - 0.5) / std::sqrt(var);
  r.p_value = std::min(1.0, std::erfc(std::max(0.0, z) / std::sqrt(2.0)));
  return r;
}

double min_rank_test_p(int n_a, int n_b) {
  if (n_a <= 0 || n_b <= 0) return 1;
  // 2 / C(n_a + n_b, n_a), as a product to stay in range.
  double c = 1;
  for (int k = 1; k <= n_a; ++k) c = c * (n_b + k) / k;
  return std::min(1.0, 2 / c);
}

}  // namespace magi
