// `magi-bench kernel --config F`: the flexible CUDA attention kernel alone on one GPU. For each
// case of the workload (cp ignored; cases with cp > 1 are skipped rows) it builds the mask's
// slices, times forward and backward (kernels/cuda/flex_benchmark.h: CUDA events, median of
// `iters` after `warmup`), reports TFLOP/s from the mask area (DESIGN.md §1: forward
// 4 * area * d * hq, backward 2.5x) and, with --check, compares sampled rows with the float64
// CPU reference. Table on stdout, --out JSON written atomically (never over an existing file
// unless --force). Exit code 6 when a check fails.
#include "commands.h"
#include "system_info.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/workload/case_inputs.h"
#include "core/workload/workload.h"
#include "cuda/flex_benchmark.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace magi::app {

namespace {

struct KernelOptions {
  std::string config;
  std::string out_json;
  bool force = false;
  RunOverrides overrides;
  int64_t check_rows = 128;
};

// H100 SXM dense bf16 peak by datasheet (DESIGN.md §1), for the MFU column.
constexpr double kPeakTflops = 989.0;

std::string heads_str(const ModelShape& m) { return fmt::format("{}:{}", m.heads_q, m.heads_kv); }

void run_kernel_bench(Context& ctx, const KernelOptions& opt) {
  Workload workload;
  preflight(ctx, [&] {
    if (ctx.world_size != 1)
      throw UsageError(fmt::format("kernel runs on one GPU in one process; got {} ranks", ctx.world_size));
    workload = load_workload(opt.config);
    opt.overrides.validate();
    if (opt.check_rows < 1) throw UsageError(fmt::format("--check-rows {}: expected >= 1", opt.check_rows));
    for (const Case& c : workload.cases) {
      if (c.model.dtype == DType::fp32)
        throw ConfigError(fmt::format("{}: model.dtype fp32 is not a CUDA kernel dtype (bf16 or fp16)", c.name));
      if (!kernels::cuda::head_dim_supported(c.model.head_dim))
        throw ConfigError(fmt::format("{}: model.head_dim {} not supported by the CUDA kernel (64 or 128)",
                                      c.name, c.model.head_dim));
    }
    if (!opt.out_json.empty()) check_writable(opt.out_json, opt.force ? Overwrite::allow : Overwrite::refuse);
    if (!kernels::cuda::device_available()) throw RuntimeError("kernel: no CUDA device visible");
  });

  nlohmann::json meta = collect_metadata(ctx);
  const std::string device = kernels::cuda::device_description();
  meta["device"] = device;
  meta["kernel"] = {
      {"name", "flex_attention (wgmma forward and backward; work items grouped by kv head and first "
                "slice, heaviest first; MAGI_FLEX_FWD_VARIANT selects other forward tiles)"},
      {"fwd_variant_env", std::getenv("MAGI_FLEX_FWD_VARIANT") ? std::getenv("MAGI_FLEX_FWD_VARIANT") : ""},
      {"flops", "forward 4 * area * head_dim * heads_q; backward 2.5 x forward"},
      {"time", "CUDA events around single calls, median of iters after warmup"},
      {"peak_tflops", kPeakTflops}};
  meta["workload"] = {{"path", opt.config}, {"name", workload.name}, {"resolved", workload.resolved}};
  print0(ctx, metadata_header(meta));
  print0(ctx, fmt::format("# Device: {}\n# Workload: {} \"{}\", {} case{}\n#\n", device, opt.config,
                          workload.name, workload.cases.size(), workload.cases.size() == 1 ? "" : "s"));
  const std::string header = fmt::format(
      "{:<28} {:<20} {:>7} {:>6} {:>4} {:>5} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8}  {}\n", "case",
      "mask", "S", "heads", "d", "docs", "fwd_ms", "bwd_ms", "fwd_TF", "bwd_TF", "fwdMFU", "bwdMFU", "err_out",
      "err_dq", "check");
  print0(ctx, header);

  nlohmann::json rows = nlohmann::json::array();
  int failed = 0;
  for (const Case& original : workload.cases) {
    Case c = original;
    opt.overrides.apply(c);
    nlohmann::json row = {{"case", c.name}, {"mask", c.mask.type}, {"total_tokens", c.total_tokens},
                          {"heads_q", c.model.heads_q}, {"heads_kv", c.model.heads_kv},
                          {"head_dim", c.model.head_dim}, {"dtype", std::string(to_string(c.model.dtype))},
                          {"window", c.mask.window}, {"block_tokens", c.mask.block_tokens},
                          {"config", resolved_config(c)}};
    if (c.parallel.cp != 1) {
      row["skipped"] = true;
      row["skip_reason"] = fmt::format("cp = {}: the kernel benchmark runs one GPU", c.parallel.cp);
      print0(ctx, fmt::format("{:<28} {:<20} {:>7}  skipped: {}\n", c.name, c.mask.type, c.total_tokens,
                              row["skip_reason"].get<std::string>()));
      rows.push_back(row);
      continue;
    }
    const CaseInputs inputs = build_case_inputs(c.documents, c.mask, c.total_tokens);
    const std::vector<int64_t>& docs = inputs.documents;
    const std::vector<AttnSlice>& mask = inputs.mask;
    std::vector<kernels::KernelSlice> slices;
    slices.reserve(mask.size());
    for (const AttnSlice& s : mask) {
      slices.push_back({s.q.start, s.q.end, s.k.start, s.k.end, static_cast<kernels::KernelSliceType>(s.type)});
    }
    kernels::AttnShape shape{c.total_tokens, c.total_tokens, c.model.heads_q, c.model.heads_kv, c.model.head_dim};
    kernels::cuda::FlexBenchOptions bo;
    bo.fwd = c.run.fwd;
    bo.bwd = c.run.bwd;
    bo.warmup = c.run.warmup;
    bo.iters = c.run.iters;
    bo.check = c.run.check;
    bo.check_rows = opt.check_rows;
    bo.seed = c.run.seed;
    bo.dtype = c.model.dtype;
    kernels::cuda::FlexBenchResult r;
    try {
      r = kernels::cuda::run_flex_benchmark(shape, slices, bo);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(fmt::format("{}: {}", c.name, e.what()));
    } catch (const std::runtime_error& e) {
      throw RuntimeError(fmt::format("{}: {}", c.name, e.what()));
    }
    const std::string check = !r.checked ? "-" : (r.check_passed ? "ok" : "FAILED");
    if (r.checked && !r.check_passed) ++failed;
    print0(ctx, fmt::format(
        "{:<28} {:<20} {:>7} {:>6} {:>4} {:>5} {:>9.3f} {:>9.3f} {:>8.1f} {:>8.1f} {:>5.1f}% {:>5.1f}% {:>8.1e} {:>8.1e}  {}{}\n",
        c.name, c.mask.type, c.total_tokens, heads_str(c.model), c.model.head_dim, docs.size(),
        r.fwd.median_ms, r.bwd.median_ms, r.fwd_tflops, r.bwd_tflops, 100.0 * r.fwd_tflops / kPeakTflops,
        100.0 * r.bwd_tflops / kPeakTflops, r.err_out, r.err_dq, check,
        r.check_message.empty() ? "" : " (" + r.check_message + ")"));
    row["documents"] = docs;
    row["slices"] = slices.size();
    row["area"] = r.stats.area;
    row["fwd_flops"] = r.fwd_flops;
    row["bwd_flops"] = r.bwd_flops;
    row["fwd_ms"] = {{"median", r.fwd.median_ms}, {"min", r.fwd.min_ms}, {"max", r.fwd.max_ms}};
    row["bwd_ms"] = {{"median", r.bwd.median_ms}, {"min", r.bwd.min_ms}, {"max", r.bwd.max_ms}};
    row["fwd_tflops"] = r.fwd_tflops;
    row["bwd_tflops"] = r.bwd_tflops;
    row["work"] = {{"forward_items", r.stats.forward_items}, {"forward_tiles", r.stats.forward_tiles},
                   {"backward_items", r.stats.backward_items}, {"backward_tiles", r.stats.backward_tiles},
                   {"q_ranges_overlap", r.stats.q_ranges_overlap}};
    row["check"] = {{"done", r.checked}, {"passed", r.check_passed}, {"err_out_rel_l2", r.err_out},
                    {"err_lse_max_abs", r.err_lse}, {"err_dq_rel_l2", r.err_dq}, {"tolerance", r.tol},
                    {"rows_per_window", opt.check_rows}, {"message", r.check_message}};
    rows.push_back(row);
  }
  print0(ctx, fmt::format("# {} case{}, {} failed check{}\n", rows.size(), rows.size() == 1 ? "" : "s", failed,
                          failed == 1 ? "" : "s"));
  if (!opt.out_json.empty()) {
    nlohmann::json out = {{"metadata", meta}, {"cases", rows}};
    // argv, environment and host strings may hold bytes that are not UTF-8: replace, never throw.
    write_file_atomic(opt.out_json, out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                      opt.force ? Overwrite::allow : Overwrite::refuse);
    print0(ctx, fmt::format("# Wrote {}\n", opt.out_json));
  }
  if (failed) ctx.exit_code = static_cast<int>(ExitCode::wrong_result);
}

}  // namespace

void add_kernel_command(CLI::App& app, Context& ctx) {
  auto opt = std::make_shared<KernelOptions>();
  CLI::App* cmd = app.add_subcommand(
      "kernel",
      "Benchmark the flexible CUDA attention kernel on one GPU: TFLOP/s forward and backward per "
      "case of a workload (mask, size, heads, head dim), with an optional check against the "
      "float64 CPU reference on sampled rows.");
  cmd->add_option("-c,--config", opt->config, "Workload JSON file (cp is ignored; cp > 1 cases are skipped)")
      ->required();
  cmd->add_option("-o,--out", opt->out_json, "Write the results as JSON to this file");
  cmd->add_flag("-f,--force", opt->force, "Overwrite --out if it exists");
  opt->overrides.add_to(*cmd);
  cmd->add_option("--check-rows", opt->check_rows, "Rows per checked window (three windows: first, middle, last)");
  cmd->callback([&ctx, opt] { run_kernel_bench(ctx, *opt); });
}

}  // namespace magi::app
