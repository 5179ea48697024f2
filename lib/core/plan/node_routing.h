// Node-aware GroupCast / GroupReduce for magi (DESIGN.md §3, "Node-aware GroupCast"): ranks are
// grouped into nodes of ranks_per_node consecutive ranks (rank r on node r / ranks_per_node), and
// each remote K/V token crosses between nodes once per destination node. Internal to core/plan.
//
// Routing, per destination node N, over the union U_N of its ranks' remote tokens in ascending
// order, cut into `degree` runs of equal token count (run k = round k):
//   - a token whose owner is on N goes straight from the owner's host buffer to every rank of N
//     that needs it, in round k (stage k);
//   - a token whose owner is on another node goes once to a relay, one of N's ranks that needs it
//     (the one that has relayed the fewest tokens so far, ties to the lower rank), in round k; the
//     relay computes on it in stage k and forwards it from its stage k buffer to the other ranks
//     of N that need it in round k + 1 (Transfer::from_stage = k), while it computes stage k.
// Every rank still receives each token it needs exactly once, so the total bytes equal the flat
// plan's; only the tiers change. A plan with any forwarding has degree + 1 remote stages (the last
// one holds what round `degree` forwards); one without (every rank its own node) has degree.
// GroupReduce is the same messages reversed: a relay adds its node-mates' dK/dV partials to its
// own before the one message back to the owner (docs/execution.md).
//
// Cost of route_node_aware: a walk of each node's union (the needed runs, sorted from its ranks'
// remote ranges), one piece per (run cut at unit and round boundaries) x needing rank, then per
// node a stable sort of its P_n pieces by message key: O(sum_n P_n log P_n) time and O(max P_n)
// scratch. Every message of a node has its destination on that node, so the nodes' sorted lists
// concatenate into the plan's; sorting per node keeps the work in cache, where one ordered map of
// all the plan's messages (a million at 16M tokens cp 4096, 8 ranks per node) cost a cache miss
// per tree level on every piece (results/planning/ADAPTIVE.md, "Node-aware planning time").
#pragma once

#include "core/base/slice.h"
#include "core/plan/dispatch.h"
#include "core/plan/plan.h"
#include "core/workload/workload.h"

#include <vector>

namespace magi::detail {

// parallel.ranks_per_node of the case, or cp (one node) when it is auto.
int planned_ranks_per_node(const Case& c);

// Fills every rank's stages (kv_ranges and slices) and the plan's transfers as routed above;
// p.ranks_per_node must divide p.cp with at least two nodes, degree >= 1, ranks and remote keys
// filled (fill_remote), `pieces` each rank's pieces.
void route_node_aware(Plan& p, const RowPieces& rp, const std::vector<int>& owner,
                      const std::vector<std::vector<AttnSlice>>& pieces, int degree);

// p.tier_volume from the plan's transfers (K/V bytes, model dtype), p.tier_bound: inter-node =
// each node's remote tokens owned on other nodes, once per node; intra-node = the rest of the
// zero-redundancy bound (every rank still receives each token it needs once); p.tier_flat: the
// tiers of the flat GroupCast on the same dispatch (every remote token straight from its owner).
void fill_tier_bytes(Plan& p, const RowPieces& rp, const std::vector<int>& owner);

}  // namespace magi::detail
