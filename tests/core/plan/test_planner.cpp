// Plans: coverage (each pair once), minimality of the comm plan, stage layouts, baselines' closed
// forms, skip reasons, the overlap degree a plan resolves.
#include "core/cost/cost_model.h"
#include "core/plan/comm_volume.h"
#include "core/plan/dispatch.h"
#include "core/plan/planner.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

#include <set>

#ifdef MAGI_TEST_HAVE_CATALOGUE
#include "core/mask/catalogue.h"
#endif

namespace magi {
namespace {

using testing::expect_covers_exactly;
using testing::make_case;
using testing::uniform;

// Minimality and layout of a magi plan against a dense oracle.
void expect_minimal_magi(const Plan& p, const std::vector<AttnSlice>& mask) {
  const int64_t S = p.total_tokens;
  const std::vector<uint8_t> m = testing::dense(mask, S);
  std::vector<int> owner(static_cast<size_t>(S), -1);
  for (const RankPlan& rk : p.ranks) {
    for (const Range& r : rk.q_ranges) {
      for (int64_t t = r.start; t < r.end; ++t) {
        ASSERT_EQ(owner[static_cast<size_t>(t)], -1) << "token hosted twice";
        owner[static_cast<size_t>(t)] = rk.rank;
      }
    }
  }
  for (int o : owner) ASSERT_GE(o, 0) << "token hosted nowhere";
  int64_t remote_sum = 0;
  for (const RankPlan& rk : p.ranks) {
    // Keys the rank's rows need, minus its own.
    std::vector<Range> need;
    for (const Range& r : rk.q_ranges) {
      for (int64_t q = r.start; q < r.end; ++q) {
        for (int64_t k = 0; k < S; ++k) {
          if (m[static_cast<size_t>(q * S + k)] && owner[static_cast<size_t>(k)] != rk.rank) need.push_back({k, k + 1});
        }
      }
    }
    need = merge_ranges(need);
    EXPECT_EQ(rk.remote_kv_ranges, need) << "rank " << rk.rank;
    remote_sum += total_size(need);
    // What it receives: each token once, only tokens it needs, each from its owner.
    std::vector<Range> got;
    for (const Transfer& t : p.transfers) {
      if (t.dst != rk.rank) continue;
      EXPECT_NE(t.src, t.dst);
      EXPECT_EQ(t.tokens, total_size(t.ranges));
      EXPECT_GT(t.tokens, 0);
      for (const Range& r : t.ranges) {
        for (int64_t k = r.start; k < r.end; ++k) EXPECT_EQ(owner[static_cast<size_t>(k)], t.src);
        got.push_back(r);
      }
    }
    EXPECT_EQ(total_size(got), total_size(need)) << "rank " << rk.rank << " receives a token twice";
    EXPECT_EQ(merge_ranges(got), need);
    // Stage layouts: stage 0 = host; stage s = its transfers' ranges, sources ascending. At cp 1
    // with an explicit degree: one contiguous run of the host buffer per stage, in order.
    ASSERT_EQ(rk.stages.size(), static_cast<size_t>(p.overlap_degree) + 1);
    if (p.cp == 1 && p.overlap_degree > 0) {
      int64_t next = 0;
      for (const Stage& st : rk.stages) {
        ASSERT_EQ(st.kv_ranges.size(), 1u);
        EXPECT_EQ(st.kv_ranges[0].start, next);
        EXPECT_FALSE(st.kv_ranges[0].empty());
        next = st.kv_ranges[0].end;
      }
      EXPECT_EQ(next, rk.tokens);
      EXPECT_TRUE(p.transfers.empty());
    } else {
      EXPECT_EQ(rk.stages[0].kv_ranges, rk.q_ranges);
    }
    for (size_t s = 1; s < rk.stages.size() && p.cp > 1; ++s) {
      std::vector<Range> layout;
      int last_src = -1;
      for (const Transfer& t : p.transfers) {
        if (t.dst != rk.rank || t.stage != static_cast<int>(s)) continue;
        EXPECT_GT(t.src, last_src);
        last_src = t.src;
        for (size_t i = 1; i < t.ranges.size(); ++i) EXPECT_LT(t.ranges[i - 1].end, t.ranges[i].start);
        layout.insert(layout.end(), t.ranges.begin(), t.ranges.end());
      }
      EXPECT_EQ(rk.stages[s].kv_ranges, layout) << "rank " << rk.rank << " stage " << s;
    }
    int64_t area = 0;
    for (const Stage& st : rk.stages) {
      int64_t a = 0;
      for (const AttnSlice& x : st.slices) a += slice_area(x);
      EXPECT_EQ(a, st.area);
      area += a;
    }
    EXPECT_EQ(area, rk.area);
  }
  const int64_t kv = kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype));
  EXPECT_EQ(p.volume.fwd_bytes, remote_sum * kv);
  EXPECT_EQ(p.zero_redundancy_bound.fwd_bytes, remote_sum * kv);
  EXPECT_EQ(p.volume.bwd_bytes, 2 * remote_sum * kv);
  int64_t sent = 0, recv = 0;
  for (const RankPlan& rk : p.ranks) sent += rk.send_bytes_fwd, recv += rk.recv_bytes_fwd;
  EXPECT_EQ(sent, p.volume.fwd_bytes);
  EXPECT_EQ(recv, p.volume.fwd_bytes);
}

TEST(Plan, CoverageRandomMasksAllStrategiesCp1To16) {
  std::mt19937_64 rng(testing::test_seed("Plan.CoverageRandomMasksAllStrategiesCp1To16", 21));
  for (int iter = 0; iter < 25; ++iter) {
    for (int cp = 1; cp <= 16; ++cp) {
      const int64_t chunk = uniform(rng, 1, 8);
      const int64_t S = uniform(rng, std::max<int64_t>(cp * chunk, 2 * cp), 160);
      const auto mask = testing::random_mask(rng, S);
      for (Strategy st : {Strategy::magi, Strategy::ring, Strategy::allgather, Strategy::ulysses}) {
        const int degree = static_cast<int>(uniform(rng, 0, 4));
        const auto solver = uniform(rng, 0, 1) ? DispatchSolver::refine : DispatchSolver::greedy;
        const Plan p = build_plan(mask, make_case(S, cp, chunk, st, degree, solver));
        if (st == Strategy::ulysses && 8 % cp != 0) {  // heads 16:8
          EXPECT_TRUE(p.skipped);
          EXPECT_FALSE(p.skip_reason.empty());
          continue;
        }
        ASSERT_FALSE(p.skipped) << p.skip_reason;
        EXPECT_EQ(p.total_area, mask_area(mask));
        expect_covers_exactly(p, mask);
        if (st == Strategy::magi) expect_minimal_magi(p, mask);
        EXPECT_LE(p.max_rank_tokens - p.min_rank_tokens, st == Strategy::magi ? chunk : 2);
      }
    }
  }
}

TEST(Plan, VarlenCausalCoverageAndMinimality) {
  std::mt19937_64 rng(testing::test_seed("Plan.VarlenCausalCoverageAndMinimality", 22));
  for (int cp : {1, 2, 3, 5, 8, 16}) {
    const int64_t S = 256;
    std::vector<int64_t> docs;
    for (int64_t t = 0; t < S;) {
      const int64_t len = std::min(S - t, uniform(rng, 1, 90));
      docs.push_back(len);
      t += len;
    }
    const auto mask = testing::varlen_causal(docs);
    const Plan p = build_plan(mask, make_case(S, cp, 8, Strategy::magi, 0));
    expect_covers_exactly(p, mask);
    expect_minimal_magi(p, mask);
  }
}

TEST(Plan, ShortLastChunkReported) {
  const std::vector<AttnSlice> mask{{{0, 100}, {0, 100}, SliceType::causal}};
  const Plan p = build_plan(mask, make_case(100, 3, 16));  // 7 chunks, the last of 4 tokens
  EXPECT_TRUE(p.short_last_unit);
  EXPECT_EQ(p.num_units, 7);
  EXPECT_LE(p.max_rank_tokens - p.min_rank_tokens, 16);
  expect_covers_exactly(p, mask);
}

TEST(Plan, RingClosedFormAndSkippedSteps) {
  // Varlen causal with short documents: most ring steps see fully masked blocks.
  std::vector<AttnSlice> mask;
  for (int64_t t = 0; t < 512; t += 32) mask.push_back({{t, t + 32}, {t, t + 32}, SliceType::causal});
  for (int cp : {1, 2, 4, 8}) {
    const Case c = make_case(512, cp, 16, Strategy::ring);
    const Plan p = build_plan(mask, c);
    ASSERT_FALSE(p.skipped);
    expect_covers_exactly(p, mask);
    const int64_t kv = kv_bytes_per_token(c.model, dtype_bytes(c.model.dtype));
    EXPECT_EQ(p.volume.fwd_bytes, (cp - 1) * 512 * kv);
    EXPECT_EQ(p.volume.bwd_bytes, cp > 1 ? (2 * cp - 1) * 512 * kv : 0);  // nothing moves on one rank
    int64_t moved = 0;
    for (const Transfer& t : p.transfers) {
      moved += t.tokens;
      EXPECT_EQ(t.src, (t.dst - 1 + cp) % cp);
      EXPECT_EQ(t.ranges, p.ranks[static_cast<size_t>((t.dst - t.stage + cp) % cp)].q_ranges);
    }
    EXPECT_EQ(moved * kv, p.volume.fwd_bytes);
    int skipped = 0;
    for (const RankPlan& rk : p.ranks) {
      EXPECT_EQ(rk.stages.size(), static_cast<size_t>(cp));
      for (const Stage& st : rk.stages) skipped += st.slices.empty() && st.area == 0 ? 1 : 0;
    }
    if (cp >= 4) {
      EXPECT_GT(skipped, 0);  // fully masked steps carry no slices
    }
  }
  // Zigzag balances causal exactly up to rounding.
  const std::vector<AttnSlice> causal{{{0, 1024}, {0, 1024}, SliceType::causal}};
  const Plan ring = build_plan(causal, make_case(1024, 8, 16, Strategy::ring));
  EXPECT_LT(ring.imbalance, 1.01);
}

TEST(Plan, UlyssesClosedFormAndRefusals) {
  const std::vector<AttnSlice> mask{{{0, 96}, {0, 96}, SliceType::causal}, {{96, 128}, {0, 128}, SliceType::full}};
  for (int cp : {1, 2, 4, 8}) {
    Case c = make_case(128, cp, 8, Strategy::ulysses);
    c.model = ModelShape{32, 8, 64, DType::fp16};
    const Plan p = build_plan(mask, c);
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    const int64_t b = 2, D = 64, Hq = 32, Hkv = 8, P = cp;
    EXPECT_EQ(p.volume.fwd_bytes, 128 * (P - 1) * (2 * Hq + 2 * Hkv) / P * D * b);
    int64_t sent = 0;
    for (const RankPlan& rk : p.ranks) sent += rk.send_bytes_fwd;
    EXPECT_EQ(sent, p.volume.fwd_bytes);
    EXPECT_EQ(p.total_area, mask_area(mask));
    for (const RankPlan& rk : p.ranks) {
      EXPECT_EQ(rk.head_end - rk.head_begin, 32 / cp);
      EXPECT_EQ(rk.head_begin, rk.rank * 32 / cp);
      ASSERT_EQ(rk.stages.size(), 1u);
      EXPECT_EQ(rk.stages[0].kv_ranges, (std::vector<Range>{{0, 128}}));
    }
    expect_covers_exactly(p, mask);
  }
  Case c = make_case(128, 16, 8, Strategy::ulysses);  // heads_kv = 8 < 16
  Plan p = build_plan(mask, c);
  EXPECT_TRUE(p.skipped);
  EXPECT_NE(p.skip_reason.find("heads_kv"), std::string::npos) << p.skip_reason;
  c = make_case(128, 3, 8, Strategy::ulysses);
  c.model = ModelShape{12, 6, 64, DType::bf16};
  c.model.heads_q = 16;  // 16 % 3 != 0 but 6 % 3 == 0
  p = build_plan(mask, c);
  EXPECT_TRUE(p.skipped);
  EXPECT_NE(p.skip_reason.find("heads_q"), std::string::npos) << p.skip_reason;
}

TEST(Plan, AllgatherClosedForm) {
  const std::vector<AttnSlice> mask{{{0, 200}, {0, 200}, SliceType::causal}};
  for (int cp : {1, 2, 5}) {
    const Case c = make_case(200, cp, 8, Strategy::allgather);
    const Plan p = build_plan(mask, c);
    const int64_t kv = kv_bytes_per_token(c.model, dtype_bytes(c.model.dtype));
    EXPECT_EQ(p.volume.fwd_bytes, (cp - 1) * 200 * kv);
    int64_t moved = 0;
    for (const Transfer& t : p.transfers) moved += t.tokens;
    EXPECT_EQ(moved * kv, p.volume.fwd_bytes);
    expect_covers_exactly(p, mask);
  }
}

TEST(Plan, MagiNeverMovesMoreThanRingOrAllgather) {
  std::mt19937_64 rng(testing::test_seed("Plan.MagiNeverMovesMoreThanRingOrAllgather", 23));
  for (int i = 0; i < 30; ++i) {
    const int cp = static_cast<int>(uniform(rng, 2, 8));
    const int64_t S = uniform(rng, 8 * cp, 200);
    const auto mask = testing::random_mask(rng, S);
    const auto all = compare_strategies(mask, make_case(S, cp, 4));
    ASSERT_EQ(all.size(), 4u);
    EXPECT_LE(all[0].volume.fwd_bytes, all[1].volume.fwd_bytes);  // magi <= ring
    EXPECT_LE(all[0].volume.fwd_bytes, all[3].volume.fwd_bytes);  // magi <= allgather
  }
}

// Full slices are merged in local coordinates: a full mask needs one slice per stage.
TEST(Plan, FullSlicesCoalesced) {
  const std::vector<AttnSlice> mask{{{0, 256}, {0, 256}, SliceType::full}};
  for (int cp : {2, 4, 8}) {
    const Plan p = build_plan(mask, make_case(256, cp, 4, Strategy::magi, 2));
    expect_covers_exactly(p, mask);
    for (const RankPlan& rk : p.ranks) {
      for (const Stage& st : rk.stages) EXPECT_LE(st.slices.size(), 1u);
    }
  }
}

TEST(Plan, EmptyMask) {
  for (Strategy st : {Strategy::magi, Strategy::ring, Strategy::allgather, Strategy::ulysses}) {
    const Plan p = build_plan({}, make_case(64, 4, 8, st));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    EXPECT_EQ(p.total_area, 0);
    EXPECT_EQ(p.imbalance, 1.0);
    if (st == Strategy::magi) {
      EXPECT_EQ(p.overlap_degree, 0);
      EXPECT_EQ(p.volume.fwd_bytes, 0);
      EXPECT_TRUE(p.transfers.empty());
    }
    for (const RankPlan& rk : p.ranks) {
      for (const Stage& st2 : rk.stages) EXPECT_TRUE(st2.slices.empty());
    }
  }
}

TEST(Plan, SkipsWhenFewerChunksThanRanks) {
  const std::vector<AttnSlice> mask{{{0, 64}, {0, 64}, SliceType::causal}};
  const Plan p = build_plan(mask, make_case(64, 16, 8));
  EXPECT_TRUE(p.skipped);
  EXPECT_NE(p.skip_reason.find("fewer chunks than ranks"), std::string::npos);
}

TEST(Overlap, AutoPlanResolvesDegree) {
  const std::vector<AttnSlice> mask{{{0, 512}, {0, 512}, SliceType::causal}};
  const Plan p = build_plan(mask, make_case(512, 4, 16, Strategy::magi, 0));
  EXPECT_GE(p.overlap_degree, 1);
  EXPECT_LE(p.overlap_degree, kMaxOverlapDegree);
  const Plan one = build_plan(mask, make_case(512, 1, 16, Strategy::magi, 0));
  EXPECT_EQ(one.overlap_degree, 0);  // nothing remote
  EXPECT_EQ(one.ranks[0].stages.size(), 1u);
}

// The stages' key ranges of a cp 1 plan, as cut points {0, ..., tokens}.
std::vector<int64_t> local_cuts(const Plan& p) {
  std::vector<int64_t> cuts{0};
  for (const Stage& st : p.ranks[0].stages) {
    EXPECT_EQ(st.kv_ranges.size(), 1u);
    EXPECT_EQ(st.kv_ranges.front().start, cuts.back());
    cuts.push_back(st.kv_ranges.front().end);
  }
  return cuts;
}

TEST(Overlap, ExplicitDegreeAtCp1CutsTheKeysIntoLocalStages) {
  const std::vector<AttnSlice> mask{{{0, 512}, {0, 512}, SliceType::causal}};
  // Nearly equal stages, cut at the nearest multiple of the kernel's 128-key tile.
  const std::vector<std::vector<int64_t>> want{{0, 256, 512}, {0, 128, 384, 512}, {0, 128, 256, 384, 512}};
  for (int degree : {1, 2, 3}) {
    const Plan p = build_plan(mask, make_case(512, 1, 16, Strategy::magi, degree));
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    EXPECT_EQ(p.overlap_degree, degree);
    ASSERT_EQ(p.ranks[0].stages.size(), static_cast<size_t>(degree) + 1);
    EXPECT_EQ(local_cuts(p), want[static_cast<size_t>(degree) - 1]) << "degree " << degree;
    EXPECT_TRUE(p.transfers.empty());
    EXPECT_EQ(p.volume.fwd_bytes, 0);
    testing::expect_covers_exactly(p, mask);
  }
  // A short last stage is fine; cuts that tiles would merge stay where the shares end, and there
  // are no more stages than keys.
  const std::vector<AttnSlice> s300{{{0, 300}, {0, 300}, SliceType::causal}};
  EXPECT_EQ(local_cuts(build_plan(s300, make_case(300, 1, 16, Strategy::magi, 2))), (std::vector<int64_t>{0, 128, 256, 300}));
  const std::vector<AttnSlice> s200{{{0, 200}, {0, 200}, SliceType::causal}};
  EXPECT_EQ(local_cuts(build_plan(s200, make_case(200, 1, 16, Strategy::magi, 2))), (std::vector<int64_t>{0, 66, 133, 200}));
  const std::vector<AttnSlice> tiny{{{0, 3}, {0, 3}, SliceType::full}};
  EXPECT_EQ(local_cuts(build_plan(tiny, make_case(3, 1, 1, Strategy::magi, 4))), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(Overlap, LocalStageCutsFollowTheDocumentTheyFallIn) {
  // Documents [0, 100), [100, 700), [700, 1000): an equal cut moves to the document end nearest it
  // between the cut before and the next equal cut, where no row is split.
  const std::vector<AttnSlice> docs{{{0, 100}, {0, 100}, SliceType::causal},
                                    {{100, 700}, {100, 700}, SliceType::causal},
                                    {{700, 1000}, {700, 1000}, SliceType::causal}};
  EXPECT_EQ(local_cuts(build_plan(docs, make_case(1000, 1, 16, Strategy::magi, 1))), (std::vector<int64_t>{0, 700, 1000}));
  const Plan three = build_plan(docs, make_case(1000, 1, 16, Strategy::magi, 2));
  EXPECT_EQ(local_cuts(three), (std::vector<int64_t>{0, 100, 700, 1000}));
  testing::expect_covers_exactly(three, docs);
  // Two document ends for three cuts: the last stays inside the last document, where its tile
  // boundary (700 + 128 k) would leave the stage before it no keys.
  const Plan four = build_plan(docs, make_case(1000, 1, 16, Strategy::magi, 3));
  EXPECT_EQ(local_cuts(four), (std::vector<int64_t>{0, 100, 700, 750, 1000}));
  testing::expect_covers_exactly(four, docs);
  const std::vector<AttnSlice> halves{{{0, 500}, {0, 500}, SliceType::causal}, {{500, 1000}, {500, 1000}, SliceType::causal}};
  EXPECT_EQ(local_cuts(build_plan(halves, make_case(1000, 1, 16, Strategy::magi, 1))), (std::vector<int64_t>{0, 500, 1000}));
  // A slice boundary that every row sees across (two slices side by side in the keys) splits as
  // many rows as the equal cut: the cut does not move there.
  const std::vector<AttnSlice> side{{{0, 1000}, {0, 300}, SliceType::full}, {{0, 1000}, {300, 1000}, SliceType::full}};
  EXPECT_EQ(local_cuts(build_plan(side, make_case(1000, 1, 16, Strategy::magi, 1))), (std::vector<int64_t>{0, 556, 1000}));
  // A shared question [0, 100) seen by documents [100, 600) and [600, 1000): the cut at 500 splits
  // 500 rows (100 of the first document, all of the second), the document end at 600 the 400 of the
  // second, the question's end at 100 all 900.
  const std::vector<AttnSlice> question{{{0, 100}, {0, 100}, SliceType::causal},
                                        {{100, 600}, {0, 100}, SliceType::full},
                                        {{100, 600}, {100, 600}, SliceType::causal},
                                        {{600, 1000}, {0, 100}, SliceType::full},
                                        {{600, 1000}, {600, 1000}, SliceType::causal}};
  EXPECT_EQ(local_cuts(build_plan(question, make_case(1000, 1, 16, Strategy::magi, 1))), (std::vector<int64_t>{0, 600, 1000}));
  // Only the 32 boundaries nearest the equal cut are counted: rows [0, 600) see their keys in
  // slices of 5 side by side, so the 39 boundaries nearer 500 than the document end at 600 each
  // split those 600 rows; the one at 600 splits none and is beyond the search. With the document
  // end 15 keys away, the cut moves there.
  for (const int64_t doc : {600, 515}) {
    std::vector<AttnSlice> strips;
    for (int64_t k = 0; k < doc; k += 5) strips.push_back({{0, doc}, {k, std::min(k + 5, doc)}, SliceType::full});
    strips.push_back({{doc, 1000}, {doc, 1000}, SliceType::causal});
    EXPECT_EQ(local_cuts(build_plan(strips, make_case(1000, 1, 16, Strategy::magi, 1))),
              (std::vector<int64_t>{0, doc == 600 ? 500 : 515, 1000}))
        << "document end at " << doc;
  }
}

#ifdef MAGI_TEST_HAVE_CATALOGUE
TEST(Plan, CoverageCatalogueMasks) {
  const int64_t S = 160;
  const std::vector<int64_t> docs{30, 7, 50, 1, 22, 50};
  for (const std::string& type : mask_types()) {
    if (type == "slices") continue;
    MaskSpec spec;
    spec.type = type;
    if (type.find("sliding_window") != std::string::npos) spec.window = 9;
    if (type == "sink_sliding_window") spec.sink_tokens = 4;
    if (type.find("block_causal") != std::string::npos) spec.block_tokens = 12;
    if (type == "shared_question") spec.question_tokens = 30;
    if (type == "prefix_lm") spec.prefix_tokens = 40;
    std::vector<int64_t> d = mask_uses_documents(type) ? docs : std::vector<int64_t>{S};
    if (type == "shared_question") d = docs;
    const std::vector<AttnSlice> mask = build_mask(spec, S, d);
    for (int cp = 1; cp <= 16; ++cp) {
      for (Strategy st : {Strategy::magi, Strategy::ring, Strategy::allgather, Strategy::ulysses}) {
        SCOPED_TRACE(type + " cp " + std::to_string(cp) + " " + std::string(to_string(st)));
        const Plan p = build_plan(mask, make_case(S, cp, 5, st));
        if (st == Strategy::ulysses && 8 % cp != 0) {  // heads 16:8
          EXPECT_TRUE(p.skipped);
          continue;
        }
        ASSERT_FALSE(p.skipped) << p.skip_reason;
        expect_covers_exactly(p, mask);
        if (st == Strategy::magi) expect_minimal_magi(p, mask);
      }
    }
  }
}
#endif

}  // namespace
}  // namespace magi
