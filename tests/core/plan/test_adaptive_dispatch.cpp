// Adaptive dispatch (core/plan/adaptive_dispatch.h) and chunk_tokens auto (core/plan/planner.h):
// cut units cover each pair once, tokens per rank stay those of the fixed chunks, balance where the
// mask allows it at cp 256..4096, determinism, the report against the uncut chunks, and auto
// following the cost model.
#include "core/plan/adaptive_dispatch.h"
#include "core/cost/cost_model.h"
#include "core/plan/comm_volume.h"
#include "core/plan/plan_json.h"
#include "core/plan/planner.h"

#include "common/test_seed.h"
#include "plan_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <numeric>
#include <utility>

namespace magi {
namespace {

using testing::make_case;
using testing::uniform;

std::vector<int64_t> rank_loads(const std::vector<int64_t>& areas, const std::vector<int>& owner, int cp) {
  std::vector<int64_t> load(static_cast<size_t>(cp), 0);
  for (size_t u = 0; u < owner.size(); ++u) load[static_cast<size_t>(owner[u])] += areas[u];
  return load;
}

std::vector<int64_t> rank_tokens(const std::vector<Range>& units, const std::vector<int>& owner, int cp) {
  std::vector<int64_t> tokens(static_cast<size_t>(cp), 0);
  for (size_t u = 0; u < owner.size(); ++u) tokens[static_cast<size_t>(owner[u])] += units[u].size();
  return tokens;
}

// A pack whose area sits in one long causal document at the end (the shape that defeats fixed
// chunks), the rest short causal documents.
std::vector<AttnSlice> heavy_tail_mask(std::mt19937_64& rng, int64_t S, int64_t long_doc) {
  std::vector<int64_t> docs;
  for (int64_t t = 0; t < S - long_doc;) {
    const int64_t len = std::min(S - long_doc - t, uniform(rng, 1, 40));
    docs.push_back(len);
    t += len;
  }
  docs.push_back(long_doc);
  return testing::varlen_causal(docs);
}

// Everything adaptive_dispatch promises about its units, for any tile: ascending, consecutive,
// covering [0, S); whole chunks or tile-aligned parts of one full chunk (the short last chunk never
// cut), split_chunks the chunks in more than one unit; every pair of the mask in exactly one unit's
// pieces, inside its rows; tokens per rank those of the fixed-chunk dispatch (a slot count times
// chunk_tokens, the short chunk on a rank with the ceil).
void expect_valid(const AdaptiveDispatch& d, const std::vector<AttnSlice>& mask, int64_t S, int cp) {
  const std::vector<Range>& units = d.units.units;
  ASSERT_EQ(d.owner.size(), units.size());
  ASSERT_FALSE(units.empty());
  EXPECT_EQ(units.front().start, 0);
  EXPECT_EQ(units.back().end, S);
  const int64_t c = d.chunk_tokens;
  std::vector<int> parts(static_cast<size_t>((S + c - 1) / c), 0);
  for (size_t u = 0; u < units.size(); ++u) {
    if (u > 0) {
      EXPECT_EQ(units[u].start, units[u - 1].end);
    }
    const int64_t chunk = units[u].start / c;
    ++parts[static_cast<size_t>(chunk)];
    const bool whole = units[u].start % c == 0 && (units[u].size() == c || units[u].end == S);
    const bool part = units[u].start % d.tile_tokens == 0 && units[u].end % d.tile_tokens == 0 &&
                      units[u].size() < c && (units[u].end - 1) / c == chunk && chunk < S / c;
    EXPECT_TRUE(whole || part) << fmt::format("unit {}", units[u]);
    ASSERT_GE(d.owner[u], 0);
    ASSERT_LT(d.owner[u], cp);
    if (u > 0 && units[u - 1].start / c == chunk) {
      EXPECT_NE(d.owner[u], d.owner[u - 1]) << fmt::format("neighbouring parts of one chunk on one rank: {}", units[u]);
    }
    for (size_t i = d.units.offsets[u]; i < d.units.offsets[u + 1]; ++i) {
      EXPECT_GE(d.units.pieces[i].q.start, units[u].start);
      EXPECT_LE(d.units.pieces[i].q.end, units[u].end);
    }
  }
  EXPECT_EQ(std::count_if(parts.begin(), parts.end(), [](int x) { return x > 1; }), d.split_chunks);
  EXPECT_EQ(testing::dense(d.units.pieces, S), testing::dense(mask, S));
  const std::vector<int64_t> fixed = rank_tokens(d.chunks.units, d.chunk_owner, cp);
  std::vector<int64_t> got = rank_tokens(units, d.owner, cp);
  std::vector<int64_t> want = fixed;
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want) << "tokens per rank differ from the fixed-chunk dispatch's";
}

TEST(AdaptiveDispatch, CutUnitsCoverEachPairOnceAndKeepTokens) {
  std::mt19937_64 rng(testing::test_seed("AdaptiveDispatch.CutUnitsCoverEachPairOnceAndKeepTokens", 31));
  int with_cuts = 0;
  for (int i = 0; i < 300; ++i) {
    const int64_t tile = uniform(rng, 1, 4);
    const int64_t chunk = tile * uniform(rng, 1, 4);
    const int cp = static_cast<int>(uniform(rng, 1, 8));
    const int64_t S = uniform(rng, cp * chunk, 240);
    const auto mask = uniform(rng, 0, 1) ? testing::random_mask(rng, S)
                                         : heavy_tail_mask(rng, S, uniform(rng, S / 4, S / 2 + 1));
    const auto solver = uniform(rng, 0, 1) ? DispatchSolver::refine : DispatchSolver::greedy;
    const AdaptiveDispatch d = adaptive_dispatch(mask, S, chunk, cp, solver, tile);
    expect_valid(d, mask, S, cp);
    with_cuts += d.split_chunks > 0 ? 1 : 0;
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "S " << S << " cp " << cp << " chunk " << chunk << " tile " << tile;
      return;
    }
  }
  std::printf("[adaptive] %d of 300 dispatches cut chunks\n", with_cuts);
  EXPECT_GT(with_cuts, 20);  // the property is exercised on cut dispatches, not only on uncut ones
}

// At the real tile (128 rows) through the whole plan: coverage of every pair once by the stages,
// bytes equal to the zero-redundancy bound, and the fixed-chunk report equal to the uncut
// dispatch's figures computed here by brute force.
TEST(AdaptiveDispatch, PlanWithCutsCoversTheMaskAndReportsTheUncutChunks) {
  std::mt19937_64 rng(testing::test_seed("AdaptiveDispatch.PlanWithCutsCoversTheMaskAndReportsTheUncutChunks", 32));
  const int64_t S = 4096;
  for (int cp : {4, 8}) {  // the long document's last chunk alone is 1.7x (cp 4), 3.5x (cp 8) the mean
    const auto mask = heavy_tail_mask(rng, S, 2048);
    Case c = make_case(S, cp, 512);
    c.parallel.comm_gbps = 1e6;  // the cuts' bytes priced at nearly nothing: the cut plan is kept
    const Plan p = build_plan(mask, c);
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    EXPECT_GT(p.split_chunks, 0);
    EXPECT_LT(p.imbalance, p.fixed_chunk_imbalance);
    testing::expect_covers_exactly(p, mask);
    EXPECT_EQ(p.volume.fwd_bytes, p.zero_redundancy_bound.fwd_bytes);
    int64_t units = 0;
    for (const UnitSizeCount& x : p.unit_sizes) units += x.count;
    EXPECT_EQ(units, p.num_units);
    EXPECT_EQ(p.max_rank_tokens - p.min_rank_tokens, 0);  // 8 chunks over cp 4 or 8

    // The uncut dispatch, brute force: the keys each rank's rows see, minus its rows.
    const AdaptiveDispatch d = adaptive_dispatch(mask, S, 512, cp, c.parallel.solver);
    const std::vector<uint8_t> dense = testing::dense(mask, S);
    std::vector<int> row_owner(static_cast<size_t>(S));
    for (size_t u = 0; u < d.chunks.units.size(); ++u) {
      for (int64_t t = d.chunks.units[u].start; t < d.chunks.units[u].end; ++t) row_owner[static_cast<size_t>(t)] = d.chunk_owner[u];
    }
    int64_t remote = 0;
    for (int r = 0; r < cp; ++r) {
      for (int64_t k = 0; k < S; ++k) {
        if (row_owner[static_cast<size_t>(k)] == r) continue;
        bool needed = false;
        for (int64_t q = 0; q < S && !needed; ++q) needed = row_owner[static_cast<size_t>(q)] == r && dense[static_cast<size_t>(q * S + k)];
        remote += needed ? 1 : 0;
      }
    }
    EXPECT_EQ(p.fixed_chunk_bound.fwd_bytes, remote * kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype)));
    const std::vector<int64_t> load = rank_loads(d.chunks.areas, d.chunk_owner, cp);
    EXPECT_DOUBLE_EQ(p.fixed_chunk_imbalance,
                     static_cast<double>(*std::max_element(load.begin(), load.end())) / p.mean_rank_area);
  }
}

// The cuts stay only where the cost model estimates them faster: with K/V nearly free they stay,
// with a link a million times slower the same chunks are kept uncut (and the plan says so).
TEST(AdaptiveDispatch, CutsDeclinedWhereTheModelPricesThemSlower) {
  std::mt19937_64 rng(testing::test_seed("AdaptiveDispatch.CutsDeclinedWhereTheModelPricesThemSlower", 37));
  const int64_t S = 4096;
  const auto mask = heavy_tail_mask(rng, S, 2048);
  Case c = make_case(S, 8, 512);
  c.parallel.comm_gbps = 1e6;
  const Plan cut = build_plan(mask, c);
  ASSERT_FALSE(cut.skipped) << cut.skip_reason;
  EXPECT_GT(cut.split_chunks, 0);
  EXPECT_FALSE(cut.cuts_declined);
  c.parallel.comm_gbps = 1e-3;
  const Plan kept = build_plan(mask, c);
  EXPECT_TRUE(kept.cuts_declined);
  EXPECT_EQ(kept.split_chunks, 0);
  EXPECT_DOUBLE_EQ(kept.imbalance, cut.fixed_chunk_imbalance);
  EXPECT_DOUBLE_EQ(kept.fixed_chunk_imbalance, cut.fixed_chunk_imbalance);
  EXPECT_EQ(kept.zero_redundancy_bound.fwd_bytes, cut.fixed_chunk_bound.fwd_bytes);
  EXPECT_LT(kept.zero_redundancy_bound.fwd_bytes, cut.zero_redundancy_bound.fwd_bytes);
  testing::expect_covers_exactly(kept, mask);
  EXPECT_EQ(plan_to_json(kept)["dispatch"]["cuts_declined"], true);
}

// The slowest rank's forward estimate of a built plan at `rates` and the degree auto picks there,
// from its stages: host flops those of stage 0 (keys the rank hosts), the rest remote, remote bytes
// its remote K/V.
std::pair<double, int> plan_forward_estimate(const Plan& p, const CostRates& rates) {
  const double kv = static_cast<double>(kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype)));
  std::vector<RankStageCost> costs;
  for (const RankPlan& rk : p.ranks) {
    const int64_t host = rk.stages.at(0).area;
    costs.push_back(RankStageCost{4.0 * static_cast<double>(host) * p.model.head_dim * p.model.heads_q,
                                  4.0 * static_cast<double>(rk.area - host) * p.model.head_dim * p.model.heads_q,
                                  static_cast<double>(rk.remote_kv_tokens) * kv});
  }
  const int degree = choose_overlap_degree(costs, rates);
  double slowest = 0;
  for (const RankStageCost& r : costs) slowest = std::max(slowest, estimate_rank_time_s(r, degree, rates));
  return {slowest, degree};
}

// The gate reports both sides, the one it declined included: the cut side's figures are those of
// the plan built where the cuts are kept, the uncut side's those of the plan built where they are
// declined, and each forward estimate is that plan's (from its stages) at the gate's rates, so a
// declined plan states exactly what the balanced alternative would cost.
TEST(AdaptiveDispatch, CutGateReportsTheDispatchItDeclined) {
  std::mt19937_64 rng(testing::test_seed("AdaptiveDispatch.CutGateReportsTheDispatchItDeclined", 38));
  const int64_t S = 4096;
  for (int cp : {4, 8}) {
    const auto mask = heavy_tail_mask(rng, S, 2048);
    Case c = make_case(S, cp, 512);
    c.parallel.comm_gbps = 1e6;
    const Plan cut = build_plan(mask, c);
    c.parallel.compute_tflops = 300;
    c.parallel.comm_gbps = 1e-3;
    const Plan uncut = build_plan(mask, c);
    ASSERT_FALSE(cut.cuts_declined);
    ASSERT_TRUE(uncut.cuts_declined);
    ASSERT_GT(cut.split_chunks, 0);
    for (const Plan* p : {&cut, &uncut}) {
      const CutGate& g = p->cut_gate;
      ASSERT_TRUE(g.weighed);
      EXPECT_EQ(g.comm_gbps, p == &cut ? 1e6 : 1e-3);
      EXPECT_EQ(g.compute_tflops, p == &cut ? 400 : 300);
      EXPECT_EQ(g.cut.split_chunks, cut.split_chunks);
      EXPECT_DOUBLE_EQ(g.cut.imbalance, cut.imbalance);
      EXPECT_EQ(g.cut.zero_redundancy_fwd_bytes, cut.zero_redundancy_bound.fwd_bytes);
      EXPECT_EQ(g.uncut.split_chunks, 0);
      EXPECT_DOUBLE_EQ(g.uncut.imbalance, uncut.imbalance);
      EXPECT_EQ(g.uncut.zero_redundancy_fwd_bytes, uncut.zero_redundancy_bound.fwd_bytes);
      const CostRates rates{g.compute_tflops, g.comm_gbps};
      const auto [cut_s, cut_degree] = plan_forward_estimate(cut, rates);
      const auto [uncut_s, uncut_degree] = plan_forward_estimate(uncut, rates);
      EXPECT_DOUBLE_EQ(g.cut.forward_s, cut_s);
      EXPECT_EQ(g.cut.overlap_degree, cut_degree);
      EXPECT_DOUBLE_EQ(g.uncut.forward_s, uncut_s);
      EXPECT_EQ(g.uncut.overlap_degree, uncut_degree);
      EXPECT_EQ(p->cuts_declined, g.uncut.forward_s < g.cut.forward_s);
    }
    EXPECT_LT(cut.imbalance, uncut.imbalance);  // what was declined: balance bought with bytes
    EXPECT_GT(cut.zero_redundancy_bound.fwd_bytes, uncut.zero_redundancy_bound.fwd_bytes);
    const nlohmann::json j = plan_to_json(uncut)["dispatch"]["cut_gate"];
    EXPECT_EQ(j["comm_gbps"], 1e-3);
    EXPECT_EQ(j["cut"]["split_chunks"], cut.split_chunks);
    EXPECT_EQ(j["cut"]["zero_redundancy_fwd_bytes"], cut.zero_redundancy_bound.fwd_bytes);
    EXPECT_DOUBLE_EQ(j["cut"]["forward_ms"].get<double>(), uncut.cut_gate.cut.forward_s * 1e3);
    EXPECT_DOUBLE_EQ(j["cut_to_uncut_fwd_bytes"].get<double>(),
                     static_cast<double>(cut.zero_redundancy_bound.fwd_bytes) /
                         static_cast<double>(uncut.zero_redundancy_bound.fwd_bytes));
  }
}

// Without cuts there is nothing to weigh: a mask whose chunks balance as they are.
TEST(AdaptiveDispatch, NoCutGateWithoutCuts) {
  const std::vector<AttnSlice> mask{{{0, 4096}, {0, 4096}, SliceType::full}};
  const Plan p = build_plan(mask, make_case(4096, 8, 512));
  EXPECT_EQ(p.split_chunks, 0);
  EXPECT_FALSE(p.cut_gate.weighed);
  EXPECT_TRUE(plan_to_json(p)["dispatch"]["cut_gate"].is_null());
}

// Balance at cp 256..4096 on random packs: real-corpus documents (varlen causal) and random
// masks of the four slice types. The mask "allows" the target when its largest indivisible piece
// (adaptive_dispatch.h) is at most kBalanceTarget x mean / kAllowsDivisor; there the imbalance
// must be <= 1.05. Everywhere the cuts must not lose to the uncut chunks and must come within 1.2x
// of max(target, indivisible / mean), the floor no dispatch beats.
TEST(AdaptiveDispatch, BalanceWhereTheMaskAllowsCp256To4096) {
  const uint64_t seed0 = testing::test_seed("AdaptiveDispatch.BalanceWhereTheMaskAllowsCp256To4096", 300);
  int allowed = 0, total = 0;
  for (int cp : {256, 512, 1024, 2048, 4096}) {
    for (uint64_t seed = seed0; seed < seed0 + 4; ++seed) {
      std::mt19937_64 rng(seed * 7919 + static_cast<uint64_t>(cp));
      const int64_t chunk = 512;
      const int64_t S = cp * chunk * uniform(rng, 1, 4);
      const bool corpus = seed % 2 == 0;
      const auto mask = corpus ? testing::varlen_causal(testing::corpus_documents(rng, S))
                               : testing::random_mask(rng, S);
      if (mask_area(mask) == 0) continue;
      const AdaptiveDispatch d = adaptive_dispatch(mask, S, chunk, cp, DispatchSolver::refine);
      const std::vector<int64_t> load = rank_loads(d.units.areas, d.owner, cp);
      const double mean = static_cast<double>(mask_area(mask)) / cp;
      const double imbalance = static_cast<double>(*std::max_element(load.begin(), load.end())) / mean;
      const double uncut = static_cast<double>(max_rank_load(d.chunks.areas, d.chunk_owner, cp)) / mean;
      const double floor = static_cast<double>(d.indivisible_area) / mean;
      const bool allows = static_cast<double>(d.indivisible_area) <= kBalanceTarget * mean / kAllowsDivisor;
      std::printf("[adaptive] cp %5d S %9lld %s: imbalance %.4f (uncut %.4f), indivisible / mean %.4f, %lld cut\n", cp,
                  static_cast<long long>(S), corpus ? "corpus" : "random", imbalance, uncut, floor,
                  static_cast<long long>(d.split_chunks));
      ++total;
      EXPECT_LE(imbalance, uncut) << "cp " << cp << " seed " << seed;
      EXPECT_LE(imbalance, 1.2 * std::max(kBalanceTarget, floor)) << "cp " << cp << " seed " << seed;
      if (allows) {
        ++allowed;
        EXPECT_LE(imbalance, kBalanceTarget) << "cp " << cp << " seed " << seed;
      }
    }
  }
  std::printf("[adaptive] the mask allowed the target in %d of %d packs\n", allowed, total);
  EXPECT_GE(allowed, 2);  // the bound is exercised, not only its excuse
}

// One chunk of 5/8 of the area at cp 2 (two chunks per rank): two pieces of half its rows carry
// what balance needs, each completed by half of one light filler; the other chunks stay whole.
TEST(AdaptiveDispatch, CutsOnlyWhatBalanceNeeds) {
  const int64_t c = 512;
  std::vector<AttnSlice> mask;
  const int64_t keys[] = {100, 100, 100, 500};
  for (int64_t u = 0; u < 4; ++u) mask.push_back({{u * c, (u + 1) * c}, {0, keys[u]}, SliceType::full});
  const AdaptiveDispatch d = adaptive_dispatch(mask, 4 * c, c, 2, DispatchSolver::refine);
  expect_valid(d, mask, 4 * c, 2);
  EXPECT_EQ(max_rank_load(d.chunks.areas, d.chunk_owner, 2), 600 * c);  // uncut: 1.5 x mean
  EXPECT_EQ(max_rank_load(d.units.areas, d.owner, 2), 400 * c);         // cut: the mean
  EXPECT_EQ(d.split_chunks, 2);
  std::vector<int64_t> sizes;
  for (const Range& u : d.units.units) sizes.push_back(u.size());
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<int64_t>{256, 256, 256, 256, 512, 512}));
  EXPECT_EQ(d.indivisible_area, 128 * 500);  // a tile of the heavy chunk
}

TEST(AdaptiveDispatch, Deterministic) {
  std::mt19937_64 rng(testing::test_seed("AdaptiveDispatch.Deterministic", 33));
  const int64_t S = 1 << 18;
  const auto mask = testing::varlen_causal(testing::corpus_documents(rng, S));
  Case c = make_case(S, 256, 512);
  const nlohmann::json a = plan_to_json(build_plan(mask, c));
  const nlohmann::json b = plan_to_json(build_plan(mask, c));
  EXPECT_EQ(a, b);
  c.parallel.chunk_tokens = 0;
  EXPECT_EQ(plan_to_json(build_plan(mask, c)), plan_to_json(build_plan(mask, c)));
}

// A chunk size cannot be cut when it is not a multiple of two tiles: the dispatch is the fixed one.
TEST(AdaptiveDispatch, UncuttableChunksStayWhole) {
  std::mt19937_64 rng(testing::test_seed("AdaptiveDispatch.UncuttableChunksStayWhole", 34));
  const auto mask = heavy_tail_mask(rng, 4096, 2048);
  for (int64_t chunk : {int64_t{128}, int64_t{192}, int64_t{100}}) {
    const AdaptiveDispatch d = adaptive_dispatch(mask, 4096, chunk, 4, DispatchSolver::refine);
    EXPECT_EQ(d.split_chunks, 0) << chunk;
    EXPECT_EQ(d.units.units, d.chunks.units) << chunk;
    EXPECT_EQ(d.owner, d.chunk_owner) << chunk;
  }
}

// The cost model's forward estimate of a built plan, from its stages (not from the dispatch's
// pieces, which auto uses): host flops = stage 0's area, remote = the rest, bytes = remote K/V.
double forward_estimate_of(const Plan& p) {
  const CostRates rates{400.0, 100.0};
  const double kv = static_cast<double>(kv_bytes_per_token(p.model, dtype_bytes(p.model.dtype)));
  double best = std::numeric_limits<double>::infinity();
  for (int d = 1; d <= kMaxOverlapDegree; ++d) {
    double slowest = 0;
    for (const RankPlan& rk : p.ranks) {
      const int64_t host = rk.stages[0].area;
      const RankStageCost cost{attention_fwd_flops(host, p.model.head_dim, p.model.heads_q),
                               attention_fwd_flops(rk.area - host, p.model.head_dim, p.model.heads_q),
                               static_cast<double>(rk.remote_kv_tokens) * kv};
      slowest = std::max(slowest, estimate_rank_time_s(cost, d, rates));
    }
    best = std::min(best, slowest);
  }
  return best;
}

// auto takes the candidate with the fastest estimate, and the estimates are those of the plans
// each fixed size builds (recomputed here from their stages).
TEST(ChunkAuto, ChoosesTheFastestEstimate) {
  std::mt19937_64 rng(testing::test_seed("ChunkAuto.ChoosesTheFastestEstimate", 35));
  for (int iter = 0; iter < 3; ++iter) {
    const int64_t S = 1 << 16;
    const auto mask = testing::varlen_causal(testing::corpus_documents(rng, S));
    Case c = make_case(S, 64, 0);
    c.model = ModelShape{64, 8, 128, DType::bf16};
    const Plan p = build_plan(mask, c);
    ASSERT_FALSE(p.skipped) << p.skip_reason;
    ASSERT_FALSE(p.chunk_candidates.empty());
    int64_t best_chunk = 0;
    double best = std::numeric_limits<double>::infinity();
    for (const ChunkCandidate& x : p.chunk_candidates) {
      Case fixed = c;
      fixed.parallel.chunk_tokens = x.chunk_tokens;
      const Plan f = build_plan(mask, fixed);
      const double t = forward_estimate_of(f);
      EXPECT_NEAR(x.forward_s, t, 1e-9 * t) << x.chunk_tokens;
      EXPECT_EQ(x.zero_redundancy_fwd_bytes, f.zero_redundancy_bound.fwd_bytes);
      EXPECT_DOUBLE_EQ(x.imbalance, f.imbalance);
      if (t <= best * (1 + 1e-9)) best = t, best_chunk = x.chunk_tokens;
    }
    EXPECT_EQ(p.chunk_tokens, best_chunk);
    EXPECT_EQ(p.chunk_candidates.front().chunk_tokens, kSplitTileTokens);
    EXPECT_EQ(p.chunk_candidates.back().chunk_tokens, std::min<int64_t>(kMaxAutoChunkTokens, S / 64));
  }
}

// The rates move the choice: with a slow link auto takes the size whose busiest receiver gets the
// fewest bytes, with a slow kernel the size whose busiest rank has the least area (ties: the larger
// size). A choice that ignored the model could not follow both.
TEST(ChunkAuto, FollowsTheRates) {
  std::mt19937_64 rng(testing::test_seed("ChunkAuto.FollowsTheRates", 36));
  const int64_t S = 1 << 17;
  const auto mask = testing::varlen_causal(testing::corpus_documents(rng, S));
  Case c = make_case(S, 128, 0);
  c.model = ModelShape{64, 8, 128, DType::bf16};
  const std::vector<ChunkCandidate> cands = chunk_candidates(mask, c);
  ASSERT_GE(cands.size(), 2u);
  // Per rates, the candidate whose plan (as build_plan makes it at those rates: cut, or kept
  // uncut where the model prices the cuts slower) moves the fewest bytes into its busiest rank,
  // and the one with the least area on its busiest rank.
  auto best = [&](double tflops, double gbps, bool by_bytes) {
    int64_t chosen = 0, least = std::numeric_limits<int64_t>::max();
    for (const ChunkCandidate& x : cands) {
      Case fixed = c;
      fixed.parallel.chunk_tokens = x.chunk_tokens;
      fixed.parallel.compute_tflops = tflops;
      fixed.parallel.comm_gbps = gbps;
      const Plan f = build_plan(mask, fixed);
      int64_t busiest = 0;
      for (const RankPlan& rk : f.ranks) busiest = std::max(busiest, rk.recv_bytes_fwd);
      const int64_t v = by_bytes ? busiest : f.max_rank_area;
      if (v <= least) least = v, chosen = x.chunk_tokens;
    }
    return chosen;
  };
  const int64_t fewest_bytes = best(1e6, 1e-3, true), least_area = best(1e-3, 1e6, false);
  c.parallel.compute_tflops = 1e6;
  c.parallel.comm_gbps = 1e-3;
  const Plan slow_link = build_plan(mask, c);
  c.parallel.compute_tflops = 1e-3;
  c.parallel.comm_gbps = 1e6;
  const Plan slow_kernel = build_plan(mask, c);
  EXPECT_EQ(slow_link.chunk_tokens, fewest_bytes);
  EXPECT_EQ(slow_kernel.chunk_tokens, least_area);
  EXPECT_NE(slow_link.chunk_tokens, slow_kernel.chunk_tokens);
}

TEST(ChunkAuto, SkipsWhenEvenTilesAreFewerThanRanks) {
  const std::vector<AttnSlice> mask{{{0, 1000}, {0, 1000}, SliceType::causal}};
  const Plan p = build_plan(mask, make_case(1000, 16, 0));
  EXPECT_TRUE(p.skipped);
  EXPECT_NE(p.skip_reason.find("chunk_tokens auto"), std::string::npos) << p.skip_reason;
}

}  // namespace
}  // namespace magi
