// allgather: every rank all-gathers the K and V of all ranks (each rank's host block, one
// all-gather of K|V rows), then computes its stages on buffers cut from the gathered sequence,
// each merging into out/lse and dQ inside its kernel; no overlap (the gather is waited for
// before compute). Backward: all-gather again, per-stage backward, dK/dV partials of the whole sequence
// summed in fp32, sent to their owners in the model dtype (all-to-all-v of each owner's rows, a
// reduce-scatter) and summed there in fp32. At cp 1 the kernel reads the rank's own K and V.
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include <algorithm>

namespace magi::detail {

namespace {

struct AgStage {
  std::unique_ptr<AttentionOp> op;
  int64_t rows = 0;
  bool whole = false;  // stage buffer == the whole sequence in order
  RowMap segs;         // global rows -> stage rows
  RowMap back;         // stage rows -> global rows
  Buffer k, v;
};

class AllgatherRunner final : public PlanRunner {
 public:
  AllgatherRunner(Device& dev, Communicator& comm, const Plan& plan) : PlanRunner(dev, comm, plan) {
    std::vector<Range> gathered_layout;  // rank order, each rank's q_ranges
    int64_t gathered_rows = 0;
    for (int p = 0; p < cp_; ++p) {
      const RankPlan& rp = plan.ranks[p];
      bytes_.push_back(rp.tokens * 2 * kv_row_ * esz_);
      displs_.push_back(gathered_rows * 2 * kv_row_ * esz_);
      gathered_rows += rp.tokens;
      gathered_layout.insert(gathered_layout.end(), rp.q_ranges.begin(), rp.q_ranges.end());
    }
    MAGI_CHECK(gathered_rows == total_tokens_, "allgather plan: ranks host {} tokens of {}", gathered_rows,
               total_tokens_);
    std::vector<RowCopy> to_global = map_rows(gathered_layout, {{0, total_tokens_}});
    // At cp 1 with the tokens in order the rank's own K and V are the whole sequence.
    local_is_global_ = cp_ == 1 && is_identity(to_global);
    from_global_ = dev_.prepare(inverse(to_global));
    to_global_ = dev_.prepare(std::move(to_global));
    for (const Stage& st : plan.ranks[rank_].stages) {
      if (st.slices.empty()) continue;
      AgStage a;
      a.rows = total_size(st.kv_ranges);
      std::vector<RowCopy> segs = map_rows({{0, total_tokens_}}, st.kv_ranges);
      a.whole = a.rows == total_tokens_ && is_identity(segs);
      if (!a.whole) {
        a.k = dev_.alloc(a.rows * kv_row_, dt_);
        a.v = dev_.alloc(a.rows * kv_row_, dt_);
      }
      a.back = dev_.prepare(inverse(segs));
      a.segs = dev_.prepare(std::move(segs));
      a.op = stage_op(a.rows, st.slices);
      max_rows_ = std::max(max_rows_, a.rows);
      stages_.push_back(std::move(a));
    }
    kv_direct_ = local_is_global_ && stages_.size() == 1 && stages_.front().whole;
    std::vector<AttentionOp*> ops;
    for (const AgStage& a : stages_) ops.push_back(a.op.get());
    share_stage_dq(ops);
    if (!local_is_global_) {
      send_ = dev_.alloc(tokens_ * 2 * kv_row_, dt_);
      gathered_ = dev_.alloc(total_tokens_ * 2 * kv_row_, dt_);
      kg_ = dev_.alloc(total_tokens_ * kv_row_, dt_);
      vg_ = dev_.alloc(total_tokens_ * kv_row_, dt_);
      reduce_recv_ = dev_.alloc(cp_ * tokens_ * 2 * kv_row_, dt_);
    }
    if (!kv_direct_) {
      dkg_ = dev_.alloc(total_tokens_ * kv_row_, DType::fp32);
      dvg_ = dev_.alloc(total_tokens_ * kv_row_, DType::fp32);
      dk_part_ = dev_.alloc(max_rows_ * kv_row_, dt_);
      dv_part_ = dev_.alloc(max_rows_ * kv_row_, dt_);
      if (!local_is_global_) {
        dk_acc_ = dev_.alloc(tokens_ * kv_row_, DType::fp32);
        dv_acc_ = dev_.alloc(tokens_ * kv_row_, DType::fp32);
      }
    }
    mine_ = dev_.prepare({{0, 0, tokens_}});
  }

  void forward(Local& local) override {
    gather(local);
    bool first = true;
    dev_.compute(
        [&] {
          for (AgStage& a : stages_) {
            stage_forward(*a.op, kbuf(a, local), vbuf(a, local), local, first);
          }
        },
        {});
    finish_forward(local, first);
  }

  void backward(Local& local) override {
    gather(local);
    if (stages_.empty()) no_dq(local);
    bool first_dq = true;
    dev_.compute(
        [&] {
          if (kv_direct_) {
            stages_.front().op->backward(local.q.data(), local.k.data(), local.v.data(), local.out.data(),
                                         local.dout.data(), local.lse.f32(), local.dq.data(), local.dk.data(),
                                         local.dv.data(), kernels::Into::write);
            return;
          }
          // Whole-sequence dK/dV partials in global token order, fp32.
          dev_.fill(dkg_.data(), DType::fp32, dkg_.elems(), 0.f);
          dev_.fill(dvg_.data(), DType::fp32, dvg_.elems(), 0.f);
          for (AgStage& a : stages_) {
            a.op->backward(local.q.data(), kbuf(a, local), vbuf(a, local), local.out.data(), local.dout.data(),
                           local.lse.f32(), local.dq.data(), dk_part_.data(), dv_part_.data(), next_into(first_dq));
            dev_.add_rows(a.back, rows_of(dk_part_, kv_row_), rows_of(dkg_, kv_row_), kv_row_);
            dev_.add_rows(a.back, rows_of(dv_part_, kv_row_), rows_of(dvg_, kv_row_), kv_row_);
          }
        },
        {});
    if (kv_direct_) return;
    if (local_is_global_) {
      dev_.copy(dkg_.data(), DType::fp32, local.dk.data(), dt_, local.dk.elems());
      dev_.copy(dvg_.data(), DType::fp32, local.dv.data(), dt_, local.dv.elems());
      return;
    }
    // Reduce-scatter: rank p gets every rank's partial for its own rows, K|V rows in rank order.
    dev_.copy_rows(from_global_, rows_of(dkg_, kv_row_), rows_of(gathered_, 2 * kv_row_), kv_row_);
    dev_.copy_rows(from_global_, rows_of(dvg_, kv_row_), rows_of(gathered_, 2 * kv_row_, kv_row_), kv_row_);
    std::vector<int64_t> rb(cp_, tokens_ * 2 * kv_row_ * esz_), rd(cp_);
    for (int p = 0; p < cp_; ++p) rd[p] = p * tokens_ * 2 * kv_row_ * esz_;
    std::unique_ptr<Request> req =
        comm_.all_to_all_v_start(gathered_.data(), bytes_, displs_, reduce_recv_.data(), rb, rd);
    dev_.wait(req.get());
    dev_.fill(dk_acc_.data(), DType::fp32, dk_acc_.elems(), 0.f);
    dev_.fill(dv_acc_.data(), DType::fp32, dv_acc_.elems(), 0.f);
    for (int p = 0; p < cp_; ++p) {
      const int64_t at = p * tokens_ * 2 * kv_row_;
      dev_.add_rows(mine_, rows_of(reduce_recv_, 2 * kv_row_, at), rows_of(dk_acc_, kv_row_), kv_row_);
      dev_.add_rows(mine_, rows_of(reduce_recv_, 2 * kv_row_, at + kv_row_), rows_of(dv_acc_, kv_row_), kv_row_);
    }
    dev_.copy(dk_acc_.data(), DType::fp32, local.dk.data(), dt_, local.dk.elems());
    dev_.copy(dv_acc_.data(), DType::fp32, local.dv.data(), dt_, local.dv.elems());
  }

 private:
  const void* kbuf(const AgStage& a, const Local& local) const {
    if (!a.whole) return a.k.data();
    return local_is_global_ ? local.k.data() : kg_.data();
  }
  const void* vbuf(const AgStage& a, const Local& local) const {
    if (!a.whole) return a.v.data();
    return local_is_global_ ? local.v.data() : vg_.data();
  }

  // All-gather K|V rows of every rank, then lay them out in global order and cut the stages.
  void gather(const Local& local) {
    const Buffer& k = local_is_global_ ? local.k : kg_;
    const Buffer& v = local_is_global_ ? local.v : vg_;
    if (!local_is_global_) {
      dev_.copy_rows(mine_, rows_of(local.k, kv_row_), rows_of(send_, 2 * kv_row_), kv_row_);
      dev_.copy_rows(mine_, rows_of(local.v, kv_row_), rows_of(send_, 2 * kv_row_, kv_row_), kv_row_);
      std::unique_ptr<Request> req =
          comm_.all_gather_v_start(send_.data(), tokens_ * 2 * kv_row_ * esz_, gathered_.data(), bytes_, displs_);
      dev_.wait(req.get());
      dev_.copy_rows(to_global_, rows_of(gathered_, 2 * kv_row_), rows_of(kg_, kv_row_), kv_row_);
      dev_.copy_rows(to_global_, rows_of(gathered_, 2 * kv_row_, kv_row_), rows_of(vg_, kv_row_), kv_row_);
    }
    for (AgStage& a : stages_) {
      if (a.whole) continue;
      dev_.copy_rows(a.segs, rows_of(k, kv_row_), rows_of(a.k, kv_row_), kv_row_);
      dev_.copy_rows(a.segs, rows_of(v, kv_row_), rows_of(a.v, kv_row_), kv_row_);
    }
  }

  bool local_is_global_ = false;
  bool kv_direct_ = true;
  int64_t max_rows_ = 0;
  std::vector<int64_t> bytes_, displs_;
  RowMap to_global_, from_global_, mine_;
  std::vector<AgStage> stages_;
  Buffer send_, gathered_, kg_, vg_, reduce_recv_, dkg_, dvg_, dk_acc_, dv_acc_;
  Buffer dk_part_, dv_part_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_allgather_runner(Device& dev, Communicator& comm, const Plan& plan) {
  return std::make_unique<AllgatherRunner>(dev, comm, plan);
}

}  // namespace magi::detail
