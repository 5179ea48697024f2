// Flexible flash attention on one CUDA GPU: forward and backward over an arbitrary slice list
// (DESIGN.md §1), with flash-attention's memory behaviour (no S x S matrix anywhere).
//
// This header has no CUDA types: host code includes it as plain C++. Device buffers are passed as
// void* (elements of `dtype`) or float*; the stream is a cudaStream_t passed as void* (nullptr =
// the legacy default stream). Layouts are those of kernels/common/kernel_args.h:
//   q, out, dout, dq : [sq, hq, d]      k, v, dk, dv : [sk, hkv, d]      lse : [sq, hq] fp32
// The dtype buffers must start 16-byte aligned and lse 4-byte aligned (cudaMalloc's are; so are
// row offsets into them): forward and backward throw std::invalid_argument naming the buffer
// otherwise.
//
// How the work is cut (kernels/cuda/README.md has the whole story and the measured figures):
//  - forward: one work item per (segment of at most 128 query rows, query head). The item walks
//    every slice whose query range meets its rows, and in each slice only the key tiles that meet
//    the visible band of its rows; one online softmax runs over all of them, so query rows shared
//    by several slices are merged exactly inside the item (no second pass, no atomics) and out /
//    lse are written once. When no two slices share a query row (documents), segments start at
//    each slice's first row so that no tile straddles two documents; otherwise they are a fixed
//    128-row grid.
//  - backward: one work item per (segment of at most 128 keys, key/value head). It walks the query
//    heads of its GQA group and, per slice, the 64-row query tiles that see its keys; dK and dV stay
//    in registers and are written once; each tile's dQ is added into an fp32 workspace by TMA
//    reduce-adds, and the item that completes a 64-row unit of it (counted per unit) converts the
//    unit to the dtype and zeroes it for the next call (in the launch's last wave, a few units
//    per item: the rest by a small kernel after it, over the whole GPU). Key segments follow
//    slices when key ranges are disjoint, else a fixed grid.
//  - tiles fully inside a slice's band run unmasked; tiles outside it are never visited.
//  - items are ordered on the host (the hardware hands the backward's blocks out in order; the
//    forward runs one persistent block per SM, each taking the next item from a counter):
//    grouped by the operands they stream, (kv head, first slice), so that blocks running together
//    share them in L2; groups and items within a group heaviest first.
//  - the matrix products run on Hopper's wgmma (sm_90a); the tiles per pass and head dim are
//    flex_tiles.h.
// Memory: the work lists (O(slices + tokens / tile)) and, for backward, an fp32 dQ buffer
// [sq, hq, d] (one for plans that share dQ), its per-unit counts and D = rowsum(dout * out)
// [sq, hq]: O(tokens x heads x dim), never O(S^2). The backward leaves its workspace zeroed; a call that fails on the device leaves
// the CUDA context unusable anyway (sticky errors), so no call sees a dirty workspace.
// dtypes: bf16 and fp16 (fp32 accumulation everywhere); head dims 64 and 128.
#pragma once

#include "common/flex_work_list.h"
#include "common/dtype.h"
#include "common/kernel_args.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace magi::kernels::cuda {

// Whether at least one CUDA device is visible (false, never a throw, when no driver is there).
bool device_available();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" for the current device.
std::string device_description();

// How a call is ordered against the kernel enqueued just before it on the same stream.
//   after   : as any launch, once that kernel has completed.
//   overlap : it may start while that kernel's last blocks still run (programmatic dependent
//             launch), so that a run of stage-wise calls does not idle the GPU at every launch's
//             tail; it waits for that kernel only before reading what it merges into (out and
//             lse, or dq), and ends after it (so the next kernel, waiting for this one, waits for
//             every earlier one too). The caller promises that the previous kernel is an earlier
//             stage of the same accumulation (this call has Into::accumulate into the out/lse or
//             dq that kernel wrote, and writes no dk/dv row it wrote) and that every other input
//             of this call was complete before that kernel started.
enum class Launch { after, overlap };

// Statistics of a plan (its work lists), for reports and tests.
using FlexAttentionStats = flex::WorkListStats;


// A plan for one shape and slice list: built once on the host (validates the slices, builds
// and uploads the work lists, owns the backward workspace), then run any number of times.
// Not thread-safe; one plan per stream at a time. Throws std::invalid_argument for a bad shape
// or slice list and std::runtime_error for a CUDA error (quoting the call). The slices must not
// cover a (q, k) pair twice (DESIGN.md §1): workloads are checked for that when they load, and
// this constructor does not check it again (such a pair would be counted twice).
class FlexAttention {
 public:
  FlexAttention(const AttnShape& shape, const KernelSlice* slices, size_t num_slices,
                DType dtype = DType::bf16, int device = -1 /* current */);
  ~FlexAttention();
  FlexAttention(const FlexAttention&) = delete;
  FlexAttention& operator=(const FlexAttention&) = delete;

  // out (dtype) and lse (fp32) are written for every row and head: rows that see no key get
  // out = 0, lse = -inf. With Into::accumulate (kernel_args.h) they are merged into instead: the
  // epilogue reads the rows' earlier lse and, where it is above -inf, their earlier out; items
  // whose rows see no key do not run; when none of the items holds a merged row
  // (set_merged_rows), they run the writing kernel instead, which still waits for the kernel
  // before it (Launch::overlap) before writing. Into::write_keyed: written by the items that have
  // a key tile (their rows), the other rows left untouched.
  // Both calls return whether they enqueued anything (an accumulating or write_keyed call with no
  // tile to run enqueues nothing, and the kernel enqueued before it stays the stream's last).
  bool forward(const void* q, const void* k, const void* v, void* out, float* lse,
               float softmax_scale, void* stream = nullptr, Into into = Into::write,
               Launch launch = Launch::after);

  // dq, dk, dv (dtype) are written entirely (zero where nothing contributes), but dq with
  // Into::accumulate: each dQ unit is added into dq as it completes, and rows no tile covers are
  // neither read nor written (plans sharing dQ, share_backward_dq: every unit is written once per
  // pass, with the sum of every member's tiles, and no call reads dq). out and lse must be the forward results of the rows' whole mask
  // (this slice list alone, or merged with others). delta: D = rowsum(dout * out) of every row
  // ([sq, hq] fp32, compute_delta below), when several calls over the same rows share it; null:
  // computed here for the rows this list covers.
  bool backward(const void* q, const void* k, const void* v, const void* out, const void* dout,
                const float* lse, float softmax_scale, void* dq, void* dk, void* dv,
                void* stream = nullptr, Into dq_into = Into::write, const float* delta = nullptr,
                Launch launch = Launch::after);

  // Plans over the same query rows (equal sq, hq, head dim, dtype and device) whose backward calls
  // make one dQ in every pass, as a stage-wise caller's do: each plan's backward once, the first
  // with Into::write and the others with Into::accumulate, into the same dq (common/shared_dq_pass.h;
  // a call out of that order throws std::logic_error before anything is enqueued). Their dQ tiles
  // then go into one fp32 workspace, counted per unit against the tiles of all of them, and a
  // unit is converted into dq once, by the call that lands its last tile. Against separate plans
  // that accumulate: no call reads dq, so a call launched to overlap the one before never waits
  // for it (at each completed unit, a separate plan's call waits for the whole previous kernel);
  // dQ is converted once per pass, not once per call; one workspace instead of one per plan. None
  // may have run backward yet or share already (std::logic_error); std::invalid_argument for a
  // mismatch or an empty, null or repeated entry.
  static void share_backward_dq(const std::vector<FlexAttention*>& plans);

  // The query rows that hold earlier results whenever forward accumulates (sorted, disjoint), as
  // a stage-wise caller knows them: items none of whose rows are among them write their rows as
  // Into::write does, reading nothing (no earlier lse, no earlier out: the caller promises those
  // rows hold lse = -inf). Default: every row. std::invalid_argument for spans out of order. Not
  // while a call of this plan runs.
  void set_merged_rows(const std::vector<RowSpan>& rows);

  const FlexAttentionStats& stats() const;
  const AttnShape& shape() const;
  // Device memory this plan holds now: the work lists, and once backward has run its workspace
  // (fp32 dQ sums, per-unit counts, D; a shared dQ workspace is counted by the first plan of its
  // group). Grows at the first backward, never after.
  int64_t device_bytes() const;

  struct Impl;  // opaque (device buffers); public only so the .cu's helpers can name it

 private:
  std::unique_ptr<Impl> impl_;
};

// D = rowsum(dout * out) for every one of `rows` rows of head dim d (rows = sq x hq, the layout of
// lse) into `delta`, on `stream`: what backward() reads, computed once for several calls.
void compute_delta(const void* out, const void* dout, float* delta, int64_t rows, int d, DType dtype,
                   void* stream = nullptr);

// Supported head dims (the kernels are compiled for these).
bool head_dim_supported(int d);

}  // namespace magi::kernels::cuda
