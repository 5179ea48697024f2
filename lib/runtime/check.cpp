#include "runtime/check.h"

#include "core/base/error.h"
#include "core/base/stats.h"

namespace magi {

TensorError compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance) {
  MAGI_CHECK(got.size() == ref.size(), "{}: {} values against a reference of {}", name, got.size(),
             ref.size());
  return judge(name, tensor_diff(got, ref), ErrorBound::rel_l2, tolerance);
}

}  // namespace magi
