// The simulator's tile and item counts against the CUDA kernels' own work lists
// (kernels/common/flex_work_list.h), on every catalogue mask, ragged documents, both head dims'
// tiles and GQA; and the overlap schedule's worked example from docs/simulation.md.
#include "core/cost/overlap_schedule.h"
#include "core/sim/kernel_work.h"

#include "common/flex_work_list.h"
#include "common/row_pieces.h"
#include "cuda/flex_tiles.h"
#include "kernels/catalogue_slices.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

std::vector<AttnSlice> from_kernel(const std::vector<kernels::KernelSlice>& ks) {
  std::vector<AttnSlice> out;
  for (const kernels::KernelSlice& s : ks) {
    out.push_back(AttnSlice{Range{s.q_start, s.q_end}, Range{s.k_start, s.k_end},
                            static_cast<SliceType>(static_cast<int>(s.type))});
  }
  return out;
}

TEST(KernelWork, MatchesTheKernelWorkListsOnEveryCatalogueMask) {
  const int64_t S = 1999;  // ragged: no tile divides it
  const std::vector<int64_t> docs{700, 1, 333, 128, 837};
  for (int d : {64, 128}) {
    const kernels::flex::TileShape ts = kernels::cuda::flex_work_list_tiles(d);
    const KernelTiles t{ts.fwd_bm, ts.fwd_bn, ts.bwd_bm, ts.bwd_bn};
    for (const auto& [hq, hkv] : {std::pair{4, 4}, std::pair{8, 2}}) {
      for (const auto& c : kernels::testing::catalogue_cases(S, docs)) {
        const kernels::AttnShape shape{S, S, hq, hkv, d};
        const kernels::flex::WorkLists wl = kernels::flex::build_work_lists(shape, c.slices.data(), c.slices.size(), ts, 132);
        const KernelWork w = count_kernel_work(from_kernel(c.slices), t);
        SCOPED_TRACE(c.type + " d " + std::to_string(d) + " hq " + std::to_string(hq) + " hkv " + std::to_string(hkv));
        EXPECT_EQ(w.area, wl.stats.area);
        EXPECT_EQ(w.fwd_tiles * hq, wl.stats.forward_tiles);
        EXPECT_EQ(w.bwd_tiles * hq, wl.stats.backward_tiles);
        int64_t fwd_items = 0, bwd_items = 0;
        for (const auto& it : wl.fwd_items) fwd_items += it.ntiles > 0;
        for (const auto& it : wl.bwd_items) bwd_items += it.ntiles > 0;
        EXPECT_EQ(w.fwd_items * hq, fwd_items);
        EXPECT_EQ(w.bwd_items * hkv, bwd_items);
      }
    }
  }
}

// A stage's list cuts a document into row pieces at chunk boundaries; the forward joins them
// (common/row_runs.h), the backward walks them, and the counts follow both.
TEST(KernelWork, CountsTheForwardOverJoinedRowPieces) {
  const int64_t S = 4096;
  const std::vector<kernels::KernelSlice> pieces = magi::testing::causal_row_pieces(300, 3900, 512);
  const kernels::flex::TileShape ts = kernels::cuda::flex_work_list_tiles(128);
  const KernelTiles t{ts.fwd_bm, ts.fwd_bn, ts.bwd_bm, ts.bwd_bn};
  const kernels::AttnShape shape{S, S, 2, 2, 128};
  const kernels::flex::WorkLists wl = kernels::flex::build_work_lists(shape, pieces.data(), pieces.size(), ts, 132);
  const KernelWork w = count_kernel_work(from_kernel(pieces), t);
  const KernelWork whole = count_kernel_work({{{300, 3900}, {300, 3900}, SliceType::causal}}, t);
  EXPECT_EQ(w.fwd_tiles, whole.fwd_tiles);
  EXPECT_EQ(w.fwd_items, whole.fwd_items);
  EXPECT_EQ(w.fwd_tiles * 2, wl.stats.forward_tiles);
  EXPECT_EQ(w.bwd_tiles * 2, wl.stats.backward_tiles);
}

TEST(KernelWork, OneByOneTilesArePairsAndRows) {
  const std::vector<AttnSlice> mask{{{0, 100}, {0, 100}, SliceType::causal}, {{100, 150}, {100, 200}, SliceType::full}};
  const KernelWork w = count_kernel_work(mask, KernelTiles{1, 1, 1, 1});
  EXPECT_EQ(w.fwd_tiles, 5050 + 50 * 100);
  EXPECT_EQ(w.area, w.fwd_tiles);
  EXPECT_EQ(w.bwd_tiles, w.area);
  EXPECT_EQ(w.fwd_items, 150);
  EXPECT_EQ(w.bwd_items, 200);
}

// docs/simulation.md, "The schedule": host 1 ms; stage 1 computes 2 ms after a 3 ms transfer;
// stage 2 computes 2 ms after a 1 ms transfer; GroupReduce returns take as long as the transfers.
TEST(OverlapSchedule, WorkedExample) {
  const std::vector<StageTime> st{{1, 0, 0}, {2, 3, 3}, {2, 1, 1}};
  const ScheduleTime f = forward_schedule(st);
  EXPECT_DOUBLE_EQ(f.total_s, 7);  // stage 1 waits to 3, computes to 5; stage 2 (arrived at 4) to 7
  EXPECT_DOUBLE_EQ(f.compute_s, 5);
  EXPECT_DOUBLE_EQ(f.exposed_s, 2);
  const ScheduleTime b = backward_schedule(st);
  EXPECT_DOUBLE_EQ(b.total_s, 9);  // reduce 1 on the link 5 -> 8, reduce 2 queued 8 -> 9
  EXPECT_DOUBLE_EQ(b.exposed_s, 4);
}

TEST(OverlapSchedule, ZeroCommIsPureCompute) {
  const std::vector<StageTime> st{{1.5, 0, 0}, {2, 0, 0}, {0.25, 0, 0}};
  EXPECT_DOUBLE_EQ(forward_schedule(st).total_s, 3.75);
  EXPECT_DOUBLE_EQ(backward_schedule(st).total_s, 3.75);
  EXPECT_DOUBLE_EQ(forward_schedule(st).exposed_s, 0);
}

}  // namespace
}  // namespace magi
