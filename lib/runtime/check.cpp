#include "runtime/check.h"

#include "core/base/error.h"
#include "core/base/stats.h"

namespace magi {

const CheckTolerance& check_tolerance(DType dtype) {
  for (const CheckTolerance& t : kCheckTolerances) {
    if (t.dtype == dtype) return t;
  }
  throw InternalError(fmt::format("no check tolerance for dtype {}", to_string(dtype)));
}

TensorError compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance, ErrorBound bound) {
  MAGI_CHECK(got.size() == ref.size(), "{}: {} values against a reference of {}", name, got.size(),
             ref.size());
  return judge(name, tensor_diff(got, ref), bound, tolerance);
}

}  // namespace magi
