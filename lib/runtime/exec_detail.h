// Internals shared by the strategy executors (not part of the runtime's public API).
#pragma once

#include "core/base/range.h"
#include "core/base/slice.h"
#include "core/plan/comm_volume.h"
#include "core/plan/plan.h"
#include "runtime/communicator.h"

#include "common/kernel_args.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace magi::detail {

// A run of rows copied from one buffer to another.
struct RowCopy {
  int64_t src_row = 0, dst_row = 0, rows = 0;
};

// Where each token of `dst_layout` (a buffer laid out as the concatenation of its ranges) sits
// in a buffer laid out as `src_layout`: copy segments in dst order. Throws InternalError when a
// token of dst_layout is missing from src_layout. dst_offset is added to every dst_row.
std::vector<RowCopy> map_rows(const std::vector<Range>& src_layout,
                          const std::vector<Range>& dst_layout, int64_t dst_offset = 0);
std::vector<RowCopy> inverse(const std::vector<RowCopy>& segs);
bool is_identity(const std::vector<RowCopy>& segs);

// dst rows = src rows (row = row_elems floats), or dst rows += src rows.
void copy_rows(const std::vector<RowCopy>& segs, const float* src, float* dst, int64_t row_elems);
void add_rows(const std::vector<RowCopy>& segs, const float* src, float* dst, int64_t row_elems);

// Milliseconds of steady clock since t0.
double ms_since(std::chrono::steady_clock::time_point t0);

// One rank's tensors in its host layout (concatenation of its q_ranges).
struct Local {
  int64_t tokens = 0;
  int hq = 0, hkv = 0, d = 0;
  std::vector<float> q, k, v, dout;  // inputs
  std::vector<float> out, lse;       // forward results
  std::vector<float> dq, dk, dv;     // backward results
};

struct PassStats {
  double comm_wait_ms = 0;  // communication this rank waited on that compute did not hide
};

// Runs `compute` on a worker thread while this thread keeps `progress` requests moving (MPI
// advances only inside calls); then waits for `need` (may be null) and adds the time waited
// after compute finished to stats.comm_wait_ms. With nothing pending, computes inline.
void overlap(const std::function<void()>& compute, const std::vector<Request*>& progress,
             Request* need, PassStats& stats);
// Waits for a request, adding the time to stats.comm_wait_ms.
void wait_timed(Request* req, PassStats& stats);

class StrategyRunner {
 public:
  virtual ~StrategyRunner() = default;
  virtual void forward(Local& local, PassStats& stats) = 0;   // writes out, lse
  virtual void backward(Local& local, PassStats& stats) = 0;  // reads out, lse, dout; writes dq, dk, dv
  // After forward, for the check only: make local.lse complete when forward leaves it elsewhere.
  virtual void lse_for_check(Local&) {}
};

// A runner's view of the plan for its rank: cp, rank, heads, head dim, sequence length,
// elements of one key/value row (hkv x head_dim), and the rank's tokens.
class PlanRunner : public StrategyRunner {
 protected:
  PlanRunner(const Plan& plan, int rank)
      : cp_(plan.cp), rank_(rank), hq_(plan.model.heads_q), hkv_(plan.model.heads_kv), head_dim_(plan.model.head_dim),
        total_tokens_(plan.total_tokens), kv_row_(int64_t{hkv_} * head_dim_), tokens_(plan.ranks.at(rank).tokens) {}
  const int cp_, rank_, hq_, hkv_, head_dim_;
  const int64_t total_tokens_, kv_row_, tokens_;
};

std::unique_ptr<StrategyRunner> make_magi_runner(Communicator& comm, const Plan& plan, int threads);
std::unique_ptr<StrategyRunner> make_ring_runner(Communicator& comm, const Plan& plan, int threads);
std::unique_ptr<StrategyRunner> make_ulysses_runner(Communicator& comm, const Plan& plan,
                                                    int threads);
std::unique_ptr<StrategyRunner> make_allgather_runner(Communicator& comm, const Plan& plan,
                                                      int threads);

}  // namespace magi::detail
