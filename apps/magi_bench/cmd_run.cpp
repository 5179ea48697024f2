// `magi-bench run` (the default subcommand): every case of a workload's sweep, planned, executed
// on MPI ranks, checked and reported (table on stdout, --out JSON, --csv CSV).
#include "backend.h"
#include "case_row.h"
#include "commands.h"
#include "dispatch_details.h"
#include "gate_options.h"
#include "progress.h"
#include "result_files.h"
#include "system_info.h"

#include "core/base/error.h"
#include "core/plan/hybrid_plan.h"
#include "core/plan/node_layout.h"
#include "core/plan/plan_size.h"
#include "core/plan/planner.h"
#include "core/results/device_peak.h"
#include "core/results/gate.h"
#include "core/results/row.h"
#include "core/results/writers.h"
#include "core/workload/case_inputs.h"
#include "core/workload/documents.h"
#include "core/workload/workload.h"
#include "runtime/executor.h"
#include "runtime/mpi_communicator.h"
#include "runtime/watchdog.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <unistd.h>

namespace magi::app {

namespace {

struct RunOptions {
  std::string config;
  std::string backend = "auto";
  std::string comm = "auto";
  std::string out_json;
  std::string out_csv;
  bool force = false;
  double timeout_s = 600;
  bool allow_large = false;
  RunOverrides overrides;
  GateOptions gate;
  int threads = 0;
  bool ranks_needed = false;
};

// Threads per rank when not given: the node's hardware threads shared by the ranks on it.
int default_threads() {
  MPI_Comm node;
  MAGI_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int local = 1;
  MAGI_MPI_CHECK(MPI_Comm_size(node, &local));
  MAGI_MPI_CHECK(MPI_Comm_free(&node));
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, hw / local);
}

// Each world rank's host, as the world rank of the first rank sharing its memory
// (MPI_COMM_TYPE_SHARED: the node split the backend picks devices by). Collective.
std::vector<int> host_of_ranks(int world_size) {
  MPI_Comm node;
  MAGI_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int me = 0, leader = 0;
  MAGI_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &me));
  leader = me;
  MAGI_MPI_CHECK(MPI_Bcast(&leader, 1, MPI_INT, 0, node));
  MAGI_MPI_CHECK(MPI_Comm_free(&node));
  std::vector<int> hosts(static_cast<size_t>(world_size));
  MAGI_MPI_CHECK(MPI_Allgather(&leader, 1, MPI_INT, hosts.data(), 1, MPI_INT, MPI_COMM_WORLD));
  return hosts;
}

CaseRow measured_row(const Case& c, const Plan& plan, const ExecResult& result,
                     const std::string& backend, const std::string& device,
                     const std::vector<int64_t>& docs) {
  CaseRow row = case_row(c, backend);
  row.dtype = std::string(to_string(plan.model.dtype));
  row.area = plan.total_area;
  row.fwd_ran = c.run.fwd;
  row.bwd_ran = c.run.bwd;
  row.planned_fwd_bytes = plan.volume.fwd_bytes;
  row.planned_bwd_bytes = plan.volume.bwd_bytes;
  row.bound_fwd_bytes = plan.zero_redundancy_bound.fwd_bytes;
  row.imbalance = plan.imbalance;
  if (plan.strategy == Strategy::magi && plan.heads == 1) {  // tiers of a flat or node-aware magi plan
    row.ranks_per_node = plan.ranks_per_node;
    row.planned_fwd_inter_node_bytes = plan.tier_volume.inter_node;
    row.bound_fwd_inter_node_bytes = plan.tier_bound.inter_node;
    row.flat_fwd_inter_node_bytes = plan.tier_flat.inter_node;
  }
  row.peak_tflops = dense_peak_tflops(device, plan.model.dtype);
  for (const RankTimes& t : result.ranks) {
    RankRow r;
    r.rank = t.rank;
    r.host = t.host;
    r.fwd = summarize(t.fwd_ms);
    r.bwd = summarize(t.bwd_ms);
    r.fwd_sent_bytes = t.fwd_sent_bytes;
    r.bwd_sent_bytes = t.bwd_sent_bytes;
    r.fwd_inter_node_sent_bytes = t.fwd_inter_node_sent_bytes;
    r.bwd_inter_node_sent_bytes = t.bwd_inter_node_sent_bytes;
    r.fwd_comm_wait_ms = t.fwd_comm_wait_ms;
    r.bwd_comm_wait_ms = t.bwd_comm_wait_ms;
    r.fwd_compute_ms = t.fwd_compute_ms;
    r.bwd_compute_ms = t.bwd_compute_ms;
    r.peak_memory_bytes = t.peak_memory_bytes;
    if (plan.heads > 1) {
      const HybridRank x = hybrid_rank(plan, t.rank);
      r.tokens = x.tokens;
      r.area = x.area;
    } else {
      r.tokens = plan.ranks.at(t.rank).tokens;
      r.area = plan.ranks.at(t.rank).area;
    }
    row.ranks.push_back(r);
  }
  if (plan.heads > 1) {  // bytes per dimension, planned and counted (docs/results_schema.md)
    nlohmann::json measured = {{"head_fwd_bytes", 0}, {"head_bwd_bytes", 0}, {"context_fwd_bytes", 0},
                               {"context_bwd_bytes", 0}};
    for (const RankTimes& t : result.ranks) {
      measured["head_fwd_bytes"] = measured["head_fwd_bytes"].get<int64_t>() + t.fwd_sent_head_bytes;
      measured["head_bwd_bytes"] = measured["head_bwd_bytes"].get<int64_t>() + t.bwd_sent_head_bytes;
      measured["context_fwd_bytes"] =
          measured["context_fwd_bytes"].get<int64_t>() + t.fwd_sent_bytes - t.fwd_sent_head_bytes;
      measured["context_bwd_bytes"] =
          measured["context_bwd_bytes"].get<int64_t>() + t.bwd_sent_bytes - t.bwd_sent_head_bytes;
    }
    row.details["hybrid"] = {{"heads", plan.heads},
                             {"cp", plan.cp},
                             {"planned", {{"head_fwd_bytes", plan.head_volume.fwd_bytes},
                                          {"head_bwd_bytes", plan.head_volume.bwd_bytes},
                                          {"context_fwd_bytes", plan.context_volume.fwd_bytes},
                                          {"context_bwd_bytes", plan.context_volume.bwd_bytes}}},
                             {"measured", std::move(measured)}};
  }
  if (result.check_ran) {
    row.check = result.check_passed ? CheckState::passed : CheckState::failed;
    row.errors = result.checks;
  }
  row.details["documents"] = to_json(document_stats(docs));
  row.details["plan"] = {{"overlap_degree", plan.overlap_degree},
                         {"chunk_tokens", plan.chunk_tokens},
                         {"split_chunks", plan.split_chunks},
                         {"max_rank_area", plan.max_rank_area},
                         {"planned_bwd_bytes", plan.volume.bwd_bytes},
                         {"zero_redundancy_bwd_bytes", plan.zero_redundancy_bound.bwd_bytes}};
  return row;
}

// A world barrier that sleeps instead of spinning: ranks that sit out a case (world rank >= cp)
// wait here, and must not steal the cores of the ranks computing on the same node. Not bounded
// by the watchdog: a whole case may rightly take longer than --timeout, and the ranks running it
// bound their own waits.
void idle_barrier() {
  MPI_Request request;
  MAGI_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &request));
  for (int done = 0;;) {
    MAGI_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// The MPI ranks a workload needs: its largest parallel.cp x parallel.heads.
int ranks_needed(const Workload& w) {
  int n = 1;
  for (const Case& c : w.cases) n = std::max(n, c.parallel.cp * c.parallel.heads);
  return n;
}

// Ends the job from the watchdog's thread when a step or a wait outlives --timeout. The main
// thread is blocked (possibly inside MPI), so this thread calls MPI_Abort, although the process
// asked for MPI_THREAD_FUNNELED: the job is being torn down, and Open MPI does so (e2e_failures).
// NCCL operations in flight are aborted first (`backend`, once set): they would keep the process.
Watchdog::OnExpiry abort_job(const Context& ctx, double timeout_s, const std::atomic<Backend*>& backend) {
  return [&ctx, timeout_s, &backend](const std::string& message) {
    std::fprintf(stderr, "magi-bench: error%s: %s (--timeout %g)\n", error_location(ctx).c_str(),
                 message.c_str(), timeout_s);
    std::fflush(stderr);
    if (Backend* b = backend.load()) b->abort_in_flight();
    MPI_Abort(MPI_COMM_WORLD, static_cast<int>(ExitCode::runtime));
  };
}

void run_workload(Context& ctx, const RunOptions& opt) {
  Workload workload;
  FaultInjection fault;
  Gate gate;
  preflight(ctx, [&] {
    validate_backend_names(opt.backend, opt.comm);
    workload = load_workload(opt.config);
    const int max_cp = ranks_needed(workload);
    if (opt.ranks_needed) return;
    if (max_cp > ctx.world_size) {
      throw UsageError(fmt::format(
          "{}: parallel.cp x parallel.heads = {} needs at least {} MPI ranks, but the job has {}; launch it with "
          "`mpirun -np {} magi-bench ...`",
          opt.config, max_cp, max_cp, ctx.world_size, max_cp));
    }
    opt.overrides.validate();
    gate = opt.gate.gate();
    if (!opt.allow_large) {  // every rank plans every case: refuse before any of them runs
      for (const Case& c : workload.cases) {
        if (std::string why = plan_size_excess(c); !why.empty()) {
          throw ConfigError(fmt::format("{}: case {}: {}", opt.config, c.name, why));
        }
      }
    }
    if (opt.threads < 0) throw UsageError(fmt::format("--threads {}: expected >= 0", opt.threads));
    if (!(opt.timeout_s >= 0) || std::isinf(opt.timeout_s)) {
      throw UsageError(fmt::format("--timeout {}: expected seconds >= 0 (0: no timeout)", opt.timeout_s));
    }
    fault = fault_injection_from_env();
    if (ctx.world_rank == 0) ResultFiles{opt.out_json, opt.out_csv, opt.force}.check_before_work();
  });

  if (opt.ranks_needed) {
    print0(ctx, fmt::format("{}\n", ranks_needed(workload)));
    return;
  }
  // Collective, so in a preflight of its own: every rank took the first one alike.
  BackendChoice choice;
  std::vector<int> hosts;
  preflight(ctx, [&] {
    hosts = host_of_ranks(ctx.world_size);
    choice = choose_backend(opt.backend, opt.comm);
    // parallel.ranks_per_node against the job's real node split (auto: taken from it). Hybrid
    // cases route between head groups flat (one node; the workload refuses anything else).
    for (Case& c : workload.cases) {
      if (c.parallel.heads > 1) {
        c.parallel.ranks_per_node = c.parallel.cp;
        continue;
      }
      try {
        c.parallel.ranks_per_node = ranks_per_node_for_hosts(c.parallel.ranks_per_node, c.parallel.cp, hosts);
      } catch (const ConfigError& e) {
        throw ConfigError(fmt::format("{}: case {}: {}", opt.config, c.name, e.what()));
      }
    }
    for (const Case& c : workload.cases) {
      if (std::string why = case_misfit(choice, c); !why.empty()) {
        throw ConfigError(fmt::format("{}: case {}: {}", opt.config, c.name, why));
      }
    }
  });
  if (fault.mode != FaultInjection::Mode::none && fault.rank >= ctx.world_size && ctx.world_rank == 0) {
    std::fprintf(stderr, "magi-bench: warning: MAGI_FAIL_RANK=%s: the job has no rank %d (%d ranks); "
                 "nothing is injected\n", fault.setting.c_str(), fault.rank, ctx.world_size);
  }
  const int threads = opt.threads > 0 ? opt.threads : default_threads();
  std::atomic<Backend*> live_backend{nullptr};
  MpiCommunicator world(MPI_COMM_WORLD);
  Watchdog watchdog(opt.timeout_s, abort_job(ctx, opt.timeout_s, live_backend));
  world.set_watchdog(&watchdog);
  Backend backend(choice, world, threads);
  live_backend.store(&backend);
  const std::string backend_name = choice.name();
  const std::string device = workload.cases.empty() ? std::string("none")
                                                    : backend.device_description(workload.cases[0].model.dtype);

  Report report;
  report.metadata = collect_metadata(ctx);
  report.metadata["backend"] = backend_name;
  report.metadata["comm"] = choice.comm_name();
  report.metadata["backend_reason"] = choice.reason;
  report.metadata["device"] = device;
  if (!choice.gpu) report.metadata["threads_per_rank"] = threads;
  report.metadata["workload"] = {{"path", opt.config}, {"name", workload.name},
                                 {"resolved", workload.resolved}};
  print0(ctx, metadata_header(report.metadata));
  const std::string storage =
      choice.gpu ? "the workload's bf16/fp16 storage, fp32 LSE and merges; bytes in that dtype"
                 : fmt::format("float32 storage, float64 accumulation; planned and measured bytes in fp32; "
                               "{} thread{} per rank", threads, threads == 1 ? "" : "s");
  print0(ctx, fmt::format("# Backend: {} ({})\n# Comm: {} ({})\n"
                          "# Workload: {} \"{}\", {} case{}\n#\n",
                          choice.gpu ? "gpu on " + device : backend_name, storage, choice.comm_name(),
                          choice.reason, opt.config,
                          workload.name, workload.cases.size(), workload.cases.size() == 1 ? "" : "s"));
  print0(ctx, table_header());

  const auto [min_warmup_s, min_timed_s] = workload.cases.empty() ? std::pair<double, double>{0.0, 0.0}
                                                                   : backend.timing_minimums(workload.cases[0].model.dtype);
  Progress progress(ctx.world_rank == 0 ? sweep_costs(workload.cases, opt.overrides, min_warmup_s, min_timed_s)
                                        : std::vector<CaseCost>{},
                    ctx.world_rank == 0 ? stderr : nullptr, isatty(fileno(stderr)) == 1);
  for (const Case& original : workload.cases) {
    Case c = original;
    opt.overrides.apply(c);
    c.model.dtype = backend.storage_dtype(c.model.dtype);  // what the device stores and sends

    const CaseInputs inputs = build_case_inputs(c.documents, c.mask, c.total_tokens);
    const std::vector<AttnSlice>& mask = inputs.mask;
    const Plan plan = build_plan(mask, c);
    if (plan.skipped) {
      report.rows.push_back(skipped_row(c, backend_name, plan.skip_reason));
    } else {
      ExecOptions eo;
      eo.fwd = c.run.fwd;
      eo.bwd = c.run.bwd;
      eo.check = c.run.check;
      eo.warmup = c.run.warmup;
      eo.iters = c.run.iters;
      eo.seed = c.run.seed;
      eo.case_name = c.name;
      ExecResult result;
      try {
        const Backend::CaseExec ex = backend.for_case(c.parallel.cp * c.parallel.heads, c.model.dtype);
        if (ex.host) {
          ex.device->reset_peak_memory();
          result = execute_plan(*ex.host, *ex.data, *ex.device, plan, mask, eo);
        }
      } catch (const Error&) {
        throw;
      } catch (const std::runtime_error& e) {  // the CUDA device's (it sees no fmt): a runtime failure
        throw RuntimeError(fmt::format("case {}: {}", c.name, e.what()));
      }
      report.rows.push_back(measured_row(c, plan, result, backend_name,
                                         choice.gpu ? device : cpu_model(), inputs.documents));
      report.rows.back().details["dispatch"] = dispatch_details(plan, mask);
    }
    apply_gate(report.rows.back(), gate);
    print0(ctx, table_row(report, report.rows.size() - 1));
    progress.case_done(report.rows.size() - 1, c.name);
    idle_barrier();
  }
  print0(ctx, table_summary(report));

  if (ctx.world_rank == 0) {
    for (const std::string& path : ResultFiles{opt.out_json, opt.out_csv, opt.force}.write(report)) {
      print0(ctx, fmt::format("# Wrote {}\n", path));
    }
  }
  // Rank 0's rows hold every rank's timings: its verdicts are the job's.
  int verdicts[2] = {ctx.world_rank == 0 ? report.failed_checks() : 0, 0};
  for (const CaseRow& r : report.rows) verdicts[1] += ctx.world_rank == 0 && !r.below_floor.empty();
  MAGI_MPI_CHECK(MPI_Bcast(verdicts, 2, MPI_INT, 0, MPI_COMM_WORLD));
  if (verdicts[0]) ctx.exit_code = static_cast<int>(ExitCode::wrong_result);
  else if (verdicts[1]) ctx.exit_code = static_cast<int>(ExitCode::regression);
}

}  // namespace

void add_run_command(CLI::App& app, Context& ctx) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* run = app.add_subcommand(
      "run",
      "Run every case of a workload on MPI ranks and report (the default subcommand:\n"
      "`magi-bench --config F` is `magi-bench run --config F`). Launch with\n"
      "`mpirun -np N magi-bench --config F`, N >= the largest parallel.cp x parallel.heads of the sweep.");
  run->add_option("-c,--config", opt->config, "Workload JSON file (see configs/README.md)")
      ->required();
  run->add_option("-b,--backend", opt->backend,
                  "Execution backend: gpu (a CUDA device per rank, chosen by node-local rank, "
                  "shared by ranks only with --comm mpi; bf16/fp16 storage, the flexible kernel), cpu (float32 storage, float64 "
                  "accumulation) or auto (gpu when this is a CUDA build and every rank sees a "
                  "device, else cpu)")
      ->capture_default_str();
  run->add_option("--comm", opt->comm,
                  "What moves GPU buffers: nccl (one GPU per rank), mpi (staged through pinned "
                  "host memory: ranks may share a GPU; clusters without NCCL) or auto (nccl when "
                  "this build has it and every host has a GPU per rank, else mpi). The cpu "
                  "backend always uses MPI")
      ->capture_default_str();
  run->add_option("-o,--out", opt->out_json, "Write the full report as JSON to this file")
      ->check(output_file_name());
  run->add_option("--csv", opt->out_csv, "Write one CSV line per case to this file")
      ->check(output_file_name());
  run->add_flag("-f,--force", opt->force,
                "Replace --out / --csv files that already exist (regular files only)");
  run->add_option("--timeout", opt->timeout_s,
                  "Seconds a timed iteration, the check's reference or a wait on other ranks may "
                  "take before the job is aborted naming the rank, the case and what it waited for "
                  "(0: no limit)")
      ->capture_default_str();
  opt->overrides.add_to(*run);
  opt->gate.add_to(*run);
  run->add_option("-t,--threads", opt->threads,
                  "Compute threads per rank (0: the node's hardware threads / ranks on the node)")
      ->capture_default_str();
  run->add_flag("--allow-large", opt->allow_large,
                "Run cases whose plan is estimated beyond 4 GB (refused by default, naming the field)");
  run->add_flag("--ranks-needed", opt->ranks_needed,
               "Print the number of MPI ranks the workload needs (its largest parallel.cp x parallel.heads) and exit");
  run->callback([&ctx, opt] { run_workload(ctx, *opt); });
}

}  // namespace magi::app
