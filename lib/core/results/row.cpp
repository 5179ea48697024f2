#include "core/results/row.h"

#include "core/model/vocabulary.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace magi {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double tflops(double flops, double ms, int gpus) {
  return ms > 0 ? flops / (ms * 1e-3 * gpus) / 1e12 : kNaN;
}

double slowest_median(const std::vector<RankRow>& ranks, TimingSummary RankRow::*pass) {
  double m = 0;
  for (const RankRow& r : ranks) m = std::max(m, (r.*pass).median_ms);
  return m;
}

double mean_median(const std::vector<RankRow>& ranks, TimingSummary RankRow::*pass) {
  if (ranks.empty()) return 0;
  double s = 0;
  for (const RankRow& r : ranks) s += (r.*pass).median_ms;
  return s / static_cast<double>(ranks.size());
}

// One per-rank figure summed over the ranks.
int64_t sum_over_ranks(const std::vector<RankRow>& ranks, int64_t RankRow::*field) {
  int64_t s = 0;
  for (const RankRow& r : ranks) s += r.*field;
  return s;
}

}  // namespace

std::string_view to_string(CheckState s) {
  switch (s) {
    case CheckState::not_run: return "-";
    case CheckState::passed: return "OK";
    case CheckState::failed: return "FAILED";
  }
  return "?";
}

double CaseRow::fwd_ms() const { return slowest_median(ranks, &RankRow::fwd); }
double CaseRow::bwd_ms() const { return slowest_median(ranks, &RankRow::bwd); }
double CaseRow::fwd_ms_mean_rank() const { return mean_median(ranks, &RankRow::fwd); }
double CaseRow::bwd_ms_mean_rank() const { return mean_median(ranks, &RankRow::bwd); }
double CaseRow::fwd_flops() const { return attention_fwd_flops(area, head_dim, heads_q); }
double CaseRow::bwd_flops() const { return attention_bwd_flops(area, head_dim, heads_q); }
double CaseRow::fwd_tflops_per_gpu() const { return fwd_ran ? tflops(fwd_flops(), fwd_ms(), cp) : kNaN; }
double CaseRow::bwd_tflops_per_gpu() const { return bwd_ran ? tflops(bwd_flops(), bwd_ms(), cp) : kNaN; }
double CaseRow::fwd_tflops_mean_rank() const {
  return fwd_ran ? tflops(fwd_flops(), fwd_ms_mean_rank(), cp) : kNaN;
}
double CaseRow::bwd_tflops_mean_rank() const {
  return bwd_ran ? tflops(bwd_flops(), bwd_ms_mean_rank(), cp) : kNaN;
}
double CaseRow::fwd_mfu_pct() const {
  return peak_tflops > 0 ? 100.0 * fwd_tflops_per_gpu() / peak_tflops : kNaN;
}
int64_t CaseRow::max_rank_fwd_sent_bytes() const {
  int64_t m = 0;
  for (const RankRow& r : ranks) m = std::max(m, r.fwd_sent_bytes);
  return m;
}
int64_t CaseRow::max_rank_peak_memory_bytes() const {
  int64_t m = 0;
  for (const RankRow& r : ranks) m = std::max(m, r.peak_memory_bytes);
  return m;
}
int64_t CaseRow::measured_fwd_bytes() const { return sum_over_ranks(ranks, &RankRow::fwd_sent_bytes); }
int64_t CaseRow::measured_bwd_bytes() const { return sum_over_ranks(ranks, &RankRow::bwd_sent_bytes); }
int64_t CaseRow::measured_fwd_inter_node_bytes() const {
  return sum_over_ranks(ranks, &RankRow::fwd_inter_node_sent_bytes);
}
int64_t CaseRow::measured_bwd_inter_node_bytes() const {
  return sum_over_ranks(ranks, &RankRow::bwd_inter_node_sent_bytes);
}
double CaseRow::exposed_comm_pct() const {
  if (!fwd_ran || fwd_ms() <= 0) return kNaN;
  // Bytes sent by all ranks are the bytes received by all: none sent, none waited on. What a
  // rank's wait then measures is the cost of asking (empty requests, the clock), not comm.
  if (measured_fwd_bytes() == 0) return 0;
  double wait = 0;
  for (const RankRow& r : ranks) wait = std::max(wait, r.fwd_comm_wait_ms);
  return 100.0 * wait / fwd_ms();
}

bool CaseRow::bytes_match_plan() const {
  const bool tiers = ranks_per_node > 0;
  return (!fwd_ran || (measured_fwd_bytes() == planned_fwd_bytes &&
                       (!tiers || measured_fwd_inter_node_bytes() == planned_fwd_inter_node_bytes))) &&
         (!bwd_ran || (measured_bwd_bytes() == planned_bwd_bytes &&
                       (!tiers || measured_bwd_inter_node_bytes() == 2 * planned_fwd_inter_node_bytes)));
}

double Report::scaling_efficiency(size_t i) const {
  const CaseRow& row = rows.at(i);
  if (row.skipped || !row.fwd_ran) return kNaN;
  const CaseRow* base = nullptr;
  for (const CaseRow& r : rows) {
    const bool same = r.cp == 1 && !r.skipped && r.fwd_ran && r.mask == row.mask &&
                      r.total_tokens == row.total_tokens && r.heads_q == row.heads_q &&
                      r.heads_kv == row.heads_kv && r.head_dim == row.head_dim &&
                      r.backend == row.backend && r.case_key == row.case_key;
    if (!same) continue;
    if (r.strategy == row.strategy) {
      base = &r;
      break;
    }
    if (!base) base = &r;
  }
  if (!base) return kNaN;
  return row.fwd_tflops_per_gpu() / base->fwd_tflops_per_gpu();
}

int Report::failed_checks() const {
  return static_cast<int>(std::count_if(rows.begin(), rows.end(), [](const CaseRow& r) {
    return r.check == CheckState::failed;
  }));
}

int Report::checked_cases() const {
  return static_cast<int>(std::count_if(rows.begin(), rows.end(), [](const CaseRow& r) {
    return !r.skipped && r.check != CheckState::not_run;
  }));
}

}  // namespace magi
