// The check's comparison of one distributed tensor with the single-process reference
// (docs/execution.md, "Check").
#pragma once

#include "core/results/tensor_error.h"

#include <string>
#include <vector>

namespace magi {

// Compares `got` with `ref` (same size). The L2 and max errors skip entries where either side
// is non-finite, so those are judged here instead: equal infinities match (an lse of -inf on
// both sides is a row that sees no key); anything else non-finite (NaN on either side, an
// infinity against a finite value or the other infinity) is a mismatch and fails the tensor.
TensorError compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance);

}  // namespace magi
