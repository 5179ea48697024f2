// `magi-bench plan`: build and explain the plan of every case of a workload without running it
// (no GPU; no MPI ranks beyond the one process). Per rank: tokens, area, remote KV, bytes sent and
// received, stages; per strategy: bytes against the zero-redundancy bound, imbalance. Bytes are in
// the workload's dtype, or --dtype's (the CPU run's are fp32). --json writes the plans (schema:
// docs/plan_schema.md); --bench N times build_plan. A case whose plan is estimated beyond the
// memory bound (core/plan/plan_size.h) is refused before any work unless --allow-large.
#include "commands.h"
#include "hybrid_details.h"
#include "rate_options.h"
#include "sim_common.h"
#include "system_info.h"

#include "core/base/error.h"
#include "core/base/schema.h"
#include "core/base/stats.h"
#include "core/plan/clip.h"
#include "core/plan/plan_json.h"
#include "core/plan/plan_size.h"
#include "core/plan/planner.h"
#include "core/sim/kernel_work.h"
#include "core/base/file_io.h"
#include "core/workload/case_inputs.h"
#include "core/workload/documents.h"
#include "core/workload/workload.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <set>

#include <sys/resource.h>

namespace magi::app {

namespace {

struct PlanOptions {
  std::string config;
  std::optional<int> cp;
  std::optional<int> heads;
  std::optional<int> ranks_per_node;
  std::optional<std::string> strategy;
  std::optional<std::string> dtype;
  RateOverrides rates;
  std::string json_out;
  int bench = 0;
  bool no_compare = false;
  bool no_slices = false;
  bool force = false;
  bool allow_large = false;
  int max_rank_rows = 64;
  std::optional<int> show_rank;
};

Strategy strategy_named(const std::string& s) {
  for (Strategy x : {Strategy::magi, Strategy::ring, Strategy::ulysses, Strategy::allgather}) {
    if (to_string(x) == s) return x;
  }
  throw UsageError(fmt::format("--strategy {}: expected magi, ring, ulysses or allgather", s));
}

DType dtype_named(const std::string& s) {
  for (DType x : {DType::bf16, DType::fp16, DType::fp32}) {
    if (to_string(x) == s) return x;
  }
  throw UsageError(fmt::format("--dtype {}: expected bf16, fp16 or fp32", s));
}

// What a plan's byte figures assume, e.g. "bf16, 2 B per element".
std::string bytes_dtype(DType t) { return fmt::format("{}, {} B per element", to_string(t), dtype_bytes(t)); }

double mb(int64_t bytes) { return static_cast<double>(bytes) / 1e6; }

std::string human_bytes(int64_t b) {
  const double x = static_cast<double>(b);
  if (x >= 1e9) return fmt::format("{:.3f} GB", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.3f} MB", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.3f} kB", x / 1e3);
  return fmt::format("{} B", b);
}

std::string ranges_brief(const std::vector<Range>& r) {
  if (r.empty()) return "-";
  std::string s = fmt::format("{}", r[0]);
  if (r.size() > 1) s += fmt::format(" +{} more", r.size() - 1);
  return s;
}

// magi's adaptive dispatch: the unit sizes, what the cuts bought against the same chunks uncut,
// what bounds the balance, and chunk_tokens auto's candidates.
std::string explain_adaptive(const Plan& p) {
  std::string out;
  std::string sizes;
  for (const UnitSizeCount& u : p.unit_sizes) sizes += fmt::format("{}{} x {}", sizes.empty() ? "" : ", ", u.tokens, u.count);
  const double zr = static_cast<double>(p.zero_redundancy_bound.fwd_bytes);
  const double fixed_zr = static_cast<double>(p.fixed_chunk_bound.fwd_bytes);
  out += fmt::format("#   units by size (tokens x count): {}; {} chunk{} cut (at 128-row tile boundaries)\n", sizes, p.split_chunks,
                     p.split_chunks == 1 ? "" : "s");
  if (p.split_chunks > 0) {
    out += fmt::format("#   against the same chunks uncut: imbalance {:.4f} -> {:.4f}, zero-redundancy fwd {} -> {} ({:+.2f}%)\n",
                       p.fixed_chunk_imbalance, p.imbalance, human_bytes(p.fixed_chunk_bound.fwd_bytes),
                       human_bytes(p.zero_redundancy_bound.fwd_bytes),
                       fixed_zr > 0 ? 100.0 * (zr - fixed_zr) / fixed_zr : 0.0);
  }
  if (p.cut_gate.weighed) {
    // Both sides of the decision, so that a plan shows what the other choice would have been.
    const CutGate& g = p.cut_gate;
    const double cut_zr = static_cast<double>(g.cut.zero_redundancy_fwd_bytes);
    const double uncut_zr = static_cast<double>(g.uncut.zero_redundancy_fwd_bytes);
    out += fmt::format("#   cuts {}: the cost model (overlap_degree auto's, at {:g} TF/s and {:g} GB/s) estimates the forward "
                       "at {:.4g} ms cut (degree {}) against {:.4g} ms uncut (degree {})\n",
                       p.cuts_declined ? "declined" : "kept", g.compute_tflops, g.comm_gbps, g.cut.forward_s * 1e3,
                       g.cut.overlap_degree, g.uncut.forward_s * 1e3, g.uncut.overlap_degree);
    if (p.cuts_declined) {
      out += fmt::format("#   the declined cut dispatch: {} chunk{} cut, imbalance {:.4f} (this plan {:.4f}), "
                         "zero-redundancy fwd {} ({:.3f}x this plan's {}): the K/V the cuts add outweighs the balance "
                         "they buy at these rates (--comm-gbps, --compute-tflops price it at others)\n",
                         g.cut.split_chunks, g.cut.split_chunks == 1 ? "" : "s", g.cut.imbalance, g.uncut.imbalance,
                         human_bytes(g.cut.zero_redundancy_fwd_bytes), uncut_zr > 0 ? cut_zr / uncut_zr : 0.0,
                         human_bytes(g.uncut.zero_redundancy_fwd_bytes));
    }
  }
  if (p.indivisible_area > p.lower_bound_area) {
    out += fmt::format("#   the largest indivisible piece (a tile, or a chunk no cut applies to) has area {} > total / cp: "
                       "imbalance >= {:.4f} however it is cut\n",
                       p.indivisible_area, static_cast<double>(p.indivisible_area) / p.mean_rank_area);
  }
  if (!p.chunk_candidates.empty()) {
    out += "#   chunk_tokens auto (cost model: slowest rank's forward estimate at its best overlap degree):\n";
    for (const ChunkCandidate& x : p.chunk_candidates) {
      out += fmt::format("#     {:>5} tokens: {:9.3f} ms (degree {}), imbalance {:.4f}, {} cut, zero-redundancy fwd {}{}\n",
                         x.chunk_tokens, x.forward_s * 1e3, x.overlap_degree, x.imbalance, x.split_chunks,
                         human_bytes(x.zero_redundancy_fwd_bytes), x.chunk_tokens == p.chunk_tokens ? "  <- chosen" : "");
    }
  }
  return out;
}

std::string explain_plan(const Plan& p, int overlap_requested, int max_rows) {
  std::string out;
  if (p.skipped) {
    return fmt::format("# Plan: {} cp={}{}: SKIPPED: {}\n", to_string(p.strategy), p.cp,
                       p.heads > 1 ? fmt::format(" heads={}", p.heads) : "", p.skip_reason);
  }
  std::string dispatch;
  switch (p.strategy) {
    case Strategy::magi: {
      const int64_t chunks = (p.total_tokens + p.chunk_tokens - 1) / p.chunk_tokens;
      const int64_t chunks_per_rank = chunks / p.cp;
      dispatch = fmt::format("{} chunks of {} tokens{} ({}{} per rank), solver {}", chunks, p.chunk_tokens,
                             p.chunk_candidates.empty() ? "" : " (chunk_tokens auto)", chunks_per_rank,
                             chunks % p.cp ? "-" + std::to_string(chunks_per_rank + 1) : "", to_string(p.solver));
      break;
    }
    case Strategy::ring:
    case Strategy::allgather:
      dispatch = fmt::format("zigzag: {} blocks of about {} tokens, rank r hosts blocks r and 2cp-1-r",
                             p.num_units, p.chunk_tokens);
      break;
    case Strategy::ulysses:
      dispatch = fmt::format("contiguous shards of {} tokens, {} query heads per rank", p.chunk_tokens,
                             p.model.heads_q / p.cp);
      break;
  }
  out += fmt::format("# Plan: {} cp={}{}: {}\n", to_string(p.strategy), p.cp,
                     p.heads > 1 ? fmt::format(" heads={}", p.heads) : "", dispatch);
  out += explain_hybrid(p);
  out += fmt::format("#   tokens per rank {}..{}{}\n", p.min_rank_tokens, p.max_rank_tokens,
                     p.short_last_unit ? fmt::format(" (S is not a multiple of {}: the last chunk is short; "
                                                     "counts differ by at most one chunk)", p.chunk_tokens)
                                       : "");
  const size_t stages = p.ranks.empty() ? 0 : p.ranks[0].stages.size();
  if (p.strategy == Strategy::magi && p.cp == 1 && stages > 1) {
    out += fmt::format("#   stages per rank {} (the keys cut into local stages by overlap_degree {}: no "
                       "transfers, the per-stage compute measured alone)\n", stages, p.overlap_degree);
  } else {
    const bool fan_out_stage = p.strategy == Strategy::magi && static_cast<int>(stages) == p.overlap_degree + 2;
    out += fmt::format("#   stages per rank {} (host + {} remote{}{})\n", stages,
                       p.strategy == Strategy::ulysses ? 0 : p.overlap_degree,
                       fan_out_stage ? " + 1 receiving the last round's intra-node fan-out" : "",
                       p.strategy == Strategy::magi && overlap_requested == 0 ? ", overlap_degree auto" : "");
  }
  out += fmt::format("#   area: total {}, max rank {}, mean {:.1f}, lower bound {}: imbalance (max/mean) {:.4f}\n",
                     p.total_area, p.max_rank_area, p.mean_rank_area, p.lower_bound_area, p.imbalance);
  if (p.strategy == Strategy::magi) {
    out += explain_adaptive(p);
  } else if (p.max_unit_area > p.lower_bound_area) {
    out += fmt::format("#   the largest single block has area {} > total / cp: imbalance >= {:.4f} at this granularity\n",
                       p.max_unit_area, static_cast<double>(p.max_unit_area) / p.mean_rank_area);
  }
  out += fmt::format("#   comm ({}) fwd {} (bwd {}), zero-redundancy bound of this dispatch {}, busiest sender {}\n",
                     bytes_dtype(p.model.dtype), human_bytes(p.volume.fwd_bytes), human_bytes(p.volume.bwd_bytes),
                     human_bytes(p.zero_redundancy_bound.fwd_bytes), human_bytes(p.volume.max_rank_fwd_bytes));
  if (p.strategy == Strategy::magi) {
    const int nodes = p.cp / p.ranks_per_node;
    out += fmt::format("#   tiers ({} node{} of {} rank{}{}): inter-node fwd {} (bound {}, flat GroupCast {}), "
                       "intra-node fwd {} (bound {}, flat {}); bwd moves each twice\n",
                       nodes, nodes == 1 ? "" : "s", p.ranks_per_node, p.ranks_per_node == 1 ? "" : "s",
                       nodes > 1 ? ", node-aware GroupCast" : "", human_bytes(p.tier_volume.inter_node),
                       human_bytes(p.tier_bound.inter_node), human_bytes(p.tier_flat.inter_node),
                       human_bytes(p.tier_volume.intra_node), human_bytes(p.tier_bound.intra_node),
                       human_bytes(p.tier_flat.intra_node));
  }
  out += fmt::format("# {:>5} {:>9} {:>14} {:>10} {:>10} {:>10} {:>6} {:>8}  {}\n", "rank", "tokens", "area",
                     "remote_kv", "sent_MB", "recv_MB", "stages", "slices", "q_ranges");
  const int n = static_cast<int>(p.ranks.size());
  // With more ranks than max_rows: the first ceil(max_rows / 2) and the last floor(max_rows / 2).
  const int head = (max_rows + 1) / 2, tail = max_rows / 2;
  for (int i = 0; i < n; ++i) {
    if (max_rows > 0 && n > max_rows && i == head) {
      out += fmt::format("# {:>5} ({} ranks not shown; --max-rank-rows 0 shows all)\n", "...", n - max_rows);
      i = n - tail;
      if (i >= n) break;
    }
    const RankPlan& rk = p.ranks[static_cast<size_t>(i)];
    size_t slices = 0;
    for (const Stage& st : rk.stages) slices += st.slices.size();
    out += fmt::format("  {:>5} {:>9} {:>14} {:>10} {:>10.3f} {:>10.3f} {:>6} {:>8}  {}\n", rk.rank, rk.tokens,
                       rk.area, rk.remote_kv_tokens, mb(rk.send_bytes_fwd), mb(rk.recv_bytes_fwd),
                       rk.stages.size(), slices, ranges_brief(rk.q_ranges));
  }
  return out;
}

// A stage's kernel work, per head: what each stage launch costs beyond its tiles is paid per item.
std::string kernel_work_text(const KernelWork& w) {
  return fmt::format("fwd {} items, {} tiles; bwd {} items, {} tiles", w.fwd_items, w.fwd_tiles, w.bwd_items,
                     w.bwd_tiles);
}

// One rank's stages: buffer, sources, slices, and the flexible CUDA kernel's items and tiles at the
// case's head dim (core/sim/kernel_work.h); at cp 1 cut into local stages, also what the one launch
// of overlap_degree auto walks (the mask's tight slices, as magi's cp 1 plan runs them), so that
// the items the cuts add are plain.
std::string explain_rank(const Plan& p, int rank, const std::vector<AttnSlice>& mask, int head_dim) {
  if (p.skipped || rank < 0 || rank >= static_cast<int>(p.ranks.size())) {
    return fmt::format("# --show-rank {}: no such rank in this plan\n", rank);
  }
  const RankPlan& rk = p.ranks[static_cast<size_t>(rank)];
  std::string out = fmt::format("# Rank {}: hosts {} tokens in {} ranges, heads [{}, {}), area {}, remote KV {} tokens "
                                "in {} ranges\n",
                                rank, rk.tokens, rk.q_ranges.size(), rk.head_begin, rk.head_end, rk.area,
                                rk.remote_kv_tokens, rk.remote_kv_ranges.size());
  // cp 1 with an explicit degree: local stages, each one run of the host's keys, nothing received.
  const bool local_stages = p.strategy == Strategy::magi && p.cp == 1 && rk.stages.size() > 1;
  const KernelTiles tiles = gpu_kernel_tiles(head_dim);
  KernelWork total;
  for (size_t s = 0; s < rk.stages.size(); ++s) {
    const Stage& st = rk.stages[s];
    std::string sources;
    int n_sources = 0;
    for (const Transfer& t : p.transfers) {
      if (t.dst != rank || t.stage != static_cast<int>(s)) continue;
      if (++n_sources <= 8) sources += fmt::format(" {}:{}", t.src, t.tokens);
    }
    if (n_sources > 8) sources += fmt::format(" ... ({} sources)", n_sources);
    std::string what = "received from (src:tokens)" + sources;
    if (s == 0 && p.strategy != Strategy::ulysses) {
      what = "host KV";
    } else if (n_sources == 0) {
      what = local_stages ? fmt::format("host KV {}", st.kv_ranges.front()) : "nothing received";
    }
    const KernelWork w = count_kernel_work(st.slices, tiles);
    total += w;
    out += fmt::format("#   stage {}: buffer {} tokens ({} ranges), area {}, {} slices; {}\n"
                       "#     GPU kernel per head: {}\n",
                       s, total_size(st.kv_ranges), st.kv_ranges.size(), st.area, st.slices.size(), what,
                       kernel_work_text(w));
    for (size_t i = 0; i < st.slices.size() && i < 4; ++i) out += fmt::format("#     {}\n", st.slices[i]);
    if (st.slices.size() > 4) out += fmt::format("#     ... {} more\n", st.slices.size() - 4);
  }
  if (rk.stages.size() > 1) out += fmt::format("#   GPU kernel per head, all stages: {}\n", kernel_work_text(total));
  if (local_stages) {
    out += fmt::format("#   GPU kernel per head, one launch (overlap_degree auto): {}\n",
                       kernel_work_text(count_kernel_work(tight_slices(mask), tiles)));
  }
  return out;
}

std::string explain_strategies(const std::vector<StrategySummary>& all, const CommVolume& bound, DType dtype) {
  std::string out = fmt::format(
      "# Strategies ({}; forward bytes against the zero-redundancy bound of the magi dispatch, {}):\n",
      bytes_dtype(dtype), human_bytes(bound.fwd_bytes));
  out += fmt::format("# {:>10} {:>12} {:>12} {:>9} {:>14} {:>10} {:>7}  {}\n", "strategy", "fwd_GB", "bwd_GB",
                     "x_bound", "max_rank_GB", "imbalance", "stages", "note");
  for (const StrategySummary& s : all) {
    if (s.skipped) {
      out += fmt::format("  {:>10} {:>12} {:>12} {:>9} {:>14} {:>10} {:>7}  skipped: {}\n", to_string(s.strategy),
                         "-", "-", "-", "-", "-", "-", s.skip_reason);
      continue;
    }
    const double x = bound.fwd_bytes > 0 ? static_cast<double>(s.volume.fwd_bytes) / static_cast<double>(bound.fwd_bytes) : 0.0;
    std::string note;
    if (s.strategy == Strategy::ulysses) note = "Q, K, V, O all-to-all";
    out += fmt::format("  {:>10} {:>12.3f} {:>12.3f} {:>9} {:>14.3f} {:>10.4f} {:>7}  {}\n", to_string(s.strategy),
                       static_cast<double>(s.volume.fwd_bytes) / 1e9, static_cast<double>(s.volume.bwd_bytes) / 1e9,
                       bound.fwd_bytes > 0 ? fmt::format("{:.2f}", x) : std::string("-"),
                       static_cast<double>(s.volume.max_rank_fwd_bytes) / 1e9, s.imbalance, s.stages, note);
  }
  return out;
}

struct BenchResult {
  double min_ms = 0, median_ms = 0;          // wall clock (steady_clock)
  double peak_rss_mb = 0;                    // the process's peak resident memory after the runs
  double cpu_min_ms = 0, cpu_median_ms = 0;  // process CPU time (std::clock): planning is single-threaded,
                                             // so this is the figure on a busy machine
};

// Times build_plan `runs` times.
BenchResult bench_plan(const std::vector<AttnSlice>& mask, const Case& c, int runs) {
  std::vector<double> wall, cpu;
  for (int i = 0; i < runs; ++i) {
    const std::clock_t c0 = std::clock();
    const auto t0 = std::chrono::steady_clock::now();
    const Plan p = build_plan(mask, c);
    const auto t1 = std::chrono::steady_clock::now();
    const std::clock_t c1 = std::clock();
    wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    cpu.push_back(1e3 * static_cast<double>(c1 - c0) / CLOCKS_PER_SEC);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);  // ru_maxrss: kilobytes on Linux
  return {*std::min_element(wall.begin(), wall.end()), median(wall), static_cast<double>(usage.ru_maxrss) / 1024.0,
          *std::min_element(cpu.begin(), cpu.end()), median(cpu)};
}

// ConfigError when the plan of `c` is estimated beyond the memory bound (core/plan/plan_size.h).
void refuse_large_plan(const std::string& config, const Case& c, const std::string& which) {
  if (std::string why = plan_size_excess(c); !why.empty()) {
    throw ConfigError(fmt::format("{}: case {}: {}{}", config, c.name, why, which));
  }
}

void plan_workload(const Context& ctx, const PlanOptions& opt) {
  nlohmann::json metadata = collect_metadata(ctx);  // collective: before the other ranks leave
  if (ctx.world_rank != 0) return;  // planning needs one process; other ranks have nothing to do
  std::optional<Strategy> strategy;
  if (opt.strategy) strategy = strategy_named(*opt.strategy);
  std::optional<DType> dtype;
  if (opt.dtype) dtype = dtype_named(*opt.dtype);
  if (opt.cp && (*opt.cp < 1 || *opt.cp > kMaxCp))
    throw UsageError(fmt::format("--cp {}: expected 1 to {}", *opt.cp, kMaxCp));
  if (opt.heads && (*opt.heads < 1 || *opt.heads > kMaxCp))
    throw UsageError(fmt::format("--heads {}: expected 1 to {}", *opt.heads, kMaxCp));
  if (opt.ranks_per_node && (*opt.ranks_per_node < 1 || *opt.ranks_per_node > kMaxCp))
    throw UsageError(fmt::format("--ranks-per-node {}: expected 1 to {}", *opt.ranks_per_node, kMaxCp));
  opt.rates.validate();
  if (opt.bench < 0) throw UsageError(fmt::format("--bench {}: expected >= 0", opt.bench));
  if (opt.show_rank && *opt.show_rank < 0)
    throw UsageError(fmt::format("--show-rank {}: expected a rank >= 0", *opt.show_rank));
  if (opt.max_rank_rows < 0)
    throw UsageError(fmt::format("--max-rank-rows {}: expected >= 0 (0 shows all)", opt.max_rank_rows));
  const Overwrite overwrite = opt.force ? Overwrite::allow : Overwrite::refuse;
  if (!opt.json_out.empty()) check_writable(opt.json_out, overwrite);  // before the work
  const Workload workload = load_workload(opt.config);
  // The workload's cases with the command line's overrides applied.
  std::vector<Case> cases;
  for (const Case& original : workload.cases) {
    Case c = original;
    if (opt.cp) c.parallel.cp = *opt.cp;
    if (opt.heads) c.parallel.heads = *opt.heads;
    if (opt.ranks_per_node) {
      // The checks the workload's own field gets (core/workload/workload.cpp), for the option.
      const int rpn = *opt.ranks_per_node, cp = c.parallel.cp;
      if (cp % rpn != 0)
        throw UsageError(fmt::format("--ranks-per-node {}: does not divide parallel.cp = {} (case {})", rpn, cp, c.name));
      if (c.parallel.heads > 1 && rpn != cp)
        throw UsageError(fmt::format("--ranks-per-node {}: node-aware routing between head groups is not built "
                                     "(case {} has parallel.heads = {})", rpn, c.name, c.parallel.heads));
      c.parallel.ranks_per_node = rpn;
    }
    if (strategy) c.parallel.strategy = *strategy;
    if (dtype) c.model.dtype = *dtype;
    opt.rates.apply(c);
    if (!opt.allow_large) {
      refuse_large_plan(opt.config, c, "");
      // The comparison builds the magi plan too (the others as outlines, linear in cp).
      if (!opt.no_compare && c.parallel.strategy != Strategy::magi) {
        Case magi_case = c;
        magi_case.parallel.strategy = Strategy::magi;
        refuse_large_plan(opt.config, magi_case, " (the comparison's magi plan; --no-compare skips it)");
      }
    }
    cases.push_back(std::move(c));
  }

  metadata["workload"] = {{"path", opt.config}, {"name", workload.name}, {"resolved", workload.resolved}};
  // Each case is serialised as soon as it is planned (a large plan's JSON tree is many times its
  // text), then spliced into the document.
  std::vector<std::string> case_texts;

  std::set<std::string> seen;
  print0(ctx, fmt::format("# magi-bench plan {} (git {}): workload \"{}\" from {}, {} case{}\n", MAGI_VERSION,
                          MAGI_GIT_SHA, workload.name, opt.config, workload.cases.size(),
                          workload.cases.size() == 1 ? "" : "s"));
  for (const Case& c : cases) {
    const std::string key =
        fmt::format("{} cp {} {}", case_key(c), c.parallel.cp, to_string(c.parallel.strategy));
    if (!seen.insert(key).second) continue;  // the overrides made it a duplicate

    const auto t0 = std::chrono::steady_clock::now();
    const CaseInputs inputs = build_case_inputs(c.documents, c.mask, c.total_tokens);
    const std::vector<AttnSlice>& mask = inputs.mask;
    const auto t1 = std::chrono::steady_clock::now();
    const Plan plan = build_plan(mask, c);
    const auto t2 = std::chrono::steady_clock::now();
    const double mask_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    const double plan_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();

    const DocumentStats ds = document_stats(inputs.documents);
    print0(ctx, fmt::format("#\n# Case {}: S={} mask={} ({} slices, area {}), {} documents (p50 {}, max {}), "
                            "model Hq={} Hkv={} D={} {}\n",
                            c.name, c.total_tokens, c.mask.type, mask.size(), mask_area(mask), ds.count, ds.p50,
                            ds.max, c.model.heads_q, c.model.heads_kv, c.model.head_dim, to_string(c.model.dtype)));
    print0(ctx, explain_plan(plan, c.parallel.overlap_degree, opt.max_rank_rows));
    if (opt.show_rank) print0(ctx, explain_rank(plan, *opt.show_rank, mask, c.model.head_dim));

    nlohmann::json cj;
    cj["case"] = c.name;
    cj["resolved"] = resolved_config(c);  // with the command line's overrides applied
    cj["bytes_dtype"] = std::string(to_string(c.model.dtype));
    cj["documents"] = to_json(ds);
    cj["timing_ms"] = {{"mask", mask_ms}, {"build_plan", plan_ms}};

    if (!opt.no_compare) {
      // The magi plan's bound is the reference every strategy is set against.
      Case magi_case = c;
      magi_case.parallel.strategy = Strategy::magi;
      std::vector<StrategySummary> all = compare_strategies(mask, magi_case);
      const CommVolume bound = all[0].skipped ? CommVolume{} : all[0].own_bound;
      print0(ctx, explain_strategies(all, bound, c.model.dtype));
      cj["strategies"] = strategies_to_json(all, bound);
    }
    if (opt.bench > 0) {
      const BenchResult b = bench_plan(mask, c, opt.bench);
      print0(ctx, fmt::format("# bench: build_plan {} cp={} S={}: wall min {:.2f} ms, median {:.2f} ms; cpu min "
                              "{:.2f} ms, median {:.2f} ms; over {} runs (single thread; mask build {:.2f} ms "
                              "not included); peak RSS of the process so far {:.1f} MB\n",
                              to_string(c.parallel.strategy), c.parallel.cp, c.total_tokens, b.min_ms, b.median_ms,
                              b.cpu_min_ms, b.cpu_median_ms, opt.bench, mask_ms, b.peak_rss_mb));
      cj["bench"] = {{"runs", opt.bench}, {"min_ms", b.min_ms}, {"median_ms", b.median_ms},
                     {"cpu_min_ms", b.cpu_min_ms}, {"cpu_median_ms", b.cpu_median_ms},
                     {"peak_rss_mb", b.peak_rss_mb}};
    }
    if (!opt.json_out.empty()) {
      cj["plan"] = plan_to_json(plan, PlanJsonOptions{!opt.no_slices});
      case_texts.push_back(cj.dump());
    }
  }
  if (!opt.json_out.empty()) {
    stamp_end_time(metadata);
    nlohmann::json doc = {{"schema", kPlanReportSchema}, {"metadata", metadata}};
    const std::string placeholder = "\"@cases@\"";
    doc["cases"] = "@cases@";
    std::string text = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // argv may not be UTF-8
    std::string case_list = "[";
    for (size_t i = 0; i < case_texts.size(); ++i) case_list += (i ? "," : "") + case_texts[i];
    case_list += "]";
    text.replace(text.find(placeholder), placeholder.size(), case_list);
    write_file_atomic(opt.json_out, text + "\n", overwrite);  // temp file, then rename
    print0(ctx, fmt::format("# Wrote {}\n", opt.json_out));
  }
}

}  // namespace

void add_plan_command(CLI::App& app, Context& ctx) {
  auto opt = std::make_shared<PlanOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Build and explain the plan of every case of a workload without running it (no GPU, one\n"
      "process): per rank tokens, area, remote KV, bytes and stages; per strategy bytes against\n"
      "the zero-redundancy bound. JSON schema: docs/plan_schema.md.");
  cmd->add_option("-c,--config", opt->config, "Workload JSON file")->required();
  cmd->add_option("--cp", opt->cp, "Override parallel.cp of every case");
  cmd->add_option("--heads", opt->heads,
                  "Override parallel.heads (head-parallel degree: Ulysses inside groups of that many ranks, "
                  "magi or ring between the cp groups)");
  cmd->add_option("--ranks-per-node", opt->ranks_per_node,
                  "Override parallel.ranks_per_node: nodes of that many consecutive ranks, for magi's node-aware "
                  "GroupCast and the bytes per tier (must divide cp; pure context parallelism only)");
  cmd->add_option("-s,--strategy", opt->strategy, "Override parallel.strategy: magi, ring, ulysses or allgather");
  cmd->add_option("--dtype", opt->dtype,
                  "Override model.dtype, the element type the bytes assume: bf16, fp16 or fp32 (the CPU run's)");
  opt->rates.add_to(*cmd);
  cmd->add_flag("--allow-large", opt->allow_large,
                "Plan cases whose plan is estimated beyond 4 GB (refused by default, naming the field)");
  cmd->add_option("--json", opt->json_out, "Write the plans as JSON (refuses to overwrite an existing file)")
      ->check(output_file_name());
  cmd->add_flag("-f,--force", opt->force, "Overwrite a --json file that already exists");
  cmd->add_option("--bench", opt->bench, "Time build_plan N times per case and print min / median ms and the peak RSS");
  cmd->add_option("--show-rank", opt->show_rank, "Print one rank's stages in detail (buffers, sources, slices, the GPU kernel's items and tiles per head)");
  cmd->add_flag("--no-compare", opt->no_compare, "Skip the per-strategy comparison");
  cmd->add_flag("--no-slices", opt->no_slices, "Leave ranks[].stages[].slices out of the JSON");
  cmd->add_option("--max-rank-rows", opt->max_rank_rows, "Per-rank rows printed per plan (0: all)")
      ->capture_default_str();
  cmd->callback([&ctx, opt] { plan_workload(ctx, *opt); });
}

}  // namespace magi::app
