// magi-bench entry point: MPI init, the command line, and the one place errors are caught.
// Before any collective work, input errors are agreed on by all ranks (preflight) and the job
// ends cleanly with one message; after that, a failing rank prints its error and takes the whole
// job down with MPI_Abort, so no rank is left waiting in a collective.
#include "commands.h"
#include "system_info.h"

#include "core/base/error.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

namespace magi::app {

void print0(const Context& ctx, const std::string& text) {
  if (ctx.world_rank == 0) {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }
}

std::string error_location(const Context& ctx) {
  if (ctx.world_size == 1) return "";
  return fmt::format(" on rank {} of {} ({})", ctx.world_rank, ctx.world_size, hostname());
}

const CLI::Validator& output_file_name() {
  static const CLI::Validator validator(
      [](const std::string& name) {
        return name.empty() ? std::string("expected a file name, got an empty string") : std::string();
      },
      "FILE");
  return validator;
}

void RunOverrides::add_to(CLI::App& cmd) {
  CLI::Option* check = cmd.add_flag("--check", check_on,
                                    "Check against the reference (overrides run.check)");
  cmd.add_flag("--no-check", check_off, "Do not check (overrides run.check)")->excludes(check);
  cmd.add_option("-w,--warmup", warmup,
                 "Warm-up iterations per case (overrides run.warmup); on a GPU a warm-up of one or more "
                 "lasts at least 1 s");
  cmd.add_option("-n,--iters", iters,
                 "Timed iterations per case (overrides run.iters); on a GPU after a warm-up, at least "
                 "2 s of them (the median spans the clock's swings at the power cap)");
}

void RunOverrides::validate() const {
  if (warmup && *warmup < 0) throw UsageError(fmt::format("--warmup {}: expected >= 0", *warmup));
  if (iters && *iters < 1) throw UsageError(fmt::format("--iters {}: expected >= 1", *iters));
}

void RunOverrides::apply(Case& c) const {
  if (check_on || check_off) c.run.check = check_on;
  if (warmup) c.run.warmup = *warmup;
  if (iters) c.run.iters = *iters;
}

void preflight(const Context& ctx, const std::function<void()>& fn) {
  int code = 0;
  std::string message;
  try {
    fn();
  } catch (const Error& e) {
    code = static_cast<int>(e.code());
    message = e.what();
  }
  if (ctx.world_size == 1) {
    if (code) {
      std::fprintf(stderr, "magi-bench: error: %s\n", message.c_str());
      throw PreflightFailed{code};
    }
    return;
  }
  // The lowest failing rank speaks; everyone exits with its code.
  const int mine = code ? ctx.world_rank : ctx.world_size;
  int first = ctx.world_size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == ctx.world_size) return;
  int agreed = code;
  MPI_Bcast(&agreed, 1, MPI_INT, first, MPI_COMM_WORLD);
  if (ctx.world_rank == first) {
    std::fprintf(stderr, "magi-bench: error: %s%s\n", message.c_str(),
                 first == 0 ? "" : fmt::format(" (rank {})", first).c_str());
  }
  throw PreflightFailed{agreed};
}

}  // namespace magi::app

namespace {

// `magi-bench --config F` means `magi-bench run --config F`; a first word that is not a
// subcommand is named in the error.
std::vector<std::string> with_default_command(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return args;
  const std::string& first = args[0];
  const bool is_command = first == "run" || first == "plan" || first == "kernel" || first == "simulate" ||
                          first == "calibrate" || first == "compare";
  const bool top_level = first == "--help" || first == "-h" || first == "--version";
  if (!is_command && !top_level) {
    if (!first.starts_with("-")) {
      throw magi::UsageError(fmt::format("{}: not a subcommand; expected run, plan, kernel, simulate, calibrate or compare (magi-bench --help)", first));
    }
    args.insert(args.begin(), "run");
  }
  return args;
}

#ifndef MAGI_HAVE_CUDA
// Without CUDA the kernel benchmark is not compiled in; its subcommand still exists to say so.
void add_kernel_placeholder(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "kernel", "Benchmark the flexible CUDA attention kernel on one GPU (needs a CUDA build; this one has none).");
  cmd->allow_extras();
  cmd->callback([] {
    throw magi::UsageError(
        "kernel: this magi-bench was built without CUDA (no nvcc at configure time); build it on a "
        "GPU machine with scripts/setup.sh to benchmark the kernel");
  });
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  magi::app::Context ctx;
  MPI_Comm_rank(MPI_COMM_WORLD, &ctx.world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ctx.world_size);
  ctx.argv.assign(argv, argv + argc);

  CLI::App app{
      "magi-bench: measure distributed attention at ultra-long context.\n"
      "Reads a JSON workload, plans context-parallel attention (magi: balanced dispatch,\n"
      "zero-redundant GroupCast/GroupReduce, multi-stage overlap; ring, ulysses and allgather as\n"
      "baselines), runs it on MPI ranks, checks it against a reference and reports throughput.\n"
      "Run `mpirun -np N magi-bench --config workload.json`; `magi-bench SUBCOMMAND --help` for\n"
      "each subcommand. Exit codes: 0 ok, 2 usage, 3 invalid workload, 4 file error,\n"
      "5 runtime failure, 6 wrong results (--check), 7 regression (compare) or below a\n"
      "--min-*-tflops floor, 70 internal error.",
      "magi-bench"};
  app.set_version_flag("--version", std::string("magi-bench " MAGI_VERSION " (git " MAGI_GIT_SHA ")"));
  app.require_subcommand(1, 1);
  // Command-line errors read like the tool's own: "magi-bench: error: --cp = abc: ...".
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("magi-bench: error: {}\nRun with --help for more information.\n", e.what());
  });
  app.fallthrough(false);
  magi::app::add_run_command(app, ctx);
  magi::app::add_plan_command(app, ctx);
  magi::app::add_simulate_command(app, ctx);
  magi::app::add_calibrate_command(app, ctx);
  magi::app::add_compare_command(app, ctx);
#ifdef MAGI_HAVE_CUDA
  magi::app::add_kernel_command(app, ctx);
#else
  add_kernel_placeholder(app);
#endif

  int code = 0;
  try {
    std::vector<std::string> args = with_default_command(argc, argv);
    std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
    try {
      if (args.empty()) {
        // Nothing asked (not even run's required --config): the usage, as a usage error.
        if (ctx.world_rank == 0) std::fputs(app.help().c_str(), stderr);
        code = static_cast<int>(magi::ExitCode::usage);
      } else {
        app.parse(args);
        code = ctx.exit_code;
      }
    } catch (const CLI::ParseError& e) {
      // Every rank parsed the same command line: rank 0 speaks for all.
      if (ctx.world_rank == 0) app.exit(e);
      code = e.get_exit_code() == 0 ? 0 : static_cast<int>(magi::ExitCode::usage);
    }
  } catch (const magi::app::PreflightFailed& e) {
    code = e.exit_code;
  } catch (const magi::Error& e) {
    std::fprintf(stderr, "magi-bench: error%s: %s\n", magi::app::error_location(ctx).c_str(), e.what());
    std::fflush(stderr);
    if (ctx.world_size > 1) MPI_Abort(MPI_COMM_WORLD, static_cast<int>(e.code()));
    code = static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "magi-bench: internal error%s: %s\n", magi::app::error_location(ctx).c_str(), e.what());
    std::fflush(stderr);
    if (ctx.world_size > 1) MPI_Abort(MPI_COMM_WORLD, static_cast<int>(magi::ExitCode::internal));
    code = static_cast<int>(magi::ExitCode::internal);
  }
  MPI_Finalize();
  return code;
}
