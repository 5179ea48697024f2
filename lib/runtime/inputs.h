// Seeded inputs for distributed runs and their check: a counter-based generator, so that every
// rank produces exactly its own rows of the global Q, K, V and dO (and the reference the whole
// tensors) without anyone holding or sending the whole tensor.
//   value(seed, tensor, token, head, dim) = roughly normal (four 16-bit uniforms summed and
//   centred: variance 1, within +-2 sqrt(3)) from a splitmix64 hash of the
//   five numbers; never all zeros. Same value on every rank, machine and thread count.
#pragma once

#include "core/base/range.h"

#include <cstdint>
#include <vector>

namespace magi {

enum class InputTensor : uint64_t { q = 1, k = 2, v = 3, dout = 4 };

float input_value(uint64_t seed, InputTensor t, int64_t token, int64_t head, int64_t dim);

// Fills out[total_size(ranges), heads, dim] with the rows of the global tokens of `ranges`,
// in the order of the ranges (a rank's host buffer layout when ranges == its q_ranges).
void fill_input_rows(uint64_t seed, InputTensor t, const std::vector<Range>& ranges, int heads,
                     int dim, float* out);

}  // namespace magi
