// `magi-bench calibrate`: fit the cost model (core/sim) to measured result files and print, for
// every measured case, predicted against measured and the error: cases of --fit files fitted the
// model (their error is the fit's), cases of --held-out files (and --fit rows outside --fit-masks)
// did not (their error is the model's prediction error). Kernel rows (`magi-bench kernel`) fit the
// kernel coefficients per pass and head dim; `run` rows at cp 1 fit them for the CPU reference
// (tiles 1 x 1), and rows at cp >= 2 fit the intra-node link (latency and bandwidth). Writes the
// calibration JSON (--out) that `simulate --calibration` reads. docs/simulation.md.
#include "commands.h"
#include "sim_common.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"
#include "core/base/schema.h"
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
  std::string fit_masks, cluster, out, device;
  bool force = false;
};

// One measured row with what predicting it needs.
struct Measured {
  std::string file;
  std::string case_name;
  Case c;
  std::vector<AttnSlice> mask;
  bool kernel = false;  // a `kernel` row (one GPU, no plan); else a `run` row
  double fwd_ms = 0, bwd_ms = 0;
  int threads = 1;      // run rows: the kernel threads per rank
  bool fit = false;
  int64_t recorded_fwd_tiles = -1, recorded_bwd_tiles = -1;  // kernel rows: the work lists' counts
};

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
    const Workload w = parse_workload(r["details"]["config"], fmt::format("{}: {}.details.config", path, where));
    MAGI_CHECK(w.cases.size() == 1, "a row's config names {} cases", w.cases.size());
    m.c = w.cases[0];
    m.c.parallel.cp = r.value("cp", 1);
    if (!m.kernel) m.c.model.dtype = DType::fp32;
    m.mask = build_case_inputs(m.c.documents, m.c.mask, m.c.total_tokens).mask;
    m.fwd_ms = r.value("fwd_ms", 0.0);
    m.bwd_ms = r.value("bwd_ms", 0.0);
    m.threads = threads;
    m.fit = fit && (fit_masks.empty() || fit_masks.count(m.c.mask.type));
    if (m.kernel && r["details"].contains("kernel")) {
      m.recorded_fwd_tiles = r["details"]["kernel"].value("forward_tiles", int64_t{-1});
      m.recorded_bwd_tiles = r["details"]["kernel"].value("backward_tiles", int64_t{-1});
    }
    out.push_back(std::move(m));
  }
  return out;
}

// The speed of a CPU rank that ran with `threads` kernel threads beside cp - 1 others.
double cpu_speed(const ClusterSpec& cl, int cp, int threads) {
  const double demand = static_cast<double>(cp) * threads;
  return threads * std::min(1.0, cl.cores_per_node / demand);
}

struct Prediction {
  double fwd_s = 0, bwd_s = 0;
};

Prediction predict(const Measured& m, const ClusterSpec& cl, const KernelModel& km) {
  if (m.kernel) {
    const KernelWork w = count_kernel_work(m.mask, km.tiles(m.c.model.head_dim));
    return {km.seconds(Pass::fwd, w, m.c.model, m.c.model.heads_q, m.c.model.heads_kv),
            km.seconds(Pass::bwd, w, m.c.model, m.c.model.heads_q, m.c.model.heads_kv)};
  }
  const CaseSim s = simulate_case(m.mask, m.c, cl, km);
  return {s.fwd_s(), s.bwd_s()};
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
  ClusterSpec cl;
  preflight(ctx, [&] {
    if (!opt.out.empty()) check_writable(opt.out, opt.force ? Overwrite::allow : Overwrite::refuse);
    const std::set<std::string> masks = split_set(opt.fit_masks);
    for (const std::string& f : opt.fit) for (Measured& m : read_rows(f, true, masks)) rows.push_back(std::move(m));
    for (const std::string& f : opt.held_out) for (Measured& m : read_rows(f, false, {})) rows.push_back(std::move(m));
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

  // Kernel coefficients: one-rank rows of the fit set, per pass and head dim.
  std::vector<KernelSample> samples;
  std::set<int> dims;
  for (const Measured& m : rows) {
    if (!m.fit || m.c.parallel.cp != 1) continue;
    const KernelTiles t = cpu ? cpu_kernel_tiles() : gpu_kernel_tiles(m.c.model.head_dim);
    const KernelWork w = count_kernel_work(m.mask, t);
    const double speed = cpu ? cpu_speed(cl, 1, m.threads) : 1.0;
    const ModelShape& s = m.c.model;
    samples.push_back({Pass::fwd, s.head_dim, double(w.fwd_tiles) * s.heads_q, double(w.fwd_items) * s.heads_q, speed, m.fwd_ms * 1e-3});
    samples.push_back({Pass::bwd, s.head_dim, double(w.bwd_tiles) * s.heads_q, double(w.bwd_items) * s.heads_kv, speed, m.bwd_ms * 1e-3});
    dims.insert(s.head_dim);
  }
  if (samples.empty()) throw UsageError("calibrate: the fit set has no one-rank (cp 1) row to fit the kernel model from");
  for (int d : dims) {
    for (Pass p : {Pass::fwd, Pass::bwd}) {
      cal.kernel.coeffs.push_back(fit_kernel(samples, p, d, cpu ? cpu_kernel_tiles() : gpu_kernel_tiles(d), !cpu));
    }
  }
  std::string text = "# Kernel model (t = call + tile x tiles x heads + item x items x heads):\n";
  for (const KernelCoeffs& k : cal.kernel.coeffs) {
    text += fmt::format("#   {} d {:>3} tiles {}x{}/{}x{}: call {:.3g} s, tile {:.4g} s, item {:.4g} s\n", to_string(k.pass),
                        k.head_dim, k.tiles.fwd_rows, k.tiles.fwd_keys, k.tiles.bwd_rows, k.tiles.bwd_keys, k.call_s,
                        k.tile_s, k.item_s);
  }
  // Links: the fit set's rows with several ranks (one node: the intra-node tier).
  std::vector<const Measured*> multi;
  for (const Measured& m : rows) if (m.fit && !m.kernel && m.c.parallel.cp > 1) multi.push_back(&m);
  if (!multi.empty()) {
    auto err = [&](const LinkTier& t) {
      ClusterSpec c = cl;
      c.intra = c.inter = t;
      double e = 0;
      for (const Measured* m : multi) {
        const Prediction p = predict(*m, c, cal.kernel);
        e += std::abs(std::log(p.fwd_s / (m->fwd_ms * 1e-3))) + std::abs(std::log(p.bwd_s / (m->bwd_ms * 1e-3)));
      }
      return e;
    };
    // One node's ranks talk through shared memory: 1 to 200 us per transfer, 0.5 to 50 GB/s. The
    // error is the sum of |log(predicted / measured)|, which a few runs slowed by other load on
    // the machine move less than squares would.
    const LinkTier t = fit_link(err, 1, 200, 0.5, 50);
    cal.intra = t;
    cal.inter = t;
    cl.intra = cl.inter = t;
    text += fmt::format("# Link (from {} rows with cp >= 2): latency {:.3g} us, bandwidth {:.4g} GB/s\n", multi.size(),
                        t.latency_us, t.bandwidth_gbps);
  } else if (cpu) {
    text += "# Link: no row with cp >= 2 in the fit set; the cluster's links stand\n";
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
      const KernelWork w = count_kernel_work(m.mask, gpu_kernel_tiles(m.c.model.head_dim));
      if (w.fwd_tiles * m.c.model.heads_q != m.recorded_fwd_tiles || w.bwd_tiles * m.c.model.heads_q != m.recorded_bwd_tiles) ++tile_mismatch;
    }
    for (Pass pass : {Pass::fwd, Pass::bwd}) {
      const double meas = (pass == Pass::fwd ? m.fwd_ms : m.bwd_ms);
      const double pred = (pass == Pass::fwd ? p.fwd_s : p.bwd_s) * 1e3;
      if (!(meas > 0)) continue;
      const double e = (pred - meas) / meas;
      errors[role].push_back(e);
      errors[role + "_" + std::string(to_string(pass))].push_back(e);
      const std::string name = fmt::format("{}: {}", std::filesystem::path(m.file).filename().string(), m.case_name);
      text += fmt::format("  {:<44} {:>22} {:>9} {:>4} {:>9} {:>4} {:>11.4f} {:>11.4f} {:>+7.1f}%  {}\n", name, m.c.mask.type,
                          m.c.total_tokens, m.c.parallel.cp, m.kernel ? "none" : std::string(to_string(m.c.parallel.strategy)),
                          to_string(pass), meas, pred, 100 * e, role);
      cases.push_back({{"file", m.file}, {"case", m.case_name}, {"mask", m.c.mask.type}, {"total_tokens", m.c.total_tokens},
                       {"cp", m.c.parallel.cp}, {"strategy", m.kernel ? "none" : std::string(to_string(m.c.parallel.strategy))},
                       {"heads_q", m.c.model.heads_q}, {"heads_kv", m.c.model.heads_kv}, {"head_dim", m.c.model.head_dim},
                       {"pass", to_string(pass)}, {"measured_ms", meas}, {"predicted_ms", pred}, {"error", e}, {"role", role}});
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
  cmd->add_option("--fit", opt->fit, "Result files to fit from (repeatable)")->required()->expected(1, -1);
  cmd->add_option("--held-out", opt->held_out, "Result files only predicted, never fitted (repeatable)")->expected(1, -1);
  cmd->add_option("--fit-masks", opt->fit_masks,
                  "Comma-separated masks: only --fit rows with these masks fit; the others are held out");
  cmd->add_option("--cluster", opt->cluster, "The machine run rows ran on (configs/clusters/)");
  cmd->add_option("--device", opt->device, "The device's name, recorded in the calibration");
  cmd->add_option("-o,--out", opt->out, "Write the calibration JSON")->check(output_file_name());
  cmd->add_flag("-f,--force", opt->force, "Replace --out if it exists");
  cmd->callback([&ctx, opt] { calibrate(ctx, *opt); });
}

}  // namespace magi::app
