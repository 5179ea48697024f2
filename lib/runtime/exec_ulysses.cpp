// ulysses: all-to-all from sequence-sharded to head-sharded Q, K, V (rank p gets every token of
// its heads [head_begin, head_end) and the matching K/V heads), whole-sequence attention on those
// heads with the plan's slices (whole-sequence coordinates), all-to-all of out back. As in
// training, the head-sharded Q, K, V, out and lse stay on the rank for the backward: dO goes
// seq -> head, the whole-sequence backward runs on the rank's heads, dQ, dK, dV go head -> seq
// (plan.h's CommVolume). No overlap (the collectives are blocking). The lse reaches the
// sequence-sharded layout only for the check (untimed, uncounted).
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include "cpu/reference_attention.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace magi::detail {

namespace {

namespace kcpu = magi::kernels::cpu;

// One tensor taking part in an all-to-all: per token, heads [b, e) of `heads` heads of `width`
// floats each, for the peer whose split says which heads.
struct Field {
  float* host = nullptr;   // host layout [tokens, heads, width]
  float* whole = nullptr;  // head-sharded layout [S, my heads, width]
  int heads = 0;
  int width = 0;
  bool kv = false;  // K/V head split instead of query head split
};

class UlyssesRunner final : public PlanRunner {
 public:
  UlyssesRunner(Communicator& comm, const Plan& plan, int threads)
      : PlanRunner(plan, comm.rank()), comm_(comm), threads_(threads), plan_(plan) {
    for (int p = 0; p < cp_; ++p) split_.push_back(head_split(plan, p));
    my_ = split_[rank_];
    nh_ = my_.q_end - my_.q_begin;
    nkv_ = my_.kv_end - my_.kv_begin;
    for (const Stage& st : plan.ranks[rank_].stages) {
      MAGI_CHECK(st.kv_ranges.empty() ||
                     (merge_ranges(st.kv_ranges) == std::vector<Range>{{0, total_tokens_}} &&
                      st.kv_ranges.front().start == 0 && st.kv_ranges.size() == 1),
                 "ulysses plan: rank {} stage keys must be the whole sequence in order", rank_);
      auto ks = to_kernel_slices(st.slices);
      slices_.insert(slices_.end(), ks.begin(), ks.end());
    }
    for (int p = 0; p < cp_; ++p) {
      std::vector<int64_t> rows;
      rows.reserve(plan.ranks[p].tokens);
      for (const Range& rg : plan.ranks[p].q_ranges) {
        for (int64_t t = rg.start; t < rg.end; ++t) rows.push_back(t);
      }
      token_of_row_.push_back(std::move(rows));
    }
    qh_.assign(total_tokens_ * nh_ * head_dim_, 0.f);
    kh_.assign(total_tokens_ * nkv_ * head_dim_, 0.f);
    vh_.assign(total_tokens_ * nkv_ * head_dim_, 0.f);
    oh_.assign(total_tokens_ * nh_ * head_dim_, 0.f);
    lseh_.assign(total_tokens_ * nh_, 0.f);
    doh_.assign(total_tokens_ * nh_ * head_dim_, 0.f);
    dqh_.assign(total_tokens_ * nh_ * head_dim_, 0.f);
    dkh_.assign(total_tokens_ * nkv_ * head_dim_, 0.f);
    dvh_.assign(total_tokens_ * nkv_ * head_dim_, 0.f);
  }

  void forward(Local& local, PassStats& st) override {
    to_heads({{local.q.data(), qh_.data(), hq_, head_dim_, false},
              {local.k.data(), kh_.data(), hkv_, head_dim_, true},
              {local.v.data(), vh_.data(), hkv_, head_dim_, true}},
             st);
    const kernels::AttnShape shape{total_tokens_, total_tokens_, nh_, nkv_, head_dim_};
    kcpu::attention_forward(shape, slices_.data(), slices_.size(), qh_.data(), kh_.data(),
                            vh_.data(), scale(), oh_.data(), lseh_.data(), threads_);
    to_seq({{local.out.data(), oh_.data(), hq_, head_dim_, false}}, st);
  }

  void lse_for_check(Local& local) override {
    PassStats st;
    to_seq({{local.lse.data(), lseh_.data(), hq_, 1, false}}, st);
  }

  void backward(Local& local, PassStats& st) override {
    to_heads({{local.dout.data(), doh_.data(), hq_, head_dim_, false}}, st);
    const kernels::AttnShape shape{total_tokens_, total_tokens_, nh_, nkv_, head_dim_};
    kcpu::attention_backward(shape, slices_.data(), slices_.size(), qh_.data(), kh_.data(),
                             vh_.data(), oh_.data(), doh_.data(), lseh_.data(), scale(),
                             dqh_.data(), dkh_.data(), dvh_.data(), threads_);
    to_seq({{local.dq.data(), dqh_.data(), hq_, head_dim_, false},
            {local.dk.data(), dkh_.data(), hkv_, head_dim_, true},
            {local.dv.data(), dvh_.data(), hkv_, head_dim_, true}},
           st);
  }

 private:
  float scale() const { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_))); }
  std::pair<int, int> heads_of(const Field& f, int p) const {
    return f.kv ? std::pair{split_[p].kv_begin, split_[p].kv_end}
                : std::pair{split_[p].q_begin, split_[p].q_end};
  }
  int64_t row_floats(const std::vector<Field>& fs, int p) const {
    int64_t n = 0;
    for (const Field& f : fs) {
      auto [b, e] = heads_of(f, p);
      n += int64_t{e - b} * f.width;
    }
    return n;
  }

  void exchange(const std::vector<float>& send, const std::vector<int64_t>& send_floats,
                std::vector<float>& recv, const std::vector<int64_t>& recv_floats, PassStats& st) {
    std::vector<int64_t> sb(cp_), sd(cp_), rb(cp_), rd(cp_);
    int64_t so = 0, ro = 0;
    for (int p = 0; p < cp_; ++p) {
      sd[p] = so * 4;
      sb[p] = send_floats[p] * 4;
      so += send_floats[p];
      rd[p] = ro * 4;
      rb[p] = recv_floats[p] * 4;
      ro += recv_floats[p];
    }
    const auto t0 = std::chrono::steady_clock::now();
    comm_.all_to_all_v(send.data(), sb, sd, recv.data(), rb, rd);
    st.comm_wait_ms += ms_since(t0);
  }

  // Sequence-sharded host tensors -> head-sharded whole-sequence tensors.
  void to_heads(const std::vector<Field>& fs, PassStats& st) {
    std::vector<int64_t> sf(cp_), rf(cp_);
    for (int p = 0; p < cp_; ++p) {
      sf[p] = tokens_ * row_floats(fs, p);
      rf[p] = plan_.ranks[p].tokens * row_floats(fs, rank_);
    }
    send_.resize(sum(sf));
    recv_.resize(sum(rf));
    float* o = send_.data();
    for (int p = 0; p < cp_; ++p) {
      for (int64_t i = 0; i < tokens_; ++i) {
        for (const Field& f : fs) {
          auto [b, e] = heads_of(f, p);
          const float* src = f.host + (i * f.heads + b) * f.width;
          o = std::copy_n(src, int64_t{e - b} * f.width, o);
        }
      }
    }
    exchange(send_, sf, recv_, rf, st);
    const float* in = recv_.data();
    for (int p = 0; p < cp_; ++p) {
      for (int64_t t : token_of_row_[p]) {
        for (const Field& f : fs) {
          auto [b, e] = heads_of(f, rank_);
          const int64_t n = int64_t{e - b} * f.width;
          std::copy_n(in, n, f.whole + t * n);
          in += n;
        }
      }
    }
  }

  // Head-sharded whole-sequence tensors -> sequence-sharded host tensors.
  void to_seq(const std::vector<Field>& fs, PassStats& st) {
    std::vector<int64_t> sf(cp_), rf(cp_);
    for (int p = 0; p < cp_; ++p) {
      sf[p] = plan_.ranks[p].tokens * row_floats(fs, rank_);
      rf[p] = tokens_ * row_floats(fs, p);
    }
    send_.resize(sum(sf));
    recv_.resize(sum(rf));
    float* o = send_.data();
    for (int p = 0; p < cp_; ++p) {
      for (int64_t t : token_of_row_[p]) {
        for (const Field& f : fs) {
          auto [b, e] = heads_of(f, rank_);
          const int64_t n = int64_t{e - b} * f.width;
          o = std::copy_n(f.whole + t * n, n, o);
        }
      }
    }
    exchange(send_, sf, recv_, rf, st);
    const float* in = recv_.data();
    for (int p = 0; p < cp_; ++p) {
      for (int64_t i = 0; i < tokens_; ++i) {
        for (const Field& f : fs) {
          auto [b, e] = heads_of(f, p);
          const int64_t n = int64_t{e - b} * f.width;
          std::copy_n(in, n, f.host + (i * f.heads + b) * f.width);
          in += n;
        }
      }
    }
  }

  static int64_t sum(const std::vector<int64_t>& v) {
    int64_t s = 0;
    for (int64_t x : v) s += x;
    return s;
  }

  Communicator& comm_;
  int threads_;
  const Plan& plan_;
  int nh_ = 0, nkv_ = 0;
  std::vector<HeadSplit> split_;
  HeadSplit my_;
  std::vector<kernels::KernelSlice> slices_;
  std::vector<std::vector<int64_t>> token_of_row_;
  std::vector<float> qh_, kh_, vh_, oh_, lseh_, doh_, dqh_, dkh_, dvh_, send_, recv_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_ulysses_runner(Communicator& comm, const Plan& plan,
                                                    int threads) {
  return std::make_unique<UlyssesRunner>(comm, plan, threads);
}

}  // namespace magi::detail
