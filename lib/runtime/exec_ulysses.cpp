// ulysses: all-to-all from sequence-sharded to head-sharded Q, K, V (rank p gets every token of
// its heads [head_begin, head_end) and the matching K/V heads), whole-sequence attention on those
// heads with the plan's slices (whole-sequence coordinates), all-to-all of out back. As in
// training, the head-sharded Q, K, V, out and lse stay on the rank for the backward: dO goes
// seq -> head, the whole-sequence backward runs on the rank's heads, dQ, dK, dV go head -> seq
// (plan.h's CommVolume). No overlap: each all-to-all is waited for before its data is used. The
// lse reaches the sequence-sharded layout only for the check (untimed, uncounted). At cp 1 the
// kernel runs on the rank's own buffers.
#include "core/base/error.h"
#include "runtime/exec_detail.h"
#include "runtime/head_exchange.h"

#include <optional>

namespace magi::detail {

namespace {

class UlyssesRunner final : public PlanRunner {
 public:
  UlyssesRunner(Device& dev, Communicator& comm, const Plan& plan) : PlanRunner(dev, comm, plan) {
    for (int p = 0; p < cp_; ++p) split_.push_back(head_split(plan, p));
    my_ = split_[rank_];
    nh_ = my_.q_end - my_.q_begin;
    nkv_ = my_.kv_end - my_.kv_begin;
    std::vector<kernels::KernelSlice> slices;
    for (const Stage& st : plan.ranks[rank_].stages) {
      MAGI_CHECK(st.kv_ranges.empty() ||
                     (merge_ranges(st.kv_ranges) == std::vector<Range>{{0, total_tokens_}} &&
                      st.kv_ranges.front().start == 0 && st.kv_ranges.size() == 1),
                 "ulysses plan: rank {} stage keys must be the whole sequence in order", rank_);
      auto ks = to_kernel_slices(st.slices);
      slices.insert(slices.end(), ks.begin(), ks.end());
    }
    op_ = dev_.attention({total_tokens_, total_tokens_, nh_, nkv_, head_dim_}, std::move(slices));
    alias_ = cp_ == 1 && plan.ranks[0].q_ranges == std::vector<Range>{{0, total_tokens_}};
    if (alias_) return;
    std::vector<std::vector<Range>> rows_of;
    for (const RankPlan& rk : plan.ranks) rows_of.push_back(rk.q_ranges);  // whole buffer = the sequence
    xchg_.emplace(dev_, comm_, rows_of, split_);
    const int64_t S = total_tokens_, d = head_dim_;
    qh_ = dev_.alloc(S * nh_ * d, dt_);
    kh_ = dev_.alloc(S * nkv_ * d, dt_);
    vh_ = dev_.alloc(S * nkv_ * d, dt_);
    oh_ = dev_.alloc(S * nh_ * d, dt_);
    lseh_ = dev_.alloc(S * nh_, DType::fp32);
    doh_ = dev_.alloc(S * nh_ * d, dt_);
    dqh_ = dev_.alloc(S * nh_ * d, dt_);
    dkh_ = dev_.alloc(S * nkv_ * d, dt_);
    dvh_ = dev_.alloc(S * nkv_ * d, dt_);
    // The largest exchange: Q, K and V (or dQ, dK, dV) of every head of this rank's tokens, or of
    // this rank's heads of every token.
    const int64_t msg = xchg_->max_message_elems(hq_ + 2 * hkv_, nh_ + 2 * nkv_, d);
    send_ = dev_.alloc(msg, dt_);
    recv_ = dev_.alloc(msg, dt_);
    const int64_t lse_msg = xchg_->max_message_elems(hq_, nh_, 1);
    lse_send_ = dev_.alloc(lse_msg, DType::fp32);
    lse_recv_ = dev_.alloc(lse_msg, DType::fp32);
  }

  void forward(Local& local) override {
    if (alias_) {
      dev_.compute([&] { op_->forward(local.q.data(), local.k.data(), local.v.data(), local.out.data(),
                                      local.lse.f32(), kernels::Into::write); },
                   {});
      return;
    }
    exchange({{&local.q, &qh_, hq_, head_dim_, false},
              {&local.k, &kh_, hkv_, head_dim_, true},
              {&local.v, &vh_, hkv_, head_dim_, true}},
             true, send_, recv_);
    dev_.compute([&] { op_->forward(qh_.data(), kh_.data(), vh_.data(), oh_.data(), lseh_.f32(), kernels::Into::write); }, {});
    exchange({{&local.out, &oh_, hq_, head_dim_, false}}, false, send_, recv_);
  }

  void lse_for_check(Local& local) override {
    if (alias_) return;
    exchange({{&local.lse, &lseh_, hq_, 1, false}}, false, lse_send_, lse_recv_);
  }

  void backward(Local& local) override {
    if (alias_) {
      dev_.compute([&] { op_->backward(local.q.data(), local.k.data(), local.v.data(), local.out.data(),
                                       local.dout.data(), local.lse.f32(), local.dq.data(),
                                       local.dk.data(), local.dv.data(), kernels::Into::write); },
                   {});
      return;
    }
    exchange({{&local.dout, &doh_, hq_, head_dim_, false}}, true, send_, recv_);
    dev_.compute([&] { op_->backward(qh_.data(), kh_.data(), vh_.data(), oh_.data(), doh_.data(),
                                     lseh_.f32(), dqh_.data(), dkh_.data(), dvh_.data(), kernels::Into::write); },
                 {});
    exchange({{&local.dq, &dqh_, hq_, head_dim_, false},
              {&local.dk, &dkh_, hkv_, head_dim_, true},
              {&local.dv, &dvh_, hkv_, head_dim_, true}},
             false, send_, recv_);
  }

 private:
  using Field = HeadExchange::Field;
  void exchange(const std::vector<Field>& fs, bool to_heads, const Buffer& send, const Buffer& recv) {
    xchg_->exchange(fs, to_heads, send, recv);
  }

  bool alias_ = false;  // cp 1 with the tokens in order: the head-sharded tensors are the local ones
  int nh_ = 0, nkv_ = 0;
  std::vector<HeadSplit> split_;
  HeadSplit my_;
  std::unique_ptr<AttentionOp> op_;
  std::optional<HeadExchange> xchg_;
  Buffer qh_, kh_, vh_, oh_, lseh_, doh_, dqh_, dkh_, dvh_, send_, recv_, lse_send_, lse_recv_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_ulysses_runner(Device& dev, Communicator& comm, const Plan& plan) {
  return std::make_unique<UlyssesRunner>(dev, comm, plan);
}

}  // namespace magi::detail
