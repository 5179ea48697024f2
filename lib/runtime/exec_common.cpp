#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace magi::detail {

std::vector<RowCopy> map_rows(const std::vector<Range>& src_layout,
                              const std::vector<Range>& dst_layout, int64_t dst_offset) {
  struct Piece {
    Range r;
    int64_t offset;
  };
  std::vector<Piece> src;
  src.reserve(src_layout.size());
  int64_t off = 0;
  for (const Range& r : src_layout) {
    if (!r.empty()) src.push_back({r, off});
    off += r.size();
  }
  std::sort(src.begin(), src.end(), [](const Piece& a, const Piece& b) { return a.r.start < b.r.start; });
  std::vector<RowCopy> segs;
  int64_t dst_row = dst_offset;
  for (const Range& r : dst_layout) {
    int64_t t = r.start;
    while (t < r.end) {
      auto it = std::upper_bound(src.begin(), src.end(), t,
                                 [](int64_t x, const Piece& p) { return x < p.r.start; });
      if (it == src.begin() || !std::prev(it)->r.contains(t)) {
        throw InternalError(fmt::format("token {} of layout range {} is not in the source buffer", t, r));
      }
      const Piece& p = *std::prev(it);
      const int64_t n = std::min(r.end, p.r.end) - t;
      const int64_t src_row = p.offset + (t - p.r.start);
      if (!segs.empty() && segs.back().src_row + segs.back().rows == src_row &&
          segs.back().dst_row + segs.back().rows == dst_row) {
        segs.back().rows += n;
      } else {
        segs.push_back({src_row, dst_row, n});
      }
      t += n;
      dst_row += n;
    }
  }
  return segs;
}

std::vector<RowCopy> inverse(const std::vector<RowCopy>& segs) {
  std::vector<RowCopy> out(segs.size());
  for (size_t i = 0; i < segs.size(); ++i) out[i] = {segs[i].dst_row, segs[i].src_row, segs[i].rows};
  return out;
}

bool is_identity(const std::vector<RowCopy>& segs) {
  for (const RowCopy& s : segs) {
    if (s.src_row != s.dst_row) return false;
  }
  return true;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<AttentionOp> PlanRunner::stage_op(int64_t k_rows, const std::vector<AttnSlice>& slices) {
  std::unique_ptr<AttentionOp> op = dev_.attention({tokens_, k_rows, hq_, hkv_, head_dim_}, to_kernel_slices(slices));
  std::vector<Range> rows;
  for (const AttnSlice& s : slices) {
    // Plans' slices are tight (plan.h): every row sees a key. Else a row taken as reached would
    // keep lse = -inf and whatever out held. A slice's band widens or narrows monotonically down
    // its rows, so its first and last rows tell.
    MAGI_CHECK(s.q.empty() || (!visible_keys(s, s.q.start).empty() && !visible_keys(s, s.q.end - 1).empty()),
               "rank {}: slice {} of a stage has rows that see no key", rank_, s);
    rows.push_back(s.q);
  }
  rows = merge_ranges(std::move(rows));
  // Stages run in the order their ops are made (stage_forward checks it), so the rows the stages
  // before reach are those that hold results when this one accumulates; its other rows hold lse =
  // -inf (stage_forward), and a CUDA item none of whose rows holds a result reads nothing.
  std::vector<kernels::RowSpan> merged;
  for (const Range& r : reached_) merged.push_back({r.start, r.end});
  op->set_merged_rows(merged);
  reached_.insert(reached_.end(), rows.begin(), rows.end());
  reached_ = merge_ranges(std::move(reached_));
  op_rows_.emplace_back(op.get(), std::move(rows));
  return op;
}

void PlanRunner::stage_forward(AttentionOp& op, const void* k, const void* v, Local& local, bool& first) {
  if (first) next_op_ = 0;
  MAGI_CHECK(next_op_ < op_rows_.size() && op_rows_[next_op_].first == &op,
             "rank {}: a stage's op runs out of the order stage_op made them in", rank_);
  const std::vector<Range>& rows = op_rows_[next_op_++].second;
  kernels::Into into = next_into(first);
  if (into == kernels::Into::write && rows != reached_) {
    no_result(local, reached_);
    into = kernels::Into::write_keyed;
  }
  op.forward(local.q.data(), k, v, local.out.data(), local.lse.f32(), into);
}

void PlanRunner::no_result(Local& local, const std::vector<Range>& later) {
  dev_.fill(local.lse.f32(), DType::fp32, local.lse.elems(), -std::numeric_limits<float>::infinity());
  int64_t row = 0;
  for (const Range& r : later) {
    dev_.fill(local.out.at(row * q_row_), dt_, (r.start - row) * q_row_, 0.f);
    row = r.end;
  }
  dev_.fill(local.out.at(row * q_row_), dt_, (tokens_ - row) * q_row_, 0.f);
}

void PlanRunner::finish_forward(Local& local, bool first) {
  if (first) no_result(local, {});
}

void PlanRunner::no_dq(Local& local) { dev_.fill(local.dq.data(), dt_, local.dq.elems(), 0.f); }

}  // namespace magi::detail
