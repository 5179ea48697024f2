// Dispatch (DESIGN.md §3): cut the sequence into units (chunks of chunk_tokens, or ring's zigzag
// blocks), weigh each unit by the mask area of the rows it owns as queries, and assign units to
// cp ranks with equal unit counts per rank (floor or ceil of units / cp), minimising the largest
// per-rank area: a cardinality-constrained multiway number partition.
#pragma once

#include "core/base/range.h"
#include "core/base/slice.h"
#include "core/workload/workload.h"

#include <cstdint>
#include <vector>

namespace magi {

// The mask split by query rows into consecutive units covering [0, S).
struct RowPieces {
  std::vector<Range> units;        // consecutive, ascending, covering [0, S)
  std::vector<AttnSlice> pieces;   // the mask clipped to each unit's rows (global coordinates)
  std::vector<size_t> offsets;     // unit u's pieces: [offsets[u], offsets[u + 1])
  std::vector<int64_t> areas;      // per unit: sum of its pieces' areas
};

// Units of `unit_tokens` tokens over [0, total_tokens); the last one is short when
// total_tokens % unit_tokens != 0.
std::vector<Range> chunk_units(int64_t total_tokens, int64_t unit_tokens);
// Ring's zigzag blocks: 2 x cp blocks, block i = [i S / 2cp, (i + 1) S / 2cp) (sizes differ by
// at most one token); rank r hosts blocks r and 2cp - 1 - r.
std::vector<Range> zigzag_units(int64_t total_tokens, int cp);

// Clips every slice of `mask` to the units it spans. Cost: O(sum over slices of units spanned).
RowPieces split_rows(const std::vector<AttnSlice>& mask, std::vector<Range> units);

// Unit -> rank assignments. Every rank gets floor(n / cp) or ceil(n / cp) units, and exactly
// n % cp ranks get the ceil. `short_unit` (or -1) names a unit with fewer tokens than the others
// (the last chunk): when n % cp != 0 it goes to a rank with the ceil count, so that token counts
// per rank differ by at most one full unit. All are deterministic.
//   greedy    : units by area descending, each onto the least-loaded rank with room (ties: lower
//               rank). O(n log n).
//   refine    : greedy, then repeated moves/swaps between the most-loaded rank and the others
//               (least-loaded first) that lower the pair's larger load, until none does.
//   exhaustive: branch and bound over all assignments; the optimum. Tiny instances only (tests).
std::vector<int> assign_greedy(const std::vector<int64_t>& areas, int cp, int64_t short_unit = -1);
std::vector<int> assign_refine(const std::vector<int64_t>& areas, int cp, int64_t short_unit = -1);
std::vector<int> assign_exhaustive(const std::vector<int64_t>& areas, int cp, int64_t short_unit = -1);
std::vector<int> assign_units(const std::vector<int64_t>& areas, int cp, DispatchSolver solver,
                              int64_t short_unit = -1);

// Largest per-rank area of an assignment.
int64_t max_rank_load(const std::vector<int64_t>& areas, const std::vector<int>& owner, int cp);

}  // namespace magi
