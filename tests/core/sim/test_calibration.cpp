// Calibration recovers known parameters from synthetic measurements: kernel coefficients exactly
// (noise-free), a link's latency and bandwidth within the search's resolution; the held-out error
// of a fit on noisy samples is computed and printed.
#include "core/base/error.h"
#include "core/sim/calibration.h"
#include "core/sim/simulate.h"
#include "sim_test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

namespace magi {
namespace {

TEST(Calibration, KernelCoefficientsRecoveredFromSyntheticSamples) {
  const KernelCoeffs truth{Pass::bwd, 128, KernelTiles{}, 3e-4, 1.1e-8, 6e-7};
  std::vector<KernelSample> s;
  for (double tiles : {1e5, 4e5, 2e6}) {
    for (double items : {1e3, 2e4, 1e5}) {
      s.push_back({Pass::bwd, 128, tiles, items, 1.0, truth.call_s + truth.tile_s * tiles + truth.item_s * items});
    }
  }
  s.push_back({Pass::fwd, 128, 1, 1, 1.0, 5.0});  // another pass: ignored
  const KernelCoeffs k = fit_kernel(s, Pass::bwd, 128, KernelTiles{});
  EXPECT_NEAR(k.call_s / truth.call_s, 1, 1e-9);
  EXPECT_NEAR(k.tile_s / truth.tile_s, 1, 1e-9);
  EXPECT_NEAR(k.item_s / truth.item_s, 1, 1e-9);
}

TEST(Calibration, CoefficientsStayNonNegative) {
  // Time falls with items here: the unconstrained fit would give item_s < 0.
  std::vector<KernelSample> s{{Pass::fwd, 64, 1e5, 1e4, 1.0, 1e-3}, {Pass::fwd, 64, 2e5, 1, 1.0, 2e-3},
                              {Pass::fwd, 64, 4e5, 5e3, 1.0, 3.9e-3}};
  const KernelCoeffs k = fit_kernel(s, Pass::fwd, 64, KernelTiles{});
  EXPECT_GE(k.call_s, 0);
  EXPECT_GE(k.tile_s, 0);
  EXPECT_GE(k.item_s, 0);
  EXPECT_THROW(fit_kernel(s, Pass::bwd, 64, KernelTiles{}), InternalError);
}

TEST(Calibration, LinkRecoveredFromSyntheticRuns) {
  // Kernels 100 times faster than sim_kernel's, so that communication decides the times.
  KernelModel km = testing::sim_kernel();
  for (KernelCoeffs& k : km.coeffs) {
    k.call_s /= 100;
    k.tile_s /= 100;
    k.item_s /= 100;
  }
  const LinkTier truth{12.0, 35.0, 1.0};
  std::vector<Case> cases;
  // Large and small messages, so that both the bandwidth and the latency show.
  for (const char* mask : {"causal", "varlen_causal", "full"}) {
    for (Strategy st : {Strategy::magi, Strategy::ring}) {
      for (int64_t tokens : {int64_t{1024}, int64_t{16384}}) cases.push_back(testing::sim_case(mask, tokens, 4, st, 0, 128));
    }
  }
  std::vector<std::vector<AttnSlice>> masks;
  std::vector<double> measured;
  for (const Case& c : cases) {
    masks.push_back(testing::sim_mask(c));
    const CaseSim s = simulate_case(masks.back(), c, testing::sim_cluster(1, 8, truth, truth), km);
    measured.push_back(s.fwd_s() + s.bwd_s());
  }
  auto err = [&](const LinkTier& t) {
    double e = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const CaseSim s = simulate_case(masks[i], cases[i], testing::sim_cluster(1, 8, t, t), km);
      e += std::pow(std::log((s.fwd_s() + s.bwd_s()) / measured[i]), 2);
    }
    return e;
  };
  const LinkTier fit = fit_link(err, 0.1, 10000, 0.01, 1000);
  EXPECT_NEAR(fit.bandwidth_gbps / truth.bandwidth_gbps, 1, 0.05);
  EXPECT_NEAR(fit.latency_us / truth.latency_us, 1, 0.15);
}

TEST(Calibration, HeldOutErrorOfANoisyFit) {
  // Samples from known coefficients with 3% multiplicative noise: fit on half, predict the rest.
  const KernelCoeffs truth{Pass::fwd, 128, KernelTiles{}, 2e-5, 4.5e-9, 2e-7};
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 0.03);
  std::vector<KernelSample> fit, held;
  for (int i = 0; i < 24; ++i) {
    const double tiles = 1e4 * (1 + i * i), items = 50.0 * (1 + (i * 7) % 13) * (1 + i);
    const double t = (truth.call_s + truth.tile_s * tiles + truth.item_s * items) * (1 + noise(rng));
    (i % 2 ? held : fit).push_back({Pass::fwd, 128, tiles, items, 1.0, t});
  }
  const KernelCoeffs k = fit_kernel(fit, Pass::fwd, 128, KernelTiles{});
  std::vector<double> err;
  for (const KernelSample& s : held) err.push_back((k.call_s + k.tile_s * s.tiles + k.item_s * s.items - s.measured_s) / s.measured_s);
  const ErrorStats st = error_stats(err);
  std::printf("[held-out] %zu predictions: median |error| %.2f%%, worst %.2f%%\n", st.count, 100 * st.median_abs,
              100 * st.worst_abs);
  EXPECT_EQ(st.count, 12u);
  EXPECT_LT(st.median_abs, 0.06);
  EXPECT_LT(st.worst_abs, 0.25);
}

// CPU compute steps measured with one rank (two threads) and with two and four single-thread
// ranks on two cores: the thread efficiency and the per-thread coefficients they were made with
// come back.
TEST(Calibration, ThreadEfficiencyRecoveredWithTheKernel) {
  ClusterSpec cl;
  cl.kind = DeviceKind::cpu;
  cl.cores_per_node = 2;
  cl.ranks_per_node = 64;
  const double tile_s = 2e-8, item_s = 1.5e-6;
  for (double truth : {0.0, 0.437, 1.0}) {
    SCOPED_TRACE(truth);
    ClusterSpec made = cl;
    made.thread_efficiency = truth;
    std::vector<KernelSample> s;
    std::vector<int> ranks;
    for (int r : {1, 2, 4}) {
      for (double tiles : {1e5, 7e5, 3e6}) {
        for (double items : {2e3, 4e4}) {
          for (Pass p : {Pass::fwd, Pass::bwd}) {
            s.push_back({p, 32, tiles, items, 1.0, (tile_s * tiles + item_s * items) / made.rank_speed(r)});
            ranks.push_back(r);
          }
        }
      }
    }
    const CpuKernelFit f = fit_cpu_kernel(s, ranks, cl, KernelTiles{1, 1, 1, 1});
    EXPECT_TRUE(f.fitted);
    EXPECT_NEAR(f.thread_efficiency, truth, 1e-3);
    ASSERT_EQ(f.kernel.coeffs.size(), 2u);
    for (const KernelCoeffs& k : f.kernel.coeffs) {
      EXPECT_EQ(k.call_s, 0);
      EXPECT_NEAR(k.tile_s / tile_s, 1, 0.01);
      EXPECT_NEAR(k.item_s / item_s, 1, 0.02);
    }
  }
  // One thread count only (one rank of two threads): nothing to see the efficiency by.
  std::vector<KernelSample> one{{Pass::fwd, 32, 1e5, 1e3, 1.0, 1e-3}, {Pass::fwd, 32, 4e5, 1e3, 1.0, 4e-3}};
  const CpuKernelFit f = fit_cpu_kernel(one, {1, 1}, cl, KernelTiles{1, 1, 1, 1});
  EXPECT_FALSE(f.fitted);
  EXPECT_EQ(f.thread_efficiency, 1);
}

TEST(Calibration, ErrorStats) {
  const ErrorStats s = error_stats({0.1, -0.3, 0.05, -0.02});
  EXPECT_DOUBLE_EQ(s.median_abs, 0.075);
  EXPECT_DOUBLE_EQ(s.worst_abs, 0.3);
}

}  // namespace
}  // namespace magi
