// magi: GroupCast of K and V per stage (one all-to-all-v per stage, stage s+1 posted before
// stage s computes), stage compute with the reference kernel on the stage's local slices,
// log-sum-exp merge of partial outputs. Backward: GroupCast again, per-stage backward with the
// global out/lse, dQ summed locally, dK/dV partials of remote stages sent back to their owners
// (GroupReduce: the same all-to-all-v reversed) and summed there in fp32.
#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include "cpu/reference_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace magi::detail {

namespace {

namespace kcpu = magi::kernels::cpu;

// One stage's GroupCast as seen by this rank. Packed rows hold a token's K row then its V row.
struct StageComm {
  std::vector<int64_t> send_bytes, send_displs, recv_bytes, recv_displs;
  std::vector<RowCopy> pack;    // host rows -> send buffer rows
  std::vector<RowCopy> unpack;  // recv buffer rows -> stage buffer rows
  int64_t send_rows = 0, recv_rows = 0;
  std::vector<float> send, recv;          // forward K|V rows
  std::vector<float> red_send, red_recv;  // backward dK|dV rows (reverse direction)
};

struct LocalStage {
  std::vector<kernels::KernelSlice> slices;
  int64_t rows = 0;  // stage buffer rows
  std::vector<float> k, v;
};

void pack_kv(const std::vector<RowCopy>& segs, const float* k, const float* v, float* dst, int64_t row) {
  for (const RowCopy& s : segs) {
    for (int64_t i = 0; i < s.rows; ++i) {
      float* d = dst + (s.dst_row + i) * 2 * row;
      std::copy_n(k + (s.src_row + i) * row, row, d);
      std::copy_n(v + (s.src_row + i) * row, row, d + row);
    }
  }
}

// add = false: copy; add = true: accumulate.
void unpack_kv(const std::vector<RowCopy>& segs, const float* src, float* k, float* v, int64_t row,
               bool add) {
  for (const RowCopy& s : segs) {
    for (int64_t i = 0; i < s.rows; ++i) {
      const float* a = src + (s.src_row + i) * 2 * row;
      float* dk = k + (s.dst_row + i) * row;
      float* dv = v + (s.dst_row + i) * row;
      if (add) {
        for (int64_t j = 0; j < row; ++j) dk[j] += a[j];
        for (int64_t j = 0; j < row; ++j) dv[j] += a[row + j];
      } else {
        std::copy_n(a, row, dk);
        std::copy_n(a + row, row, dv);
      }
    }
  }
}

class MagiRunner final : public PlanRunner {
 public:
  MagiRunner(Communicator& comm, const Plan& plan, int threads)
      : PlanRunner(plan, comm.rank()), comm_(comm), threads_(threads) {
    const RankPlan& me = plan.ranks.at(rank_);
    int n = 0;
    for (const RankPlan& rp : plan.ranks) n = std::max(n, static_cast<int>(rp.stages.size()));
    for (const Transfer& t : plan.transfers) n = std::max(n, t.stage + 1);
    stages_.resize(n);
    comms_.resize(n);
    for (int s = 0; s < n; ++s) {
      LocalStage& ls = stages_[s];
      if (s < static_cast<int>(me.stages.size())) {
        ls.slices = to_kernel_slices(me.stages[s].slices);
        ls.rows = total_size(me.stages[s].kv_ranges);
      }
      if (s > 0) {
        ls.k.assign(ls.rows * kv_row_, 0.f);
        ls.v.assign(ls.rows * kv_row_, 0.f);
      }
      StageComm& c = comms_[s];
      c.send_bytes.assign(cp_, 0);
      c.send_displs.assign(cp_, 0);
      c.recv_bytes.assign(cp_, 0);
      c.recv_displs.assign(cp_, 0);
      if (s == 0) continue;  // the host stage receives nothing
      // Sends, grouped by destination ascending (the receiver groups by source ascending).
      std::vector<Range> recv_layout;
      for (int p = 0; p < cp_; ++p) {
        c.send_displs[p] = c.send_rows;
        for (const Transfer& t : plan.transfers) {
          if (t.stage != s || t.src != rank_ || t.dst != p) continue;
          auto segs = map_rows(me.q_ranges, t.ranges, c.send_rows);
          c.pack.insert(c.pack.end(), segs.begin(), segs.end());
          c.send_rows += total_size(t.ranges);
        }
        c.send_bytes[p] = (c.send_rows - c.send_displs[p]) * 2 * kv_row_ * 4;
        c.send_displs[p] *= 2 * kv_row_ * 4;
      }
      for (int p = 0; p < cp_; ++p) {
        c.recv_displs[p] = c.recv_rows;
        for (const Transfer& t : plan.transfers) {
          if (t.stage != s || t.dst != rank_ || t.src != p) continue;
          recv_layout.insert(recv_layout.end(), t.ranges.begin(), t.ranges.end());
          c.recv_rows += total_size(t.ranges);
        }
        c.recv_bytes[p] = (c.recv_rows - c.recv_displs[p]) * 2 * kv_row_ * 4;
        c.recv_displs[p] *= 2 * kv_row_ * 4;
      }
      if (s < static_cast<int>(me.stages.size())) {
        c.unpack = map_rows(recv_layout, me.stages[s].kv_ranges);
      }
      MAGI_CHECK(c.recv_rows == ls.rows, "rank {} stage {}: receives {} tokens for a buffer of {}",
                 rank_, s, c.recv_rows, ls.rows);
      c.send.assign(c.send_rows * 2 * kv_row_, 0.f);
      c.recv.assign(c.recv_rows * 2 * kv_row_, 0.f);
      c.red_send.assign(c.recv_rows * 2 * kv_row_, 0.f);
      c.red_recv.assign(c.send_rows * 2 * kv_row_, 0.f);
      max_rows_ = std::max(max_rows_, ls.rows);
    }
    out_part_.assign(tokens_ * hq_ * head_dim_, 0.f);
    lse_part_.assign(tokens_ * hq_, 0.f);
    dq_part_.assign(tokens_ * hq_ * head_dim_, 0.f);
    dk_part_.assign(std::max(max_rows_, tokens_) * kv_row_, 0.f);
    dv_part_.assign(std::max(max_rows_, tokens_) * kv_row_, 0.f);
  }

  void forward(Local& local, PassStats& st) override {
    const int n = static_cast<int>(stages_.size());
    std::unique_ptr<Request> req = post_kv(1, local);
    bool have_acc = false;
    auto compute = [&](int s) {
      const LocalStage& ls = stages_[s];
      if (ls.slices.empty()) return;
      const float* k = s == 0 ? local.k.data() : ls.k.data();
      const float* v = s == 0 ? local.v.data() : ls.v.data();
      const kernels::AttnShape shape{tokens_, s == 0 ? tokens_ : ls.rows, hq_, hkv_, head_dim_};
      float* out = have_acc ? out_part_.data() : local.out.data();
      float* lse = have_acc ? lse_part_.data() : local.lse.data();
      kcpu::attention_forward(shape, ls.slices.data(), ls.slices.size(), local.q.data(), k, v, scale(),
                              out, lse, threads_);
      if (have_acc) {
        kcpu::merge_partial(tokens_, hq_, head_dim_, local.out.data(), local.lse.data(), out_part_.data(),
                            lse_part_.data());
      }
      have_acc = true;
    };
    overlap([&] { compute(0); }, {}, req.get(), st);
    for (int s = 1; s < n; ++s) {
      unpack_kv(comms_[s].unpack, comms_[s].recv.data(), stages_[s].k.data(), stages_[s].v.data(),
                kv_row_, false);
      std::unique_ptr<Request> next = post_kv(s + 1, local);
      overlap([&] { compute(s); }, {}, next.get(), st);
      req = std::move(next);
    }
    if (!have_acc) {
      std::fill(local.out.begin(), local.out.end(), 0.f);
      std::fill(local.lse.begin(), local.lse.end(), -std::numeric_limits<float>::infinity());
    }
  }

  void backward(Local& local, PassStats& st) override {
    const int n = static_cast<int>(stages_.size());
    std::unique_ptr<Request> req = post_kv(1, local);
    std::vector<std::unique_ptr<Request>> reduces;
    auto pending_reduces = [&] {
      std::vector<Request*> v;
      for (auto& q : reduces) v.push_back(q.get());
      return v;
    };
    // Host stage: dq, dk, dv written directly.
    overlap(
        [&] {
          const LocalStage& ls = stages_[0];
          if (ls.slices.empty()) {
            std::fill(local.dq.begin(), local.dq.end(), 0.f);
            std::fill(local.dk.begin(), local.dk.end(), 0.f);
            std::fill(local.dv.begin(), local.dv.end(), 0.f);
            return;
          }
          const kernels::AttnShape shape{tokens_, tokens_, hq_, hkv_, head_dim_};
          kcpu::attention_backward(shape, ls.slices.data(), ls.slices.size(), local.q.data(),
                                   local.k.data(), local.v.data(), local.out.data(), local.dout.data(),
                                   local.lse.data(), scale(), local.dq.data(), local.dk.data(), local.dv.data(),
                                   threads_);
        },
        {}, req.get(), st);
    for (int s = 1; s < n; ++s) {
      StageComm& c = comms_[s];
      LocalStage& ls = stages_[s];
      unpack_kv(c.unpack, c.recv.data(), ls.k.data(), ls.v.data(), kv_row_, false);
      std::unique_ptr<Request> next = post_kv(s + 1, local);
      overlap(
          [&] {
            if (!ls.slices.empty()) {
              const kernels::AttnShape shape{tokens_, ls.rows, hq_, hkv_, head_dim_};
              kcpu::attention_backward(shape, ls.slices.data(), ls.slices.size(), local.q.data(),
                                       ls.k.data(), ls.v.data(), local.out.data(), local.dout.data(),
                                       local.lse.data(), scale(), dq_part_.data(), dk_part_.data(),
                                       dv_part_.data(), threads_);
              for (size_t i = 0; i < local.dq.size(); ++i) local.dq[i] += dq_part_[i];
            } else {
              std::fill_n(dk_part_.begin(), ls.rows * kv_row_, 0.f);
              std::fill_n(dv_part_.begin(), ls.rows * kv_row_, 0.f);
            }
            // GroupReduce send buffer: the forward receive layout, filled from the stage buffer.
            pack_kv(inverse(c.unpack), dk_part_.data(), dv_part_.data(), c.red_send.data(), kv_row_);
          },
          pending_reduces(), next.get(), st);
      reduces.push_back(comm_.all_to_all_v_start(c.red_send.data(), c.recv_bytes, c.recv_displs,
                                                 c.red_recv.data(), c.send_bytes, c.send_displs));
      req = std::move(next);
    }
    for (int s = 1; s < n; ++s) {
      wait_timed(reduces[s - 1].get(), st);
      const StageComm& c = comms_[s];
      unpack_kv(inverse(c.pack), c.red_recv.data(), local.dk.data(), local.dv.data(), kv_row_, true);
    }
  }

 private:
  float scale() const { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_))); }

  std::unique_ptr<Request> post_kv(int s, const Local& local) {
    if (s >= static_cast<int>(comms_.size())) return nullptr;
    StageComm& c = comms_[s];
    pack_kv(c.pack, local.k.data(), local.v.data(), c.send.data(), kv_row_);
    return comm_.all_to_all_v_start(c.send.data(), c.send_bytes, c.send_displs, c.recv.data(),
                                    c.recv_bytes, c.recv_displs);
  }

  Communicator& comm_;
  int threads_;
  int64_t max_rows_ = 0;
  std::vector<LocalStage> stages_;
  std::vector<StageComm> comms_;
  std::vector<float> out_part_, lse_part_, dq_part_, dk_part_, dv_part_;
};

}  // namespace

std::unique_ptr<StrategyRunner> make_magi_runner(Communicator& comm, const Plan& plan, int threads) {
  return std::make_unique<MagiRunner>(comm, plan, threads);
}

}  // namespace magi::detail
