// chunk_tokens `auto` (planner.h): every candidate chunk size through the dispatch plans use (cut,
// or uncut where the cost model prices the cuts slower) and the cost model that
// `overlap_degree: auto` uses; the fastest forward estimate wins.
#include "core/plan/magi_dispatch.h"
#include "core/plan/planner.h"

#include <utility>

namespace magi {

namespace detail {

AutoChunk auto_chunk(const std::vector<AttnSlice>& mask, const Case& c) {
  AutoChunk a;
  for (int64_t chunk = kSplitTileTokens; chunk <= kMaxAutoChunkTokens; chunk *= 2) {
    if ((c.total_tokens + chunk - 1) / chunk < c.parallel.cp) break;  // fewer chunks than ranks
    GatedDispatch g = gated_dispatch(mask, c, chunk);
    a.candidates.push_back(ChunkCandidate{chunk, g.forward_s, g.overlap_degree, g.md.plan.imbalance,
                                          g.md.plan.split_chunks, g.md.plan.zero_redundancy_bound.fwd_bytes});
    if (chosen_chunk_tokens(a.candidates) == chunk) {  // the best so far: keep its dispatch
      a.chunk_tokens = chunk;
      a.chosen = std::move(g);
    }
  }
  return a;
}

}  // namespace detail

std::vector<ChunkCandidate> chunk_candidates(const std::vector<AttnSlice>& mask, const Case& c) {
  return detail::auto_chunk(mask, c).candidates;
}

int64_t chosen_chunk_tokens(const std::vector<ChunkCandidate>& candidates) {
  const ChunkCandidate* best = nullptr;
  for (const ChunkCandidate& x : candidates) {
    // Ties (within rounding) go to the larger chunk: fewer units, no more bytes.
    if (!best || x.forward_s <= best->forward_s * (1 + 1e-9)) best = &x;
  }
  return best ? best->chunk_tokens : 0;
}

}  // namespace magi
