#include "core/report/stats.h"

#include <algorithm>
#include <numeric>

namespace magi {

TimingSummary summarize(std::vector<double> samples_ms) {
  TimingSummary s;
  s.count = static_cast<int>(samples_ms.size());
  if (samples_ms.empty()) return s;
  std::sort(samples_ms.begin(), samples_ms.end());
  const size_t n = samples_ms.size();
  s.median_ms = n % 2 ? samples_ms[n / 2] : 0.5 * (samples_ms[n / 2 - 1] + samples_ms[n / 2]);
  s.mean_ms = std::accumulate(samples_ms.begin(), samples_ms.end(), 0.0) / static_cast<double>(n);
  s.min_ms = samples_ms.front();
  s.max_ms = samples_ms.back();
  return s;
}

}  // namespace magi
