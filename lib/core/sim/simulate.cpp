#include "core/sim/simulate.h"

#include "core/base/error.h"
#include "core/cost/overlap_schedule.h"
#include "core/plan/clip.h"
#include "core/plan/comm_volume.h"
#include "core/plan/dispatch.h"
#include "core/plan/planner.h"

#include <algorithm>
#include <unordered_map>

namespace magi {

double CaseSim::fwd_s() const {
  double t = 0;
  for (const RankSim& r : ranks) t = std::max(t, r.fwd.total_s);
  return t;
}
double CaseSim::bwd_s() const {
  double t = 0;
  for (const RankSim& r : ranks) t = std::max(t, r.bwd.total_s);
  return t;
}

AutoRates auto_rates(const ClusterSpec& cl, const KernelModel& km, const ModelShape& m, int cp) {
  const KernelCoeffs k = km.at(Pass::fwd, m.head_dim);
  const double tile_flops = 4.0 * k.tiles.fwd_rows * k.tiles.fwd_keys * m.head_dim;
  const int ranks_on_node = std::min(cp, cl.ranks_per_node);
  const double rate = k.tile_s > 0 ? tile_flops / k.tile_s * cl.rank_speed(ranks_on_node) : 1e18;
  const LinkTier& t = cp > cl.ranks_per_node ? cl.inter : cl.intra;
  return AutoRates{rate / 1e12, t.bandwidth_gbps * t.efficiency};
}

namespace {

struct Ctx {
  const ClusterSpec& cl;
  const KernelModel& km;
  const ModelShape& m;
  KernelTiles tiles;
  double speed = 1;  // threads x core share of a rank (cpu); 1 on a gpu
  int elem = 2;      // bytes per element of the plan's dtype
  const SimOptions& opt;

  // Seconds of rank r's compute step `step` of `pass`: measured when given, else the model's.
  double step_s(int r, Pass pass, size_t step, const KernelWork& w, int hq, int hkv) const {
    if (opt.measured_compute) {
      const std::vector<double>& v = (*opt.measured_compute)[static_cast<size_t>(r)][pass == Pass::fwd ? 0 : 1];
      MAGI_CHECK(step < v.size(), "rank {}: {} measured {} pass steps, the simulation has more", r, v.size(),
                 to_string(pass));
      return v[step];
    }
    return km.seconds(pass, w, m, hq, hkv) / speed;
  }
  double step_s(int r, Pass pass, size_t step, const KernelWork& w) const {
    return step_s(r, pass, step, w, m.heads_q, m.heads_kv);
  }
  void record(RankSim& rs, const KernelWork& w, int hq, int hkv) const {
    if (opt.record_steps) rs.steps.push_back(StepWork{w, hq, hkv});
  }
  void record(RankSim& rs, const KernelWork& w) const { record(rs, w, m.heads_q, m.heads_kv); }
  // A collective or all-to-all-v stage of one rank, bytes per tier: the largest latency of the
  // tiers it uses, then each tier's bytes at its bandwidth, one after the other (a rank's
  // messages leave through one queue). So a cluster whose tiers are equal is one tier.
  double stage_comm_s(const std::array<double, kTiers>& bytes) const {
    double latency = 0, t = 0;
    for (size_t i = 0; i < kTiers; ++i) {
      if (bytes[i] <= 0) continue;
      const LinkTier& l = cl.link(static_cast<Tier>(i));
      latency = std::max(latency, l.latency_us * 1e-6);
      t += bytes[i] / (l.bandwidth_gbps * 1e9 * l.efficiency);
    }
    return latency + t;
  }
};

void finish(RankPassSim& p, double total, double compute) {
  p.total_s = total;
  p.compute_s = compute;
  p.exposed_s = std::max(0.0, total - compute);
}

// ---- magi: the plan's stages and transfers ----
void sim_magi(const Plan& plan, const Ctx& x, CaseSim& out) {
  const size_t n = plan.ranks.size();
  // overlap_degree + 1, or + 2 for a node-aware plan that forwards (core/plan/node_routing.h).
  const size_t stages = plan.ranks.empty() ? 1 : plan.ranks[0].stages.size();
  const int64_t kv = kv_bytes_per_token(plan.model, x.elem);
  // Per rank and stage, per tier: max(sent, received) of the stage's all-to-all-v.
  std::vector<std::array<double, kTiers>> sent(n * stages), recv(n * stages);
  for (auto& a : sent) a.fill(0);
  for (auto& a : recv) a.fill(0);
  for (const Transfer& t : plan.transfers) {
    if (t.src == t.dst) continue;
    const size_t tier = static_cast<size_t>(x.cl.tier(t.src, t.dst));
    const double b = static_cast<double>(t.tokens) * static_cast<double>(kv);
    sent[static_cast<size_t>(t.src) * stages + static_cast<size_t>(t.stage)][tier] += b;
    recv[static_cast<size_t>(t.dst) * stages + static_cast<size_t>(t.stage)][tier] += b;
  }
  for (size_t r = 0; r < n; ++r) {
    const RankPlan& rk = plan.ranks[r];
    std::vector<StageTime> fwd(rk.stages.size()), bwd(rk.stages.size());
    RankSim& rs = out.ranks[r];
    for (size_t s = 0; s < rk.stages.size(); ++s) {
      const KernelWork w = count_kernel_work(rk.stages[s].slices, x.tiles);
      std::array<double, kTiers> both{};
      for (size_t i = 0; i < kTiers; ++i) {
        both[i] = std::max(sent[r * stages + s][i], recv[r * stages + s][i]);
        rs.fwd.sent_bytes[i] += static_cast<int64_t>(sent[r * stages + s][i]);
        rs.bwd.sent_bytes[i] += static_cast<int64_t>(sent[r * stages + s][i] + recv[r * stages + s][i]);
      }
      const double comm = s == 0 ? 0.0 : x.stage_comm_s(both);
      const int ri = static_cast<int>(r);
      fwd[s] = StageTime{x.step_s(ri, Pass::fwd, s, w), comm, 0.0};
      bwd[s] = StageTime{x.step_s(ri, Pass::bwd, s, w), comm, comm};
      x.record(rs, w);
    }
    const ScheduleTime f = forward_schedule(fwd), b = backward_schedule(bwd);
    finish(rs.fwd, f.total_s, f.compute_s);
    finish(rs.bwd, b.total_s, b.compute_s);
  }
}

// Unit index holding token t (units consecutive from 0).
size_t unit_of(const std::vector<Range>& units, int64_t t) {
  auto it = std::upper_bound(units.begin(), units.end(), t, [](int64_t v, const Range& u) { return v < u.end; });
  return static_cast<size_t>(it - units.begin());
}

// ---- ring and allgather: zigzag blocks; rank r hosts units r and 2cp - 1 - r ----
// Kernel work of rank r's queries against each owner's keys (sparse: owners with work only).
struct OwnerWork {
  int owner;
  KernelWork work;
};
std::vector<OwnerWork> rank_owner_work(const RowPieces& rp, int cp, int r, const KernelTiles& tiles,
                                       std::vector<std::vector<AttnSlice>>& scratch, std::vector<int>& touched) {
  auto owner_of = [cp](size_t u) { return u < static_cast<size_t>(cp) ? static_cast<int>(u) : 2 * cp - 1 - static_cast<int>(u); };
  std::vector<AttnSlice> tmp;
  for (size_t u : {static_cast<size_t>(r), static_cast<size_t>(2 * cp - 1 - r)}) {
    for (size_t i = rp.offsets[u]; i < rp.offsets[u + 1]; ++i) {
      const AttnSlice& p = rp.pieces[i];
      if (p.k.empty()) continue;
      for (size_t ku = unit_of(rp.units, p.k.start); ku < rp.units.size() && rp.units[ku].start < p.k.end; ++ku) {
        tmp.clear();
        clip_slice_into(p, p.q, rp.units[ku], tmp);
        if (tmp.empty()) continue;
        const int o = owner_of(ku);
        if (scratch[static_cast<size_t>(o)].empty()) touched.push_back(o);
        scratch[static_cast<size_t>(o)].insert(scratch[static_cast<size_t>(o)].end(), tmp.begin(), tmp.end());
      }
    }
  }
  std::vector<OwnerWork> out;
  for (int o : touched) {
    out.push_back(OwnerWork{o, count_kernel_work(scratch[static_cast<size_t>(o)], tiles)});
    scratch[static_cast<size_t>(o)].clear();
  }
  touched.clear();
  return out;
}

void sim_ring(const Plan& plan, const RowPieces& rp, const Ctx& x, CaseSim& out) {
  const int cp = plan.cp;
  const int64_t kv = kv_bytes_per_token(plan.model, x.elem);
  std::vector<std::vector<AttnSlice>> scratch(static_cast<size_t>(cp));
  std::vector<int> touched;
  // Compute per rank and step (step s of rank r holds owner (r - s) mod cp), sparse, by step.
  std::vector<std::vector<std::pair<int, KernelWork>>> steps(static_cast<size_t>(cp));
  for (int r = 0; r < cp; ++r) {
    for (const OwnerWork& ow : rank_owner_work(rp, cp, r, x.tiles, scratch, touched)) {
      steps[static_cast<size_t>(r)].emplace_back(((r - ow.owner) % cp + cp) % cp, ow.work);
    }
    auto& v = steps[static_cast<size_t>(r)];
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  std::vector<int64_t> tokens(static_cast<size_t>(cp));
  for (int r = 0; r < cp; ++r) tokens[static_cast<size_t>(r)] = plan.ranks[static_cast<size_t>(r)].tokens;
  for (Pass pass : {Pass::fwd, Pass::bwd}) {
    // Hop s brings rank r the block of owner (r - s - 1) mod cp from rank r - 1 (with its dK/dV
    // accumulator in the backward); a hop starts when both ends have started step s and ends
    // after the link time of the tier between them. Step s + 1 starts when step s is computed,
    // its block has arrived and the block it sent on has left.
    const int acc = pass == Pass::bwd ? 2 : 1;
    std::vector<double> start(static_cast<size_t>(cp), 0.0), arrive(static_cast<size_t>(cp), 0.0),
        comp_sum(static_cast<size_t>(cp), 0.0);
    std::vector<size_t> cursor(static_cast<size_t>(cp), 0);
    auto comp = [&](int r, int s) {
      auto& v = steps[static_cast<size_t>(r)];
      size_t& c = cursor[static_cast<size_t>(r)];
      KernelWork w;
      if (c < v.size() && v[c].first == s) w = v[c++].second;
      const double t = x.step_s(r, pass, static_cast<size_t>(s), w);
      if (pass == Pass::fwd) x.record(out.ranks[static_cast<size_t>(r)], w);
      comp_sum[static_cast<size_t>(r)] += t;
      return t;
    };
    auto hop_s = [&](int r, int s, int blocks) {
      const int owner = ((r - s - 1) % cp + cp) % cp;
      const int prev = (r - 1 + cp) % cp;
      const size_t tier = static_cast<size_t>(x.cl.tier(prev, r));
      std::array<double, kTiers> b{};
      b[tier] = static_cast<double>(tokens[static_cast<size_t>(owner)]) * static_cast<double>(kv) * blocks;
      return x.stage_comm_s(b);
    };
    std::vector<double> step_comp(static_cast<size_t>(cp));
    for (int s = 0; s < cp; ++s) {
      for (int r = 0; r < cp; ++r) step_comp[static_cast<size_t>(r)] = comp(r, s);
      if (s + 1 < cp) {
        for (int r = 0; r < cp; ++r) {
          const int prev = (r - 1 + cp) % cp;
          arrive[static_cast<size_t>(r)] = std::max(start[static_cast<size_t>(prev)], start[static_cast<size_t>(r)]) + hop_s(r, s, acc);
        }
        std::vector<double> next(static_cast<size_t>(cp));
        for (int r = 0; r < cp; ++r) {
          const int nxt = (r + 1) % cp;
          next[static_cast<size_t>(r)] = std::max({start[static_cast<size_t>(r)] + step_comp[static_cast<size_t>(r)],
                                                   arrive[static_cast<size_t>(r)], arrive[static_cast<size_t>(nxt)]});
        }
        start.swap(next);
      } else {
        for (int r = 0; r < cp; ++r) {
          double end = start[static_cast<size_t>(r)] + step_comp[static_cast<size_t>(r)];
          // Backward: the accumulators' last hop home.
          if (pass == Pass::bwd && cp > 1) end += hop_s(r, s, 1);
          RankPassSim& p = pass == Pass::fwd ? out.ranks[static_cast<size_t>(r)].fwd : out.ranks[static_cast<size_t>(r)].bwd;
          finish(p, end, comp_sum[static_cast<size_t>(r)]);
        }
      }
    }
  }
  const PlannedBytes pb = planned_bytes(plan, x.elem);
  for (int r = 0; r < cp && cp > 1; ++r) {
    const size_t tier = static_cast<size_t>(x.cl.tier(r, (r + 1) % cp));
    out.ranks[static_cast<size_t>(r)].fwd.sent_bytes[tier] = pb.fwd[static_cast<size_t>(r)].sent;
    out.ranks[static_cast<size_t>(r)].bwd.sent_bytes[tier] = pb.bwd[static_cast<size_t>(r)].sent;
  }
}

// Bytes a rank moves in a collective whose traffic goes evenly to its peers, split by tier.
std::array<double, kTiers> even_split(const ClusterSpec& cl, int cp, int r, double bytes) {
  std::array<double, kTiers> b{};
  if (cp < 2) return b;
  const int node = cl.node_of(r);
  const int first = node * cl.ranks_per_node;
  const int same = std::min(cp, first + cl.ranks_per_node) - first - 1;
  b[0] = bytes * same / (cp - 1);
  b[1] = bytes - b[0];
  return b;
}

void sim_allgather(const Plan& plan, const RowPieces& rp, const Ctx& x, CaseSim& out) {
  const int cp = plan.cp;
  const PlannedBytes pb = planned_bytes(plan, x.elem);
  for (int r = 0; r < cp; ++r) {
    KernelWork w;
    std::vector<AttnSlice> mine;
    for (size_t u : {static_cast<size_t>(r), static_cast<size_t>(2 * cp - 1 - r)}) {
      mine.insert(mine.end(), rp.pieces.begin() + static_cast<std::ptrdiff_t>(rp.offsets[u]),
                  rp.pieces.begin() + static_cast<std::ptrdiff_t>(rp.offsets[u + 1]));
    }
    w = count_kernel_work(mine, x.tiles);
    const RankBytes& f = pb.fwd[static_cast<size_t>(r)];
    const double gather = static_cast<double>(std::max(f.sent, f.received));
    const double c = x.stage_comm_s(even_split(x.cl, cp, r, gather));
    RankSim& rs = out.ranks[static_cast<size_t>(r)];
    const double cf = x.step_s(r, Pass::fwd, 0, w), cb = x.step_s(r, Pass::bwd, 0, w);
    x.record(rs, w);
    finish(rs.fwd, c + cf, cf);
    finish(rs.bwd, 2 * c + cb, cb);  // all-gather again, then the reduce-scatter
    const auto sf = even_split(x.cl, cp, r, static_cast<double>(f.sent));
    const auto sb = even_split(x.cl, cp, r, static_cast<double>(pb.bwd[static_cast<size_t>(r)].sent));
    for (size_t i = 0; i < kTiers; ++i) {
      rs.fwd.sent_bytes[i] = static_cast<int64_t>(sf[i]);
      rs.bwd.sent_bytes[i] = static_cast<int64_t>(sb[i]);
    }
  }
}

void sim_ulysses(const Plan& plan, const std::vector<AttnSlice>& mask, const Ctx& x, CaseSim& out) {
  const int cp = plan.cp;
  const ModelShape& m = plan.model;
  const KernelWork w = count_kernel_work(mask, x.tiles);
  const PlannedBytes pb = planned_bytes(plan, x.elem);
  // Forward: Q, K, V in (Hq + 2 Hkv of 2 Hq + 2 Hkv head rows), out back (Hq); backward: dO in
  // (Hq), dQ, dK, dV back (Hq + 2 Hkv): two all-to-alls per pass, each exposed.
  const double big = static_cast<double>(m.heads_q + 2 * m.heads_kv) / (2.0 * m.heads_q + 2.0 * m.heads_kv);
  for (int r = 0; r < cp; ++r) {
    const HeadSplit h = head_split(plan, r);
    RankSim& rs = out.ranks[static_cast<size_t>(r)];
    for (Pass pass : {Pass::fwd, Pass::bwd}) {
      const RankBytes& b = pass == Pass::fwd ? pb.fwd[static_cast<size_t>(r)] : pb.bwd[static_cast<size_t>(r)];
      const double bytes = static_cast<double>(std::max(b.sent, b.received));
      const double c = x.stage_comm_s(even_split(x.cl, cp, r, bytes * big)) +
                       x.stage_comm_s(even_split(x.cl, cp, r, bytes * (1 - big)));
      const double k = x.step_s(r, pass, 0, w, h.q_end - h.q_begin, h.kv_end - h.kv_begin);
      if (pass == Pass::fwd) x.record(rs, w, h.q_end - h.q_begin, h.kv_end - h.kv_begin);
      RankPassSim& p = pass == Pass::fwd ? rs.fwd : rs.bwd;
      finish(p, c + k, k);
      const auto s = even_split(x.cl, cp, r, static_cast<double>(b.sent));
      for (size_t i = 0; i < kTiers; ++i) p.sent_bytes[i] = static_cast<int64_t>(s[i]);
    }
  }
}

}  // namespace

CaseSim simulate_case(const std::vector<AttnSlice>& mask, const Case& c0, const ClusterSpec& cl, const KernelModel& km,
                      const SimOptions& opt) {
  Case c = c0;
  if (c.parallel.cp > cl.max_ranks()) {
    throw ConfigError(fmt::format("parallel.cp {}: the cluster {} has {} ranks ({} nodes x {})", c.parallel.cp, cl.name,
                                  cl.max_ranks(), cl.nodes, cl.ranks_per_node));
  }
  const AutoRates rates = auto_rates(cl, km, c.model, c.parallel.cp);
  c.parallel.compute_tflops = rates.compute_tflops;
  c.parallel.comm_gbps = rates.comm_gbps;
  CaseSim out;
  out.strategy = c.parallel.strategy;
  out.cp = c.parallel.cp;
  if (c.parallel.heads > 1) {  // its schedule (all-to-alls, then the context strategy) is not modelled
    out.skipped = true;
    out.skip_reason = fmt::format("parallel.heads = {}: simulate does not price hybrid head x context plans",
                                  c.parallel.heads);
    return out;
  }
  const bool outline = c.parallel.strategy != Strategy::magi;
  const Plan plan = build_plan(mask, c, outline ? PlanDetail::outline : PlanDetail::full);
  out.skipped = plan.skipped;
  out.skip_reason = plan.skip_reason;
  if (plan.skipped) return out;
  out.overlap_degree = plan.overlap_degree;
  out.chunk_tokens = plan.chunk_tokens;
  out.imbalance = plan.imbalance;
  out.planned_fwd_bytes = plan.volume.fwd_bytes;
  out.planned_bwd_bytes = plan.volume.bwd_bytes;
  out.bound_fwd_bytes = plan.zero_redundancy_bound.fwd_bytes;
  out.ranks.resize(plan.ranks.size());
  for (size_t r = 0; r < plan.ranks.size(); ++r) {
    out.ranks[r].rank = static_cast<int>(r);
    out.ranks[r].tokens = plan.ranks[r].tokens;
    out.ranks[r].area = plan.ranks[r].area;
  }
  const int on_node = std::min(c.parallel.cp, cl.ranks_per_node);
  if (opt.measured_compute) {
    MAGI_CHECK(opt.measured_compute->size() == plan.ranks.size(), "measured compute of {} ranks for a plan of {}",
               opt.measured_compute->size(), plan.ranks.size());
  }
  const Ctx x{cl, km, plan.model, km.tiles(plan.model.head_dim), cl.rank_speed(on_node), dtype_bytes(plan.model.dtype),
              opt};
  switch (plan.strategy) {
    case Strategy::magi: sim_magi(plan, x, out); break;
    case Strategy::ring: sim_ring(plan, split_rows(mask, zigzag_units(c.total_tokens, c.parallel.cp)), x, out); break;
    case Strategy::allgather:
      sim_allgather(plan, split_rows(mask, zigzag_units(c.total_tokens, c.parallel.cp)), x, out);
      break;
    case Strategy::ulysses: sim_ulysses(plan, mask, x, out); break;
  }
  return out;
}

}  // namespace magi
