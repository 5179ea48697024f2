// Clipping slices to sub-rectangles, and moving them between global and buffer coordinates.
//
// A slice clipped to rows [a, b) and keys [c, d) is in general no longer one slice: a causal
// slice cut at the right of its key range keeps its diagonal for the rows whose band ends before
// d and becomes full for the rows below. clip_slice returns the exact pieces (at most 3), each a
// slice of one of the four types, together covering exactly the pairs of the original slice that
// fall in the rectangle, each once. Pieces are tight: no empty row, no empty key column.
#pragma once

#include "core/base/range.h"
#include "core/base/slice.h"

#include <cstdint>
#include <vector>

namespace magi {

// Appends to `out` the pieces of `s` inside rows `rows` x keys `keys` (global coordinates).
// Returns the number of pieces appended (0 to 3).
int clip_slice_into(const AttnSlice& s, Range rows, Range keys, std::vector<AttnSlice>& out);

// Convenience form of clip_slice_into.
std::vector<AttnSlice> clip_slice(const AttnSlice& s, Range rows, Range keys);

// Every slice of `mask` made tight (each clipped to its own rows and keys; empty ones dropped).
std::vector<AttnSlice> tight_slices(const std::vector<AttnSlice>& mask);

// The slice moved by (dq, dk): q += dq, k += dk (type unchanged).
inline AttnSlice shift_slice(const AttnSlice& s, int64_t dq, int64_t dk) {
  return AttnSlice{Range{s.q.start + dq, s.q.end + dq}, Range{s.k.start + dk, s.k.end + dk}, s.type};
}

}  // namespace magi
