// Distributed attention plans (DESIGN.md §3) as plain values: no device pointers, no MPI.
// One Plan type serves every strategy, so one executor family runs them all.
//
// Buffers every rank holds (token rows; each row is heads x head_dim elements):
//   host buffer   : the rank's own tokens, the concatenation of RankPlan::q_ranges in order.
//                   Local Q, K, V (and out, dQ, dK, dV) all use this layout.
//   stage buffer s: the concatenation of Stage::kv_ranges in order. Stage 0 of magi, ring and
//                   allgather is the host stage (kv_ranges == q_ranges, nothing received).
// Stage::slices are in local coordinates: q is a row range of the host buffer (for ulysses: of
// the whole sequence), k a row range of that stage's buffer. The union over ranks and stages of
// the slices, mapped back to global coordinates, is the mask exactly, each (q, k) pair once.
#pragma once

#include "core/base/range.h"
#include "core/base/slice.h"
#include "core/workload/workload.h"

#include <cstdint>
#include <string>
#include <vector>

namespace magi {

struct Stage {
  std::vector<Range> kv_ranges;    // global token ranges making up this stage's buffer, in order
  std::vector<AttnSlice> slices;   // local coordinates (see above)
  int64_t area = 0;                // sum of slice areas
};

// One message of a stage: `src` sends the tokens `ranges` (global, ascending) of its host buffer
// to `dst`, which places them in its stage buffer where Stage::kv_ranges says.
// For magi a stage's receive buffer is grouped by source rank ascending, so an all-to-all-v
// lands every message contiguously. GroupReduce (backward) is the same list with src and dst
// swapped: dK/dV partials travel back to the owner and are summed there.
struct Transfer {
  int stage = 0;
  int src = 0;
  int dst = 0;
  std::vector<Range> ranges;
  int64_t tokens = 0;              // total_size(ranges)
};

struct RankPlan {
  int rank = 0;
  std::vector<Range> q_ranges;          // global ranges this rank hosts, merged, ascending
  int64_t tokens = 0;                   // total_size(q_ranges)
  int64_t area = 0;                     // mask area of the rows it owns as queries
  std::vector<Range> remote_kv_ranges;  // keys its queries need that it does not host (merged)
  std::vector<Stage> stages;            // stage 0 first
  int head_begin = 0, head_end = 0;     // query heads this rank computes ([0, Hq) but ulysses)
};

// Bytes a strategy moves for one forward pass, summed over ranks (K and V for magi, ring and
// allgather; Q, K, V and O for ulysses). Backward figures count K/V again plus dK/dV (dQ too for
// ulysses). All in bytes of the model dtype.
struct CommVolume {
  int64_t fwd_bytes = 0;
  int64_t bwd_bytes = 0;
  int64_t max_rank_fwd_bytes = 0;  // the busiest rank's sent bytes, forward
};

struct Plan {
  Strategy strategy = Strategy::magi;
  int cp = 1;
  int64_t total_tokens = 0;
  int64_t chunk_tokens = 0;
  ModelShape model;
  std::vector<RankPlan> ranks;
  std::vector<Transfer> transfers;      // all stages; see Transfer
  int overlap_degree = 0;               // remote stages (resolved when `auto`)
  // Load balance.
  int64_t total_area = 0;
  int64_t max_rank_area = 0;
  double imbalance = 1.0;               // max_rank_area / (total_area / cp)
  // Communication: this plan's volume and the zero-redundancy bound for the same dispatch.
  CommVolume volume;
  CommVolume zero_redundancy_bound;
  // A strategy that cannot run this case (ulysses with cp > heads_kv, ...).
  bool skipped = false;
  std::string skip_reason;
};

}  // namespace magi
