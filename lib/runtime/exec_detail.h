// Internals shared by the strategy executors (not part of the runtime's public API). Strategies
// are written once against Device (device.h) and a data Communicator: no backend is named here.
#pragma once

#include "core/base/range.h"
#include "core/base/slice.h"
#include "core/plan/comm_volume.h"
#include "core/plan/plan.h"
#include "runtime/communicator.h"
#include "runtime/device.h"

#include "common/kernel_args.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace magi::detail {

// Where each token of `dst_layout` (a buffer laid out as the concatenation of its ranges) sits
// in a buffer laid out as `src_layout`: copy segments in dst order. Throws InternalError when a
// token of dst_layout is missing from src_layout. dst_offset is added to every dst_row.
std::vector<RowCopy> map_rows(const std::vector<Range>& src_layout,
                              const std::vector<Range>& dst_layout, int64_t dst_offset = 0);
std::vector<RowCopy> inverse(const std::vector<RowCopy>& segs);
bool is_identity(const std::vector<RowCopy>& segs);

// Milliseconds of steady clock since t0.
double ms_since(std::chrono::steady_clock::time_point t0);

// One rank's tensors on the device, in its host layout (concatenation of its q_ranges), in the
// device's dtype except lse (fp32).
struct Local {
  int64_t tokens = 0;
  int hq = 0, hkv = 0, head_dim = 0;
  Buffer q, k, v, dout;  // inputs
  Buffer out, lse;       // forward results
  Buffer dq, dk, dv;     // backward results
};

class StrategyRunner {
 public:
  virtual ~StrategyRunner() = default;
  virtual void forward(Local& local) = 0;   // writes out, lse
  virtual void backward(Local& local) = 0;  // reads out, lse, dout; writes dq, dk, dv
  // After forward, for the check only: make local.lse complete when forward leaves it elsewhere.
  virtual void lse_for_check(Local&) {}
};

// A runner's view of the plan for its rank: cp, rank, heads, head dim, sequence length,
// elements of one key/value row (hkv x head_dim), the rank's tokens; its device and the data
// communicator moving the device's buffers; the device dtype and its element size.
class PlanRunner : public StrategyRunner {
 protected:
  PlanRunner(Device& dev, Communicator& comm, const Plan& plan)
      : dev_(dev), comm_(comm), dt_(dev.dtype()), esz_(dtype_bytes(dev.dtype())), cp_(plan.cp),
        rank_(comm.rank()), hq_(plan.model.heads_q), hkv_(plan.model.heads_kv),
        head_dim_(plan.model.head_dim), total_tokens_(plan.total_tokens),
        kv_row_(int64_t{hkv_} * head_dim_), q_row_(int64_t{hq_} * head_dim_),
        tokens_(plan.ranks.at(comm.rank()).tokens) {}

  // Results of several stages, the same for every strategy (docs/execution.md, Precision): the
  // first stage that computes writes out, lse and dQ (out and lse: see stage_forward), every later
  // one accumulates into them inside its kernel (kernels::Into: out/lse merged by log-sum-exp in
  // fp32 with one rounding to the model dtype per stage; dQ summed, its stages' ops sharing it:
  // share_stage_dq), so no stage costs a pass over the results.
  // next_into: what the next stage does, given whether none has computed yet (then cleared).
  static kernels::Into next_into(bool& first) {
    const kernels::Into into = first ? kernels::Into::write : kernels::Into::accumulate;
    first = false;
    return into;
  }
  // The op of a stage over k_rows keys and `slices` (q in the host buffer's rows), its rows noted
  // for stage_forward; the rows of the ops made before it are those it merges into
  // (AttentionOp::set_merged_rows): a strategy makes its stages' ops in the order they run.
  std::unique_ptr<AttentionOp> stage_op(int64_t k_rows, const std::vector<AttnSlice>& slices);
  // The forward's first stage writes out and lse when it gives a key to every row that any stage
  // does. Otherwise writing would cost it out = 0 on rows a later stage computes, and that stage
  // a read of those zeros: the pass starts instead from lse = -inf and out = 0 on the rows no stage
  // reaches, the first stage writes only the rows it gives a key (Into::write_keyed) and the later
  // ones merge (a row at -inf is written, its out never used; kernel_args.h). At cp 1 with an
  // explicit overlap degree the first stage gives keys to a fraction of the rows
  // (results/runtime/NOTES.md).
  void stage_forward(AttentionOp& op, const void* k, const void* v, Local& local, bool& first);
  // The ops of a runner's stages, whose backward calls make one dQ per pass: Device::share_dq
  // (on CUDA one fp32 sum per pass, rounded once, no stage waiting for the one before), when
  // there are several.
  void share_stage_dq(const std::vector<AttentionOp*>& ops) {
    if (ops.size() > 1) dev_.share_dq(ops);
  }
  void finish_forward(Local& local, bool first);  // after the stages (first: none ran)
  // lse = -inf on every row and out = 0 outside `later` (sorted disjoint rows a stage writes later).
  void no_result(Local& local, const std::vector<Range>& later);
  void no_dq(Local& local);                       // no stage: dq = 0

  Device& dev_;
  Communicator& comm_;
  const DType dt_;
  const int64_t esz_;
  const int cp_, rank_, hq_, hkv_, head_dim_;
  const int64_t total_tokens_, kv_row_, q_row_, tokens_;

 private:
  std::vector<std::pair<const AttentionOp*, std::vector<Range>>> op_rows_;  // stage_op, in order: rows given a key
  std::vector<Range> reached_;                                                // their union
  size_t next_op_ = 0;  // stage_forward: the op the pass runs next, in op_rows_
};

std::unique_ptr<StrategyRunner> make_magi_runner(Device& dev, Communicator& comm, const Plan& plan);
std::unique_ptr<StrategyRunner> make_ring_runner(Device& dev, Communicator& comm, const Plan& plan);
std::unique_ptr<StrategyRunner> make_ulysses_runner(Device& dev, Communicator& comm, const Plan& plan);
std::unique_ptr<StrategyRunner> make_allgather_runner(Device& dev, Communicator& comm, const Plan& plan);
// plan.heads > 1: `comm` is the whole world (cp x heads ranks).
std::unique_ptr<StrategyRunner> make_hybrid_runner(Device& dev, Communicator& comm, const Plan& plan);

}  // namespace magi::detail
