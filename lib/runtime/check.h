// The check's comparison of one distributed tensor with the single-process reference
// (docs/execution.md, "Check"), and the tolerances per storage dtype.
#pragma once

#include "core/results/tensor_error.h"

#include "common/dtype.h"

#include <string>
#include <vector>

namespace magi {

// What the check accepts for a run stored in one dtype, against the reference computed through
// the same device from the same inputs. They bound the error the distributed run adds on top of
// the kernel's own rounding: the partial results a rank sends and merges (dK/dV in the model
// dtype on the wire, out/lse merged in fp32, dq summed in fp32). out, dq, dk, dv: relative L2
// error; lse: `lse_bound` (a log, whose scale no norm sets, is bounded in absolute terms where
// storage is 16-bit). fp32 storage with float64 accumulation rounds only the fp32 partials:
// far below 1e-5. The 16-bit figures are those the GPU calibrates.
struct CheckTolerance {
  DType dtype;
  double rel_l2;          // out, dq, dk, dv
  ErrorBound lse_bound;
  double lse_tolerance;
};
inline constexpr CheckTolerance kCheckTolerances[] = {
    {DType::fp32, 1e-5, ErrorBound::rel_l2, 1e-5},
    {DType::bf16, 1e-2, ErrorBound::max_abs, 2e-2},
    {DType::fp16, 3e-3, ErrorBound::max_abs, 1e-2},
};
const CheckTolerance& check_tolerance(DType dtype);

// Compares `got` with `ref` (same size). The L2 and max errors skip entries where either side
// is non-finite, so those are judged here instead: equal infinities match (an lse of -inf on
// both sides is a row that sees no key); anything else non-finite (NaN on either side, an
// infinity against a finite value or the other infinity) is a mismatch and fails the tensor.
// `tolerance` bounds the figure `bound` names.
TensorError compare_with_reference(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, double tolerance,
                                   ErrorBound bound = ErrorBound::rel_l2);

}  // namespace magi
