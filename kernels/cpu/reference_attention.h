// CPU reference attention over a slice list: the oracle every other kernel and executor is
// checked against. Layouts, GQA head mapping, slice semantics and the LSE convention are those of
// kernels/common/kernel_args.h (DESIGN.md §1). Storage is float32; every score, softmax sum and
// product is accumulated in float64.
//
// A query row may be covered by several slices with different key ranges: its softmax runs over
// the union of the keys it sees in all of them. A row that sees no key has out = 0, lse = -inf and
// gets no gradient. No (q, k) pair may be covered by two slices (std::invalid_argument).
//
// Results are bit-for-bit identical for every thread count: each output element is computed by
// one task, in a fixed order (keys, and rows, ascending). The forward and dq read K and V a chunk
// of keys at a time for several rows and heads at once, which keeps long sequences (32k keys at
// 64 heads) from waiting on memory; the order of every sum stays that of a plain walk.
#pragma once

#include "common/kernel_args.h"

#include <cstddef>
#include <cstdint>

namespace magi::kernels::cpu {

// out [sq, hq, d] and lse [sq, hq] are overwritten for every row and head.
// num_threads 0 means std::thread::hardware_concurrency().
// Throws std::invalid_argument for an impossible shape (non-positive heads or head dim,
// hq % hkv != 0), a slice outside [0, sq) x [0, sk) or reversed, an unknown slice type, a (q, k)
// pair covered twice, a null buffer, a non-finite scale or a negative thread count.
void attention_forward(const AttnShape& shape, const KernelSlice* slices, size_t num_slices,
                       const float* q, const float* k, const float* v, float softmax_scale,
                       float* out, float* lse, int num_threads = 0);

// dq [sq, hq, d], dk and dv [sk, hkv, d] are overwritten (zero where nothing contributes). dk and
// dv may both be null (not one alone): dq is computed without them, as a check of dq alone needs.
//
// `out` and `lse` must be the FINAL forward results of each row, over all the keys the row sees
// anywhere, not only over the slices and KV buffer passed here. The gradients use
//   P_ij = exp(scale * q_i.k_j - lse_i),  D_i = rowsum(dout_i * out_i),
//   dS_ij = P_ij * (dout_i.v_j - D_i),  dq_i = scale * sum_j dS_ij k_j,
//   dk_j = scale * sum_i dS_ij q_i,  dv_j = sum_i P_ij dout_i,
// so they are additive over any partition of the visible pairs: calling this per stage, on a
// subset of the slices and a partial KV buffer (slice key ranges local to that buffer), with the
// global out and lse, and summing dq over stages (and dk, dv into their owners' rows) gives the
// gradients of the whole attention. Distributed executors rely on this.
void attention_backward(const AttnShape& shape, const KernelSlice* slices, size_t num_slices,
                        const float* q, const float* k, const float* v, const float* out,
                        const float* dout, const float* lse, float softmax_scale, float* dq,
                        float* dk, float* dv, int num_threads = 0);

// Log-sum-exp merge of a partial result into an accumulator (DESIGN.md §3), per row and head:
//   lse = log(exp(lse_acc) + exp(lse_part)),
//   out = out_acc * exp(lse_acc - lse) + out_part * exp(lse_part - lse).
// A side with lse = -inf contributes nothing and its out is not read: a part at -inf leaves the
// accumulator's row as it is, an accumulator at -inf takes the part's (kernels::Into::accumulate).
// out_* are [rows, heads, d], lse_* are [rows, heads]; the accumulator is updated in place.
void merge_partial(int64_t rows, int32_t heads, int32_t d, float* out_acc, float* lse_acc,
                   const float* out_part, const float* lse_part);

}  // namespace magi::kernels::cpu
