// `magi-bench kernel --config F`: the flexible CUDA attention kernel alone on one GPU. For each
// case of the workload (cases with cp > 1 are skipped rows) it builds the mask's slices, times
// forward and backward and, with --check, compares sampled rows with the float64 CPU reference
// (lib/runtime/cuda/kernel_benchmark.h: the method). Every case is timed before any is checked, so
// that no case is timed after a check's idle pause and the figures are the same with and without
// --check; a case's row is printed once it is complete. Each case is a results row of cp 1 and
// backend cuda-kernel, printed like `run`'s (table on stdout, --out JSON, --csv CSV; never over
// an existing file unless --force). Exit code 6 when a check fails, 7 when a case is below a
// --min-*-tflops floor.
#include "case_row.h"
#include "commands.h"
#include "gate_options.h"
#include "result_files.h"
#include "sim_common.h"
#include "system_info.h"

#include "core/base/error.h"
#include "core/results/device_peak.h"
#include "core/results/gate.h"
#include "core/results/row.h"
#include "core/results/writers.h"
#include "core/sim/kernel_model.h"
#include "core/workload/case_inputs.h"
#include "core/workload/documents.h"
#include "core/workload/workload.h"
#include "runtime/cuda/kernel_benchmark.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace magi::app {

namespace {

struct KernelOptions {
  std::string config;
  std::string out_json;
  std::string out_csv;
  bool force = false;
  RunOverrides overrides;
  GateOptions gate;
  int64_t check_rows = 128;
};

constexpr const char* kBackend = "cuda-kernel";
constexpr const char* kStrategy = "none";  // one GPU: no context-parallel strategy

// The row of one case: its identity and the kernel's per-call timings as the one rank's (the check,
// when asked for, is added once every case is timed).
CaseRow kernel_row(const Case& c, const std::vector<int64_t>& docs, size_t slices,
                   const KernelBenchResult& r, const std::string& device, int64_t check_rows) {
  CaseRow row = case_row(c, kBackend);
  row.strategy = kStrategy;
  row.dtype = std::string(to_string(c.model.dtype));
  row.area = r.stats.area;
  row.fwd_ran = c.run.fwd;
  row.bwd_ran = c.run.bwd;
  row.peak_tflops = dense_peak_tflops(device, c.model.dtype);
  RankRow rank;
  rank.host = hostname();
  rank.fwd = summarize(r.fwd_ms);
  rank.bwd = summarize(r.bwd_ms);
  rank.tokens = c.total_tokens;
  rank.area = r.stats.area;
  row.ranks.push_back(rank);
  row.details["documents"] = to_json(document_stats(docs));
  row.details["document_lengths"] = docs;  // the peers rebuild the mask from them
  row.details["mask"] = {{"window", c.mask.window}, {"block_tokens", c.mask.block_tokens}};
  row.details["kernel"] = {
      {"slices", slices},
      {"tiles", to_json(gpu_kernel_tiles(c.model.head_dim))},
      {"forward_items", r.stats.forward_items}, {"forward_tiles", r.stats.forward_tiles},
      {"backward_items", r.stats.backward_items}, {"backward_tiles", r.stats.backward_tiles},
      {"q_ranges_overlap", r.stats.q_ranges_overlap}, {"check_rows_per_window", check_rows}};
  return row;
}

void run_kernel_bench(Context& ctx, const KernelOptions& opt) {
  Workload workload;
  Gate gate;
  preflight(ctx, [&] {
    if (ctx.world_size != 1)
      throw UsageError(fmt::format("kernel runs on one GPU in one process; got {} ranks", ctx.world_size));
    workload = load_workload(opt.config);
    opt.overrides.validate();
    gate = opt.gate.gate();
    if (opt.check_rows < 1) throw UsageError(fmt::format("--check-rows {}: expected >= 1", opt.check_rows));
    for (const Case& c : workload.cases) {
      if (c.model.dtype == DType::fp32)
        throw ConfigError(fmt::format("{}: model.dtype fp32 is not a CUDA kernel dtype (bf16 or fp16)", c.name));
      if (!kernels::cuda::head_dim_supported(c.model.head_dim))
        throw ConfigError(fmt::format("{}: model.head_dim {} not supported by the CUDA kernel (64 or 128)",
                                      c.name, c.model.head_dim));
    }
    ResultFiles{opt.out_json, opt.out_csv, opt.force}.check_before_work();
    if (!kernels::cuda::device_available()) throw RuntimeError("kernel: no CUDA device visible");
  });

  Report report;
  report.metadata = collect_metadata(ctx);
  const std::string device = kernels::cuda::device_description();
  report.metadata["backend"] = kBackend;
  report.metadata["kernel"] = {
      {"name", "flex_attention (wgmma forward and backward; work items grouped by kv head and first "
                "slice, heaviest first)"},
      {"time", "CUDA events around single calls, after warmup (at least 1 s of it), iters of them (at least 2 s); rows "
               "report the median"}};
  report.metadata["workload"] = {{"path", opt.config}, {"name", workload.name}, {"resolved", workload.resolved}};
  print0(ctx, metadata_header(report.metadata));
  print0(ctx, fmt::format("# Backend: {}\n# Workload: {} \"{}\", {} case{}\n#\n", kBackend,
                          opt.config, workload.name, workload.cases.size(),
                          workload.cases.size() == 1 ? "" : "s"));
  print0(ctx, table_header());

  // A timed case waiting for its check.
  struct PendingCheck {
    size_t row;
    kernels::AttnShape shape;
    std::vector<AttnSlice> mask;
    KernelBenchOptions options;
  };
  std::vector<PendingCheck> pending;
  const auto fail_as = [](const std::string& name, auto&& work) {
    try {
      return work();
    } catch (const Error&) {
      throw;  // already typed (the harness runs lib/core code)
    } catch (const std::invalid_argument& e) {
      throw ConfigError(fmt::format("{}: {}", name, e.what()));
    } catch (const std::runtime_error& e) {
      throw RuntimeError(fmt::format("{}: {}", name, e.what()));
    }
  };
  int below_floor = 0;
  size_t printed = 0;
  const auto print_rows_until = [&](size_t end) {
    for (; printed < end; ++printed) {
      below_floor += apply_gate(report.rows[printed], gate);
      print0(ctx, table_row(report, printed));
    }
  };

  for (const Case& original : workload.cases) {
    Case c = original;
    opt.overrides.apply(c);
    if (c.parallel.cp != 1) {
      report.rows.push_back(skipped_row(
          c, kBackend, fmt::format("cp = {}: the kernel benchmark runs one GPU", c.parallel.cp)));
      report.rows.back().strategy = kStrategy;
    } else {
      const CaseInputs inputs = build_case_inputs(c.documents, c.mask, c.total_tokens);
      const kernels::AttnShape shape{c.total_tokens, c.total_tokens, c.model.heads_q, c.model.heads_kv,
                                     c.model.head_dim};
      KernelBenchOptions bo;
      bo.fwd = c.run.fwd;
      bo.bwd = c.run.bwd;
      bo.warmup = c.run.warmup;
      bo.iters = c.run.iters;
      bo.check_rows = opt.check_rows;
      bo.seed = c.run.seed;
      bo.dtype = c.model.dtype;
      const KernelBenchResult r = fail_as(c.name, [&] { return time_kernel(shape, inputs.mask, bo); });
      report.rows.push_back(kernel_row(c, inputs.documents, inputs.mask.size(), r, device, opt.check_rows));
      if (c.run.check) {
        pending.push_back({report.rows.size() - 1, shape, inputs.mask, bo});
        // On stderr, as `run`'s progress: the table on stdout stays whole.
        fmt::print(stderr, "progress: case {}/{} ({}) timed; checks follow the last case's timing\n",
                   report.rows.size(), workload.cases.size(), c.name);
      }
    }
    if (pending.empty()) print_rows_until(report.rows.size());
  }
  for (size_t i = 0; i < pending.size(); ++i) {
    const PendingCheck& p = pending[i];
    CaseRow& row = report.rows[p.row];
    row.errors = fail_as(row.case_name, [&] { return check_kernel(p.shape, p.mask, p.options); });
    const bool ok = std::all_of(row.errors.begin(), row.errors.end(), [](const TensorError& e) { return e.ok; });
    row.check = ok ? CheckState::passed : CheckState::failed;
    print_rows_until(i + 1 < pending.size() ? pending[i + 1].row : report.rows.size());
  }
  print0(ctx, table_summary(report));

  for (const std::string& path : ResultFiles{opt.out_json, opt.out_csv, opt.force}.write(report)) {
    print0(ctx, fmt::format("# Wrote {}\n", path));
  }
  if (report.failed_checks()) ctx.exit_code = static_cast<int>(ExitCode::wrong_result);
  else if (below_floor) ctx.exit_code = static_cast<int>(ExitCode::regression);
}

}  // namespace

void add_kernel_command(CLI::App& app, Context& ctx) {
  auto opt = std::make_shared<KernelOptions>();
  CLI::App* cmd = app.add_subcommand(
      "kernel",
      "Benchmark the flexible CUDA attention kernel on one GPU: TFLOP/s forward and backward per "
      "case of a workload (mask, size, heads, head dim), with an optional check against the "
      "float64 CPU reference on sampled rows. With --warmup > 0 a case's warm-up lasts at least 1 s, "
      "so that it is timed at the clocks its own work sets, and its timed calls at least 2 s, so "
      "that their median spans the clock's swings at the power cap; every case is timed before any "
      "is checked, and a row is printed once its check is done.");
  cmd->add_option("-c,--config", opt->config, "Workload JSON file (one GPU: cases with parallel.cp > 1 are skipped rows)")
      ->required();
  cmd->add_option("-o,--out", opt->out_json, "Write the results as JSON to this file")->check(output_file_name());
  cmd->add_option("--csv", opt->out_csv, "Write one CSV line per case to this file")->check(output_file_name());
  cmd->add_flag("-f,--force", opt->force, "Overwrite --out / --csv files that already exist (regular files only)");
  opt->overrides.add_to(*cmd);
  opt->gate.add_to(*cmd);
  cmd->add_option("--check-rows", opt->check_rows, "Rows per checked window (three windows: first, middle, last)");
  cmd->callback([&ctx, opt] { run_kernel_bench(ctx, *opt); });
}

}  // namespace magi::app
