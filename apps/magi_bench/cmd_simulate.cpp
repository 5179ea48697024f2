// `magi-bench simulate`: predict a workload's cases on a described cluster (configs/clusters/)
// with a calibrated cost model (core/sim), at any cp the cluster holds, without running anything.
// Per strategy and cp: forward and backward time of the slowest rank, TFLOP/s per GPU, scaling
// efficiency against the smallest cp simulated, bytes per rank on each link tier, exposed comm,
// imbalance; rows in the results schema (backend "simulated") for --out / --csv. The
// calibration's own error (held out) is printed beside. --tune searches chunk size, overlap
// degree and strategy per cp. docs/simulation.md explains the model.
#include "case_row.h"
#include "commands.h"
#include "result_files.h"
#include "sim_common.h"
#include "system_info.h"

#include "core/base/error.h"
#include "core/cost/cost_model.h"
#include "core/plan/plan_size.h"
#include "core/results/writers.h"
#include "core/sim/simulate.h"
#include "core/workload/case_inputs.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <sstream>

namespace magi::app {

namespace {

struct SimulateOptions {
  std::string config, cluster, calibration, cp_list, strategies;
  std::string out_json, out_csv;
  bool force = false;
  bool tune = false;
};

std::vector<int> parse_cp_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > kMaxCp) {
      throw UsageError(fmt::format("--cp {}: \"{}\" is not an integer in [1, {}]", s, item, kMaxCp));
    }
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) throw UsageError(fmt::format("--cp {}: expected a comma-separated list of integers", s));
  return out;
}

std::vector<Strategy> parse_strategies(const std::string& s) {
  std::vector<Strategy> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    bool found = false;
    for (Strategy x : {Strategy::magi, Strategy::ring, Strategy::ulysses, Strategy::allgather}) {
      if (to_string(x) == item) {
        out.push_back(x);
        found = true;
      }
    }
    if (!found) throw UsageError(fmt::format("--strategy {}: \"{}\" is not magi, ring, ulysses or allgather", s, item));
  }
  return out;
}

// The case row of a simulation: each rank's predicted times as a single "iteration".
CaseRow sim_row(const Case& c, const CaseSim& s, const ClusterSpec& cl, const std::vector<AttnSlice>& mask) {
  CaseRow row = case_row(c, "simulated");
  row.dtype = std::string(to_string(c.model.dtype));
  row.area = mask_area(mask);
  row.peak_tflops = cl.peak_tflops;
  if (s.skipped) {
    row.skipped = true;
    row.skip_reason = s.skip_reason;
    return row;
  }
  row.fwd_ran = row.bwd_ran = true;
  row.planned_fwd_bytes = s.planned_fwd_bytes;
  row.planned_bwd_bytes = s.planned_bwd_bytes;
  row.bound_fwd_bytes = s.bound_fwd_bytes;
  row.imbalance = s.imbalance;
  std::array<int64_t, kTiers> max_tier{};
  double fwd_exposed = 0, bwd_exposed = 0;
  for (const RankSim& r : s.ranks) {
    RankRow rr;
    rr.rank = r.rank;
    rr.host = fmt::format("node{}", cl.node_of(r.rank));
    auto one = [](double seconds) { return summarize({seconds * 1e3}); };
    rr.fwd = one(r.fwd.total_s);
    rr.bwd = one(r.bwd.total_s);
    rr.fwd_sent_bytes = r.fwd.sent_bytes[0] + r.fwd.sent_bytes[1];
    rr.bwd_sent_bytes = r.bwd.sent_bytes[0] + r.bwd.sent_bytes[1];
    rr.fwd_comm_wait_ms = r.fwd.exposed_s * 1e3;
    rr.bwd_comm_wait_ms = r.bwd.exposed_s * 1e3;
    rr.tokens = r.tokens;
    rr.area = r.area;
    row.ranks.push_back(rr);
    for (size_t i = 0; i < kTiers; ++i) max_tier[i] = std::max(max_tier[i], r.fwd.sent_bytes[i]);
    fwd_exposed = std::max(fwd_exposed, r.fwd.exposed_s);
    bwd_exposed = std::max(bwd_exposed, r.bwd.exposed_s);
  }
  row.details["simulation"] = {{"overlap_degree", s.overlap_degree},
                               {"chunk_tokens", s.chunk_tokens},
                               {"max_rank_fwd_sent_bytes_intra_node", max_tier[0]},
                               {"max_rank_fwd_sent_bytes_inter_node", max_tier[1]},
                               {"max_rank_fwd_exposed_ms", fwd_exposed * 1e3},
                               {"max_rank_bwd_exposed_ms", bwd_exposed * 1e3}};
  return row;
}

std::string sim_header() {
  return fmt::format("#{:>9} {:>6} {:>7} {:>6} {:>10} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>6} {:>6} {:>7} {:>7}\n"
                     "#{:>9} {:>6} {:>7} {:>6} {:>10} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>6} {:>6} {:>7} {:>7}\n",
                     "strategy", "cp", "chunk", "degree", "fwd", "bwd", "fwd", "bwd", "MFU", "scale", "intra", "inter",
                     "exp.", "exp.", "imbal", "plan+sim", "", "", "", "", "(ms)", "(ms)", "TF/s/GPU", "TF/s/GPU", "(%)",
                     "eff", "MB/rank", "MB/rank", "fwd%", "bwd%", "", "(s)");
}

std::string dash_or(double v, int digits) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "-"; }

// A rate with three significant digits at least: GPU rates read 432.6, CPU rates 0.00164.
std::string rate(double v) {
  if (!std::isfinite(v)) return "-";
  return v >= 100 ? fmt::format("{:.1f}", v) : fmt::format("{:.3g}", v);
}

std::string sim_line(const CaseRow& r, double eff, double seconds) {
  if (r.skipped) return fmt::format(" {:>9} {:>6}   skipped: {}\n", r.strategy, r.cp, r.skip_reason);
  const nlohmann::json& d = r.details["simulation"];
  const double fwd = r.fwd_ms(), bwd = r.bwd_ms();
  return fmt::format(" {:>9} {:>6} {:>7} {:>6} {:>10.3f} {:>10.3f} {:>8} {:>8} {:>6} {:>6} {:>10.2f} {:>10.2f} "
                     "{:>6.1f} {:>6.1f} {:>7.3f} {:>7.2f}\n",
                     r.strategy, r.cp, d["chunk_tokens"].get<int64_t>(), d["overlap_degree"].get<int>(), fwd, bwd,
                     rate(r.fwd_tflops_per_gpu()), rate(r.bwd_tflops_per_gpu()), dash_or(r.fwd_mfu_pct(), 1), dash_or(eff, 2),
                     static_cast<double>(d["max_rank_fwd_sent_bytes_intra_node"].get<int64_t>()) / 1e6,
                     static_cast<double>(d["max_rank_fwd_sent_bytes_inter_node"].get<int64_t>()) / 1e6,
                     fwd > 0 ? 100 * d["max_rank_fwd_exposed_ms"].get<double>() / fwd : 0.0,
                     bwd > 0 ? 100 * d["max_rank_bwd_exposed_ms"].get<double>() / bwd : 0.0, r.imbalance, seconds);
}

std::string calibration_line(const Calibration& cal) {
  std::string s = fmt::format("# Calibration: {} ({}, {} kernel records{}{})\n", cal.path, cal.device,
                              cal.kernel.coeffs.size(), cal.intra || cal.inter ? ", calibrated links" : "",
                              cal.thread_efficiency ? fmt::format(", thread efficiency {:.3f}", *cal.thread_efficiency) : "");
  const nlohmann::json& v = cal.validation;
  if (v.is_object() && v.contains("summary")) {
    for (const auto& [role, st] : v["summary"].items()) {
      s += fmt::format("#   its {} error: {} predictions, median |error| {:.1f}%, worst {:.1f}%\n", role,
                       st["count"].get<int64_t>(), 100 * st["median_abs"].get<double>(),
                       100 * st["worst_abs"].get<double>());
    }
  } else {
    s += "#   (no validation recorded in the calibration: its error is unknown)\n";
  }
  return s;
}

double total_s(const CaseSim& s) { return s.skipped ? INFINITY : s.fwd_s() + s.bwd_s(); }

void simulate_workload(Context& ctx, const SimulateOptions& opt) {
  Workload wl;
  ClusterSpec cluster;
  Calibration cal;
  std::vector<int> cps;
  std::vector<Strategy> strategies;
  preflight(ctx, [&] {
    wl = load_workload(opt.config);
    cluster = load_cluster(opt.cluster);
    cal = calibration_for(cluster, opt.calibration);
    if (!opt.cp_list.empty()) cps = parse_cp_list(opt.cp_list);
    if (!opt.strategies.empty()) strategies = parse_strategies(opt.strategies);
    for (int cp : cps) {
      if (cp > cluster.max_ranks()) {
        throw UsageError(fmt::format("--cp {}: the cluster {} has {} ranks", cp, cluster.name, cluster.max_ranks()));
      }
    }
    ResultFiles{opt.out_json, opt.out_csv, opt.force}.check_before_work();
  });
  const ClusterSpec cl = with_calibration(cluster, cal);
  Report report;
  report.metadata = collect_metadata(ctx);
  report.metadata["backend"] = "simulated";
  report.metadata["cluster"] = to_json(cl);
  report.metadata["calibration"] = {{"path", cal.path}, {"device", cal.device}};
  if (cal.validation.is_object() && cal.validation.contains("summary")) {
    report.metadata["calibration"]["error"] = cal.validation["summary"];
  }
  report.metadata["workload"] = {{"path", opt.config}, {"name", wl.name}, {"resolved", wl.resolved}};
  std::string head = metadata_header(report.metadata);
  head += fmt::format("# Cluster: {} ({}): {} node{} x {} {}, peak {} TFLOP/s; intra-node {:.4g} GB/s x {} + {:.4g} us, "
                      "inter-node {:.4g} GB/s x {} + {:.4g} us\n",
                      cl.name, cl.path, cl.nodes, cl.nodes == 1 ? "" : "s", cl.ranks_per_node,
                      cl.kind == DeviceKind::gpu ? "GPUs" : fmt::format("ranks on {} cores", cl.cores_per_node),
                      cl.peak_tflops, cl.intra.bandwidth_gbps, cl.intra.efficiency, cl.intra.latency_us,
                      cl.inter.bandwidth_gbps, cl.inter.efficiency, cl.inter.latency_us);
  head += calibration_line(cal);
  print0(ctx, head);

  // One block per sweep point up to cp and strategy (case_key); its cps and strategies are the
  // workload's unless --cp / --strategy name others.
  std::vector<std::string> keys;
  std::map<std::string, std::vector<const Case*>> points;
  for (const Case& c : wl.cases) {
    const std::string key = case_key(c);
    if (!points.count(key)) keys.push_back(key);
    points[key].push_back(&c);
  }
  for (const std::string& key : keys) {
    const std::vector<const Case*>& group = points[key];
    Case c0 = *group.front();
    if (cl.kind == DeviceKind::cpu) c0.model.dtype = DType::fp32;  // what the CPU backend stores and sends
    const auto t_in = std::chrono::steady_clock::now();
    const CaseInputs inputs = build_case_inputs(c0.documents, c0.mask, c0.total_tokens);
    const double inputs_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_in).count();
    print0(ctx, fmt::format("#\n# Case {}: mask {}, {} tokens, {} documents, Hq {} Hkv {} D {} {} (inputs {:.2f} s)\n",
                            c0.name, c0.mask.type, c0.total_tokens, inputs.documents.size(), c0.model.heads_q,
                            c0.model.heads_kv, c0.model.head_dim, to_string(c0.model.dtype), inputs_s));
    print0(ctx, sim_header());
    std::vector<int> case_cps = cps;
    std::vector<Strategy> case_strategies = strategies;
    for (const Case* c : group) {
      if (cps.empty() && std::find(case_cps.begin(), case_cps.end(), c->parallel.cp) == case_cps.end()) {
        case_cps.push_back(c->parallel.cp);
      }
      if (strategies.empty() &&
          std::find(case_strategies.begin(), case_strategies.end(), c->parallel.strategy) == case_strategies.end()) {
        case_strategies.push_back(c->parallel.strategy);
      }
    }
    for (Strategy st : case_strategies) {
      double first_rate = NAN;
      for (int cp : case_cps) {
        Case c = c0;
        c.parallel.cp = cp;
        c.parallel.strategy = st;
        const auto t0 = std::chrono::steady_clock::now();
        const CaseSim s = simulate_case(inputs.mask, c, cl, cal.kernel);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CaseRow row = sim_row(c, s, cl, inputs.mask);
        row.details["simulation"]["seconds"] = secs;
        const double rate = row.skipped ? NAN : row.fwd_tflops_per_gpu();
        if (std::isnan(first_rate) && !row.skipped) first_rate = rate;
        print0(ctx, sim_line(row, rate / first_rate, secs));
        report.rows.push_back(std::move(row));
      }
    }
    if (!opt.tune) continue;
    print0(ctx, fmt::format("# Tuning (forward + backward of the slowest rank; chunk_tokens and overlap_degree for magi):\n"));
    for (int cp : case_cps) {
      Case given = c0;
      given.parallel.cp = cp;
      const double given_t = total_s(simulate_case(inputs.mask, given, cl, cal.kernel));
      Case best = given;
      double best_t = given_t;
      auto consider = [&](const Case& c) {
        const double t = total_s(simulate_case(inputs.mask, c, cl, cal.kernel));
        if (t < best_t) {
          best_t = t;
          best = c;
        }
      };
      for (Strategy st : {Strategy::ring, Strategy::ulysses, Strategy::allgather}) {
        Case c = given;
        c.parallel.strategy = st;
        consider(c);
      }
      // magi: chunk sizes with the auto degree, then every degree at the best chunk.
      Case m = given;
      m.parallel.strategy = Strategy::magi;
      int64_t best_chunk = m.parallel.chunk_tokens;
      double best_chunk_t = INFINITY;
      for (int64_t chunk : {int64_t{128}, int64_t{256}, int64_t{512}, int64_t{1024}, int64_t{2048}, int64_t{4096}}) {
        if (chunk * cp > c0.total_tokens) continue;  // fewer chunks than ranks
        Case c = m;
        c.parallel.chunk_tokens = chunk;
        c.parallel.overlap_degree = 0;
        if (!plan_size_excess(c).empty()) continue;
        const double t = total_s(simulate_case(inputs.mask, c, cl, cal.kernel));
        if (t < best_chunk_t) {
          best_chunk_t = t;
          best_chunk = chunk;
        }
        if (t < best_t) {
          best_t = t;
          best = c;
        }
      }
      for (int d = 1; d <= kMaxOverlapDegree; ++d) {
        Case c = m;
        c.parallel.chunk_tokens = best_chunk;
        c.parallel.overlap_degree = d;
        consider(c);
      }
      print0(ctx, fmt::format("#   cp {:>6}: given {} chunk {} degree {}: {:.3f} ms -> best {} chunk {} degree {}: {:.3f} ms "
                              "(predicted gain {:.1f}%)\n",
                              cp, to_string(given.parallel.strategy),
                              given.parallel.chunk_tokens == 0 ? std::string("auto") : std::to_string(given.parallel.chunk_tokens),
                              given.parallel.overlap_degree == 0 ? std::string("auto") : std::to_string(given.parallel.overlap_degree),
                              given_t * 1e3, to_string(best.parallel.strategy), best.parallel.chunk_tokens,
                              best.parallel.strategy == Strategy::magi
                                  ? (best.parallel.overlap_degree == 0 ? std::string("auto") : std::to_string(best.parallel.overlap_degree))
                                  : std::string("-"),
                              best_t * 1e3, std::isfinite(given_t) ? 100 * (1 - best_t / given_t) : 0.0));
    }
  }
  for (const std::string& path : ResultFiles{opt.out_json, opt.out_csv, opt.force}.write(report)) {
    print0(ctx, fmt::format("# Wrote {}\n", path));
  }
}

}  // namespace

void add_simulate_command(CLI::App& app, Context& ctx) {
  auto opt = std::make_shared<SimulateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "simulate",
      "Predict a workload's cases on a described cluster (configs/clusters/) with a calibrated cost\n"
      "model, at any cp, without running them (one process; docs/simulation.md).");
  cmd->add_option("-c,--config", opt->config, "Workload JSON file")->required();
  cmd->add_option("--cluster", opt->cluster, "Cluster JSON file (configs/clusters/)")->required();
  cmd->add_option("--calibration", opt->calibration,
                  "Calibration JSON (magi-bench calibrate); default: the one the cluster names");
  cmd->add_option("--cp", opt->cp_list, "Comma-separated cp values (overrides parallel.cp), e.g. 8,64,512,4096");
  cmd->add_option("--strategy", opt->strategies,
                  "Comma-separated strategies (overrides parallel.strategy), e.g. magi,ring,ulysses,allgather");
  cmd->add_flag("--tune", opt->tune, "Search strategy, chunk_tokens and overlap_degree per cp; print the best and its gain");
  cmd->add_option("-o,--out", opt->out_json, "Write the rows as JSON (results schema)")->check(output_file_name());
  cmd->add_option("--csv", opt->out_csv, "Write one CSV line per row")->check(output_file_name());
  cmd->add_flag("-f,--force", opt->force, "Replace --out / --csv files that already exist");
  cmd->callback([&ctx, opt] { simulate_workload(ctx, *opt); });
}

}  // namespace magi::app
