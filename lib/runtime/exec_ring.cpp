// ring: the K/V block of every rank (its host buffer) travels P-1 hops around the ring
// r -> r+1. At step s rank r holds the block of owner (r - s) mod P and computes the plan's
// stages whose keys lie in that block (none: the step's compute is skipped, the block still
// moves on). Double-buffered: the block for step s+1 is received while step s computes; step 0
// reads the rank's own K and V. Each stage merges into out/lse and dQ inside its kernel.
// Backward: K/V travel again; the dK/dV of a block travels with it as an accumulator in the model
// dtype (started by the owner at step 0, summed along the way in fp32), P hops, the last one home.
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include <algorithm>

namespace magi::detail {

namespace {

struct RingStage {
  std::unique_ptr<AttentionOp> op;
  int64_t rows = 0;
  bool identity = true;  // stage buffer == the owner's block layout
  RowMap segs;           // block rows -> stage rows (when not identity)
  RowMap back;           // stage rows -> block rows
};

class RingRunner final : public PlanRunner {
 public:
  RingRunner(Device& dev, Communicator& comm, const Plan& plan) : PlanRunner(dev, comm, plan) {
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
    bool copies = false;
    for (int s = 0; s < cp_; ++s) {
      const Stage& st = me.stages[s];
      if (st.kv_ranges.empty() || st.slices.empty()) continue;
      const int owner = (rank_ - s + cp_) % cp_;
      RingStage rs;
      std::vector<RowCopy> segs = inverse(map_rows(plan.ranks[owner].q_ranges, st.kv_ranges));
      rs.rows = total_size(st.kv_ranges);
      rs.identity = is_identity(segs) && rs.rows == block_rows_[owner];
      copies = copies || !rs.identity;
      rs.back = dev_.prepare(rs.identity ? std::vector<RowCopy>{{0, 0, rs.rows}} : inverse(segs));
      rs.segs = dev_.prepare(std::move(segs));
      rs.op = stage_op(rs.rows, st.slices);
      by_owner_[owner].push_back(std::move(rs));
      ++active_;
    }
    kv_direct_ = cp_ == 1 && active_ == 1 && by_owner_[rank_].front().identity;
    std::vector<AttentionOp*> ops;
    for (const auto& stages : by_owner_) {
      for (const RingStage& rs : stages) ops.push_back(rs.op.get());
    }
    share_stage_dq(ops);
    if (cp_ > 1) {
      for (int i = 0; i < 2; ++i) {
        buf_[i] = dev_.alloc(max_block_ * 2 * kv_row_, dt_);
        acc_in_[i] = dev_.alloc(max_block_ * 2 * kv_row_, dt_);
        acc_out_[i] = dev_.alloc(max_block_ * 2 * kv_row_, dt_);
      }
    }
    if (copies) {
      stage_k_ = dev_.alloc(max_block_ * kv_row_, dt_);
      stage_v_ = dev_.alloc(max_block_ * kv_row_, dt_);
    }
    if (!kv_direct_) {
      kv_acc_ = dev_.alloc(max_block_ * 2 * kv_row_, DType::fp32);
      dk_part_ = dev_.alloc(max_block_ * kv_row_, dt_);
      dv_part_ = dev_.alloc(max_block_ * kv_row_, dt_);
    }
  }

  void forward(Local& local) override {
    load_host_block(local);
    bool first = true;
    for (int s = 0; s < cp_; ++s) {
      const int owner = owner_at(s);
      std::unique_ptr<Request> req = post_block(s);
      dev_.compute(
          [&] {
            for (RingStage& rs : by_owner_[owner]) {
              const auto [k, v] = stage_kv(rs, local, s);
              stage_forward(*rs.op, k, v, local, first);
            }
          },
          {req.get()});
      dev_.wait(req.get());
    }
    finish_forward(local, first);
  }

  void backward(Local& local) override {
    load_host_block(local);
    if (active_ == 0) no_dq(local);
    bool first_dq = true;
    // The dK/dV accumulator of a block travels with it: the owner starts it at step 0, every
    // rank holding the block adds its partial, and the P-th hop brings it home complete.
    // Each step ends with one exchange: this step's accumulator to r+1, and from r-1 the one this
    // rank continues at the next step (after the last step: its own block's finished dK/dV). One
    // group on every rank: a receive-only group then a send-only one, in order on NCCL's stream,
    // would wait round the ring for each other.
    std::unique_ptr<Request> acc_xchg;  // posted at the end of the previous step
    for (int s = 0; s < cp_; ++s) {
      const int owner = owner_at(s);
      const int64_t rows = block_rows_[owner];
      std::unique_ptr<Request> req = post_block(s);
      dev_.compute(
          [&] {
            if (kv_direct_) {
              RingStage& rs = by_owner_[owner].front();
              rs.op->backward(local.q.data(), local.k.data(), local.v.data(), local.out.data(),
                              local.dout.data(), local.lse.f32(), local.dq.data(), local.dk.data(),
                              local.dv.data(), kernels::Into::write);
              return;
            }
            dev_.fill(kv_acc_.data(), DType::fp32, rows * 2 * kv_row_, 0.f);
            for (RingStage& rs : by_owner_[owner]) {
              const auto [k, v] = stage_kv(rs, local, s);
              rs.op->backward(local.q.data(), k, v, local.out.data(), local.dout.data(), local.lse.f32(),
                              local.dq.data(), dk_part_.data(), dv_part_.data(), next_into(first_dq));
              dev_.add_rows(rs.back, rows_of(dk_part_, kv_row_), rows_of(kv_acc_, kv_row_), kv_row_);
              dev_.add_rows(rs.back, rows_of(dv_part_, kv_row_), rows_of(kv_acc_, kv_row_, rows * kv_row_),
                            kv_row_);
            }
          },
          {acc_xchg.get(), req.get()});
      dev_.wait(req.get());
      if (acc_xchg) {  // s >= 1: add what the ranks before accumulated for this block
        dev_.wait(acc_xchg.get());
        dev_.add(acc_in_[s % 2].data(), dt_, kv_acc_.data(), DType::fp32, rows * 2 * kv_row_);
      }
      if (cp_ > 1) {
        // acc_out_[s % 2] was last sent by the exchange of step s - 2, waited for above at s - 1.
        dev_.copy(kv_acc_.data(), DType::fp32, acc_out_[s % 2].data(), dt_, rows * 2 * kv_row_);
        const int64_t next_rows = block_rows_[owner_at((s + 1) % cp_)];
        acc_xchg = comm_.group_start({{next(), acc_out_[s % 2].data(), rows * 2 * kv_row_ * esz_}},
                                     {{prev(), acc_in_[(s + 1) % 2].data(), next_rows * 2 * kv_row_ * esz_}});
      }
    }
    if (cp_ > 1) {
      dev_.wait(acc_xchg.get());
      const Buffer& home = acc_in_[cp_ % 2];
      dev_.copy(home.data(), dt_, local.dk.data(), dt_, tokens_ * kv_row_);
      dev_.copy(home.at(tokens_ * kv_row_), dt_, local.dv.data(), dt_, tokens_ * kv_row_);
    } else if (!kv_direct_) {
      dev_.copy(kv_acc_.data(), DType::fp32, local.dk.data(), dt_, tokens_ * kv_row_);
      dev_.copy(kv_acc_.f32(tokens_ * kv_row_), DType::fp32, local.dv.data(), dt_, tokens_ * kv_row_);
    }
  }

 private:
  int owner_at(int s) const { return ((rank_ - s) % cp_ + cp_) % cp_; }
  int next() const { return (rank_ + 1) % cp_; }
  int prev() const { return (rank_ + cp_ - 1) % cp_; }

  // The block sent at step 0: this rank's K rows then V rows, one message.
  void load_host_block(const Local& local) {
    if (cp_ == 1) return;
    dev_.copy(local.k.data(), dt_, buf_[0].data(), dt_, tokens_ * kv_row_);
    dev_.copy(local.v.data(), dt_, buf_[0].at(tokens_ * kv_row_), dt_, tokens_ * kv_row_);
  }

  // Step s: send the block held now to r+1 and receive the next one from r-1.
  std::unique_ptr<Request> post_block(int s) {
    if (s + 1 >= cp_) return nullptr;
    const int64_t send_bytes = block_rows_[owner_at(s)] * 2 * kv_row_ * esz_;
    const int64_t recv_bytes = block_rows_[owner_at(s + 1)] * 2 * kv_row_ * esz_;
    return comm_.group_start({{next(), buf_[s % 2].data(), send_bytes}},
                             {{prev(), buf_[(s + 1) % 2].data(), recv_bytes}});
  }

  // K and V of a stage at step s: the block itself (step 0: the rank's own buffers), or its rows
  // copied into the stage layout.
  std::pair<const void*, const void*> stage_kv(const RingStage& rs, const Local& local, int s) {
    const int64_t rows = block_rows_[owner_at(s)];
    const void* k = s == 0 ? local.k.data() : buf_[s % 2].data();
    const void* v = s == 0 ? local.v.data() : buf_[s % 2].at(rows * kv_row_);
    if (rs.identity) return {k, v};
    dev_.copy_rows(rs.segs, {const_cast<void*>(k), dt_, kv_row_}, rows_of(stage_k_, kv_row_), kv_row_);
    dev_.copy_rows(rs.segs, {const_cast<void*>(v), dt_, kv_row_}, rows_of(stage_v_, kv_row_), kv_row_);
    return {stage_k_.data(), stage_v_.data()};
  }

  int active_ = 0;  // stages with slices on this rank
  bool kv_direct_ = true;
  int64_t max_block_ = 0;
  std::vector<int64_t> block_rows_;
  std::vector<std::vector<RingStage>> by_owner_;
  Buffer buf_[2], acc_in_[2], acc_out_[2];
  Buffer stage_k_, stage_v_, kv_acc_, dk_part_, dv_part_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_ring_runner(Device& dev, Communicator& comm, const Plan& plan) {
  return std::make_unique<RingRunner>(dev, comm, plan);
}

}  // namespace magi::detail
