// Adaptive dispatch (DESIGN.md §3): magi's chunks, with the chunks too heavy for balance cut into
// kernel tiles.
//
// A fixed chunk size cannot balance a mask whose area sits in a few chunks: at cp 1024 on 1M
// tokens of the real corpus one 512-token chunk of a 191,632-token document holds 4.5x a rank's
// mean area. Cutting every chunk finer balances it but moves more K/V (neighbouring rows land on
// different ranks and fetch each other's keys). So only where balance needs it:
//
//   1. Dispatch the chunks (dispatch.h). Done if the largest rank area <= kBalanceTarget x mean.
//   2. Else cut every full-size chunk whose area exceeds a threshold (first kBalanceTarget x mean,
//      halved each round) into tiles of `tile_tokens` rows, and with each as many of the lightest
//      other chunks as it has tiles minus one (fillers). The tiles of these chunks are regrouped
//      into slots of chunk_tokens tokens, one tile per slot heaviest first, then the rest
//      longest-processing-time onto the lightest slot (assign_greedy with m tiles per slot), so a
//      heavy tile shares its slot with light filler tiles rather than with its heavy neighbours.
//   3. Dispatch the unsplit chunks and the slots as before (equal counts per rank).
//   Rounds stop at the target, when no further chunk can be cut, or after kMaxSplitRounds; the
//   round with the smallest largest rank area is kept (ties: the earlier round, fewer cuts).
//
// The contract with units of different sizes: the solver still balances *slots* of chunk_tokens
// tokens (every rank floor or ceil(n / cp) of them, the short last chunk on a ceil rank, never
// cut), so a rank holds exactly the tokens the fixed-chunk dispatch gives it (counts differ by at
// most one chunk), and it balances their area; a rank's units (whole chunks and single tiles) are
// then any sizes from tile_tokens to chunk_tokens. Units stay ascending, consecutive and covering
// [0, S); each (q, k) pair lies in the rows of exactly one unit.
//
// Where balance is out of reach: no dispatch can put less than its largest indivisible piece on
// one rank, a tile of a cut chunk or a chunk that cannot be cut (the short last one, or all of them
// when chunk_tokens is not a multiple of tile_tokens or is below 2 x tile_tokens).
// `indivisible_area` reports it. The mask "allows" the target when indivisible_area <=
// kBalanceTarget x mean / 4; there the cut dispatch reaches it. Elsewhere it stays within 1.2x of
// max(target, indivisible / mean) and never above the uncut dispatch (tested on random masks at cp
// 256..4096 in tests/core/plan/test_adaptive_dispatch.cpp): tiles are grouped into slots before
// slots are dispatched, and that two-level grouping, not the tile, limits masks whose tiles are
// 0.3-0.5 x mean (measured up to 1.10).
//
// Cost: cut chunks spread a long document's rows over more ranks, each of which then fetches the
// document's earlier keys: the zero-redundancy bytes grow (3.1x at cp 1024 on the real-corpus 1M
// pack, for imbalance 4.52 -> 1.17), and so do the plan's messages. chunk_tokens `auto` weighs
// this against the balance with the cost model (core/plan/planner.h).
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
inline constexpr int kMaxSplitRounds = 8;

struct AdaptiveDispatch {
  RowPieces units;               // whole chunks and tiles, ascending, covering [0, S)
  std::vector<int> owner;        // per unit: its rank
  int64_t chunk_tokens = 0, tile_tokens = 0;
  int64_t split_chunks = 0;      // chunks cut into tiles (heavy ones and their fillers)
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
