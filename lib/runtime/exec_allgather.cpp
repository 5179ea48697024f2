// allgather: every rank all-gathers the K and V of all ranks (each rank's host block, one
// all-gather of K|V), then computes its stages on buffers cut from the gathered sequence with
// the log-sum-exp merge; no overlap. Backward: all-gather again, per-stage backward, dK/dV
// partials of the whole sequence reduce-scattered to their owners (all-to-all-v of each owner's
// rows, summed at the owner in fp32).
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include "cpu/reference_attention.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace magi::detail {

namespace {

namespace kcpu = magi::kernels::cpu;

struct AgStage {
  std::vector<kernels::KernelSlice> slices;
  int64_t rows = 0;
  bool whole = false;     // stage buffer == the whole sequence in order
  std::vector<RowCopy> segs;  // global rows -> stage rows
  std::vector<float> k, v;
};

class AllgatherRunner final : public PlanRunner {
 public:
  AllgatherRunner(Communicator& comm, const Plan& plan, int threads)
      : PlanRunner(plan, comm.rank()), comm_(comm), threads_(threads) {
    std::vector<Range> gathered_layout;  // rank order, each rank's q_ranges
    for (int p = 0; p < cp_; ++p) {
      const RankPlan& rp = plan.ranks[p];
      bytes_.push_back(rp.tokens * 2 * kv_row_ * 4);
      displs_.push_back(gathered_rows_ * 2 * kv_row_ * 4);
      gathered_rows_ += rp.tokens;
      gathered_layout.insert(gathered_layout.end(), rp.q_ranges.begin(), rp.q_ranges.end());
      rank_rows_.push_back(rp.tokens);
    }
    MAGI_CHECK(gathered_rows_ == total_tokens_, "allgather plan: ranks host {} tokens of {}", gathered_rows_, total_tokens_);
    to_global_ = map_rows(gathered_layout, {{0, total_tokens_}});
    from_global_ = inverse(to_global_);
    for (const Stage& st : plan.ranks[rank_].stages) {
      if (st.slices.empty()) continue;
      AgStage a;
      a.slices = to_kernel_slices(st.slices);
      a.rows = total_size(st.kv_ranges);
      a.segs = map_rows({{0, total_tokens_}}, st.kv_ranges);
      a.whole = a.rows == total_tokens_ && is_identity(a.segs);
      if (!a.whole) {
        a.k.assign(a.rows * kv_row_, 0.f);
        a.v.assign(a.rows * kv_row_, 0.f);
      }
      max_rows_ = std::max(max_rows_, a.rows);
      stages_.push_back(std::move(a));
    }
    send_.assign(tokens_ * 2 * kv_row_, 0.f);
    gathered_.assign(total_tokens_ * 2 * kv_row_, 0.f);
    kg_.assign(total_tokens_ * kv_row_, 0.f);
    vg_.assign(total_tokens_ * kv_row_, 0.f);
    dkg_.assign(total_tokens_ * kv_row_, 0.f);
    dvg_.assign(total_tokens_ * kv_row_, 0.f);
    out_part_.assign(tokens_ * hq_ * head_dim_, 0.f);
    lse_part_.assign(tokens_ * hq_, 0.f);
    dq_part_.assign(tokens_ * hq_ * head_dim_, 0.f);
    dk_part_.assign(max_rows_ * kv_row_, 0.f);
    dv_part_.assign(max_rows_ * kv_row_, 0.f);
  }

  void forward(Local& local, PassStats& st) override {
    gather(local, st);
    bool have_acc = false;
    for (AgStage& a : stages_) {
      const kernels::AttnShape shape{tokens_, a.rows, hq_, hkv_, head_dim_};
      float* out = have_acc ? out_part_.data() : local.out.data();
      float* lse = have_acc ? lse_part_.data() : local.lse.data();
      kcpu::attention_forward(shape, a.slices.data(), a.slices.size(), local.q.data(), kbuf(a), vbuf(a),
                              scale(), out, lse, threads_);
      if (have_acc) {
        kcpu::merge_partial(tokens_, hq_, head_dim_, local.out.data(), local.lse.data(), out_part_.data(),
                            lse_part_.data());
      }
      have_acc = true;
    }
    if (!have_acc) {
      std::fill(local.out.begin(), local.out.end(), 0.f);
      std::fill(local.lse.begin(), local.lse.end(), -std::numeric_limits<float>::infinity());
    }
  }

  void backward(Local& local, PassStats& st) override {
    gather(local, st);
    std::fill(local.dq.begin(), local.dq.end(), 0.f);
    // Whole-sequence dK|dV partials in the gathered (rank order) layout, token rows K then V.
    std::fill(gathered_.begin(), gathered_.end(), 0.f);
    std::vector<float>& dkg = dkg_;
    std::vector<float>& dvg = dvg_;
    std::fill(dkg.begin(), dkg.end(), 0.f);
    std::fill(dvg.begin(), dvg.end(), 0.f);
    for (AgStage& a : stages_) {
      const kernels::AttnShape shape{tokens_, a.rows, hq_, hkv_, head_dim_};
      kcpu::attention_backward(shape, a.slices.data(), a.slices.size(), local.q.data(), kbuf(a),
                               vbuf(a), local.out.data(), local.dout.data(), local.lse.data(), scale(),
                               dq_part_.data(), dk_part_.data(), dv_part_.data(), threads_);
      for (size_t i = 0; i < local.dq.size(); ++i) local.dq[i] += dq_part_[i];
      add_rows(inverse(a.segs), dk_part_.data(), dkg.data(), kv_row_);
      add_rows(inverse(a.segs), dv_part_.data(), dvg.data(), kv_row_);
    }
    // Reduce-scatter: rank p gets every rank's partial for its own rows.
    float* o = gathered_.data();
    for (const RowCopy& s : from_global_) {
      for (int64_t i = 0; i < s.rows; ++i) {
        std::copy_n(dkg.data() + (s.src_row + i) * kv_row_, kv_row_, o + (s.dst_row + i) * 2 * kv_row_);
        std::copy_n(dvg.data() + (s.src_row + i) * kv_row_, kv_row_,
                    o + (s.dst_row + i) * 2 * kv_row_ + kv_row_);
      }
    }
    std::vector<int64_t> rb(cp_, tokens_ * 2 * kv_row_ * 4), rd(cp_);
    for (int p = 0; p < cp_; ++p) rd[p] = p * tokens_ * 2 * kv_row_ * 4;
    reduce_recv_.assign(cp_ * tokens_ * 2 * kv_row_, 0.f);
    const auto t0 = std::chrono::steady_clock::now();
    comm_.all_to_all_v(gathered_.data(), bytes_, displs_, reduce_recv_.data(), rb, rd);
    st.comm_wait_ms += ms_since(t0);
    std::fill(local.dk.begin(), local.dk.end(), 0.f);
    std::fill(local.dv.begin(), local.dv.end(), 0.f);
    for (int p = 0; p < cp_; ++p) {
      const float* in = reduce_recv_.data() + p * tokens_ * 2 * kv_row_;
      for (int64_t i = 0; i < tokens_; ++i) {
        for (int64_t j = 0; j < kv_row_; ++j) local.dk[i * kv_row_ + j] += in[i * 2 * kv_row_ + j];
        for (int64_t j = 0; j < kv_row_; ++j) local.dv[i * kv_row_ + j] += in[i * 2 * kv_row_ + kv_row_ + j];
      }
    }
  }

 private:
  float scale() const { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_))); }
  const float* kbuf(const AgStage& a) const { return a.whole ? kg_.data() : a.k.data(); }
  const float* vbuf(const AgStage& a) const { return a.whole ? vg_.data() : a.v.data(); }

  // All-gather K|V rows of every rank, then lay them out in global order and cut the stages.
  void gather(const Local& local, PassStats& st) {
    for (int64_t i = 0; i < tokens_; ++i) {
      std::copy_n(local.k.data() + i * kv_row_, kv_row_, send_.data() + i * 2 * kv_row_);
      std::copy_n(local.v.data() + i * kv_row_, kv_row_, send_.data() + i * 2 * kv_row_ + kv_row_);
    }
    const auto t0 = std::chrono::steady_clock::now();
    comm_.all_gather_v(send_.data(), tokens_ * 2 * kv_row_ * 4, gathered_.data(), bytes_, displs_);
    st.comm_wait_ms += ms_since(t0);
    for (const RowCopy& s : to_global_) {
      for (int64_t i = 0; i < s.rows; ++i) {
        const float* g = gathered_.data() + (s.src_row + i) * 2 * kv_row_;
        std::copy_n(g, kv_row_, kg_.data() + (s.dst_row + i) * kv_row_);
        std::copy_n(g + kv_row_, kv_row_, vg_.data() + (s.dst_row + i) * kv_row_);
      }
    }
    for (AgStage& a : stages_) {
      if (a.whole) continue;
      copy_rows(a.segs, kg_.data(), a.k.data(), kv_row_);
      copy_rows(a.segs, vg_.data(), a.v.data(), kv_row_);
    }
  }

  Communicator& comm_;
  int threads_;
  int64_t gathered_rows_ = 0, max_rows_ = 0;
  std::vector<int64_t> bytes_, displs_, rank_rows_;
  std::vector<RowCopy> to_global_, from_global_;
  std::vector<AgStage> stages_;
  std::vector<float> send_, gathered_, kg_, vg_, dkg_, dvg_, reduce_recv_;
  std::vector<float> out_part_, lse_part_, dq_part_, dk_part_, dv_part_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_allgather_runner(Communicator& comm, const Plan& plan,
                                                      int threads) {
  return std::make_unique<AllgatherRunner>(comm, plan, threads);
}

}  // namespace magi::detail
