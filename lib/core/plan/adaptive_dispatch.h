// Adaptive dispatch (DESIGN.md §3): magi's chunks, with the chunks too heavy for balance cut, as
// little as balance needs, at multiples of the kernel's query tile.
//
// A fixed chunk size cannot balance a mask whose area sits in a few chunks: at cp 1024 on 1M
// tokens of the real corpus one 512-token chunk of a 191,632-token document holds 4.5x a rank's
// mean area. Cutting every chunk finer balances it but moves more K/V: every extra rank holding
// rows of a long document fetches the document's earlier keys. So only where balance needs it,
// and into as few pieces as it needs:
//
//   1. Dispatch the chunks (dispatch.h). Done if the largest rank area <= the goal: kBalanceTarget
//      x mean, or kBalanceTarget x indivisible_area where that is larger (below).
//   2. Else, in rounds with an allowance a (first kBalanceTarget x mean, then x kAllowanceStep per
//      round): every full-size chunk of area A > a is cut into p = min(m, ceil(A / a)) pieces (m =
//      chunk_tokens / tile_tokens) at the tile boundaries nearest equal area, heaviest chunks
//      first while enough lighter chunks remain to fill them. Each piece becomes a slot of
//      chunk_tokens tokens: the piece and, to complete it, rows of the fillers, the lightest other
//      chunks (p - 1 of them per chunk cut into p pieces). First the fillers' rows laid end to end,
//      each slot taking the next ones (the heaviest pieces the lightest rows; a filler is cut only
//      where a slot ends inside it); if that dispatch misses the goal, the fillers' tiles instead,
//      heaviest first, each onto the lightest slot with room (finer cuts of light chunks).
//   3. Dispatch the uncut chunks and the slots with the configured solver (equal counts per rank).
//   Rounds stop at the goal, or after kMaxSplitRounds; a dispatch is kept only if it lowers the
//   largest rank area, so the earliest, least cut one that reaches the goal wins. Finally,
//   neighbouring parts of one chunk that landed on the same rank are joined again.
//
// The contract with units of different sizes: the solver balances slots of chunk_tokens tokens
// (every rank floor or ceil(n / cp) of them, the short last chunk on a ceil rank, never cut), so a
// rank holds exactly the tokens the fixed-chunk dispatch gives it (counts differ by at most one
// chunk); its units are whole chunks and tile-aligned parts of chunks. Units stay ascending,
// consecutive and covering [0, S); each (q, k) pair lies in the rows of exactly one unit.
//
// Where the mask allows the target. No dispatch can put less than its largest indivisible piece
// on a rank: a tile of a full chunk, or a chunk no cut applies to (the short last one, or every
// chunk when chunk_tokens is not a multiple of tile_tokens or is below 2 x tile_tokens);
// `indivisible_area` reports it. The mask *allows* the target when
//     indivisible_area <= kBalanceTarget x mean / kAllowsDivisor;
// there the dispatch reaches imbalance <= kBalanceTarget (tested on random masks of the four slice
// types and on real-corpus packs at cp 256..4096: tests/core/plan/test_adaptive_dispatch.cpp; at
// a divisor of 2 random masks missed, up to 1.18 at cp 1024 with one chunk per rank, where every
// slot must fit a rank alone). Elsewhere it never does worse than the uncut chunks, and stays
// within 1.2x of max(target, indivisible / mean).
//
// Cost: every piece beyond a chunk's first puts its document's earlier keys on one more rank. The
// plan reports the zero-redundancy bytes of the same chunks uncut beside its own, keeps the chunks
// uncut when the cost model of overlap_degree auto estimates the cut plan slower (magi_plan.cpp;
// the plan says `cuts_declined`), and chunk_tokens `auto` weighs bytes against balance with the
// same model (core/plan/planner.h).
#pragma once

#include "core/plan/dispatch.h"

#include <cstdint>
#include <vector>

namespace magi {

// The forward kernel's query tile (kernels/cuda/flex_tiles.h, FlexTiles::rows: 128 rows at every
// head dim): a cut at a multiple of it never makes the kernel visit one tile from two ranks.
inline constexpr int64_t kSplitTileTokens = 128;
// The largest rank area adaptive dispatch aims for, as a multiple of the mean.
inline constexpr double kBalanceTarget = 1.05;
// Each round lowers the allowance (the area a heavy piece may carry) by this factor, at most
// kMaxSplitRounds times.
inline constexpr double kAllowanceStep = 0.75;
inline constexpr int kMaxSplitRounds = 12;
// See "allows" above.
inline constexpr double kAllowsDivisor = 4.0;

struct AdaptiveDispatch {
  RowPieces units;               // whole chunks and parts of cut ones, ascending, covering [0, S)
  std::vector<int> owner;        // per unit: its rank
  int64_t chunk_tokens = 0, tile_tokens = 0;
  int64_t split_chunks = 0;      // chunks in more than one unit (heavy ones and their fillers)
  int64_t indivisible_area = 0;  // the largest area no split can cut (see above)
  // The fixed-chunk dispatch it started from (the comparison the plan reports).
  RowPieces chunks;
  std::vector<int> chunk_owner;
};

// Adaptive dispatch of `mask` over [0, total_tokens) onto cp ranks. Deterministic.
AdaptiveDispatch adaptive_dispatch(const std::vector<AttnSlice>& mask, int64_t total_tokens,
                                   int64_t chunk_tokens, int cp, DispatchSolver solver,
                                   int64_t tile_tokens = kSplitTileTokens);

}  // namespace magi
