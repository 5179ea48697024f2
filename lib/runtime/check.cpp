#include "runtime/check.h"

#include "core/base/error.h"
#include "core/base/stats.h"

namespace magi {

TensorCheck compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance) {
  MAGI_CHECK(got.size() == ref.size(), "{}: {} values against a reference of {}", name, got.size(),
             ref.size());
  TensorCheck c;
  c.name = name;
  c.tolerance = tolerance;
  const TensorDiff d = tensor_diff(got, ref);
  c.rel_l2 = d.rel_l2;
  c.max_abs = d.max_abs;
  c.inf_mismatches = d.inf_mismatches;
  c.ok = c.rel_l2 <= tolerance && c.inf_mismatches == 0;
  return c;
}

}  // namespace magi
