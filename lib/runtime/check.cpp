#include "runtime/check.h"

#include "core/base/error.h"

#include <algorithm>
#include <cmath>

namespace magi {

TensorCheck compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance) {
  MAGI_CHECK(got.size() == ref.size(), "{}: {} values against a reference of {}", name, got.size(),
             ref.size());
  TensorCheck c;
  c.name = name;
  c.tolerance = tolerance;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = got[i], b = ref[i];
    if (!std::isfinite(b) || !std::isfinite(a)) {
      if (!(std::isinf(a) && std::isinf(b) && (a < 0) == (b < 0))) ++c.inf_mismatches;
      continue;
    }
    num += (a - b) * (a - b);
    den += b * b;
    c.max_abs = std::max(c.max_abs, std::abs(a - b));
  }
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  c.ok = c.rel_l2 <= tolerance && c.inf_mismatches == 0;
  return c;
}

}  // namespace magi
