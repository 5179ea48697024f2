// Which ranks form a node for magi's node-aware GroupCast (parallel.ranks_per_node; DESIGN.md §3):
// nodes are blocks of ranks_per_node consecutive ranks, and a block must lie on one host of the
// job (it may be smaller than a host: several "virtual" nodes on one machine test the routing).
#pragma once

#include <vector>

namespace magi {

// The ranks per node of a case run on the first `cp` ranks of a job whose rank r is on host
// host_of[r] (any id, equal for ranks sharing a host; size >= cp). `requested` > 0 is
// parallel.ranks_per_node as given: it must divide cp and every block of that many consecutive
// ranks must share a host, else ConfigError naming the field, the value and the layout.
// `requested` = 0 (auto): the largest divisor of cp whose blocks each share a host (the real
// node split when hosts hold equal runs of consecutive ranks; 1 at worst).
int ranks_per_node_for_hosts(int requested, int cp, const std::vector<int>& host_of);

}  // namespace magi
