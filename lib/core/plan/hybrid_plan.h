// Hybrid head x context parallelism (plan.h, "Hybrid"; DESIGN.md §3): parallel.heads = h ranks
// per group run Ulysses among themselves, parallel.cp = c groups run magi or ring between them;
// world rank w = g h + i is head index i of group g. A hybrid Plan is the context plan over the c
// groups (whole model) with heads = h; these functions give each world rank its part.
#pragma once

#include "core/base/range.h"
#include "core/plan/comm_volume.h"
#include "core/plan/plan.h"

#include <cstdint>
#include <string>
#include <vector>

namespace magi {

// Why parallel.heads = h > 1 cannot run with `strategy` on case `c` ("" when it can): the
// strategy between groups must be magi or ring, and h must divide heads_q and heads_kv. The
// context strategy's own reasons (planner.h's skip_reason) come after these.
std::string hybrid_skip_reason(Strategy strategy, const Case& c);

// Ranks of the plan: cp x heads.
int world_size(const Plan& plan);

// World rank w of a plan (heads = 1: w is a context rank, its whole host buffer on all heads).
struct HybridRank {
  int group = 0, head = 0;     // w = group x heads + head
  Range rows;                  // rows [i T_g / h, (i+1) T_g / h) of the group's host buffer
  std::vector<Range> ranges;   // those rows as global token ranges, ascending (what w holds)
  int64_t tokens = 0;          // rows.size()
  int64_t area = 0;            // its share of the group's head-work: group area / h, the
                               // remainder to the first head indices (the group sums to its area)
  HeadSplit heads;             // query heads [i Hq / h, (i+1) Hq / h) and the matching K/V heads
};
HybridRank hybrid_rank(const Plan& plan, int world_rank);

// The global token ranges world rank w holds on all heads: its inputs and its results.
std::vector<Range> hosted_ranges(const Plan& plan, int world_rank);

// What the ranks of one head index run between groups: the context plan on Hq / h query and
// Hkv / h K/V heads, with heads = 1 (its bytes are this plan's context bytes / h).
Plan head_slice_plan(const Plan& plan);

}  // namespace magi
