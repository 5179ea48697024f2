// A causal document [first, end) cut into row pieces at the multiples of `chunk`, each piece
// seeing the document from its first key: a stage-wise plan's slice list for a document its
// chunk boundaries cut, which the forward's work lists join again (kernels/common/row_runs.h).
#pragma once

#include "common/kernel_args.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace magi::testing {

inline std::vector<kernels::KernelSlice> causal_row_pieces(int64_t first, int64_t end, int64_t chunk) {
  std::vector<kernels::KernelSlice> pieces;
  for (int64_t r = first; r < end;) {
    const int64_t e = std::min(end, (r / chunk + 1) * chunk);
    pieces.push_back({r, e, first, e, kernels::KernelSliceType::causal});
    r = e;
  }
  return pieces;
}

}  // namespace magi::testing
