// Case rows for the results tests: a sweep point of `cp` ranks whose timings are given per rank.
#pragma once

#include "core/results/row.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace magi::test {

// One timed iteration per rank: rank k's median is fwd_ms[k] (backward twice that).
inline CaseRow make_row(int cp, std::string strategy, const std::vector<double>& fwd_ms) {
  CaseRow r;
  r.case_name = fmt::format("w/{}", cp);
  r.mask = "causal";
  r.total_tokens = 1024;
  r.cp = cp;
  r.strategy = std::move(strategy);
  r.backend = "cpu";
  r.dtype = "fp32";
  r.heads_q = 4;
  r.heads_kv = 2;
  r.head_dim = 32;
  r.area = 1024 * 1025 / 2;
  r.case_key = "causal-1024";
  r.fwd_ran = r.bwd_ran = true;
  r.planned_fwd_bytes = 1000;
  r.planned_bwd_bytes = 0;
  r.bound_fwd_bytes = 500;
  for (int k = 0; k < cp; ++k) {
    RankRow rank;
    rank.rank = k;
    rank.fwd = summarize({fwd_ms.at(k)});
    rank.bwd = summarize({2 * fwd_ms.at(k)});
    rank.fwd_sent_bytes = 1000 / cp;
    rank.fwd_comm_wait_ms = fwd_ms.at(k) * 0.1 * (k + 1) / cp;
    r.ranks.push_back(rank);
  }
  return r;
}

// Every rank as fast as the slowest: `fwd_ms` on each.
inline CaseRow make_row(int cp, std::string strategy, double fwd_ms) {
  return make_row(cp, std::move(strategy), std::vector<double>(cp, fwd_ms));
}

}  // namespace magi::test
