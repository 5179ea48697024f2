// `magi-bench calibrate`: fit the cost model (core/sim) to measured result files and print, for
// every measured case, predicted against measured and the error: cases of --fit files fitted the
// model (their error is the fit's), cases of --held-out files (and --fit rows outside --fit-masks)
// did not (their error is the model's prediction error). Kernel rows (`magi-bench kernel`) fit the
// kernel coefficients per pass and head dim. `run --backend cpu` rows fit compute and
// communication apart: every rank's measured compute steps (ranks[].fwd_compute_ms) fit the CPU
// reference's coefficients (tiles 1 x 1) and what a rank's threads beyond the first add
// (ClusterSpec::thread_efficiency); then, with those measured steps in place of the model's, the rest of
// each multi-rank row's time fits the link (latency and bandwidth). --nccl-tests-intra/-inter
// import a tier from nccl-tests JSON output instead (core/sim/nccl_tests.h). Writes the
// calibration JSON (--out) that `simulate --calibration` reads. docs/simulation.md.
#include "commands.h"
#include "sim_common.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"
#include "core/base/schema.h"
#include "core/sim/nccl_tests.h"
#include "core/sim/simulate.h"
#include "core/workload/case_inputs.h"

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace magi::app {

namespace {

struct CalibrateOptions {
  std::vector<std::string> fit, held_out;
  std::string fit_masks, cluster, out, device, nccl_intra, nccl_inter;
  bool force = false;
};

// One measured row with what predicting it needs.
struct Measured {
  std::string file;
  std::string case_name;
  std::string key;      // what makes two rows the same measurement: backend, config, cp, role
  int repeats = 1;      // rows of the same measurement folded into this one (keep_fastest)
  Case c;
  std::vector<AttnSlice> mask;
  bool kernel = false;  // a `kernel` row (one GPU, no plan); else a `run` row
  double fwd_ms = 0, bwd_ms = 0;
  int threads = 1;      // run rows: the kernel threads per rank
  std::vector<RankStepSeconds> compute;  // run rows: each rank's measured compute steps (may be empty)
  bool fit = false;
  int64_t recorded_fwd_tiles = -1, recorded_bwd_tiles = -1;  // kernel rows: the work lists' counts
  KernelTiles tiles;  // kernel rows: the tiles the kernel ran (details.kernel.tiles)
};

// Kernel rows written before the results recorded the tiles (up to the v11 kernel, 2026-12-02) ran
// 128 x 128 forward and 64 x 128 backward tiles at every head dim.
constexpr KernelTiles kTilesBeforeRecorded{128, 128, 64, 128};

std::vector<Measured> read_rows(const std::string& path, bool fit, const std::set<std::string>& fit_masks) {
  const nlohmann::json doc = parse_json(path, read_file(path, size_t{1} << 30));
  const JsonReader rd(path);
  rd.object("", doc, "a results file (magi-bench run or kernel --out)");
  if (doc.value("schema", std::string()) != kResultsSchema) {
    rd.fail("schema", "not a results file this version reads", doc.value("schema", nlohmann::json()),
            std::string(kResultsSchema) + " (magi-bench run or kernel --out)");
  }
  if (!doc.contains("cases")) rd.missing("cases", "case rows");
  const nlohmann::json& cases = rd.array("cases", doc["cases"], "case rows");
  const int threads = doc.contains("metadata") ? doc["metadata"].value("threads_per_rank", 1) : 1;
  std::vector<Measured> out;
  for (size_t i = 0; i < cases.size(); ++i) {
    const nlohmann::json& r = cases[i];
    const std::string where = item_path("cases", i);
    if (r.value("skipped", false)) continue;
    for (const char* k : {"fwd_ms", "bwd_ms", "details", "cp"}) {
      if (!r.contains(k)) rd.missing(child_path(where, k), "a measured case row");
    }
    if (r.value("check", std::string("not_run")) == "failed") continue;
    Measured m;
    m.file = path;
    m.case_name = r.value("case", where);
    const std::string backend = r.value("backend", std::string());
    if (backend != "cuda-kernel" && backend != "cpu") {
      rd.fail(child_path(where, "backend"), "cannot calibrate from it", r.value("backend", nlohmann::json()),
              "cuda-kernel (magi-bench kernel) or cpu (magi-bench run)");
    }
    m.kernel = backend == "cuda-kernel";
    m.key = fmt::format("{}|{}|{}|{}", backend, r["details"]["config"].dump(), r["cp"].dump(), fit);
    const Workload w = parse_workload(r["details"]["config"], fmt::format("{}: {}.details.config", path, where));
    MAGI_CHECK(w.cases.size() == 1, "a row's config names {} cases", w.cases.size());
    m.c = w.cases[0];
    m.c.parallel.cp = r.value("cp", 1);
    if (!m.kernel) m.c.model.dtype = DType::fp32;
    m.mask = build_case_inputs(m.c.documents, m.c.mask, m.c.total_tokens).mask;
    // The plan that ran: its resolved overlap degree (the simulator would otherwise choose its own).
    if (m.c.parallel.strategy == Strategy::magi && m.c.parallel.cp > 1 && r["details"].contains("plan")) {
      m.c.parallel.overlap_degree = r["details"]["plan"].value("overlap_degree", 0);
    }
    if (!m.kernel && r.contains("ranks") && r["ranks"].is_array()) {
      const nlohmann::json& ranks = r["ranks"];
      m.compute.resize(ranks.size());
      for (size_t k = 0; k < ranks.size(); ++k) {
        const std::string rp = item_path(child_path(where, "ranks"), k);
        const size_t rank = static_cast<size_t>(rd.integer(child_path(rp, "rank"), ranks[k].value("rank", nlohmann::json()), 0,
                                                           static_cast<int64_t>(ranks.size()) - 1));
        for (int pass = 0; pass < 2; ++pass) {
          const char* key = pass == 0 ? "fwd_compute_ms" : "bwd_compute_ms";
          if (!ranks[k].contains(key)) continue;
          for (const nlohmann::json& v : rd.array(child_path(rp, key), ranks[k][key], "milliseconds per compute step")) {
            m.compute[rank][static_cast<size_t>(pass)].push_back(rd.number(child_path(rp, key), v, 0, 1e9, false) * 1e-3);
          }
        }
      }
      if (std::all_of(m.compute.begin(), m.compute.end(), [](const RankStepSeconds& s) { return s[0].empty() && s[1].empty(); })) {
        m.compute.clear();  // written before the runtime timed its steps
      }
    }
    m.fwd_ms = r.value("fwd_ms", 0.0);
    m.bwd_ms = r.value("bwd_ms", 0.0);
    m.threads = threads;
    m.fit = fit && (fit_masks.empty() || fit_masks.count(m.c.mask.type));
    if (m.kernel && r["details"].contains("kernel")) {
      const nlohmann::json& k = r["details"]["kernel"];
      m.recorded_fwd_tiles = k.value("forward_tiles", int64_t{-1});
      m.recorded_bwd_tiles = k.value("backward_tiles", int64_t{-1});
      m.tiles = kTilesBeforeRecorded;
      if (k.contains("tiles"))
        m.tiles = kernel_tiles_from_json(k["tiles"], path, child_path(child_path(child_path(where, "details"), "kernel"), "tiles"));
    }
    out.push_back(std::move(m));
  }
  return out;
}

// Rows of one measurement repeated (the same case in several runs' files) become one: per pass,
// the fastest repeat's time and its compute steps. On a shared machine other load only ever slows a
// run, so the fastest repeat is the one closest to what the model describes (docs/simulation.md).
std::vector<Measured> keep_fastest(std::vector<Measured> rows) {
  std::vector<Measured> out;
  std::map<std::string, size_t> seen;
  for (Measured& m : rows) {
    const auto [it, fresh] = seen.emplace(m.key, out.size());
    if (fresh) {
      out.push_back(std::move(m));
      continue;
    }
    Measured& kept = out[it->second];
    ++kept.repeats;
    const bool same_steps = kept.compute.size() == m.compute.size();
    if (m.fwd_ms > 0 && (!(kept.fwd_ms > 0) || m.fwd_ms < kept.fwd_ms)) {
      kept.fwd_ms = m.fwd_ms;
      if (same_steps) for (size_t r = 0; r < m.compute.size(); ++r) kept.compute[r][0] = m.compute[r][0];
    }
    if (m.bwd_ms > 0 && (!(kept.bwd_ms > 0) || m.bwd_ms < kept.bwd_ms)) {
      kept.bwd_ms = m.bwd_ms;
      if (same_steps) for (size_t r = 0; r < m.compute.size(); ++r) kept.compute[r][1] = m.compute[r][1];
    }
  }
  return out;
}

struct Prediction {
  double fwd_s = 0, bwd_s = 0;
};

Prediction predict(const Measured& m, const ClusterSpec& cl, const KernelModel& km, const SimOptions& opt = {}) {
  if (m.kernel) {
    const KernelWork w = count_kernel_work(m.mask, km.tiles(m.c.model.head_dim));
    return {km.seconds(Pass::fwd, w, m.c.model, m.c.model.heads_q, m.c.model.heads_kv),
            km.seconds(Pass::bwd, w, m.c.model, m.c.model.heads_q, m.c.model.heads_kv)};
  }
  const CaseSim s = simulate_case(m.mask, m.c, cl, km, opt);
  return {s.fwd_s(), s.bwd_s()};
}

// A run row's compute steps as the simulator counts them (their work), each beside its measured
// time; empty when the row has no measured steps or they are not the simulator's steps.
struct RowSteps {
  std::vector<std::vector<StepWork>> work;  // per rank
  bool matched = false;
};
RowSteps row_steps(const Measured& m, const ClusterSpec& cl) {
  RowSteps out;
  if (m.kernel || m.compute.empty()) return out;
  const KernelTiles t = cpu_kernel_tiles();
  // Counting the steps needs no coefficients; zero ones keep the plan the row recorded.
  const KernelModel counting{{KernelCoeffs{Pass::fwd, m.c.model.head_dim, t}, KernelCoeffs{Pass::bwd, m.c.model.head_dim, t}}};
  SimOptions opt;
  opt.record_steps = true;
  const CaseSim s = simulate_case(m.mask, m.c, cl, counting, opt);
  if (s.skipped || s.ranks.size() != m.compute.size()) return out;
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    if (s.ranks[r].steps.size() != m.compute[r][0].size() || s.ranks[r].steps.size() != m.compute[r][1].size()) return out;
    out.work.push_back(s.ranks[r].steps);
  }
  out.matched = true;
  return out;
}

// An imported tier, printed with its per-size error.
LinkTier import_tier(const std::string& path, const char* tier, std::string& text) {
  const NcclTestsRun run = load_nccl_tests(path);
  const LinkTier t = fit_nccl_tests(run, path);
  std::vector<double> e;
  for (const NcclTestsPoint& p : run.points) {
    e.push_back((t.latency_us + p.link_bytes / (t.bandwidth_gbps * 1e3) - p.time_us) / p.time_us);
  }
  const ErrorStats s = error_stats(e);
  text += fmt::format("# Link {} imported from {} ({}, {} ranks, {} sizes): latency {:.3g} us, bandwidth {:.4g} GB/s "
                      "(time per size: median error {:.1f}%, worst {:.1f}%)\n",
                      tier, path, run.program.empty() ? "nccl-tests" : run.program, run.ranks, run.points.size(), t.latency_us,
                      t.bandwidth_gbps, 100 * s.median_abs, 100 * s.worst_abs);
  return t;
}

std::set<std::string> split_set(const std::string& s) {
  std::set<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) if (!item.empty()) out.insert(item);
  return out;
}

void calibrate(Context& ctx, const CalibrateOptions& opt) {
  std::vector<Measured> rows;
  size_t read_count = 0;
  ClusterSpec cl;
  preflight(ctx, [&] {
    if (!opt.out.empty()) check_writable(opt.out, opt.force ? Overwrite::allow : Overwrite::refuse);
    const std::set<std::string> masks = split_set(opt.fit_masks);
    for (const std::string& f : opt.fit) for (Measured& m : read_rows(f, true, masks)) rows.push_back(std::move(m));
    for (const std::string& f : opt.held_out) for (Measured& m : read_rows(f, false, {})) rows.push_back(std::move(m));
    read_count = rows.size();
    rows = keep_fastest(std::move(rows));
    const bool any_run = std::any_of(rows.begin(), rows.end(), [](const Measured& m) { return !m.kernel; });
    const bool any_kernel = std::any_of(rows.begin(), rows.end(), [](const Measured& m) { return m.kernel; });
    if (any_run && any_kernel) throw UsageError("calibrate: give kernel rows or run rows, not both (one device per calibration)");
    if (any_run) {
      if (opt.cluster.empty()) throw UsageError("calibrate: run rows need --cluster (the machine they ran on)");
      cl = load_cluster(opt.cluster);
    } else {
      cl.name = "one device";
      cl.kind = DeviceKind::gpu;
    }
    if (std::none_of(rows.begin(), rows.end(), [](const Measured& m) { return m.fit; })) {
      throw UsageError("calibrate: no row to fit (--fit files, --fit-masks)");
    }
  });
  const bool cpu = cl.kind == DeviceKind::cpu;
  Calibration cal;
  cal.kind = cl.kind;
  cal.device = opt.device;
  std::string text;
  if (read_count > rows.size()) {
    text += fmt::format("# {} measured rows are {} cases measured several times: each case's fastest repeat per pass "
                        "is fitted and predicted\n", read_count, rows.size());
  }

  // Compute: kernel rows, or every measured compute step of the run rows of the fit set.
  std::vector<RowSteps> steps(rows.size());
  int unmatched = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    steps[i] = row_steps(rows[i], cl);
    if (!rows[i].kernel && !rows[i].compute.empty() && !steps[i].matched) ++unmatched;
  }
  std::vector<KernelSample> samples;
  std::vector<int> sample_ranks;
  std::map<int, const Measured*> dims;  // head dim -> a kernel row of it (whose tiles the model takes)
  for (size_t i = 0; i < rows.size(); ++i) {
    const Measured& m = rows[i];
    if (!m.fit) continue;
    const ModelShape& s = m.c.model;
    if (m.kernel) {
      const auto [at, fresh] = dims.emplace(s.head_dim, &m);
      if (!fresh && !at->second) at->second = &m;
      if (!fresh && !(at->second->tiles == m.tiles)) {
        throw UsageError(fmt::format("calibrate: {} and {} ran head dim {} with different kernel tiles "
                                     "(details.kernel.tiles): fit them separately", at->second->file, m.file, s.head_dim));
      }
      const KernelWork w = count_kernel_work(m.mask, m.tiles);
      samples.push_back({Pass::fwd, s.head_dim, double(w.fwd_tiles) * s.heads_q, double(w.fwd_items) * s.heads_q, 1.0, m.fwd_ms * 1e-3});
      samples.push_back({Pass::bwd, s.head_dim, double(w.bwd_tiles) * s.heads_q, double(w.bwd_items) * s.heads_kv, 1.0, m.bwd_ms * 1e-3});
      continue;
    }
    if (m.compute.empty()) {
      throw UsageError(fmt::format("calibrate: {}: {} has no measured compute steps (ranks[].fwd_compute_ms); "
                                   "run it again with this magi-bench", m.file, m.case_name));
    }
    const int on_node = std::min(m.c.parallel.cp, cl.ranks_per_node);
    if (m.threads != cl.threads_per_rank(on_node)) {
      throw UsageError(fmt::format("calibrate: {} ran {} kernel threads per rank at cp {}; --cluster {} says {} "
                                   "(cores_per_node: is it the machine the rows ran on?)", m.file, m.threads,
                                   m.c.parallel.cp, opt.cluster, cl.threads_per_rank(on_node)));
    }
    for (size_t r = 0; r < steps[i].work.size(); ++r) {
      for (size_t k = 0; k < steps[i].work[r].size(); ++k) {
        const StepWork& w = steps[i].work[r][k];
        if (w.work.empty()) continue;  // a step with nothing to compute times its overhead only
        samples.push_back({Pass::fwd, s.head_dim, double(w.work.fwd_tiles) * w.heads_q, double(w.work.fwd_items) * w.heads_q,
                           1.0, m.compute[r][0][k]});
        samples.push_back({Pass::bwd, s.head_dim, double(w.work.bwd_tiles) * w.heads_q, double(w.work.bwd_items) * w.heads_kv,
                           1.0, m.compute[r][1][k]});
        sample_ranks.insert(sample_ranks.end(), 2, on_node);
      }
    }
    dims.emplace(s.head_dim, nullptr);
  }
  if (samples.empty()) throw UsageError("calibrate: the fit set has no kernel row or measured compute step to fit the kernel model from");
  if (cpu) {
    const CpuKernelFit f = fit_cpu_kernel(samples, sample_ranks, cl, cpu_kernel_tiles());
    cal.kernel = f.kernel;
    if (f.fitted) {
      cal.thread_efficiency = f.thread_efficiency;
      cl.thread_efficiency = f.thread_efficiency;
    }
  } else {
    for (const auto& [d, row] : dims) {
      const KernelTiles t = row ? row->tiles : gpu_kernel_tiles(d);
      for (Pass p : {Pass::fwd, Pass::bwd}) cal.kernel.coeffs.push_back(fit_kernel(samples, p, d, t, true));
    }
  }
  text += fmt::format("# Kernel model (t = call + tile x tiles x heads + item x items x heads{}), from {} {}:\n",
                      cpu ? ", per thread" : "", samples.size() / 2, cpu ? "measured compute steps" : "kernel rows");
  for (const KernelCoeffs& k : cal.kernel.coeffs) {
    text += fmt::format("#   {} d {:>3} tiles {}x{}/{}x{}: call {:.3g} s, tile {:.4g} s, item {:.4g} s\n", to_string(k.pass),
                        k.head_dim, k.tiles.fwd_rows, k.tiles.fwd_keys, k.tiles.bwd_rows, k.tiles.bwd_keys, k.call_s,
                        k.tile_s, k.item_s);
  }
  if (cal.thread_efficiency) {
    text += fmt::format("# Thread efficiency (what each kernel thread of a rank beyond its first adds; one rank runs {} "
                        "threads on {} cores, several one each): {:.3f}\n",
                        cl.threads_per_rank(1), cl.cores_per_node, *cal.thread_efficiency);
  } else if (cpu) {
    text += "# Thread efficiency: not fitted (every fit row ran one number of threads per rank); 1\n";
  }
  if (unmatched) {
    text += fmt::format("# warning: {} run rows recorded compute steps other than the simulator's; not used\n", unmatched);
  }

  // Links: imported from nccl-tests, else fitted to the fit set's multi-rank rows with their
  // measured compute steps in place of the model's (one node: one tier).
  if (!opt.nccl_intra.empty()) cal.intra = import_tier(opt.nccl_intra, "intra_node", text);
  if (!opt.nccl_inter.empty()) cal.inter = import_tier(opt.nccl_inter, "inter_node", text);
  if (cal.intra) cl.intra = *cal.intra;
  if (cal.inter) cl.inter = *cal.inter;
  std::vector<size_t> multi;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].fit && !rows[i].kernel && rows[i].c.parallel.cp > 1 && steps[i].matched) multi.push_back(i);
  }
  if (!multi.empty() && !cal.intra) {
    auto err = [&](const LinkTier& t) {
      ClusterSpec c = cl;
      c.intra = t;
      if (!cal.inter) c.inter = t;
      double e = 0;
      for (size_t i : multi) {
        SimOptions so;
        so.measured_compute = &rows[i].compute;
        const Prediction p = predict(rows[i], c, cal.kernel, so);
        e += std::abs(std::log(p.fwd_s / (rows[i].fwd_ms * 1e-3))) + std::abs(std::log(p.bwd_s / (rows[i].bwd_ms * 1e-3)));
      }
      return e;
    };
    // One node's ranks talk through shared memory: 1 to 20000 us per transfer (with the host-side
    // copies around it), 0.1 to 50 GB/s. The error is the sum of |log(predicted / measured)|,
    // which a few runs slowed by other load on the machine move less than squares would.
    constexpr double kLatLo = 1, kLatHi = 20000, kBwLo = 0.1, kBwHi = 50;
    const LinkTier t = fit_link(err, kLatLo, kLatHi, kBwLo, kBwHi);
    cal.intra = t;
    cl.intra = t;
    if (!cal.inter) cal.inter = cl.inter = t;
    const bool at_bound = t.latency_us <= kLatLo * 1.001 || t.latency_us >= kLatHi * 0.999 ||
                          t.bandwidth_gbps <= kBwLo * 1.001 || t.bandwidth_gbps >= kBwHi * 0.999;
    text += fmt::format("# Link (from {} rows with cp >= 2, their measured compute steps in place): latency {:.3g} us, "
                        "bandwidth {:.4g} GB/s{}\n", multi.size(), t.latency_us, t.bandwidth_gbps,
                        at_bound ? " (at the bound of the search)" : "");
  } else if (cpu && !cal.intra) {
    text += "# Link: no row with cp >= 2 and measured compute steps in the fit set; the cluster's links stand\n";
  }
  // Compute steps, predicted: the kernel model and thread efficiency alone.
  std::map<std::string, std::vector<double>> step_errors;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Measured& m = rows[i];
    const int on_node = std::min(m.c.parallel.cp, cl.ranks_per_node);
    for (size_t r = 0; r < steps[i].work.size(); ++r) {
      for (size_t k = 0; k < steps[i].work[r].size(); ++k) {
        const StepWork& w = steps[i].work[r][k];
        if (w.work.empty()) continue;
        for (Pass pass : {Pass::fwd, Pass::bwd}) {
          const double meas = m.compute[r][pass == Pass::fwd ? 0 : 1][k];
          if (!(meas > 0)) continue;
          const double pred = cal.kernel.seconds(pass, w.work, m.c.model, w.heads_q, w.heads_kv) / cl.rank_speed(on_node);
          step_errors[std::string(m.fit ? "fit" : "held_out") + "_compute_steps"].push_back((pred - meas) / meas);
        }
      }
    }
  }
  // Every row, predicted.
  text += fmt::format("#\n# {:<44} {:>22} {:>9} {:>4} {:>9} {:>4} {:>11} {:>11} {:>8}  {}\n", "file: case", "mask", "tokens",
                      "cp", "strategy", "pass", "measured", "predicted", "error", "role");
  nlohmann::json cases = nlohmann::json::array();
  std::map<std::string, std::vector<double>> errors;
  int tile_mismatch = 0;
  for (const Measured& m : rows) {
    const Prediction p = predict(m, cl, cal.kernel);
    const std::string role = m.fit ? "fit" : "held_out";
    if (m.kernel && m.recorded_fwd_tiles >= 0) {
      const KernelWork w = count_kernel_work(m.mask, cal.kernel.tiles(m.c.model.head_dim));
      if (w.fwd_tiles * m.c.model.heads_q != m.recorded_fwd_tiles || w.bwd_tiles * m.c.model.heads_q != m.recorded_bwd_tiles) ++tile_mismatch;
    }
    for (Pass pass : {Pass::fwd, Pass::bwd}) {
      const double meas = (pass == Pass::fwd ? m.fwd_ms : m.bwd_ms);
      const double pred = (pass == Pass::fwd ? p.fwd_s : p.bwd_s) * 1e3;
      if (!(meas > 0)) continue;
      const double e = (pred - meas) / meas;
      errors[role].push_back(e);
      errors[role + "_" + std::string(to_string(pass))].push_back(e);
      if (!m.kernel) errors[fmt::format("{}_cp{}", role, m.c.parallel.cp)].push_back(e);
      const std::string name = fmt::format("{}: {}{}", std::filesystem::path(m.file).filename().string(), m.case_name,
                                           m.repeats > 1 ? fmt::format(" (x{})", m.repeats) : std::string());
      text += fmt::format("  {:<44} {:>22} {:>9} {:>4} {:>9} {:>4} {:>11.4f} {:>11.4f} {:>+7.1f}%  {}\n", name, m.c.mask.type,
                          m.c.total_tokens, m.c.parallel.cp, m.kernel ? "none" : std::string(to_string(m.c.parallel.strategy)),
                          to_string(pass), meas, pred, 100 * e, role);
      cases.push_back({{"file", m.file}, {"case", m.case_name}, {"mask", m.c.mask.type}, {"total_tokens", m.c.total_tokens},
                       {"cp", m.c.parallel.cp}, {"strategy", m.kernel ? "none" : std::string(to_string(m.c.parallel.strategy))},
                       {"heads_q", m.c.model.heads_q}, {"heads_kv", m.c.model.heads_kv}, {"head_dim", m.c.model.head_dim},
                       {"pass", to_string(pass)}, {"repeats", m.repeats}, {"measured_ms", meas}, {"predicted_ms", pred}, {"error", e}, {"role", role}});
    }
  }
  nlohmann::json summary = nlohmann::json::object();
  text += "#\n# Error |predicted - measured| / measured:\n";
  for (const auto& [role, e] : errors) {
    const ErrorStats s = error_stats(e);
    summary[role] = {{"count", s.count}, {"median_abs", s.median_abs}, {"worst_abs", s.worst_abs}};
    text += fmt::format("#   {:<14} {:>4} predictions: median {:5.1f}%, worst {:5.1f}%\n", role, s.count, 100 * s.median_abs,
                        100 * s.worst_abs);
  }
  if (!step_errors.empty()) text += "# Compute steps alone (kernel model and thread efficiency against ranks[].*_compute_ms):\n";
  for (const auto& [role, e] : step_errors) {
    const ErrorStats s = error_stats(e);
    summary[role] = {{"count", s.count}, {"median_abs", s.median_abs}, {"worst_abs", s.worst_abs}};
    text += fmt::format("#   {:<23} {:>5} steps: median {:5.1f}%, worst {:5.1f}%\n", role, s.count, 100 * s.median_abs,
                        100 * s.worst_abs);
  }
  if (tile_mismatch) {
    text += fmt::format("# warning: {} kernel rows recorded tile counts other than the model's (kernel_work.h)\n", tile_mismatch);
  }
  cal.validation = {{"cases", cases}, {"summary", summary}, {"fit_files", opt.fit}, {"held_out_files", opt.held_out},
                    {"fit_masks", opt.fit_masks}};
  print0(ctx, text);
  if (!opt.out.empty()) {
    write_file_atomic(opt.out, to_json(cal).dump(1) + "\n", opt.force ? Overwrite::allow : Overwrite::refuse);
    print0(ctx, fmt::format("# Wrote {}\n", opt.out));
  }
}

}  // namespace

void add_calibrate_command(CLI::App& app, Context& ctx) {
  auto opt = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate",
      "Fit the simulator's cost model to measured result files (kernel or run --out) and print\n"
      "predicted against measured for every case, fitted and held out (docs/simulation.md).");
  cmd->add_option("--fit", opt->fit,
                  "Result files to fit from (repeatable). A case found in several files (repeated runs)\n"
                  "counts once, with its fastest repeat per pass")->required()->expected(1, -1);
  cmd->add_option("--held-out", opt->held_out, "Result files only predicted, never fitted (repeatable)")->expected(1, -1);
  cmd->add_option("--fit-masks", opt->fit_masks,
                  "Comma-separated masks: only --fit rows with these masks fit; the others are held out");
  cmd->add_option("--cluster", opt->cluster, "The machine run rows ran on (configs/clusters/)");
  cmd->add_option("--device", opt->device, "The device's name, recorded in the calibration");
  cmd->add_option("--nccl-tests-intra", opt->nccl_intra,
                  "nccl-tests JSON output (-J) measured inside one node: the intra-node tier's latency and\n"
                  "bandwidth, fitted to its sizes and times, instead of a fit to run rows")
      ->check(CLI::ExistingFile);
  cmd->add_option("--nccl-tests-inter", opt->nccl_inter,
                  "nccl-tests JSON output (-J) measured across nodes (one GPU per node): the inter-node tier")
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--out", opt->out, "Write the calibration JSON")->check(output_file_name());
  cmd->add_flag("-f,--force", opt->force, "Replace --out if it exists");
  cmd->callback([&ctx, opt] { calibrate(ctx, *opt); });
}

}  // namespace magi::app
