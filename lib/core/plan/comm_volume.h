// Bytes a plan moves (DESIGN.md §3; plan.h's CommVolume table), for any element size: each
// strategy's closed form, every rank's bytes sent and received per pass, and ulysses' head split.
// The plan reports them in its model dtype; the CPU runtime, which stores and sends float32, asks
// for 4-byte elements and compares them with the bytes of its real messages.
// All figures use checked arithmetic (core/base/checked.h): a figure that does not fit in int64
// is a ConfigError naming the fields, not a wrapped number.
#pragma once

#include "core/plan/plan.h"

#include <cstdint>
#include <vector>

namespace magi {

// Bytes of K and V for one token: 2 x Hkv x D x element_bytes.
int64_t kv_bytes_per_token(const ModelShape& m, int element_bytes);

// Closed forms of plan.h's CommVolume table (fwd and bwd; max_rank_fwd_bytes left 0), P = cp,
// S = total_tokens.
CommVolume ring_volume(int cp, int64_t total_tokens, const ModelShape& m, int element_bytes);
CommVolume ulysses_volume(int cp, int64_t total_tokens, const ModelShape& m, int element_bytes);
CommVolume allgather_volume(int cp, int64_t total_tokens, const ModelShape& m, int element_bytes);
// The zero-redundancy bound of a dispatch (magi's volume): remote KV tokens summed over ranks, K/V
// bytes each, forward; twice that backward.
CommVolume magi_volume(int64_t remote_kv_tokens, const ModelShape& m, int element_bytes);

// Query and key/value heads rank `rank` computes: [head_begin, head_end) of its RankPlan (the
// whole range when the plan leaves it empty), the K/V heads of the same GQA groups.
struct HeadSplit {
  int q_begin = 0, q_end = 0, kv_begin = 0, kv_end = 0;
};
HeadSplit head_split(const Plan& plan, int rank);

// One rank's bytes in one pass.
struct RankBytes {
  int64_t sent = 0;
  int64_t received = 0;
};
// Per rank (index = rank), forward and backward, as the strategies run (docs/execution.md):
//   magi      fwd: each Transfer, src -> dst. bwd: the Transfers again, then dK/dV dst -> src.
//   ring      fwd: rank r sends every block but rank r+1's, receives every block but its own.
//             bwd: the same, plus every block's dK/dV accumulator (S tokens) sent and received.
//   allgather fwd: its block to each of the P-1 others; every other block in.
//             bwd: the all-gather again, plus the reduce-scatter (its partials of the others'
//             tokens out, the P-1 partials of its own tokens in).
//   ulysses   fwd: Q, K, V of its tokens on each peer's heads out, out of the peers' tokens on its
//             heads back. bwd: dO out the same way, dQ, dK, dV back.
// Sums over ranks: sent == received == the strategy's CommVolume.
struct PlannedBytes {
  std::vector<RankBytes> fwd, bwd;
};
// A hybrid plan (heads > 1): per WORLD rank (plan.h, "Hybrid"), the sums of hybrid_planned_bytes'
// two dimensions.
PlannedBytes planned_bytes(const Plan& plan, int element_bytes);

// A hybrid plan's bytes per world rank w = g h + i and dimension:
//   head    : the Ulysses all-to-alls inside group g (T_g tokens, w holding t_w of them): fwd sent
//             = Q, K, V of its t_w tokens on its h - 1 peers' heads + out of the other T_g - t_w
//             tokens on its own heads; bwd: dO out, dQ, dK, dV back (ulysses' per-rank rule with
//             S -> T_g). Summed over the world: (h - 1) S (2 Hq + 2 Hkv) / h D b, ulysses_volume(h).
//   context : the context strategy's bytes of rank g (the plan's ranks[g], all heads) / h: w moves
//             only its Hkv / h K/V heads. Summed over the world: the strategy's volume at cp.
struct HybridBytes {
  PlannedBytes head, context;
};
HybridBytes hybrid_planned_bytes(const Plan& plan, int element_bytes);

}  // namespace magi
