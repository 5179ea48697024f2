// magi: GroupCast of K and V per stage (one all-to-all-v per stage, stage s+1 posted before
// stage s computes), stage compute on the stage's local slices, each stage merging into out/lse
// inside its kernel (docs/execution.md, Precision). Backward: GroupCast again, per-stage
// backward with the global out/lse, dQ accumulated by the kernels, dK/dV partials of remote
// stages sent back to their owners in the model dtype (GroupReduce: the same all-to-all-v
// reversed, in flight while the next stage computes) and summed there in fp32. A rank with one
// that gets no partials back writes dK/dV straight from the kernels. Local stages (cp 1 with an
// explicit overlap degree, plan.h) read their keys from the host buffer, receive nothing, and
// write their keys' dK/dV in place.
// Node-aware plans (core/plan/node_routing.h) also forward: a relay packs, beside its own host
// rows, rows of its previous stage's buffer into a round's message. Backward, the partials of
// forwarded rows go back to the relay first (the fan-in, posted after the stage computes), which
// adds them in fp32 to its own; the relay's reverse message to the owners of stage s leaves once
// the fan-in of round s + 1 is in, that is after stage s + 2 computes (the wait overlapped by
// stage s + 2's compute), so that each token's dK/dV cross between nodes once.
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include <algorithm>

namespace magi::detail {

namespace {

// Per-peer byte counts and displacements of one all-to-all-v, from row counts.
struct Exchange {
  std::vector<int64_t> send_bytes, send_displs, recv_bytes, recv_displs;
  int64_t send_rows = 0, recv_rows = 0;
};

// One stage's GroupCast as seen by this rank, and its reverse. Packed rows hold a token's K row
// then its V row.
struct StageComm {
  // Whether the plan moves anything in this stage (on any rank): the local stages of a cp 1 plan
  // with an explicit overlap degree do not, and posting nothing would still put the
  // communicator's ordering between their kernels, which a device runs back to back.
  bool any = false;
  Exchange cast;        // forward: per peer, its host rows then the rows it forwards
  RowMap pack;          // host rows -> send rows
  RowMap pack_relayed;  // previous stage's buffer rows -> send rows (rows this rank forwards)
  RowMap unpack;        // recv buffer rows -> stage buffer rows
  Buffer send, recv;    // forward K|V rows
  // GroupReduce to the owners: partials of the rows received from peers' host buffers.
  Exchange reduce;
  RowMap reduce_pack;   // stage buffer rows -> reduce send rows
  // Reduce recv rows -> host rows, one map per peer: a token sent to several ranks comes back
  // from each, and one map's segments must not add into the same row (device.h).
  std::vector<RowMap> reduce_in;
  Buffer red_send, red_recv;
  // Fan-in to the relays: partials of the rows received from peers' stage s - 1 buffers.
  Exchange fan;
  RowMap fan_pack;             // stage buffer rows -> fan send rows
  std::vector<RowMap> fan_in;  // fan recv rows -> the previous stage's relay rows, per peer
  Buffer fan_send, fan_recv;
  // As a relay: this stage's rows forwarded in round s + 1, their dK|dV summed in fp32.
  RowMap relay_in;   // stage buffer rows -> relay rows
  RowMap relay_out;  // relay rows -> reduce send rows
  Buffer relay_acc;  // fp32, relay rows x (K|V)
};

struct LocalStage {
  std::unique_ptr<AttentionOp> op;  // null: no slices on this rank
  int64_t rows = 0;                 // stage buffer rows
  Buffer k, v;                      // stages >= 1 that receive their keys
  // A stage >= 1 whose keys are one run of the host buffer, received from nobody (the local
  // stages of a cp 1 plan with an explicit overlap degree, plan.h): read there, from this row.
  int64_t host_row = -1;
};

// Global token ranges of `ranges` in a buffer, concatenated.
void append(std::vector<Range>& layout, const std::vector<Range>& ranges) {
  layout.insert(layout.end(), ranges.begin(), ranges.end());
}

class MagiRunner final : public PlanRunner {
 public:
  MagiRunner(Device& dev, Communicator& comm, const Plan& plan) : PlanRunner(dev, comm, plan) {
    const RankPlan& me = plan.ranks.at(rank_);
    int n = 0;
    for (const RankPlan& rp : plan.ranks) n = std::max(n, static_cast<int>(rp.stages.size()));
    for (const Transfer& t : plan.transfers) {
      n = std::max(n, t.stage + 1);
      if (t.from_stage > 0) {
        MAGI_CHECK(t.from_stage == t.stage - 1, "transfer of stage {} forwards from stage {}", t.stage,
                   t.from_stage);
        forwards_ = true;
      }
    }
    stages_.resize(n);
    comms_.resize(n);
    for (const Transfer& t : plan.transfers) comms_[static_cast<size_t>(t.stage)].any = true;
    const int64_t packed = 2 * kv_row_ * esz_;
    auto exchange = [&](Exchange& x, const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows) {
      x.send_bytes.assign(cp_, 0);
      x.send_displs.assign(cp_, 0);
      x.recv_bytes.assign(cp_, 0);
      x.recv_displs.assign(cp_, 0);
      for (int p = 0; p < cp_; ++p) {
        x.send_displs[p] = x.send_rows * packed;
        x.send_bytes[p] = send_rows[p] * packed;
        x.send_rows += send_rows[p];
        x.recv_displs[p] = x.recv_rows * packed;
        x.recv_bytes[p] = recv_rows[p] * packed;
        x.recv_rows += recv_rows[p];
      }
    };
    int64_t max_rows = 0, returned_rows = 0;
    for (int s = 0; s < n; ++s) {
      LocalStage& ls = stages_[s];
      if (s < static_cast<int>(me.stages.size())) {
        ls.rows = total_size(me.stages[s].kv_ranges);
        if (!me.stages[s].slices.empty()) {
          ls.op = stage_op(ls.rows, me.stages[s].slices);
          ++active_;
        }
      }
      StageComm& c = comms_[s];
      const std::vector<int64_t> none(cp_, 0);
      if (s == 0) {  // the host stage receives nothing
        exchange(c.cast, none, none);
        exchange(c.reduce, none, none);
        exchange(c.fan, none, none);
        continue;
      }
      if (s < static_cast<int>(me.stages.size()) && ls.rows > 0 && receives_nothing(plan, s)) {
        const auto segs = map_rows(me.q_ranges, me.stages[s].kv_ranges);
        MAGI_CHECK(segs.size() == 1, "rank {} stage {}: a local stage must be one run of the host buffer",
                   rank_, s);
        ls.host_row = segs[0].src_row;
      } else {
        ls.k = dev_.alloc(ls.rows * kv_row_, dt_);
        ls.v = dev_.alloc(ls.rows * kv_row_, dt_);
      }
      const std::vector<Range> empty;
      const std::vector<Range>& layout = s < static_cast<int>(me.stages.size()) ? me.stages[s].kv_ranges : empty;
      const std::vector<Range>& prev_layout = me.stages.at(static_cast<size_t>(s - 1)).kv_ranges;
      // Per peer: what this rank sends from its host and forwards; what it receives from the
      // peer's host and from the peer's previous stage (transfers are in (src, dst, from) order).
      std::vector<std::vector<Range>> host_to(cp_), fwd_to(cp_), host_from(cp_), fwd_from(cp_);
      for (const Transfer& t : plan.transfers) {
        if (t.stage != s) continue;
        if (t.src == rank_) append(t.from_stage == 0 ? host_to[t.dst] : fwd_to[t.dst], t.ranges);
        if (t.dst == rank_) append(t.from_stage == 0 ? host_from[t.src] : fwd_from[t.src], t.ranges);
      }
      std::vector<int64_t> cast_send(cp_), cast_recv(cp_), red_send(cp_), red_recv(cp_), fan_send(cp_),
          fan_recv(cp_);
      for (int p = 0; p < cp_; ++p) {
        cast_send[p] = total_size(host_to[p]) + total_size(fwd_to[p]);
        cast_recv[p] = total_size(host_from[p]) + total_size(fwd_from[p]);
        red_send[p] = total_size(host_from[p]);
        red_recv[p] = total_size(host_to[p]);
        fan_send[p] = total_size(fwd_from[p]);
        fan_recv[p] = total_size(fwd_to[p]);
      }
      exchange(c.cast, cast_send, cast_recv);
      exchange(c.reduce, red_send, red_recv);
      exchange(c.fan, fan_send, fan_recv);
      // Forward packing and unpacking.
      std::vector<RowCopy> pack, pack_relayed;
      std::vector<Range> recv_layout, reduce_layout, fan_layout;
      // Rows of stage s - 1 this rank forwards now (a token may go to several node-mates).
      const std::vector<Range> relayed = merge_ranges([&] {
        std::vector<Range> v;
        for (const auto& r : fwd_to) append(v, r);
        return v;
      }());
      int64_t row = 0, red_row = 0, fan_row = 0;
      for (int p = 0; p < cp_; ++p) {
        auto from_host = map_rows(me.q_ranges, host_to[p], row);
        pack.insert(pack.end(), from_host.begin(), from_host.end());
        row += total_size(host_to[p]);
        auto from_prev = map_rows(prev_layout, fwd_to[p], row);
        pack_relayed.insert(pack_relayed.end(), from_prev.begin(), from_prev.end());
        row += total_size(fwd_to[p]);
        append(recv_layout, host_from[p]);
        append(recv_layout, fwd_from[p]);
        append(reduce_layout, host_from[p]);
        append(fan_layout, fwd_from[p]);
        // Backward: what comes back from p is summed into the host rows (reduce) or into the
        // previous stage's relay rows (fan-in).
        if (!host_to[p].empty()) {
          c.reduce_in.push_back(dev_.prepare(inverse(map_rows(me.q_ranges, host_to[p], red_row))));
          red_row += total_size(host_to[p]);
        }
        if (!fwd_to[p].empty()) {
          c.fan_in.push_back(dev_.prepare(inverse(map_rows(relayed, fwd_to[p], fan_row))));
          fan_row += total_size(fwd_to[p]);
        }
      }
      std::vector<RowCopy> unpack;
      if (ls.host_row < 0) unpack = map_rows(recv_layout, layout);
      MAGI_CHECK(c.cast.recv_rows == (ls.host_row < 0 ? ls.rows : 0),
                 "rank {} stage {}: receives {} tokens for a buffer of {}", rank_, s, c.cast.recv_rows, ls.rows);
      c.unpack = dev_.prepare(std::move(unpack));
      c.pack = dev_.prepare(std::move(pack));
      c.pack_relayed = dev_.prepare(std::move(pack_relayed));
      c.reduce_pack = dev_.prepare(map_rows(layout, reduce_layout));
      c.fan_pack = dev_.prepare(map_rows(layout, fan_layout));
      // The previous stage, as a relay for this round: its forwarded rows' partials are summed
      // before its reduce leaves.
      StageComm& prev = comms_[s - 1];
      if (!relayed.empty()) {
        prev.relay_in = dev_.prepare(map_rows(prev_layout, relayed));
        const std::vector<Range> prev_reduce_layout = [&] {
          std::vector<Range> v;
          for (const Transfer& t : plan.transfers) {
            if (t.stage == s - 1 && t.dst == rank_ && t.from_stage == 0) append(v, t.ranges);
          }
          return v;
        }();
        prev.relay_out = dev_.prepare(inverse(map_rows(prev_reduce_layout, relayed)));
        prev.relay_acc = dev_.alloc(total_size(relayed) * 2 * kv_row_, DType::fp32);
      }
      c.send = dev_.alloc(c.cast.send_rows * 2 * kv_row_, dt_);
      c.recv = dev_.alloc(c.cast.recv_rows * 2 * kv_row_, dt_);
      c.red_send = dev_.alloc(c.reduce.send_rows * 2 * kv_row_, dt_);
      c.red_recv = dev_.alloc(c.reduce.recv_rows * 2 * kv_row_, dt_);
      c.fan_send = dev_.alloc(c.fan.send_rows * 2 * kv_row_, dt_);
      c.fan_recv = dev_.alloc(c.fan.recv_rows * 2 * kv_row_, dt_);
      max_rows = std::max(max_rows, ls.rows);
      returned_rows += c.reduce.recv_rows;
    }
    // dK/dV straight from the kernels when no other rank sends partials back: each stage's
    // writes its own rows (the host stage's are the host buffer, or at cp 1 its first run), zeros
    // where it has no slices.
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
    std::vector<AttentionOp*> ops;
    for (const LocalStage& ls : stages_) {
      if (ls.op) ops.push_back(ls.op.get());
    }
    share_stage_dq(ops);
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
              dev_.fill(local.dk.data(), dt_, ls.rows * kv_row_, 0.f);
              dev_.fill(local.dv.data(), dt_, ls.rows * kv_row_, 0.f);
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
    std::vector<std::unique_ptr<Request>> reduces(n), fans(n);
    for (int s = 1; s < n; ++s) {
      StageComm& c = comms_[s];
      LocalStage& ls = stages_[s];
      dev_.wait(req.get());
      unpack_kv(s);
      std::unique_ptr<Request> next = post_kv(s + 1, local);
      std::vector<Request*> progress{next.get()};
      for (auto& r : reduces) progress.push_back(r.get());
      for (auto& r : fans) progress.push_back(r.get());
      dev_.compute(
          [&] {
            // A local stage's keys are this rank's own run of rows: their gradients go there.
            const bool own = ls.host_row >= 0;
            void* dk = own ? local.dk.at(ls.host_row * kv_row_) : dk_part_.data();
            void* dv = own ? local.dv.at(ls.host_row * kv_row_) : dv_part_.data();
            if (ls.op) {
              ls.op->backward(local.q.data(), stage_k(s, local), stage_v(s, local), local.out.data(),
                              local.dout.data(), local.lse.f32(), local.dq.data(), dk, dv, next_into(first_dq));
            } else if (ls.rows > 0) {
              dev_.fill(dk, dt_, ls.rows * kv_row_, 0.f);
              dev_.fill(dv, dt_, ls.rows * kv_row_, 0.f);
            }
            if (own) return;
            // The reverse messages in the forward's layouts, filled from the stage buffer; the
            // rows this rank forwarded keep their partials in fp32 for the fan-in.
            pack_kv_rows(c.reduce_pack, c.red_send);
            pack_kv_rows(c.fan_pack, c.fan_send);
            pack_kv_rows(c.relay_in, c.relay_acc);
          },
          progress);
      if (!forwards_) {
        reduces[s] = post_reduce(s);
      } else {
        if (c.any) {
          fans[s] = comm_.all_to_all_v_start(c.fan_send.data(), c.fan.send_bytes, c.fan.send_displs,
                                             c.fan_recv.data(), c.fan.recv_bytes, c.fan.recv_displs);
        }
        if (s >= 2) {
          fan_in(s - 1, fans[s - 1].get());
          if (s >= 3) reduces[s - 2] = post_reduce(s - 2);
        }
      }
      req = std::move(next);
    }
    if (forwards_) {
      if (n >= 2) fan_in(n - 1, fans[n - 1].get());
      for (int s = std::max(1, n - 2); s < n; ++s) reduces[s] = post_reduce(s);
    }
    for (int s = 1; s < n; ++s) {
      dev_.wait(reduces[s].get());
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
    if (s >= static_cast<int>(comms_.size()) || !comms_[s].any) return nullptr;
    StageComm& c = comms_[s];
    dev_.copy_rows(c.pack, rows_of(local.k, kv_row_), rows_of(c.send, 2 * kv_row_), kv_row_);
    dev_.copy_rows(c.pack, rows_of(local.v, kv_row_), rows_of(c.send, 2 * kv_row_, kv_row_), kv_row_);
    if (c.pack_relayed.rows() > 0) {
      const LocalStage& prev = stages_[s - 1];
      dev_.copy_rows(c.pack_relayed, rows_of(prev.k, kv_row_), rows_of(c.send, 2 * kv_row_), kv_row_);
      dev_.copy_rows(c.pack_relayed, rows_of(prev.v, kv_row_), rows_of(c.send, 2 * kv_row_, kv_row_), kv_row_);
    }
    return comm_.all_to_all_v_start(c.send.data(), c.cast.send_bytes, c.cast.send_displs, c.recv.data(),
                                    c.cast.recv_bytes, c.cast.recv_displs);
  }

  // dK and dV partials of the stage buffer (dk_part_, dv_part_) into K|V rows of `dst` by `map`.
  void pack_kv_rows(const RowMap& map, const Buffer& dst) {
    if (map.rows() == 0) return;
    dev_.copy_rows(map, rows_of(dk_part_, kv_row_), rows_of(dst, 2 * kv_row_), kv_row_);
    dev_.copy_rows(map, rows_of(dv_part_, kv_row_), rows_of(dst, 2 * kv_row_, kv_row_), kv_row_);
  }

  // Round s's fan-in (partials of what this rank forwarded in round s) added to its stage s - 1
  // relay rows, once `fan` has arrived.
  void fan_in(int s, Request* fan) {
    dev_.wait(fan);
    const StageComm& c = comms_[s];
    StageComm& relay = comms_[s - 1];
    for (const RowMap& from_p : c.fan_in) {
      dev_.add_rows(from_p, rows_of(c.fan_recv, 2 * kv_row_), rows_of(relay.relay_acc, 2 * kv_row_), 2 * kv_row_);
    }
  }

  // Stage s's GroupReduce to the owners, its relay rows (own partials plus the fan-in) in place.
  std::unique_ptr<Request> post_reduce(int s) {
    StageComm& c = comms_[s];
    if (!c.any) return nullptr;
    if (c.relay_out.rows() > 0) {
      dev_.copy_rows(c.relay_out, rows_of(c.relay_acc, 2 * kv_row_), rows_of(c.red_send, 2 * kv_row_),
                     2 * kv_row_);
    }
    return comm_.all_to_all_v_start(c.red_send.data(), c.reduce.send_bytes, c.reduce.send_displs,
                                    c.red_recv.data(), c.reduce.recv_bytes, c.reduce.recv_displs);
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

  bool forwards_ = false;  // the plan forwards (node-aware): the reduce waits for the fan-in
  int active_ = 0;         // stages with slices on this rank
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
