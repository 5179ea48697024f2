// A calibration (magi-bench calibrate; docs/simulation.md): the kernel model's coefficients and,
// when measured runs with several ranks were given, the CPU ranks' thread efficiency and the link tiers,
// fitted to measured result files, with the prediction error on every measured case (fitted and
// held out). The fits themselves are here, pure: kernel coefficients by non-negative least
// squares on relative error, the thread efficiency by a search around it, link parameters by a search
// over a log grid of any error function.
#pragma once

#include "core/sim/cluster.h"
#include "core/sim/kernel_model.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace magi {

struct Calibration {
  std::string device;                 // what was measured
  DeviceKind kind = DeviceKind::gpu;
  KernelModel kernel;
  std::optional<LinkTier> intra;      // fitted links, when runs with several ranks were given
  std::optional<LinkTier> inter;
  std::optional<double> thread_efficiency;  // cpu, when ranks ran with different thread counts
  nlohmann::json validation;          // cases and errors, as calibrate printed them
  std::string path;                   // the file it came from
};

Calibration load_calibration(const std::string& path);
Calibration parse_calibration(const nlohmann::json& doc, const std::string& origin);
nlohmann::json to_json(const Calibration& c);
// The cluster with the calibration's fitted figures (links, thread efficiency) in place of its own.
ClusterSpec with_calibration(ClusterSpec cluster, const Calibration& c);

// One measured kernel call: its counts (heads included) and seconds. `speed` divides the model's
// time (cpu: threads x core share of the rank that ran it; 1 on a gpu).
struct KernelSample {
  Pass pass = Pass::fwd;
  int head_dim = 128;
  double tiles = 0;  // tiles x heads
  double items = 0;  // items x heads
  double speed = 1;
  double measured_s = 0;
};

// call_s, tile_s, item_s >= 0 minimising the sum of squared relative errors of the samples of one
// (pass, head dim); `tiles` is copied into the result. With fit_call false, call_s stays 0 (the
// CPU reference has no launch: a call costs starting its threads, far below its run-to-run noise,
// and a free intercept fitted to a few noisy runs is charged once per stage at cp > 1).
// InternalError without samples.
KernelCoeffs fit_kernel(const std::vector<KernelSample>& samples, Pass pass, int head_dim, const KernelTiles& tiles,
                        bool fit_call = true);

// The CPU kernel model and thread efficiency (ClusterSpec::thread_efficiency) fitted together to
// compute steps measured on `cluster`'s node: sample i ran on a node shared by ranks_on_node[i]
// ranks, so its speed is cluster.rank_speed(ranks_on_node[i]) at the efficiency tried. The
// efficiency in [0, 1] (a grid of 0.01, refined to 0.001) whose coefficients (fit_kernel per pass
// and head dim, without a call term) give the least squared relative error wins; 1 (and
// `fitted` false) when the samples' ranks all ran one number of threads. `tiles` is the CPU
// reference's.
struct CpuKernelFit {
  double thread_efficiency = 1;
  bool fitted = false;
  KernelModel kernel;
};
CpuKernelFit fit_cpu_kernel(std::vector<KernelSample> samples, const std::vector<int>& ranks_on_node,
                            ClusterSpec cluster, const KernelTiles& tiles);

// The tier minimising `error` over latency in [lat_lo, lat_hi] us and bandwidth in [bw_lo, bw_hi]
// GB/s (log grids, refined three times around the best point, never leaving the ranges); efficiency fixed
// at 1 (folded into the bandwidth).
LinkTier fit_link(const std::function<double(const LinkTier&)>& error, double lat_lo, double lat_hi, double bw_lo,
                  double bw_hi);

// Relative error (predicted - measured) / measured, and the median and worst of |errors|.
struct ErrorStats {
  size_t count = 0;
  double median_abs = 0;
  double worst_abs = 0;
};
ErrorStats error_stats(const std::vector<double>& relative_errors);

}  // namespace magi
