// The words every part of magi-bench shares (DESIGN.md §1): the model's shape, the element
// type, the parallel strategies, the mask as a workload names it, and the FLOPs formula.
// Plain values with no parsing: the workload loader fills them, masks, plans and reports read
// them.
#pragma once

#include "common/dtype.h"
#include "core/base/slice.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

struct ModelShape {
  int heads_q = 16;
  int heads_kv = 16;
  int head_dim = 128;
  DType dtype = DType::bf16;
};

enum class Strategy { magi, ring, ulysses, allgather };
std::string_view to_string(Strategy s);

// A mask as a workload names it: a catalogue entry and its parameters (DESIGN.md §1).
struct MaskSpec {
  std::string type = "causal";      // catalogue name (DESIGN.md §1) or "slices"
  int64_t window = 0;               // sliding_window family: q sees k in [q - window, q]
  int64_t block_tokens = 0;         // block_causal family: block size
  int64_t prefix_tokens = 0;        // prefix_lm: length of the bidirectional prefix
  int64_t sink_tokens = 0;          // sink_sliding_window: global sink tokens at the start
  int64_t question_tokens = 0;      // shared_question: length of the shared question
  std::vector<AttnSlice> slices;    // slices: the explicit list, global coordinates
};

// FLOPs of attention over `area` visible (q, k) pairs: two matrix products of 2 flops per
// multiply-add in the forward; the backward's five products (and the recomputed scores) count
// as 2.5 x the forward, as FlashAttention and MagiAttention report them.
constexpr double attention_fwd_flops(int64_t area, int head_dim, int heads_q) {
  return 4.0 * static_cast<double>(area) * head_dim * heads_q;
}
constexpr double attention_bwd_flops(int64_t area, int head_dim, int heads_q) {
  return 2.5 * attention_fwd_flops(area, head_dim, heads_q);
}

}  // namespace magi
