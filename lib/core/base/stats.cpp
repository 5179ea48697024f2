#include "core/base/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace magi {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

TimingSummary summarize(std::vector<double> samples_ms) {
  TimingSummary s;
  s.count = static_cast<int>(samples_ms.size());
  if (samples_ms.empty()) return s;
  s.median_ms = median(samples_ms);
  s.mean_ms = std::accumulate(samples_ms.begin(), samples_ms.end(), 0.0) /
              static_cast<double>(samples_ms.size());
  const auto [lo, hi] = std::minmax_element(samples_ms.begin(), samples_ms.end());
  s.min_ms = *lo;
  s.max_ms = *hi;
  s.samples_ms = std::move(samples_ms);
  return s;
}

TensorDiff tensor_diff(std::span<const float> got, std::span<const float> ref) {
  TensorDiff d;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = got[i], b = ref[i];
    if (!std::isfinite(a) || !std::isfinite(b)) {
      if (!(std::isinf(a) && std::isinf(b) && (a < 0) == (b < 0))) ++d.inf_mismatches;
      continue;
    }
    num += (a - b) * (a - b);
    den += b * b;
    d.max_abs = std::max(d.max_abs, std::abs(a - b));
  }
  d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

}  // namespace magi
