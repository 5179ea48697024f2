// Integer figures derived from a workload (bytes, element counts) are int64. A product or sum
// that does not fit is a ConfigError naming what it counts (the workload fields it comes from)
// and its operands: never a silent wrap (a wrapped byte count prints as a negative number).
#pragma once

#include "core/base/error.h"

#include <cstdint>
#include <string_view>

namespace magi {

// a x b; `what` names the figure and its fields, e.g. "total_tokens x K/V bytes per token".
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) {
    throw ConfigError(fmt::format("{} = {} x {} does not fit in a 64-bit integer (lower the sizes)", what, a, b));
  }
  return r;
}

// a + b; `what` as for checked_mul.
inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    throw ConfigError(fmt::format("{} = {} + {} does not fit in a 64-bit integer (lower the sizes)", what, a, b));
  }
  return r;
}

}  // namespace magi
