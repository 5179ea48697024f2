// A checked tensor's error against its reference, and the verdict of its tolerance: what a case
// row's `errors` hold. Kept apart from row.h (no JSON) for the CUDA kernel benchmark's host code.
#pragma once

#include "core/base/stats.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace magi {

// What a tensor's tolerance bounds: its relative L2 error, or its largest absolute error (the
// kernel check's LSE, a log whose scale no norm sets).
enum class ErrorBound { rel_l2, max_abs };

constexpr std::string_view to_string(ErrorBound b) {
  return b == ErrorBound::rel_l2 ? "rel_l2" : "max_abs";
}

struct TensorError {
  std::string name;       // out, lse, dq, dk, dv
  double rel_l2 = 0;      // ||x - ref|| / ||ref|| over finite pairs
  double max_abs = 0;     // max |x - ref| over finite pairs
  ErrorBound bound = ErrorBound::rel_l2;  // the figure `tolerance` bounds
  double tolerance = 0;
  bool ok = true;         // bounded figure <= tolerance and no non-finite mismatch
  int64_t inf_mismatches = 0;  // entries non-finite on either side and not the same infinity
};

// The verdict on `diff`: within tolerance on the bounded figure, every non-finite entry matched.
inline TensorError judge(std::string name, const TensorDiff& diff, ErrorBound bound, double tolerance) {
  const double figure = bound == ErrorBound::rel_l2 ? diff.rel_l2 : diff.max_abs;
  return {std::move(name), diff.rel_l2, diff.max_abs, bound, tolerance,
          figure <= tolerance && diff.inf_mismatches == 0, diff.inf_mismatches};
}

}  // namespace magi
