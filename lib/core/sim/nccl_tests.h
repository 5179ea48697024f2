// Link figures from nccl-tests (github.com/NVIDIA/nccl-tests) JSON output (`-J FILE`, the file's
// "version" 3 layout): one record per message size in "results", each with "size" (bytes),
// and "out_of_place" / "in_place" objects holding "time" (us), "alg_bw" and "bus_bw" (GB/s).
// nccl-tests defines bus_bw so that bus_bw x time is the bytes one rank's link carried, whatever
// the collective (all-to-all: size x (n - 1) / n; all-reduce: 2 size (n - 1) / n; send/recv:
// size), which is what a LinkTier's bandwidth is per: so a tier's alpha-beta follows from the
// points (bus bytes, time) alone, fitted by least squares on relative error (small messages fix
// the latency, large ones the bandwidth). docs/simulation.md, configs/clusters/README.md.
#pragma once

#include "core/sim/cluster.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace magi {

struct NcclTestsPoint {
  int64_t size = 0;        // the record's "size" (bytes)
  double time_us = 0;      // out-of-place time (in-place where out-of-place is null)
  double bus_gbps = 0;     // its bus_bw
  double link_bytes = 0;   // bus_bw x time: bytes through one rank's link
};

struct NcclTestsRun {
  std::string program;     // args[0] (all_to_all_perf, sendrecv_perf, ...), "" if absent
  int ranks = 0;           // devices listed, 0 if absent
  std::vector<NcclTestsPoint> points;
};

// The points of a parsed nccl-tests JSON file; ConfigError naming the JSON path and value for
// anything else (no "results", a record without a time, CPU time (-C 1) instead of latency).
NcclTestsRun parse_nccl_tests(const nlohmann::json& doc, const std::string& origin);
NcclTestsRun load_nccl_tests(const std::string& path);

// latency >= 0 and bandwidth > 0 (efficiency 1: the figure is what was achieved) minimising
// sum ((latency + link_bytes / bandwidth) / time - 1)^2. ConfigError when the points cannot fix
// a bandwidth (fewer than two points, or no size whose time grows with its bytes).
LinkTier fit_nccl_tests(const NcclTestsRun& run, const std::string& origin);

}  // namespace magi
