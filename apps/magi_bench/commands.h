// The magi-bench subcommands. Each add_*_command registers one CLI11 subcommand whose callback
// does the work; errors are thrown (magi::Error) and handled once, in main().
#pragma once

#include "core/workload/workload.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>

#include <string>
#include <vector>

namespace magi::app {

// What every command may need to know about the process it runs in.
struct Context {
  int world_rank = 0;
  int world_size = 1;
  std::vector<std::string> argv;
  int exit_code = 0;  // set by a command that completes but must report failure (e.g. #wrong)
};

// Runs `fn` on every rank; if it throws a magi::Error on any rank, the lowest failing rank prints
// its message and every rank leaves through PreflightFailed with that rank's exit code, before
// any collective work starts. Use it for everything that validates input.
struct PreflightFailed {
  int exit_code;
};
void preflight(const Context& ctx, const std::function<void()>& fn);

// The command-line overrides of a workload's `run` settings, shared by `run` and `kernel`:
// --check / --no-check, --warmup N, --iters N.
struct RunOverrides {
  bool check_on = false;
  bool check_off = false;
  std::optional<int> warmup;
  std::optional<int> iters;

  void add_to(CLI::App& cmd);        // registers the four options
  void validate() const;             // UsageError for a negative warmup or iters < 1
  void apply(Case& c) const;         // overrides what was given, in c.run (reports follow c.run)
};

// Prints on world rank 0 only.
void print0(const Context& ctx, const std::string& text);

// Where an error happened, for its message: nothing in a one-process job (as command-line errors
// read), " on rank R of N (host)" when several ranks may speak.
std::string error_location(const Context& ctx);

// For options naming an output file: an empty name is an error (an unset shell variable, say),
// not "no file".
const CLI::Validator& output_file_name();

void add_run_command(CLI::App& app, Context& ctx);     // default: `magi-bench --config F`
void add_plan_command(CLI::App& app, Context& ctx);    // plan a workload, no MPI ranks needed
void add_kernel_command(CLI::App& app, Context& ctx);  // one-GPU kernel benchmark (CUDA builds)
void add_simulate_command(CLI::App& app, Context& ctx);     // predict a workload on a cluster (core/sim)
void add_calibrate_command(CLI::App& app, Context& ctx);    // fit the simulator to measured results
void add_compare_command(CLI::App& app, Context& ctx); // two results files, case by case

}  // namespace magi::app
