// The results model (DESIGN.md §5): one case row per (case, strategy) that every command
// measuring attention produces (`run`, `kernel`, later `simulate`), read by the one set of
// printers (results/writers.h). Every number's formula is in README.md, "Reported numbers";
// every field of the files in docs/results_schema.md.
#pragma once

#include "core/base/stats.h"
#include "core/results/tensor_error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

enum class CheckState { not_run, passed, failed };
std::string_view to_string(CheckState s);

struct RankRow {
  int rank = 0;
  std::string host;
  TimingSummary fwd, bwd;          // over the timed iterations of one pass
  int64_t fwd_sent_bytes = 0;      // counted from the messages the rank sent, one forward
  int64_t bwd_sent_bytes = 0;      // one backward
  int64_t fwd_inter_node_sent_bytes = 0;  // of which to ranks on other nodes (`tiers` below)
  int64_t bwd_inter_node_sent_bytes = 0;
  double fwd_comm_wait_ms = 0;     // median time waiting on communication compute did not hide
  double bwd_comm_wait_ms = 0;
  std::vector<double> fwd_compute_ms;  // per compute step of a pass: median time on the device
  std::vector<double> bwd_compute_ms;
  int64_t peak_memory_bytes = 0;   // the most device memory the rank held at once
  int64_t tokens = 0;
  int64_t area = 0;
};

struct CaseRow {
  std::string case_name;
  std::string case_key;            // the sweep point up to cp and strategy (matches rows across cp)
  std::string mask;
  int64_t total_tokens = 0;
  int cp = 1;
  std::string strategy;            // "none" for the kernel alone
  std::string backend;             // cpu, cuda-kernel
  std::string dtype;               // dtype the backend computed in
  int heads_q = 0, heads_kv = 0, head_dim = 0;
  int64_t area = 0;                // mask area (pairs)
  bool fwd_ran = false, bwd_ran = false;
  double peak_tflops = 0;          // the device's dense peak (0 = unknown: no MFU)
  int64_t planned_fwd_bytes = 0;   // plan's bytes, all ranks, one forward
  int64_t planned_bwd_bytes = 0;
  int64_t bound_fwd_bytes = 0;     // zero-redundancy bound, all ranks, one forward
  double imbalance = 1;            // max rank area / mean rank area
  // Link tiers (magi runs; ranks_per_node 0: none planned). Intra-node = total - inter-node.
  int ranks_per_node = 0;
  int64_t planned_fwd_inter_node_bytes = 0;  // the plan's, all ranks, one forward (bwd: twice)
  int64_t bound_fwd_inter_node_bytes = 0;    // each token once per destination node
  int64_t flat_fwd_inter_node_bytes = 0;     // the flat GroupCast's on the same dispatch
  CheckState check = CheckState::not_run;
  std::vector<TensorError> errors;
  bool skipped = false;
  std::string skip_reason;
  std::vector<RankRow> ranks;      // every rank's timings: the row's times derive from them
  nlohmann::json details;          // resolved case config, document stats, plan or kernel summary
  bool gated = false;                    // a --min-*-tflops floor was set (core/results/gate.h)
  std::vector<std::string> below_floor;  // the floors it missed, in words

  // Derived numbers (formulas in README.md).
  double fwd_ms() const;                     // slowest rank's median
  double bwd_ms() const;
  double fwd_ms_mean_rank() const;           // mean over ranks of their medians
  double bwd_ms_mean_rank() const;
  double fwd_flops() const;                  // attention_fwd_flops (core/model/vocabulary.h)
  double bwd_flops() const;                  // attention_bwd_flops
  double fwd_tflops_per_gpu() const;         // fwd_flops / (fwd_ms * cp)
  double bwd_tflops_per_gpu() const;
  double fwd_tflops_mean_rank() const;       // fwd_flops / (fwd_ms_mean_rank * cp): MagiAttention's
  double bwd_tflops_mean_rank() const;
  double fwd_mfu_pct() const;                // 100 * fwd_tflops_per_gpu / peak_tflops (NaN unknown)
  int64_t max_rank_fwd_sent_bytes() const;
  int64_t max_rank_peak_memory_bytes() const;  // 0: not measured (the kernel alone)
  int64_t measured_fwd_bytes() const;        // sum over ranks
  int64_t measured_bwd_bytes() const;
  int64_t measured_fwd_inter_node_bytes() const;  // sum over ranks
  int64_t measured_bwd_inter_node_bytes() const;
  double exposed_comm_pct() const;           // 100 * max rank fwd_comm_wait_ms / fwd_ms; 0 when
                                             // no rank sent (hence received) a byte
  bool bytes_match_plan() const;             // measured == planned for every pass that ran, in
                                             // all and (ranks_per_node > 0) between nodes
};

struct Report {
  nlohmann::json metadata;   // docs/results_schema.md, "metadata"
  std::vector<CaseRow> rows;

  // Scaling efficiency of row i: its fwd TFLOP/s per GPU over that of the cp = 1 row with the
  // same mask, size, model and strategy (any strategy when that one has no cp = 1 row); NaN
  // when there is none.
  double scaling_efficiency(size_t i) const;
  int failed_checks() const;
  int checked_cases() const;
};

}  // namespace magi
