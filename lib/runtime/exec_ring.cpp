// ring: the K/V block of every rank (its host buffer) travels P-1 hops around the ring
// r -> r+1. At step s rank r holds the block of owner (r - s) mod P and computes the plan's
// stages whose keys lie in that block (none: the step's compute is skipped, the block still
// moves on). Double-buffered: the block for step s+1 is received while step s computes.
// Backward: K/V travel again; the dK/dV of a block travels with it as an accumulator (started
// by the owner at step 0, summed along the way), P hops, the last one home.
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include "cpu/reference_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace magi::detail {

namespace {

namespace kcpu = magi::kernels::cpu;

struct RingStage {
  std::vector<kernels::KernelSlice> slices;
  int64_t rows = 0;
  bool identity = true;     // stage buffer == the owner's block layout
  std::vector<RowCopy> segs;    // block rows -> stage rows (when not identity)
};

class RingRunner final : public PlanRunner {
 public:
  RingRunner(Communicator& comm, const Plan& plan, int threads)
      : PlanRunner(plan, comm.rank()), comm_(comm), threads_(threads) {
    const RankPlan& me = plan.ranks.at(rank_);
    block_rows_.resize(cp_);
    for (int p = 0; p < cp_; ++p) {
      block_rows_[p] = plan.ranks[p].tokens;
      max_block_ = std::max(max_block_, block_rows_[p]);
    }
    // Stage s of rank r holds the block of rank (r - s) mod cp (plan.h); a stage with no slices
    // (fully masked block) is only forwarded.
    MAGI_CHECK(static_cast<int>(me.stages.size()) == cp_, "ring plan: rank {} has {} stages, expected {}",
               rank_, me.stages.size(), cp_);
    by_owner_.resize(cp_);
    for (int s = 0; s < cp_; ++s) {
      const Stage& st = me.stages[s];
      if (st.kv_ranges.empty() || st.slices.empty()) continue;
      const int owner = (rank_ - s + cp_) % cp_;
      RingStage rs;
      rs.segs = inverse(map_rows(plan.ranks[owner].q_ranges, st.kv_ranges));
      rs.identity = is_identity(rs.segs) && total_size(st.kv_ranges) == block_rows_[owner];
      rs.rows = total_size(st.kv_ranges);
      rs.slices = to_kernel_slices(st.slices);
      by_owner_[owner].push_back(std::move(rs));
    }
    for (auto& b : buf_) b.assign(max_block_ * 2 * kv_row_, 0.f);
    for (auto& b : acc_in_) b.assign(max_block_ * 2 * kv_row_, 0.f);
    for (auto& b : acc_out_) b.assign(max_block_ * 2 * kv_row_, 0.f);
    stage_k_.assign(max_block_ * kv_row_, 0.f);
    stage_v_.assign(max_block_ * kv_row_, 0.f);
    out_part_.assign(tokens_ * hq_ * head_dim_, 0.f);
    lse_part_.assign(tokens_ * hq_, 0.f);
    dq_part_.assign(tokens_ * hq_ * head_dim_, 0.f);
    dk_part_.assign(max_block_ * kv_row_, 0.f);
    dv_part_.assign(max_block_ * kv_row_, 0.f);
  }

  void forward(Local& local, PassStats& st) override {
    load_host_block(local);
    bool have_acc = false;
    for (int s = 0; s < cp_; ++s) {
      const int owner = owner_at(s);
      std::unique_ptr<Request> req = post_block(s);
      float* blk = buf_[s % 2].data();
      overlap(
          [&] {
            for (RingStage& rs : by_owner_[owner]) {
              const float *k = nullptr, *v = nullptr;
              stage_kv(rs, blk, block_rows_[owner], k, v);
              const kernels::AttnShape shape{tokens_, rs.rows, hq_, hkv_, head_dim_};
              float* out = have_acc ? out_part_.data() : local.out.data();
              float* lse = have_acc ? lse_part_.data() : local.lse.data();
              kcpu::attention_forward(shape, rs.slices.data(), rs.slices.size(), local.q.data(), k, v,
                                      scale(), out, lse, threads_);
              if (have_acc) {
                kcpu::merge_partial(tokens_, hq_, head_dim_, local.out.data(), local.lse.data(), out_part_.data(),
                                    lse_part_.data());
              }
              have_acc = true;
            }
          },
          {}, req.get(), st);
    }
    if (!have_acc) {
      std::fill(local.out.begin(), local.out.end(), 0.f);
      std::fill(local.lse.begin(), local.lse.end(), -std::numeric_limits<float>::infinity());
    }
  }

  void backward(Local& local, PassStats& st) override {
    load_host_block(local);
    std::fill(local.dq.begin(), local.dq.end(), 0.f);
    // The dK/dV accumulator of a block travels with it: the owner starts it at step 0, every
    // rank holding the block adds its partial, and the P-th hop brings it home complete.
    std::unique_ptr<Request> acc_recv, acc_send;
    for (int s = 0; s < cp_; ++s) {
      const int owner = owner_at(s);
      const int64_t rows = block_rows_[owner];
      std::unique_ptr<Request> req = post_block(s);
      // What r-1 sends after its step s: the accumulator this rank continues at step s+1 (after
      // the last step, its own block's finished dK/dV).
      std::unique_ptr<Request> next_acc;
      if (cp_ > 1) {
        const int next_owner = owner_at((s + 1) % cp_);
        next_acc = comm_.group_start(
            {}, {{prev(), acc_in_[(s + 1) % 2].data(), block_rows_[next_owner] * 2 * kv_row_ * 4}});
      }
      float* blk = buf_[s % 2].data();
      // The buffer was last sent two steps ago.
      wait_timed(s >= 2 ? sent_[s % 2].get() : nullptr, st);
      float* dk_acc = acc_out_[s % 2].data();
      float* dv_acc = dk_acc + rows * kv_row_;
      overlap(
          [&] {
            std::fill_n(acc_out_[s % 2].begin(), rows * 2 * kv_row_, 0.f);
            for (RingStage& rs : by_owner_[owner]) {
              const float *k = nullptr, *v = nullptr;
              stage_kv(rs, blk, rows, k, v);
              const kernels::AttnShape shape{tokens_, rs.rows, hq_, hkv_, head_dim_};
              kcpu::attention_backward(shape, rs.slices.data(), rs.slices.size(), local.q.data(), k, v,
                                       local.out.data(), local.dout.data(), local.lse.data(), scale(),
                                       dq_part_.data(), dk_part_.data(), dv_part_.data(), threads_);
              for (size_t i = 0; i < local.dq.size(); ++i) local.dq[i] += dq_part_[i];
              const std::vector<RowCopy> back =
                  rs.identity ? std::vector<RowCopy>{{0, 0, rows}} : inverse(rs.segs);
              add_rows(back, dk_part_.data(), dk_acc, kv_row_);
              add_rows(back, dv_part_.data(), dv_acc, kv_row_);
            }
          },
          {acc_recv.get()}, req.get(), st);
      if (acc_recv) {  // s >= 1: add what the ranks before accumulated for this block
        wait_timed(acc_recv.get(), st);
        const float* in = acc_in_[s % 2].data();
        float* o = acc_out_[s % 2].data();
        for (int64_t i = 0; i < rows * 2 * kv_row_; ++i) o[i] += in[i];
      }
      if (cp_ > 1) {
        sent_[s % 2] =
            comm_.group_start({{next(), acc_out_[s % 2].data(), rows * 2 * kv_row_ * 4}}, {});
      }
      acc_recv = std::move(next_acc);
    }
    const float* home = cp_ > 1 ? acc_in_[cp_ % 2].data() : acc_out_[0].data();
    if (acc_recv) wait_timed(acc_recv.get(), st);
    std::copy_n(home, tokens_ * kv_row_, local.dk.begin());
    std::copy_n(home + tokens_ * kv_row_, tokens_ * kv_row_, local.dv.begin());
    for (auto& q : sent_) {
      wait_timed(q.get(), st);
      q.reset();
    }
  }

 private:
  float scale() const { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_))); }
  int owner_at(int s) const { return ((rank_ - s) % cp_ + cp_) % cp_; }
  int next() const { return (rank_ + 1) % cp_; }
  int prev() const { return (rank_ + cp_ - 1) % cp_; }

  void load_host_block(const Local& local) {
    std::copy(local.k.begin(), local.k.end(), buf_[0].begin());
    std::copy(local.v.begin(), local.v.end(), buf_[0].begin() + tokens_ * kv_row_);
  }

  // Step s: send the block held now to r+1 and receive the next one from r-1.
  std::unique_ptr<Request> post_block(int s) {
    if (s + 1 >= cp_) return nullptr;
    const int64_t send_bytes = block_rows_[owner_at(s)] * 2 * kv_row_ * 4;
    const int64_t recv_bytes = block_rows_[owner_at(s + 1)] * 2 * kv_row_ * 4;
    return comm_.group_start({{next(), buf_[s % 2].data(), send_bytes}},
                             {{prev(), buf_[(s + 1) % 2].data(), recv_bytes}});
  }

  // K and V of a stage: the block itself, or its rows copied into the stage layout.
  void stage_kv(const RingStage& rs, const float* blk, int64_t rows, const float*& k,
                const float*& v) {
    if (rs.identity) {
      k = blk;
      v = blk + rows * kv_row_;
      return;
    }
    copy_rows(rs.segs, blk, stage_k_.data(), kv_row_);
    copy_rows(rs.segs, blk + rows * kv_row_, stage_v_.data(), kv_row_);
    k = stage_k_.data();
    v = stage_v_.data();
  }

  Communicator& comm_;
  int threads_;
  int64_t max_block_ = 0;
  std::vector<int64_t> block_rows_;
  std::vector<std::vector<RingStage>> by_owner_;
  std::vector<float> buf_[2], acc_in_[2], acc_out_[2];
  std::unique_ptr<Request> sent_[2];  // accumulator sends in flight
  std::vector<float> stage_k_, stage_v_, out_part_, lse_part_, dq_part_, dk_part_, dv_part_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_ring_runner(Communicator& comm, const Plan& plan, int threads) {
  return std::make_unique<RingRunner>(comm, plan, threads);
}

}  // namespace magi::detail
