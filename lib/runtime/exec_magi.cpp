// magi: GroupCast of K and V per stage (one all-to-all-v per stage, stage s+1 posted before
// stage s computes), stage compute on the stage's local slices, each stage merging into out/lse
// inside its kernel (docs/execution.md, Precision). Backward: GroupCast again, per-stage
// backward with the global out/lse, dQ accumulated by the kernels, dK/dV partials of remote
// stages sent back to their owners in the model dtype (GroupReduce: the same all-to-all-v
// reversed, in flight while the next stage computes) and summed there in fp32. A rank with one
// that gets no partials back writes dK/dV straight from the kernels. Local stages (cp 1 with an
// explicit overlap degree, plan.h) read their keys from the host buffer, receive nothing, and
// write their keys' dK/dV in place.
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include <algorithm>

namespace magi::detail {

namespace {

// One stage's GroupCast as seen by this rank. Packed rows hold a token's K row then its V row.
struct StageComm {
  std::vector<int64_t> send_bytes, send_displs, recv_bytes, recv_displs;
  RowMap pack;       // host rows -> send buffer rows
  RowMap unpack;     // recv buffer rows -> stage buffer rows
  RowMap reduce;     // stage buffer rows -> GroupReduce send rows (the unpack reversed)
  // GroupReduce recv rows -> host rows (the pack reversed), one map per destination of the
  // forward: a token sent to several ranks comes back from each, and one map's segments must
  // not add into the same row (device.h).
  std::vector<RowMap> reduce_in;
  int64_t send_rows = 0, recv_rows = 0;
  Buffer send, recv;          // forward K|V rows
  Buffer red_send, red_recv;  // backward dK|dV rows (reverse direction)
};

struct LocalStage {
  std::unique_ptr<AttentionOp> op;  // null: no slices on this rank
  int64_t rows = 0;                 // stage buffer rows
  Buffer k, v;                      // stages >= 1 that receive their keys
  // A stage >= 1 whose keys are one run of the host buffer, received from nobody (the local
  // stages of a cp 1 plan with an explicit overlap degree, plan.h): read there, from this row.
  int64_t host_row = -1;
};

class MagiRunner final : public PlanRunner {
 public:
  MagiRunner(Device& dev, Communicator& comm, const Plan& plan) : PlanRunner(dev, comm, plan) {
    const RankPlan& me = plan.ranks.at(rank_);
    int n = 0;
    for (const RankPlan& rp : plan.ranks) n = std::max(n, static_cast<int>(rp.stages.size()));
    for (const Transfer& t : plan.transfers) n = std::max(n, t.stage + 1);
    stages_.resize(n);
    comms_.resize(n);
    int64_t max_rows = 0, returned_rows = 0;
    for (int s = 0; s < n; ++s) {
      LocalStage& ls = stages_[s];
      if (s < static_cast<int>(me.stages.size())) {
        ls.rows = total_size(me.stages[s].kv_ranges);
        if (!me.stages[s].slices.empty()) {
          const kernels::AttnShape shape{tokens_, s == 0 ? tokens_ : ls.rows, hq_, hkv_, head_dim_};
          ls.op = dev_.attention(shape, to_kernel_slices(me.stages[s].slices));
          ++active_;
        }
      }
      StageComm& c = comms_[s];
      c.send_bytes.assign(cp_, 0);
      c.send_displs.assign(cp_, 0);
      c.recv_bytes.assign(cp_, 0);
      c.recv_displs.assign(cp_, 0);
      if (s == 0) continue;  // the host stage receives nothing
      if (s < static_cast<int>(me.stages.size()) && ls.rows > 0 && receives_nothing(plan, s)) {
        const auto segs = map_rows(me.q_ranges, me.stages[s].kv_ranges);
        MAGI_CHECK(segs.size() == 1, "rank {} stage {}: a local stage must be one run of the host buffer",
                   rank_, s);
        ls.host_row = segs[0].src_row;
      } else {
        ls.k = dev_.alloc(ls.rows * kv_row_, dt_);
        ls.v = dev_.alloc(ls.rows * kv_row_, dt_);
      }
      // Sends, grouped by destination ascending (the receiver groups by source ascending).
      std::vector<RowCopy> pack;
      std::vector<std::vector<RowCopy>> pack_to(cp_);
      std::vector<Range> recv_layout;
      const int64_t packed = 2 * kv_row_ * esz_;
      for (int p = 0; p < cp_; ++p) {
        c.send_displs[p] = c.send_rows;
        for (const Transfer& t : plan.transfers) {
          if (t.stage != s || t.src != rank_ || t.dst != p) continue;
          auto segs = map_rows(me.q_ranges, t.ranges, c.send_rows);
          pack.insert(pack.end(), segs.begin(), segs.end());
          pack_to[p].insert(pack_to[p].end(), segs.begin(), segs.end());
          c.send_rows += total_size(t.ranges);
        }
        c.send_bytes[p] = (c.send_rows - c.send_displs[p]) * packed;
        c.send_displs[p] *= packed;
      }
      for (int p = 0; p < cp_; ++p) {
        c.recv_displs[p] = c.recv_rows;
        for (const Transfer& t : plan.transfers) {
          if (t.stage != s || t.dst != rank_ || t.src != p) continue;
          recv_layout.insert(recv_layout.end(), t.ranges.begin(), t.ranges.end());
          c.recv_rows += total_size(t.ranges);
        }
        c.recv_bytes[p] = (c.recv_rows - c.recv_displs[p]) * packed;
        c.recv_displs[p] *= packed;
      }
      std::vector<RowCopy> unpack;
      if (s < static_cast<int>(me.stages.size()) && ls.host_row < 0) {
        unpack = map_rows(recv_layout, me.stages[s].kv_ranges);
      }
      MAGI_CHECK(c.recv_rows == (ls.host_row < 0 ? ls.rows : 0),
                 "rank {} stage {}: receives {} tokens for a buffer of {}", rank_, s, c.recv_rows, ls.rows);
      c.reduce = dev_.prepare(inverse(unpack));
      c.unpack = dev_.prepare(std::move(unpack));
      for (const std::vector<RowCopy>& to_p : pack_to) {
        if (!to_p.empty()) c.reduce_in.push_back(dev_.prepare(inverse(to_p)));
      }
      c.pack = dev_.prepare(std::move(pack));
      c.send = dev_.alloc(c.send_rows * 2 * kv_row_, dt_);
      c.recv = dev_.alloc(c.recv_rows * 2 * kv_row_, dt_);
      c.red_send = dev_.alloc(c.recv_rows * 2 * kv_row_, dt_);
      c.red_recv = dev_.alloc(c.send_rows * 2 * kv_row_, dt_);
      max_rows = std::max(max_rows, ls.rows);
      returned_rows += c.send_rows;
    }
    // dK/dV straight from the kernels when no other rank sends partials back: the host stage's
    // writes every row, a local stage's (after it, in stream order) its own run of rows.
    kv_direct_ = returned_rows == 0;
    for (const LocalStage& ls : stages_) {
      MAGI_CHECK(ls.host_row < 0 || kv_direct_, "rank {}: a local stage, yet dK/dV partials come back", rank_);
    }
    if (!kv_direct_) {
      dk_acc_ = dev_.alloc(tokens_ * kv_row_, DType::fp32);
      dv_acc_ = dev_.alloc(tokens_ * kv_row_, DType::fp32);
    }
    // Partials of a remote stage (and of the host stage when summed).
    const int64_t part_rows = kv_direct_ ? max_rows : std::max(max_rows, tokens_);
    dk_part_ = dev_.alloc(part_rows * kv_row_, dt_);
    dv_part_ = dev_.alloc(part_rows * kv_row_, dt_);
  }

  void forward(Local& local) override {
    const int n = static_cast<int>(stages_.size());
    bool first = true;
    auto compute = [&](int s) {
      const LocalStage& ls = stages_[s];
      if (ls.op) stage_forward(*ls.op, stage_k(s, local), stage_v(s, local), local, first);
    };
    std::unique_ptr<Request> req = post_kv(1, local);
    dev_.compute([&] { compute(0); }, {req.get()});
    for (int s = 1; s < n; ++s) {
      dev_.wait(req.get());
      unpack_kv(s);
      std::unique_ptr<Request> next = post_kv(s + 1, local);
      dev_.compute([&] { compute(s); }, {next.get()});
      req = std::move(next);
    }
    finish_forward(local, first);
  }

  void backward(Local& local) override {
    const int n = static_cast<int>(stages_.size());
    if (active_ == 0) no_dq(local);
    bool first_dq = true;
    if (!kv_direct_) {
      dev_.fill(dk_acc_.data(), DType::fp32, dk_acc_.elems(), 0.f);
      dev_.fill(dv_acc_.data(), DType::fp32, dv_acc_.elems(), 0.f);
    }
    std::unique_ptr<Request> req = post_kv(1, local);
    // Host stage: dK/dV of this rank's own tokens.
    dev_.compute(
        [&] {
          const LocalStage& ls = stages_[0];
          if (!ls.op) {
            if (kv_direct_) {
              dev_.fill(local.dk.data(), dt_, local.dk.elems(), 0.f);
              dev_.fill(local.dv.data(), dt_, local.dv.elems(), 0.f);
            }
            return;
          }
          void* dk = kv_direct_ ? local.dk.data() : dk_part_.data();
          void* dv = kv_direct_ ? local.dv.data() : dv_part_.data();
          ls.op->backward(local.q.data(), local.k.data(), local.v.data(), local.out.data(),
                          local.dout.data(), local.lse.f32(), local.dq.data(), dk, dv, next_into(first_dq));
          if (!kv_direct_) {
            dev_.add(dk_part_.data(), dt_, dk_acc_.data(), DType::fp32, dk_acc_.elems());
            dev_.add(dv_part_.data(), dt_, dv_acc_.data(), DType::fp32, dv_acc_.elems());
          }
        },
        {req.get()});
    std::vector<std::unique_ptr<Request>> reduces;
    for (int s = 1; s < n; ++s) {
      StageComm& c = comms_[s];
      LocalStage& ls = stages_[s];
      dev_.wait(req.get());
      unpack_kv(s);
      std::unique_ptr<Request> next = post_kv(s + 1, local);
      std::vector<Request*> progress{next.get()};
      for (auto& r : reduces) progress.push_back(r.get());
      dev_.compute(
          [&] {
            // A local stage's keys are this rank's own run of rows: their gradients go there.
            const bool own = ls.host_row >= 0;
            if (ls.op) {
              ls.op->backward(local.q.data(), stage_k(s, local), stage_v(s, local), local.out.data(),
                              local.dout.data(), local.lse.f32(), local.dq.data(),
                              own ? local.dk.at(ls.host_row * kv_row_) : dk_part_.data(),
                              own ? local.dv.at(ls.host_row * kv_row_) : dv_part_.data(), next_into(first_dq));
            }
            if (own) return;
            if (!ls.op && ls.rows > 0) {
              dev_.fill(dk_part_.data(), dt_, ls.rows * kv_row_, 0.f);
              dev_.fill(dv_part_.data(), dt_, ls.rows * kv_row_, 0.f);
            }
            // GroupReduce send buffer: the forward receive layout, filled from the stage buffer.
            dev_.copy_rows(c.reduce, rows_of(dk_part_, kv_row_), rows_of(c.red_send, 2 * kv_row_), kv_row_);
            dev_.copy_rows(c.reduce, rows_of(dv_part_, kv_row_), rows_of(c.red_send, 2 * kv_row_, kv_row_),
                           kv_row_);
          },
          progress);
      reduces.push_back(comm_.all_to_all_v_start(c.red_send.data(), c.recv_bytes, c.recv_displs,
                                                 c.red_recv.data(), c.send_bytes, c.send_displs));
      req = std::move(next);
    }
    for (int s = 1; s < n; ++s) {
      dev_.wait(reduces[s - 1].get());
      const StageComm& c = comms_[s];
      for (const RowMap& from_p : c.reduce_in) {
        dev_.add_rows(from_p, rows_of(c.red_recv, 2 * kv_row_), rows_of(dk_acc_, kv_row_), kv_row_);
        dev_.add_rows(from_p, rows_of(c.red_recv, 2 * kv_row_, kv_row_), rows_of(dv_acc_, kv_row_), kv_row_);
      }
    }
    if (!kv_direct_) {
      dev_.copy(dk_acc_.data(), DType::fp32, local.dk.data(), dt_, local.dk.elems());
      dev_.copy(dv_acc_.data(), DType::fp32, local.dv.data(), dt_, local.dv.elems());
    }
  }

 private:
  std::unique_ptr<Request> post_kv(int s, const Local& local) {
    if (s >= static_cast<int>(comms_.size())) return nullptr;
    StageComm& c = comms_[s];
    dev_.copy_rows(c.pack, rows_of(local.k, kv_row_), rows_of(c.send, 2 * kv_row_), kv_row_);
    dev_.copy_rows(c.pack, rows_of(local.v, kv_row_), rows_of(c.send, 2 * kv_row_, kv_row_), kv_row_);
    return comm_.all_to_all_v_start(c.send.data(), c.send_bytes, c.send_displs, c.recv.data(),
                                    c.recv_bytes, c.recv_displs);
  }

  // Whether no rank sends this rank anything for stage s.
  bool receives_nothing(const Plan& plan, int s) const {
    for (const Transfer& t : plan.transfers) {
      if (t.stage == s && t.dst == rank_) return false;
    }
    return true;
  }
  const void* stage_k(int s, const Local& local) const {
    const LocalStage& ls = stages_[s];
    if (s == 0) return local.k.data();
    return ls.host_row >= 0 ? local.k.at(ls.host_row * kv_row_) : ls.k.data();
  }
  const void* stage_v(int s, const Local& local) const {
    const LocalStage& ls = stages_[s];
    if (s == 0) return local.v.data();
    return ls.host_row >= 0 ? local.v.at(ls.host_row * kv_row_) : ls.v.data();
  }

  void unpack_kv(int s) {
    StageComm& c = comms_[s];
    LocalStage& ls = stages_[s];
    if (ls.host_row >= 0) return;
    dev_.copy_rows(c.unpack, rows_of(c.recv, 2 * kv_row_), rows_of(ls.k, kv_row_), kv_row_);
    dev_.copy_rows(c.unpack, rows_of(c.recv, 2 * kv_row_, kv_row_), rows_of(ls.v, kv_row_), kv_row_);
  }

  int active_ = 0;  // stages with slices on this rank
  bool kv_direct_ = true;
  std::vector<LocalStage> stages_;
  std::vector<StageComm> comms_;
  Buffer dk_acc_, dv_acc_, dk_part_, dv_part_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_magi_runner(Device& dev, Communicator& comm, const Plan& plan) {
  return std::make_unique<MagiRunner>(dev, comm, plan);
}

}  // namespace magi::detail
