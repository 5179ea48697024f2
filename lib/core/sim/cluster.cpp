#include "core/sim/cluster.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"

#include <algorithm>
#include <array>

namespace magi {

std::string_view to_string(DeviceKind k) { return k == DeviceKind::gpu ? "gpu" : "cpu"; }

double LinkTier::seconds(double bytes) const {
  if (bytes <= 0) return 0;
  return latency_us * 1e-6 + bytes / (bandwidth_gbps * 1e9 * efficiency);
}

int ClusterSpec::threads_per_rank(int ranks_on_node) const {
  if (kind == DeviceKind::gpu) return 1;
  return std::max(1, cores_per_node / std::max(1, ranks_on_node));
}

double ClusterSpec::core_share(int ranks_on_node) const {
  if (kind == DeviceKind::gpu) return 1;
  const double threads = static_cast<double>(ranks_on_node) * threads_per_rank(ranks_on_node);
  return std::min(1.0, cores_per_node / threads);
}

double ClusterSpec::rank_speed(int ranks_on_node) const {
  if (kind == DeviceKind::gpu) return 1;
  return (1 + thread_efficiency * (threads_per_rank(ranks_on_node) - 1)) * core_share(ranks_on_node);
}

namespace {

constexpr size_t kMaxClusterFileBytes = 1 << 20;
constexpr std::array<DeviceKind, 2> kKinds{DeviceKind::gpu, DeviceKind::cpu};

LinkTier read_tier(const JsonReader& rd, const std::string& path, const nlohmann::json& v) {
  rd.object(path, v, "an object with bandwidth_gbps, latency_us and efficiency");
  rd.known_keys(path, v, {"bandwidth_gbps", "latency_us", "efficiency"});
  LinkTier t;
  for (const char* k : {"bandwidth_gbps", "latency_us", "efficiency"}) {
    if (!v.contains(k)) rd.missing(child_path(path, k), "a number");
  }
  t.bandwidth_gbps = rd.number(child_path(path, "bandwidth_gbps"), v["bandwidth_gbps"], 0, 1e6, true);
  t.latency_us = rd.number(child_path(path, "latency_us"), v["latency_us"], 0, 1e6, false);
  t.efficiency = rd.number(child_path(path, "efficiency"), v["efficiency"], 0, 1, true);
  return t;
}

}  // namespace

ClusterSpec parse_cluster(const nlohmann::json& doc, const std::string& origin) {
  const JsonReader rd(origin);
  rd.object("", doc, "a cluster object (configs/clusters/README.md)");
  rd.known_keys("", doc, {"name", "description", "kind", "device", "peak_tflops", "nodes", "gpus_per_node",
                          "ranks_per_node", "cores_per_node", "links", "calibration"});
  ClusterSpec c;
  for (const char* k : {"name", "kind", "nodes", "links"}) {
    if (!doc.contains(k)) rd.missing(k, "see configs/clusters/README.md");
  }
  if (!doc["name"].is_string()) rd.fail("name", "not a string", doc["name"], "a name");
  c.name = doc["name"].get<std::string>();
  if (doc.contains("description")) {
    if (!doc["description"].is_string()) rd.fail("description", "not a string", doc["description"], "text");
    c.description = doc["description"].get<std::string>();
  }
  c.kind = rd.enumerator("kind", doc["kind"], kKinds, "unknown device kind");
  if (doc.contains("device")) {
    if (!doc["device"].is_string()) rd.fail("device", "not a string", doc["device"], "the device's name");
    c.device = doc["device"].get<std::string>();
  }
  if (doc.contains("peak_tflops")) c.peak_tflops = rd.number("peak_tflops", doc["peak_tflops"], 0, 1e6, false);
  c.nodes = static_cast<int>(rd.integer("nodes", doc["nodes"], 1, 1 << 20));
  if (c.kind == DeviceKind::gpu) {
    if (!doc.contains("gpus_per_node")) rd.missing("gpus_per_node", "an integer >= 1 (kind gpu)");
    if (doc.contains("ranks_per_node") || doc.contains("cores_per_node")) {
      const char* k = doc.contains("ranks_per_node") ? "ranks_per_node" : "cores_per_node";
      rd.fail(k, "not for kind gpu", doc[k], "gpus_per_node (one rank per GPU)");
    }
    c.ranks_per_node = static_cast<int>(rd.integer("gpus_per_node", doc["gpus_per_node"], 1, 1024));
  } else {
    for (const char* k : {"ranks_per_node", "cores_per_node"}) {
      if (!doc.contains(k)) rd.missing(k, "an integer >= 1 (kind cpu)");
    }
    if (doc.contains("gpus_per_node")) rd.fail("gpus_per_node", "not for kind cpu", doc["gpus_per_node"], "ranks_per_node");
    c.ranks_per_node = static_cast<int>(rd.integer("ranks_per_node", doc["ranks_per_node"], 1, 1 << 16));
    c.cores_per_node = static_cast<int>(rd.integer("cores_per_node", doc["cores_per_node"], 1, 1 << 16));
  }
  if (static_cast<int64_t>(c.nodes) * c.ranks_per_node > (1 << 20)) {
    rd.fail("nodes", "too many ranks", doc["nodes"], "nodes x ranks per node <= 2^20");
  }
  const nlohmann::json& links = rd.object("links", doc["links"], "an object with intra_node and inter_node");
  rd.known_keys("links", links, {"intra_node", "inter_node"});
  if (!links.contains("intra_node")) rd.missing("links.intra_node", "a link tier");
  c.intra = read_tier(rd, "links.intra_node", links["intra_node"]);
  if (links.contains("inter_node")) {
    c.inter = read_tier(rd, "links.inter_node", links["inter_node"]);
  } else if (c.nodes > 1) {
    rd.missing("links.inter_node", "a link tier (nodes > 1)");
  } else {
    c.inter = c.intra;
  }
  if (doc.contains("calibration")) {
    if (!doc["calibration"].is_string()) rd.fail("calibration", "not a string", doc["calibration"], "a file name");
    c.calibration = doc["calibration"].get<std::string>();
  }
  return c;
}

ClusterSpec load_cluster(const std::string& path) {
  ClusterSpec c = parse_cluster(parse_json(path, read_file(path, kMaxClusterFileBytes)), path);
  c.path = path;
  return c;
}

nlohmann::json to_json(const ClusterSpec& c) {
  auto tier = [](const LinkTier& t) {
    return nlohmann::json{{"bandwidth_gbps", t.bandwidth_gbps}, {"latency_us", t.latency_us}, {"efficiency", t.efficiency}};
  };
  nlohmann::json j{{"name", c.name}, {"kind", to_string(c.kind)}, {"device", c.device}, {"peak_tflops", c.peak_tflops},
                   {"nodes", c.nodes}, {"links", {{"intra_node", tier(c.intra)}, {"inter_node", tier(c.inter)}}}};
  if (c.kind == DeviceKind::gpu) {
    j["gpus_per_node"] = c.ranks_per_node;
  } else {
    j["ranks_per_node"] = c.ranks_per_node;
    j["cores_per_node"] = c.cores_per_node;
  }
  if (!c.path.empty()) j["path"] = c.path;
  return j;
}

}  // namespace magi
