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

#include <algorithm>

namespace magi::detail {

namespace {

// One tensor taking part in an all-to-all: per token, heads [b, e) of `heads` heads of `width`
// elements each, for the peer whose split says which heads.
struct Field {
  const Buffer* host;   // host layout [tokens, heads, width]
  const Buffer* whole;  // head-sharded layout [S, my heads, width]
  int heads = 0;
  int width = 0;
  bool kv = false;  // K/V head split instead of query head split
};

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
    tokens_of_.resize(cp_);
    for (int p = 0; p < cp_; ++p) {
      tokens_of_[p] = plan.ranks[p].tokens;
      std::vector<RowCopy> segs;  // recv rows of rank p -> whole-sequence rows
      int64_t row = 0;
      for (const Range& rg : plan.ranks[p].q_ranges) {
        segs.push_back({row, rg.start, rg.size()});
        row += rg.size();
      }
      to_whole_.push_back(dev_.prepare(segs));
      from_whole_.push_back(dev_.prepare(inverse(segs)));
    }
    mine_ = dev_.prepare({{0, 0, tokens_}});
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
    const int64_t msg = std::max(tokens_ * (hq_ + 2 * hkv_) * d, S * (nh_ + 2 * nkv_) * d);
    send_ = dev_.alloc(msg, dt_);
    recv_ = dev_.alloc(msg, dt_);
    lse_send_ = dev_.alloc(std::max(tokens_ * hq_, S * nh_), DType::fp32);
    lse_recv_ = dev_.alloc(std::max(tokens_ * hq_, S * nh_), DType::fp32);
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
  std::pair<int, int> heads_of(const Field& f, int p) const {
    return f.kv ? std::pair{split_[p].kv_begin, split_[p].kv_end}
                : std::pair{split_[p].q_begin, split_[p].q_end};
  }
  // Elements per token row of the message for rank p's heads.
  int64_t row_elems(const std::vector<Field>& fs, int p) const {
    int64_t n = 0;
    for (const Field& f : fs) {
      auto [b, e] = heads_of(f, p);
      n += int64_t{e - b} * f.width;
    }
    return n;
  }

  // to_heads: sequence-sharded host tensors -> head-sharded whole-sequence tensors; otherwise
  // the reverse. Message p holds, per token row, each field's heads of the head-sharded side.
  void exchange(const std::vector<Field>& fs, bool to_heads, const Buffer& send, const Buffer& recv) {
    const DType dt = send.dtype();
    const int64_t esz = dtype_bytes(dt);
    std::vector<int64_t> sb(cp_), sd(cp_), rb(cp_), rd(cp_);
    std::vector<int64_t> send_rows(cp_), recv_rows(cp_), send_width(cp_), recv_width(cp_);
    int64_t so = 0, ro = 0;
    for (int p = 0; p < cp_; ++p) {
      // Sequence-sharded side: this rank's tokens, peer p's heads; head side: p's tokens, mine.
      const int64_t seq_width = row_elems(fs, p), head_width = row_elems(fs, rank_);
      send_rows[p] = to_heads ? tokens_ : tokens_of_[p];
      recv_rows[p] = to_heads ? tokens_of_[p] : tokens_;
      send_width[p] = to_heads ? seq_width : head_width;
      recv_width[p] = to_heads ? head_width : seq_width;
      sd[p] = so;
      sb[p] = send_rows[p] * send_width[p];
      so += sb[p];
      rd[p] = ro;
      rb[p] = recv_rows[p] * recv_width[p];
      ro += rb[p];
    }
    MAGI_CHECK(so <= send.elems() && ro <= recv.elems(), "ulysses: a message of {}/{} elements for buffers of {}/{}",
               so, ro, send.elems(), recv.elems());
    for (int p = 0; p < cp_; ++p) {
      int64_t col = 0;
      for (const Field& f : fs) {
        auto [b, e] = heads_of(f, to_heads ? p : rank_);
        const int64_t n = int64_t{e - b} * f.width;
        const Rows msg{send.at(sd[p] + col), dt, send_width[p]};
        if (to_heads) {
          dev_.copy_rows(mine_, rows_of(*f.host, int64_t{f.heads} * f.width, b * f.width), msg, n);
        } else {
          dev_.copy_rows(from_whole_[p], rows_of(*f.whole, n), msg, n);
        }
        col += n;
      }
    }
    for (int p = 0; p < cp_; ++p) {
      sb[p] *= esz;
      sd[p] *= esz;
      rb[p] *= esz;
      rd[p] *= esz;
    }
    std::unique_ptr<Request> req = comm_.all_to_all_v_start(send.data(), sb, sd, recv.data(), rb, rd);
    dev_.wait(req.get());
    for (int p = 0; p < cp_; ++p) {
      int64_t col = 0;
      for (const Field& f : fs) {
        auto [b, e] = heads_of(f, to_heads ? rank_ : p);
        const int64_t n = int64_t{e - b} * f.width;
        const Rows msg{recv.at(rd[p] / esz + col), dt, recv_width[p]};
        if (to_heads) {
          dev_.copy_rows(to_whole_[p], msg, rows_of(*f.whole, n), n);
        } else {
          dev_.copy_rows(mine_, msg, rows_of(*f.host, int64_t{f.heads} * f.width, b * f.width), n);
        }
        col += n;
      }
    }
  }

  bool alias_ = false;  // cp 1 with the tokens in order: the head-sharded tensors are the local ones
  int nh_ = 0, nkv_ = 0;
  std::vector<HeadSplit> split_;
  HeadSplit my_;
  std::unique_ptr<AttentionOp> op_;
  std::vector<int64_t> tokens_of_;
  std::vector<RowMap> to_whole_, from_whole_;
  RowMap mine_;
  Buffer qh_, kh_, vh_, oh_, lseh_, doh_, dqh_, dkh_, dvh_, send_, recv_, lse_send_, lse_recv_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_ulysses_runner(Device& dev, Communicator& comm, const Plan& plan) {
  return std::make_unique<UlyssesRunner>(dev, comm, plan);
}

}  // namespace magi::detail
