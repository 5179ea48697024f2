// The plain argument structs every attention kernel takes (CPU reference and CUDA alike).
// Kernels never see plan or workload types: the runtime turns a plan's slices into these.
//
// Layouts (row-major, contiguous):
//   q, out, dq, dout : [sq, hq, d]       k, v, dk, dv : [sk, hkv, d]       lse : [sq, hq]
// GQA: query head h reads key/value head h / (hq / hkv).
// Slice semantics are DESIGN.md §1, in coordinates local to the q and k buffers.
// LSE is the natural log of the row's softmax denominator (scaled scores), -inf for a row that
// sees no key; such a row has out = 0 and contributes no gradient.
#pragma once

#include <cstdint>

namespace magi::kernels {

// Same values and meaning as magi::SliceType in lib/core.
enum class KernelSliceType : int32_t { full = 0, causal = 1, inv_causal = 2, bi_causal = 3 };

struct KernelSlice {
  int64_t q_start = 0, q_end = 0;  // [q_start, q_end) rows of the q buffer
  int64_t k_start = 0, k_end = 0;  // [k_start, k_end) rows of the k/v buffer
  KernelSliceType type = KernelSliceType::full;
};

// What an attention call does with the results already in its output buffers. A stage-wise
// caller (the distributed runtime runs one slice list per stage of keys) accumulates with every
// call after the first, so partial results never take a separate pass over memory:
//   write      : forward writes out and lse of every row (0 and -inf where no key is seen);
//                backward writes dq entirely.
//   accumulate : forward merges this slice list's attention into out and lse by log-sum-exp (they
//                hold the result over other keys of the same rows; a row whose lse is -inf holds
//                none, its out is not used and may hold anything), leaving rows this list gives
//                no key untouched; backward adds this list's dQ into dq, leaving rows no slice
//                covers untouched. dk and dv are written entirely either way.
//   write_keyed: forward only: writes out and lse of the rows this list gives a key and leaves
//                the others untouched, but for rows a kernel computes beside keyed ones (a CUDA
//                work item of 128 rows where slices share rows), which get out = 0, lse = -inf as
//                with write. A stage-wise caller whose first list gives keys to few rows sets
//                lse = -inf and out = 0 where no list gives a key, then writes with write_keyed and
//                accumulates: no call writes zeros for a later one to read back
//                (lib/runtime/exec_detail.h).
enum class Into { write, accumulate, write_keyed };

// Query rows [start, end) of a layout.
struct RowSpan {
  int64_t start = 0, end = 0;
};

struct AttnShape {
  int64_t sq = 0;  // query rows
  int64_t sk = 0;  // key/value rows
  int32_t hq = 0;  // query heads
  int32_t hkv = 0; // key/value heads; hq % hkv == 0
  int32_t d = 0;   // head dim
};

}  // namespace magi::kernels
