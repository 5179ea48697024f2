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
// Slices are tight (no empty row or key column). Only full slices may span several ranges of a
// layout (adjacent full pieces are merged in local coordinates); a causal, inv_causal or
// bi_causal slice always lies inside one range of each layout.
//
// Per strategy (builders in core/plan/planner.h, one file each; JSON schema in docs/plan_schema.md):
//   magi     : chunks of chunk_tokens (adaptive: heavy ones cut at tile boundaries, core/plan/adaptive_dispatch.h)
//              dispatched by the solver; stage 0 = host; stages
//              1..overlap_degree hold remote KV: the rank's remote tokens in ascending global
//              order are cut into overlap_degree runs of equal token count, and each run's buffer
//              is grouped by source rank ascending (ascending global within a source). One
//              Transfer per (stage, src, dst) with tokens > 0. Every rank has 1 + overlap_degree
//              stages (a stage may be empty for a rank; it still joins that stage's all-to-all-v).
//              At cp 1 with an explicit overlap_degree d, the rank's keys are instead cut into
//              d + 1 contiguous stages, stage s = one range of the host buffer (stage 0 its
//              first part), no transfers: the staged compute without comm. The cuts start
//              equal; each moves to the slice boundary (a document's end) between its
//              neighbours, of the 32 nearest it, that splits the fewest rows (rows seeing keys
//              on both sides), when that is fewer than where it was; a cut left inside a slice
//              sits on a 128-key tile boundary of it (when every stage keeps a key), so that the
//              kernels visit the tiles of one launch.
//              With several nodes (ranks_per_node < cp) the routing is node-aware instead
//              (core/plan/node_routing.h): per node, rounds of equal token count, relays
//              forwarding one round later (Transfer::from_stage), 2 + overlap_degree stages when
//              anything is forwarded.
//   ring     : zigzag dispatch: 2cp blocks, rank r hosts blocks r and 2cp-1-r (chunk_tokens =
//              S / 2cp, the first block's size). cp stages: stage s of rank r holds the host
//              buffer (same layout) of rank (r - s) mod cp, received from rank (r - 1) mod cp,
//              which forwards its own stage s - 1 buffer: Transfer{s, src = (r-1) mod cp, dst = r,
//              ranges = q_ranges of rank (r - s) mod cp}. A stage whose KV block is fully masked
//              has no slices (compute skipped) but its Transfer stays: the block must travel on.
//              overlap_degree = cp - 1.
//   ulysses  : rank r hosts the contiguous shard [r S / cp, (r+1) S / cp) and computes query heads
//              [head_begin, head_end) = [r Hq / cp, (r+1) Hq / cp) over the whole sequence: one
//              stage, kv_ranges = {[0, S)}, slices = the mask in global coordinates (q rows of the
//              whole sequence). Transfers (stage 0) are the all-to-all: src sends dst its
//              q_ranges rows of dst's heads. remote_kv_ranges = [0, S) minus the rank's shard
//              (tokens it receives, on its heads only). area = the rank's share of head-work,
//              mask_area x (its heads) / Hq (rounded so the ranks sum to total_area).
//   allgather: zigzag dispatch as ring; stage 1 holds every other rank's host buffer, sources
//              ascending (one Transfer{1, src, dst, q_ranges of src} per pair); dK/dV go back by
//              reduce-scatter (the same pairs reversed). overlap_degree = 1 (0 when cp = 1).
//
// Hybrid head x context parallelism (heads = h > 1, strategy magi or ring; core/plan/hybrid_plan.h):
// everything above describes the context plan over cp GROUPS with the whole model: ranks[g] is
// group g (its q_ranges, stages and slices on all heads), transfers run between groups, and
// volume is what the plan moves over both dimensions. World rank w = g h + i (head index i) holds
// rows [i T_g / h, (i+1) T_g / h) of group g's host buffer on all heads; an all-to-all inside the
// group (Ulysses) gives it all of the group's rows on query heads [i Hq / h, (i+1) Hq / h) and the
// matching K/V heads, on which it runs ranks[g]'s stages with the ranks of head index i.
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
// Node-aware magi (core/plan/node_routing.h) also forwards: `from_stage` > 0 says the tokens leave
// src's stage `from_stage` buffer (a relay passing on what it received from another node) instead
// of its host buffer; the receiver's buffer then holds, per source, the host-sourced ranges first.
struct Transfer {
  int stage = 0;
  int src = 0;
  int dst = 0;
  std::vector<Range> ranges;
  int64_t tokens = 0;              // total_size(ranges)
  int from_stage = 0;              // 0: src's host buffer; s > 0: src's stage s buffer
};

// Forward bytes split by link tier: between ranks of one node and between nodes (rank r is on
// node r / ranks_per_node). Backward moves each tier's bytes twice (K/V again, dK/dV back).
struct TierBytes {
  int64_t intra_node = 0;
  int64_t inter_node = 0;
};

struct RankPlan {
  int rank = 0;
  std::vector<Range> q_ranges;          // global ranges this rank hosts, merged, ascending
  int64_t tokens = 0;                   // total_size(q_ranges)
  int64_t area = 0;                     // mask area of the rows it owns as queries
  std::vector<Range> remote_kv_ranges;  // keys its queries need that it does not host (merged)
  std::vector<Stage> stages;            // stage 0 first
  int head_begin = 0, head_end = 0;     // query heads this rank computes ([0, Hq) but ulysses)
  // Summaries of the above.
  std::vector<int64_t> units;           // dispatch units (chunks, parts of cut chunks / zigzag blocks) it hosts, ascending
  int64_t remote_kv_tokens = 0;         // total_size(remote_kv_ranges)
  int64_t send_bytes_fwd = 0;           // forward bytes this rank sends, model dtype
  int64_t recv_bytes_fwd = 0;           // forward bytes this rank receives (core/plan/comm_volume.h)
};

// Bytes a strategy moves for one forward pass, summed over ranks (K and V for magi, ring and
// allgather; Q, K, V and O for ulysses). Backward figures count K/V again plus dK/dV (dQ too for
// ulysses). All in bytes of the model dtype. With kv = 2 Hkv D dtype_bytes per token, T_r the
// tokens of rank r, R_r its remote KV tokens, P = cp:
//   magi      fwd = sum_r R_r kv                bwd = 2 fwd (K/V GroupCast again + dK/dV GroupReduce)
//   ring      fwd = (P-1) S kv                  bwd = (2P-1) S kv (K/V again over P-1 hops, dK/dV
//                                                     over P hops, the last one home; 0 if P = 1)
//   ulysses   fwd = (P-1) S (2Hq + 2Hkv)/P D b  bwd = fwd (dO in; dQ, dK, dV out; Q, K, V, O kept
//                                                     head-sharded from the forward)
//   allgather fwd = (P-1) S kv                  bwd = 2 fwd (all-gather again + reduce-scatter)
// zero_redundancy_bound is the magi formula over the plan's own dispatch: sum_r R_r kv.
// core/plan/comm_volume.h computes these and every rank's share, for any element size.
struct CommVolume {
  int64_t fwd_bytes = 0;
  int64_t bwd_bytes = 0;
  int64_t max_rank_fwd_bytes = 0;  // the busiest rank's sent bytes, forward
};

// Units of one size and how many there are (the dispatch's unit-size histogram).
struct UnitSizeCount {
  int64_t tokens = 0;
  int64_t count = 0;
};

// One chunk size `chunk_tokens: auto` tried (magi): its adaptive dispatch and the cost model's
// forward estimate of the slowest rank at its best overlap degree (core/cost/cost_model.h).
struct ChunkCandidate {
  int64_t chunk_tokens = 0;
  double forward_s = 0;
  int overlap_degree = 0;
  double imbalance = 1.0;
  int64_t split_chunks = 0;
  int64_t zero_redundancy_fwd_bytes = 0;
};

// magi's cost gate (core/plan/magi_dispatch.h) at one chunk size: the adaptive dispatch with its
// cuts and the same chunks uncut, each priced by the cost model (the slowest rank's forward
// estimate at overlap_degree auto's degree, core/cost/cost_model.h) at the rates given; the faster
// one is the plan, the other is reported beside it.
struct DispatchPrice {
  int64_t split_chunks = 0;
  double imbalance = 1.0;
  int64_t zero_redundancy_fwd_bytes = 0;
  double forward_s = 0;
  int overlap_degree = 1;
};
struct CutGate {
  bool weighed = false;  // the adaptive dispatch cut chunks (else there was nothing to weigh)
  double compute_tflops = 0, comm_gbps = 0;
  DispatchPrice cut, uncut;
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
  // Link tiers (magi; zero elsewhere): ranks_per_node as resolved (cp when the case gives none:
  // one node), the plan's forward bytes per tier and each tier's zero-redundancy bound
  // (core/plan/node_routing.h, DESIGN.md §3 "Node-aware GroupCast").
  int ranks_per_node = 1;
  TierBytes tier_volume;
  TierBytes tier_bound;
  TierBytes tier_flat;                  // the flat GroupCast's tiers on the same dispatch
  // A strategy that cannot run this case (ulysses with cp > heads_kv, ...).
  bool skipped = false;
  std::string skip_reason;
  // The dispatch report.
  DispatchSolver solver = DispatchSolver::refine;  // magi only
  int64_t num_units = 0;                // dispatch units (chunks, or 2cp zigzag blocks)
  int64_t lower_bound_area = 0;         // ceil(total_area / cp)
  int64_t max_unit_area = 0;            // the largest single unit's area: also a lower bound on
                                        // max_rank_area (coarse chunks cannot balance below it)
  double mean_rank_area = 0;            // total_area / cp
  int64_t min_rank_tokens = 0, max_rank_tokens = 0;  // differ by at most one unit (magi: one chunk)
  bool short_last_unit = false;         // S is not a multiple of the unit size
  // Adaptive dispatch (magi; core/plan/adaptive_dispatch.h): chunks too heavy for balance cut into
  // tile-aligned parts. Units then have different sizes; tokens per rank are still those of the
  // fixed chunks.
  std::vector<UnitSizeCount> unit_sizes;  // the units' size histogram, sizes ascending
  int64_t split_chunks = 0;             // chunks cut (heavy ones and their light fillers)
  int64_t indivisible_area = 0;         // the largest area no cut can split: a lower bound on max_rank_area
  bool cuts_declined = false;           // cuts were estimated slower than the chunks uncut (kept)
  CutGate cut_gate;                     // what the decision weighed
  double fixed_chunk_imbalance = 1.0;   // the same chunks dispatched uncut
  CommVolume fixed_chunk_bound;         // zero-redundancy volume of that uncut dispatch
  std::vector<ChunkCandidate> chunk_candidates;  // chunk_tokens auto: the sizes tried (else empty)
  // Head parallelism (see the top): h ranks per group, world = cp x heads. volume =
  // head_volume (the all-to-alls inside groups) + context_volume (the strategy between groups,
  // on all heads: the sum over head indices); with heads = 1 both are 0 and volume is the
  // strategy's own.
  int heads = 1;
  CommVolume head_volume, context_volume;
};

}  // namespace magi
