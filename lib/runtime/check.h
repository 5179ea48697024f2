// The check's comparison of one distributed tensor with the single-process reference
// (docs/execution.md, "Check").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace magi {

struct TensorCheck {
  std::string name;         // out, lse, dq, dk, dv
  double rel_l2 = 0;        // ||dist - ref||_2 / ||ref||_2 over entries finite on both sides
  double max_abs = 0;       // max |dist - ref| over entries finite on both sides
  double tolerance = 0;     // rel_l2 must be <= this
  int64_t inf_mismatches = 0;  // entries where either side is non-finite and they differ
  bool ok = true;
};

// Compares `got` with `ref` (same size). The L2 and max errors skip entries where either side
// is non-finite, so those are judged here instead: equal infinities match (an lse of -inf on
// both sides is a row that sees no key); anything else non-finite (NaN on either side, an
// infinity against a finite value or the other infinity) is a mismatch and fails the tensor.
TensorCheck compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance);

}  // namespace magi
