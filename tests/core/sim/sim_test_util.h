// Cases, clusters and kernel models for the simulator tests.
#pragma once

#include "core/sim/cluster.h"
#include "core/sim/kernel_model.h"
#include "core/workload/case_inputs.h"
#include "core/workload/workload.h"

#include <nlohmann/json.hpp>

#include <string>

namespace magi::testing {

// Documents of uniform lengths in [100, 3000] unless `fixed_docs` > 0 (then all of that length).
inline Case sim_case(const std::string& mask, int64_t tokens, int cp, Strategy st, int overlap = 0,
                     int64_t chunk = 256, int64_t fixed_docs = 0, int64_t window = 0) {
  nlohmann::json docs = {{"distribution", "uniform"}, {"min_tokens", 100}, {"max_tokens", 3000}, {"seed", 3}};
  if (fixed_docs > 0) docs = {{"distribution", "fixed"}, {"tokens", fixed_docs}};
  nlohmann::json m = {{"type", mask}};
  if (window > 0) m["window"] = window;
  nlohmann::json j = {
      {"name", "sim"},
      {"model", {{"heads_q", 8}, {"heads_kv", 4}, {"head_dim", 128}}},
      {"sequence", {{"total_tokens", tokens}, {"documents", docs}}},
      {"mask", m},
      {"parallel", {{"cp", cp}, {"strategy", std::string(to_string(st))}, {"chunk_tokens", chunk}}}};
  if (overlap > 0) j["parallel"]["overlap_degree"] = overlap;
  return parse_workload(j, "test").cases.at(0);
}

inline std::vector<AttnSlice> sim_mask(const Case& c) {
  return build_case_inputs(c.documents, c.mask, c.total_tokens).mask;
}

inline ClusterSpec sim_cluster(int nodes, int per_node, LinkTier intra, LinkTier inter) {
  ClusterSpec c;
  c.name = "test";
  c.kind = DeviceKind::gpu;
  c.nodes = nodes;
  c.ranks_per_node = per_node;
  c.intra = intra;
  c.inter = inter;
  return c;
}

inline KernelModel sim_kernel() {
  KernelModel k;
  k.coeffs.push_back(KernelCoeffs{Pass::fwd, 128, KernelTiles{}, 20e-6, 4.5e-9, 1e-7});
  k.coeffs.push_back(KernelCoeffs{Pass::bwd, 128, KernelTiles{}, 300e-6, 11e-9, 4e-7});
  return k;
}

}  // namespace magi::testing
