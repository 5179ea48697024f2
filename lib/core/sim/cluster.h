// A cluster to simulate (DESIGN.md §6; configs/clusters/README.md): nodes of identical devices,
// two link tiers (inside a node, across nodes) and the devices' dense peak. Ranks are placed
// node by node: rank r lives on node r / ranks_per_node, so which peers share a node (and so
// which tier a message takes) follows from the rank numbers alone.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace magi {

enum class DeviceKind { gpu, cpu };
std::string_view to_string(DeviceKind k);

// One link tier, alpha-beta: a transfer of b bytes takes latency + b / (bandwidth x efficiency).
struct LinkTier {
  double bandwidth_gbps = 0;  // GB/s per rank and direction (1e9 bytes per second)
  double latency_us = 0;      // per transfer (one stage's all-to-all-v, one ring hop)
  double efficiency = 1;      // achieved fraction of the bandwidth, in (0, 1]
  double seconds(double bytes) const;
};

enum class Tier { intra_node = 0, inter_node = 1 };
inline constexpr int kTiers = 2;

struct ClusterSpec {
  std::string name;
  std::string description;
  DeviceKind kind = DeviceKind::gpu;
  std::string device;             // the device's name, for reports
  double peak_tflops = 0;         // dense peak per device (MFU); 0 = unknown
  int nodes = 1;
  int ranks_per_node = 1;         // GPUs per node (gpu); ranks the node may hold (cpu)
  int cores_per_node = 0;         // cpu: cores the node's ranks share (oversubscription)
  double thread_efficiency = 1;   // cpu: what each kernel thread of a rank beyond its first adds,
                                  // as a fraction of one thread (the reference kernel's tasks
                                  // split unevenly; the threads share caches and memory); fitted
                                  // by calibrate, 1 unless a calibration sets it
  LinkTier intra, inter;
  std::string calibration;        // calibration file the cluster uses by default ("" = none),
                                  // relative to the cluster file's directory
  std::string path;               // the file it came from

  int max_ranks() const { return nodes * ranks_per_node; }
  int node_of(int rank) const { return rank / ranks_per_node; }
  Tier tier(int a, int b) const { return node_of(a) == node_of(b) ? Tier::intra_node : Tier::inter_node; }
  const LinkTier& link(Tier t) const { return t == Tier::intra_node ? intra : inter; }
  LinkTier& link(Tier t) { return t == Tier::intra_node ? intra : inter; }
  // Kernel threads a rank runs with when `ranks` ranks share a node (cpu: the executor's rule,
  // hardware threads / ranks, at least 1), and the share of a core each thread gets (1 unless
  // the node's ranks x threads exceed its cores).
  int threads_per_rank(int ranks_on_node) const;
  double core_share(int ranks_on_node) const;
  // A rank's kernel speed relative to one thread on a core of its own (1 on a gpu): its T threads
  // run at 1 + thread_efficiency (T - 1) threads' speed, times the core share. Kernel models are
  // per thread; their times are divided by it.
  double rank_speed(int ranks_on_node) const;
};

// Reads and validates a cluster file; ConfigError naming the JSON path and value.
ClusterSpec load_cluster(const std::string& path);
ClusterSpec parse_cluster(const nlohmann::json& doc, const std::string& origin);
nlohmann::json to_json(const ClusterSpec& c);

}  // namespace magi
