// The simulator's limits and monotonicity: one rank is the kernel model, zero communication is
// pure compute, more bandwidth is never slower, two tiers with equal links are one tier, a cp
// beyond the cluster is refused; cluster files are validated naming the field.
#include "core/base/error.h"
#include "core/sim/simulate.h"
#include "sim_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace magi {
namespace {

using testing::sim_case;
using testing::sim_cluster;
using testing::sim_kernel;
using testing::sim_mask;

constexpr Strategy kAll[] = {Strategy::magi, Strategy::ring, Strategy::ulysses, Strategy::allgather};
const LinkTier kNvlink{450, 5, 0.8}, kIb{50, 20, 0.8};

// With every slice edge on a chunk boundary (fixed 1024-token documents, a 1024-token window), a
// rank's slices are the mask's and its one stage is one kernel call on the whole mask. (Edges
// inside a chunk split items at the chunk boundary: the plan's slices are clipped there.)
TEST(Simulate, OneRankIsTheKernelModel) {
  const KernelModel km = sim_kernel();
  for (const char* mask : {"full", "causal", "varlen_causal", "varlen_full", "sliding_window"}) {
    for (Strategy st : kAll) {
      const Case c = sim_case(mask, 8192, 1, st, 0, 256, 1024, std::string(mask) == "sliding_window" ? 1024 : 0);
      const std::vector<AttnSlice> m = sim_mask(c);
      const CaseSim s = simulate_case(m, c, sim_cluster(1, 8, kNvlink, kNvlink), km);
      const KernelWork w = count_kernel_work(m, km.tiles(128));
      SCOPED_TRACE(std::string(mask) + " " + std::string(to_string(st)));
      ASSERT_FALSE(s.skipped);
      EXPECT_NEAR(s.fwd_s(), km.seconds(Pass::fwd, w, c.model, 8, 4), 1e-12);
      EXPECT_NEAR(s.bwd_s(), km.seconds(Pass::bwd, w, c.model, 8, 4), 1e-12);
    }
  }
}

// Free links: every rank's time is its compute, except in the ring, whose steps still wait for
// the neighbours (a hop starts when both ends have started the step): there the step lies between
// the slowest rank's compute and the lock-step bound, the sum over steps of the slowest step.
TEST(Simulate, FreeLinksGivePureCompute) {
  const KernelModel km = sim_kernel();
  const LinkTier free{1e12, 0, 1};
  for (Strategy st : kAll) {
    const Case c = sim_case("varlen_causal", 16384, 4, st);
    const CaseSim s = simulate_case(sim_mask(c), c, sim_cluster(1, 4, free, free), km);
    SCOPED_TRACE(std::string(to_string(st)));
    double max_compute = 0;
    for (const RankSim& r : s.ranks) {
      max_compute = std::max(max_compute, r.fwd.compute_s);
      if (st == Strategy::ring) continue;
      EXPECT_NEAR(r.fwd.total_s, r.fwd.compute_s, 1e-9 * r.fwd.total_s);
      EXPECT_NEAR(r.bwd.total_s, r.bwd.compute_s, 1e-9 * r.bwd.total_s);
    }
    EXPECT_GE(s.fwd_s(), max_compute * (1 - 1e-12));
    if (st == Strategy::ring) {
      double sum_compute = 0;
      for (const RankSim& r : s.ranks) sum_compute += r.fwd.compute_s;
      EXPECT_LE(s.fwd_s(), sum_compute);  // at most every rank's compute one after the other
    }
  }
}

TEST(Simulate, MoreBandwidthIsNeverSlower) {
  const KernelModel km = sim_kernel();
  for (Strategy st : kAll) {
    for (const char* mask : {"causal", "varlen_causal"}) {
      const Case c = sim_case(mask, 16384, 8, st, 0);
      const std::vector<AttnSlice> m = sim_mask(c);
      double prev_f = INFINITY, prev_b = INFINITY;
      for (double bw : {1.0, 5.0, 25.0, 125.0, 625.0}) {
        const CaseSim s = simulate_case(m, c, sim_cluster(2, 4, LinkTier{bw * 4, 5, 1}, LinkTier{bw, 20, 1}), km);
        SCOPED_TRACE(std::string(to_string(st)) + " " + mask + " bw " + std::to_string(bw));
        EXPECT_LE(s.fwd_s(), prev_f * (1 + 1e-12));
        EXPECT_LE(s.bwd_s(), prev_b * (1 + 1e-12));
        prev_f = s.fwd_s();
        prev_b = s.bwd_s();
      }
    }
  }
}

TEST(Simulate, TwoTiersWithEqualLinksAreOneTier) {
  const KernelModel km = sim_kernel();
  for (Strategy st : kAll) {
    const Case c = sim_case("varlen_causal", 16384, 8, st, 2);
    const std::vector<AttnSlice> m = sim_mask(c);
    const CaseSim one = simulate_case(m, c, sim_cluster(1, 8, kIb, kNvlink), km);
    const CaseSim two = simulate_case(m, c, sim_cluster(4, 2, kIb, kIb), km);
    SCOPED_TRACE(std::string(to_string(st)));
    EXPECT_DOUBLE_EQ(one.fwd_s(), two.fwd_s());
    EXPECT_DOUBLE_EQ(one.bwd_s(), two.bwd_s());
  }
}

TEST(Simulate, SlowerInterNodeLinksOnlyHurtWhenRanksSpanNodes) {
  const KernelModel km = sim_kernel();
  const Case c = sim_case("causal", 16384, 4, Strategy::ring);
  const std::vector<AttnSlice> m = sim_mask(c);
  const CaseSim in_node = simulate_case(m, c, sim_cluster(2, 4, kNvlink, LinkTier{1, 100, 1}), km);
  const CaseSim fast = simulate_case(m, c, sim_cluster(2, 4, kNvlink, kNvlink), km);
  EXPECT_DOUBLE_EQ(in_node.fwd_s(), fast.fwd_s());
  const CaseSim spans = simulate_case(m, c, sim_cluster(4, 2, kNvlink, LinkTier{1, 100, 1}), km);
  EXPECT_GT(spans.fwd_s(), fast.fwd_s());
}

TEST(Simulate, CpBeyondTheClusterIsRefused) {
  const Case c = sim_case("causal", 16384, 16, Strategy::magi);
  EXPECT_THROW(simulate_case(sim_mask(c), c, sim_cluster(1, 8, kNvlink, kNvlink), sim_kernel()), ConfigError);
}

TEST(Cluster, FilesAreValidatedNamingTheField) {
  const nlohmann::json ok = {{"name", "x"}, {"kind", "gpu"}, {"nodes", 2}, {"gpus_per_node", 8}, {"peak_tflops", 989},
                             {"links", {{"intra_node", {{"bandwidth_gbps", 450}, {"latency_us", 5}, {"efficiency", 0.8}}},
                                        {"inter_node", {{"bandwidth_gbps", 50}, {"latency_us", 20}, {"efficiency", 0.8}}}}}};
  const ClusterSpec c = parse_cluster(ok, "c.json");
  EXPECT_EQ(c.max_ranks(), 16);
  EXPECT_EQ(c.tier(7, 8), Tier::inter_node);
  EXPECT_EQ(c.tier(8, 15), Tier::intra_node);
  auto message = [](nlohmann::json j) {
    try {
      parse_cluster(j, "c.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  nlohmann::json bad = ok;
  bad["links"]["inter_node"]["efficiency"] = 1.5;
  EXPECT_NE(message(bad).find("links.inter_node.efficiency"), std::string::npos) << message(bad);
  bad = ok;
  bad["links"].erase("inter_node");
  EXPECT_NE(message(bad).find("links.inter_node"), std::string::npos) << message(bad);
  bad = ok;
  bad["gpus_per_nod"] = 8;
  EXPECT_NE(message(bad).find("gpus_per_nod"), std::string::npos) << message(bad);
}

TEST(Cluster, CpuRanksShareTheCores) {
  ClusterSpec c;
  c.kind = DeviceKind::cpu;
  c.cores_per_node = 2;
  c.ranks_per_node = 64;
  EXPECT_EQ(c.threads_per_rank(1), 2);
  EXPECT_DOUBLE_EQ(c.core_share(1), 1);
  EXPECT_EQ(c.threads_per_rank(4), 1);
  EXPECT_DOUBLE_EQ(c.core_share(4), 0.5);  // four single-thread ranks on two cores
  EXPECT_DOUBLE_EQ(c.rank_speed(1), 2);
  EXPECT_DOUBLE_EQ(c.rank_speed(2), 1);
  EXPECT_DOUBLE_EQ(c.rank_speed(4), 0.5);
  // A second thread adding 0.4 of one: one rank runs at 1.4; single-thread ranks do not see it.
  c.thread_efficiency = 0.4;
  EXPECT_DOUBLE_EQ(c.rank_speed(1), 1.4);
  EXPECT_DOUBLE_EQ(c.rank_speed(2), 1);
  EXPECT_DOUBLE_EQ(c.rank_speed(4), 0.5);
  c.cores_per_node = 16;  // 4 ranks of 4 threads: room for all
  EXPECT_DOUBLE_EQ(c.core_share(4), 1);
  EXPECT_DOUBLE_EQ(c.rank_speed(4), 1 + 0.4 * 3);
  c.kind = DeviceKind::gpu;
  EXPECT_DOUBLE_EQ(c.rank_speed(4), 1);
}

// The steps the simulator counts are the runtime's compute calls (magi: 1 + overlap degree
// stages; ring: cp steps; ulysses and allgather: one), their work covering the mask once (magi,
// ring, allgather) or once per head group (ulysses); measured step times in place of the model's
// give back, with free links, their sums as the ranks' compute.
TEST(Simulate, RecordedStepsAndMeasuredCompute) {
  const KernelModel km = sim_kernel();
  const LinkTier free{1e12, 0, 1};
  for (Strategy st : kAll) {
    SCOPED_TRACE(std::string(to_string(st)));
    const Case c = sim_case("varlen_causal", 16384, 4, st, st == Strategy::magi ? 3 : 0);
    const std::vector<AttnSlice> mask = sim_mask(c);
    SimOptions rec;
    rec.record_steps = true;
    const CaseSim s = simulate_case(mask, c, sim_cluster(1, 4, free, free), km, rec);
    ASSERT_FALSE(s.skipped);
    const size_t want = st == Strategy::magi ? 4 : st == Strategy::ring ? 4 : 1;
    int64_t area = 0;
    std::vector<RankStepSeconds> measured;
    for (const RankSim& r : s.ranks) {
      ASSERT_EQ(r.steps.size(), want);
      RankStepSeconds t;
      for (size_t k = 0; k < r.steps.size(); ++k) {
        area += r.steps[k].work.area * (st == Strategy::ulysses ? r.steps[k].heads_kv : 1);
        t[0].push_back(1e-3 * (r.rank + 1) * (k + 1));
        t[1].push_back(2e-3 * (r.rank + 1) * (k + 1));
      }
      measured.push_back(t);
    }
    EXPECT_EQ(area, mask_area(mask) * (st == Strategy::ulysses ? 4 : 1));
    SimOptions given;
    given.measured_compute = &measured;
    const CaseSim g = simulate_case(mask, c, sim_cluster(1, 4, free, free), km, given);
    for (const RankSim& r : g.ranks) {
      double f = 0, b = 0;
      for (size_t k = 0; k < want; ++k) {
        f += measured[static_cast<size_t>(r.rank)][0][k];
        b += measured[static_cast<size_t>(r.rank)][1][k];
      }
      EXPECT_NEAR(r.fwd.compute_s, f, 1e-12);
      EXPECT_NEAR(r.bwd.compute_s, b, 1e-12);
      if (st != Strategy::ring) EXPECT_NEAR(r.fwd.total_s, f, 1e-9);
    }
  }
}

}  // namespace
}  // namespace magi
