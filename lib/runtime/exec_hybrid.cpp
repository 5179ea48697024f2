// hybrid (plan.h, "Hybrid"): world rank g h + i holds rows of group g's host buffer on every
// head; the head group's all-to-all (Ulysses, head_exchange.h) gives it all of the group's rows
// on its heads, the ranks of head index i run the context strategy (magi or ring: their own
// runners on head_slice_plan) between groups on those heads, and the results go back by the
// reverse all-to-all. Backward: dO in the same way, the context strategy's backward, dQ, dK, dV
// back; Q, K, V, out and lse stay in the group layout from the forward, as Ulysses keeps them.
// The lse reaches the rank's own rows only for the check (untimed).
#include "core/base/error.h"
#include "core/plan/hybrid_plan.h"
#include "runtime/exec_detail.h"
#include "runtime/head_exchange.h"
#include "runtime/peer_group.h"

#include <optional>

namespace magi::detail {

namespace {

class HybridRunner final : public StrategyRunner {
 public:
  HybridRunner(Device& dev, Communicator& comm, const Plan& plan)
      : dev_(dev), slice_(head_slice_plan(plan)), hq_(plan.model.heads_q), hkv_(plan.model.heads_kv),
        d_(plan.model.head_dim) {
    const int h = plan.heads, c = plan.cp;
    MAGI_CHECK(comm.size() == world_size(plan), "hybrid plan for {} ranks on {}", world_size(plan), comm.size());
    const HybridRank me = hybrid_rank(plan, comm.rank());
    std::vector<int> head_group, cp_group;
    std::vector<std::vector<Range>> rows_of;
    std::vector<HeadSplit> split;
    for (int j = 0; j < h; ++j) {
      const HybridRank peer = hybrid_rank(plan, me.group * h + j);
      head_group.push_back(me.group * h + j);
      rows_of.push_back({peer.rows});
      split.push_back(peer.heads);
    }
    for (int g = 0; g < c; ++g) cp_group.push_back(g * h + me.head);
    head_comm_.emplace(comm, std::move(head_group));
    cp_comm_.emplace(comm, std::move(cp_group));
    xchg_.emplace(dev_, *head_comm_, rows_of, split);
    switch (plan.strategy) {
      case Strategy::magi: inner_ = make_magi_runner(dev_, *cp_comm_, slice_); break;
      case Strategy::ring: inner_ = make_ring_runner(dev_, *cp_comm_, slice_); break;
      default:
        throw InternalError(fmt::format("hybrid plan with strategy {}", to_string(plan.strategy)));
    }
    const DType dt = dev_.dtype();
    G_.tokens = slice_.ranks[static_cast<size_t>(me.group)].tokens;
    G_.hq = slice_.model.heads_q;
    G_.hkv = slice_.model.heads_kv;
    G_.head_dim = d_;
    const int64_t q_elems = G_.tokens * G_.hq * d_, kv_elems = G_.tokens * G_.hkv * d_;
    for (Buffer* b : {&G_.q, &G_.dout, &G_.out, &G_.dq}) *b = dev_.alloc(q_elems, dt);
    for (Buffer* b : {&G_.k, &G_.v, &G_.dk, &G_.dv}) *b = dev_.alloc(kv_elems, dt);
    G_.lse = dev_.alloc(G_.tokens * G_.hq, DType::fp32);
    // The largest exchange: Q, K and V (or dQ, dK, dV) of every head of this rank's rows, or of
    // this rank's heads of every row of the group.
    const int64_t msg = xchg_->max_message_elems(hq_ + 2 * hkv_, G_.hq + 2 * G_.hkv, d_);
    send_ = dev_.alloc(msg, dt);
    recv_ = dev_.alloc(msg, dt);
    const int64_t lse_msg = xchg_->max_message_elems(hq_, G_.hq, 1);
    lse_send_ = dev_.alloc(lse_msg, DType::fp32);
    lse_recv_ = dev_.alloc(lse_msg, DType::fp32);
  }

  void forward(Local& local) override {
    xchg_->exchange({{&local.q, &G_.q, hq_, d_, false}, {&local.k, &G_.k, hkv_, d_, true},
                     {&local.v, &G_.v, hkv_, d_, true}},
                    true, send_, recv_);
    inner_->forward(G_);
    xchg_->exchange({{&local.out, &G_.out, hq_, d_, false}}, false, send_, recv_);
  }

  void lse_for_check(Local& local) override {
    inner_->lse_for_check(G_);
    xchg_->exchange({{&local.lse, &G_.lse, hq_, 1, false}}, false, lse_send_, lse_recv_);
  }

  void backward(Local& local) override {
    xchg_->exchange({{&local.dout, &G_.dout, hq_, d_, false}}, true, send_, recv_);
    inner_->backward(G_);
    xchg_->exchange({{&local.dq, &G_.dq, hq_, d_, false}, {&local.dk, &G_.dk, hkv_, d_, true},
                     {&local.dv, &G_.dv, hkv_, d_, true}},
                    false, send_, recv_);
  }

 private:
  Device& dev_;
  const Plan slice_;  // the context plan on this rank's share of heads (the inner runner's plan)
  const int hq_, hkv_, d_;
  std::optional<PeerGroup> head_comm_, cp_comm_;
  std::optional<HeadExchange> xchg_;
  std::unique_ptr<StrategyRunner> inner_;
  Local G_;  // the group's rows on this rank's heads: the inner runner's local tensors
  Buffer send_, recv_, lse_send_, lse_recv_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_hybrid_runner(Device& dev, Communicator& comm, const Plan& plan) {
  return std::make_unique<HybridRunner>(dev, comm, plan);
}

}  // namespace magi::detail
