#include "core/plan/plan_json.h"

namespace magi {

namespace {

nlohmann::json ranges_json(const std::vector<Range>& ranges) {
  nlohmann::json a = nlohmann::json::array();
  for (const Range& r : ranges) a.push_back({r.start, r.end});
  return a;
}

nlohmann::json volume_json(const CommVolume& v) {
  return {{"fwd_bytes", v.fwd_bytes}, {"bwd_bytes", v.bwd_bytes}, {"max_rank_fwd_bytes", v.max_rank_fwd_bytes}};
}

double ratio(int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }

nlohmann::json price_json(const DispatchPrice& d) {
  return {{"split_chunks", d.split_chunks}, {"imbalance", d.imbalance},
          {"zero_redundancy_fwd_bytes", d.zero_redundancy_fwd_bytes}, {"forward_ms", d.forward_s * 1e3},
          {"overlap_degree", d.overlap_degree}};
}

// null when the adaptive dispatch cut nothing: there was no decision.
nlohmann::json cut_gate_json(const CutGate& g) {
  if (!g.weighed) return nullptr;
  return {{"compute_tflops", g.compute_tflops},
          {"comm_gbps", g.comm_gbps},
          {"cut", price_json(g.cut)},
          {"uncut", price_json(g.uncut)},
          {"cut_to_uncut_fwd_bytes", ratio(g.cut.zero_redundancy_fwd_bytes, g.uncut.zero_redundancy_fwd_bytes)}};
}

}  // namespace

nlohmann::json plan_to_json(const Plan& p, const PlanJsonOptions& options) {
  nlohmann::json j;
  j["schema"] = kPlanSchema;
  j["strategy"] = std::string(to_string(p.strategy));
  j["cp"] = p.cp;
  j["total_tokens"] = p.total_tokens;
  j["chunk_tokens"] = p.chunk_tokens;
  j["model"] = {{"heads_q", p.model.heads_q}, {"heads_kv", p.model.heads_kv},
                {"head_dim", p.model.head_dim}, {"dtype", std::string(to_string(p.model.dtype))}};
  j["skipped"] = p.skipped;
  j["skip_reason"] = p.skip_reason;
  j["overlap_degree"] = p.overlap_degree;
  j["dispatch"] = {{"solver", std::string(to_string(p.solver))},
                   {"units", p.num_units},
                   {"short_last_unit", p.short_last_unit},
                   {"min_rank_tokens", p.min_rank_tokens},
                   {"max_rank_tokens", p.max_rank_tokens}};
  if (p.strategy == Strategy::magi && !p.skipped) {
    nlohmann::json sizes = nlohmann::json::array();
    for (const UnitSizeCount& u : p.unit_sizes) sizes.push_back({{"tokens", u.tokens}, {"count", u.count}});
    j["dispatch"]["unit_sizes"] = std::move(sizes);
    j["dispatch"]["split_chunks"] = p.split_chunks;
    j["dispatch"]["cuts_declined"] = p.cuts_declined;
    j["dispatch"]["cut_gate"] = cut_gate_json(p.cut_gate);
    j["dispatch"]["fixed_chunk"] = {{"imbalance", p.fixed_chunk_imbalance},
                                    {"zero_redundancy_bound", volume_json(p.fixed_chunk_bound)}};
    nlohmann::json candidates = nlohmann::json::array();
    for (const ChunkCandidate& x : p.chunk_candidates) {
      candidates.push_back({{"chunk_tokens", x.chunk_tokens}, {"forward_ms", x.forward_s * 1e3},
                            {"overlap_degree", x.overlap_degree}, {"imbalance", x.imbalance},
                            {"split_chunks", x.split_chunks},
                            {"zero_redundancy_fwd_bytes", x.zero_redundancy_fwd_bytes}});
    }
    j["dispatch"]["chunk_candidates"] = std::move(candidates);
  }
  j["balance"] = {{"total_area", p.total_area},
                  {"max_rank_area", p.max_rank_area},
                  {"mean_rank_area", p.mean_rank_area},
                  {"lower_bound_area", p.lower_bound_area},
                  {"max_unit_area", p.max_unit_area},
                  {"indivisible_area", p.indivisible_area},
                  {"imbalance", p.imbalance}};
  j["volume"] = volume_json(p.volume);
  j["zero_redundancy_bound"] = volume_json(p.zero_redundancy_bound);
  if (p.heads > 1) {
    j["heads"] = p.heads;
    j["head_volume"] = volume_json(p.head_volume);
    j["context_volume"] = volume_json(p.context_volume);
  }
  if (p.strategy == Strategy::magi && !p.skipped) {
    auto tier = [](const TierBytes& t) {
      return nlohmann::json{{"intra_node_fwd_bytes", t.intra_node}, {"inter_node_fwd_bytes", t.inter_node}};
    };
    j["tiers"] = {{"ranks_per_node", p.ranks_per_node},
                  {"nodes", p.cp / p.ranks_per_node},
                  {"volume", tier(p.tier_volume)},
                  {"bound", tier(p.tier_bound)},
                  {"flat", tier(p.tier_flat)}};
  }

  nlohmann::json ranks = nlohmann::json::array();
  size_t max_stages = 0;
  for (const RankPlan& rk : p.ranks) {
    nlohmann::json r;
    r["rank"] = rk.rank;
    r["q_ranges"] = ranges_json(rk.q_ranges);
    r["tokens"] = rk.tokens;
    r["area"] = rk.area;
    r["remote_kv_ranges"] = ranges_json(rk.remote_kv_ranges);
    r["remote_kv_tokens"] = rk.remote_kv_tokens;
    r["send_bytes_fwd"] = rk.send_bytes_fwd;
    r["recv_bytes_fwd"] = rk.recv_bytes_fwd;
    r["head_begin"] = rk.head_begin;
    r["head_end"] = rk.head_end;
    nlohmann::json stages = nlohmann::json::array();
    for (const Stage& st : rk.stages) {
      nlohmann::json s;
      s["kv_ranges"] = ranges_json(st.kv_ranges);
      s["kv_tokens"] = total_size(st.kv_ranges);
      s["area"] = st.area;
      s["num_slices"] = st.slices.size();
      if (options.slices) {
        nlohmann::json sl = nlohmann::json::array();
        for (const AttnSlice& x : st.slices) {
          sl.push_back({x.q.start, x.q.end, x.k.start, x.k.end, std::string(to_string(x.type))});
        }
        s["slices"] = std::move(sl);
      }
      stages.push_back(std::move(s));
    }
    max_stages = std::max(max_stages, rk.stages.size());
    r["stages"] = std::move(stages);
    ranks.push_back(std::move(r));
  }
  j["ranks"] = std::move(ranks);

  nlohmann::json cast = nlohmann::json::array();
  std::vector<int64_t> stage_tokens(max_stages, 0);
  std::vector<int64_t> stage_messages(max_stages, 0);
  for (const Transfer& t : p.transfers) {
    cast.push_back({{"stage", t.stage}, {"src", t.src}, {"dst", t.dst}, {"ranges", ranges_json(t.ranges)},
                    {"tokens", t.tokens}, {"from_stage", t.from_stage}});
    if (static_cast<size_t>(t.stage) < max_stages) {
      stage_tokens[static_cast<size_t>(t.stage)] += t.tokens;
      ++stage_messages[static_cast<size_t>(t.stage)];
    }
  }
  j["group_cast"] = std::move(cast);

  // Per stage index, over all ranks.
  nlohmann::json stages = nlohmann::json::array();
  for (size_t s = 0; s < max_stages; ++s) {
    int64_t area = 0, slices = 0;
    for (const RankPlan& rk : p.ranks) {
      if (s < rk.stages.size()) {
        area += rk.stages[s].area;
        slices += static_cast<int64_t>(rk.stages[s].slices.size());
      }
    }
    stages.push_back({{"stage", s}, {"area", area}, {"slices", slices}, {"messages", stage_messages[s]},
                      {"recv_tokens", stage_tokens[s]}});
  }
  j["stages"] = std::move(stages);
  return j;
}

nlohmann::json strategies_to_json(const std::vector<StrategySummary>& strategies, const CommVolume& bound) {
  nlohmann::json a = nlohmann::json::array();
  for (const StrategySummary& s : strategies) {
    a.push_back({{"strategy", std::string(to_string(s.strategy))},
                 {"skipped", s.skipped},
                 {"skip_reason", s.skip_reason},
                 {"fwd_bytes", s.volume.fwd_bytes},
                 {"bwd_bytes", s.volume.bwd_bytes},
                 {"max_rank_fwd_bytes", s.volume.max_rank_fwd_bytes},
                 {"own_bound_fwd_bytes", s.own_bound.fwd_bytes},
                 {"bound_fwd_bytes", bound.fwd_bytes},
                 {"fwd_vs_bound", ratio(s.volume.fwd_bytes, bound.fwd_bytes)},
                 {"max_rank_area", s.max_rank_area},
                 {"imbalance", s.imbalance},
                 {"stages", s.stages}});
  }
  return a;
}

}  // namespace magi
