// `magi-bench compare BASE.json NEW.json`: two results files (docs/results_schema.md) matched
// case by case, a verdict per metric (core/results/compare.h), the table on stdout, the verdicts
// as JSON (--json), and exit status 7 (ExitCode::regression) on a regression (docs/compare.md).
#include "commands.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"
#include "core/results/compare.h"
#include "core/results/compare_report.h"

#include <cmath>
#include <cstdlib>
#include <memory>

namespace magi::app {

namespace {

// Results files of long sweeps with every rank's samples stay far below this.
constexpr size_t kMaxResultsBytes = size_t{1} << 30;

struct CompareCli {
  std::string base, now;
  std::string threshold = "5%";
  std::vector<std::string> metrics;
  double alpha = 0.05;
  std::string timing_gate = "case";
  std::string fail_on = "all";
  std::string out_json;
  bool force = false;
};

// "5%" or "5": percent. Returns the fraction (0.05).
double parse_threshold(const std::string& text) {
  std::string number = text;
  if (!number.empty() && number.back() == '%') number.pop_back();
  char* end = nullptr;
  const double pct = number.empty() ? NAN : std::strtod(number.c_str(), &end);
  if (number.empty() || *end != '\0' || !std::isfinite(pct) || pct < 0) {
    throw UsageError(fmt::format("--threshold {}: expected a percentage >= 0 such as 5% (or 5)", quote(text)));
  }
  return pct / 100;
}

void run_compare(Context& ctx, const CompareCli& cli) {
  CompareOptions options;
  options.threshold = parse_threshold(cli.threshold);
  if (!(cli.alpha > 0 && cli.alpha < 1)) {
    throw UsageError(fmt::format("--alpha {}: expected a significance level between 0 and 1", cli.alpha));
  }
  options.alpha = cli.alpha;
  if (cli.timing_gate != "case" && cli.timing_gate != "geomean") {
    throw UsageError(fmt::format("--timing-gate {}: expected case or geomean", quote(cli.timing_gate)));
  }
  options.gate = cli.timing_gate == "case" ? TimingGate::each_case : TimingGate::geomean;
  if (cli.fail_on == "all") options.fail_on = FailOn::all;
  else if (cli.fail_on == "exact") options.fail_on = FailOn::exact;
  else if (cli.fail_on == "timings") options.fail_on = FailOn::timings;
  else throw UsageError(fmt::format("--fail-on {}: expected all, exact or timings", quote(cli.fail_on)));
  if (!cli.metrics.empty()) {
    options.metrics.clear();
    for (const std::string& m : cli.metrics) options.metrics.push_back(resolve_timing_metric(m));
  }
  const Overwrite overwrite = cli.force ? Overwrite::allow : Overwrite::refuse;
  if (!cli.out_json.empty() && ctx.world_rank == 0) check_writable(cli.out_json, overwrite);

  const nlohmann::json base = parse_json(cli.base, read_file(cli.base, kMaxResultsBytes));
  const nlohmann::json now = parse_json(cli.now, read_file(cli.now, kMaxResultsBytes));
  const Comparison c = compare_results(base, cli.base, now, cli.now, options);
  print0(ctx, comparison_table(c));
  if (!cli.out_json.empty() && ctx.world_rank == 0) {
    write_file_atomic(cli.out_json, to_json(c).dump(2) + "\n", overwrite);
    print0(ctx, fmt::format("# Wrote {}\n", cli.out_json));
  }
  if (c.failed()) ctx.exit_code = static_cast<int>(ExitCode::regression);
}

}  // namespace

void add_compare_command(CLI::App& app, Context& ctx) {
  auto cli = std::make_shared<CompareCli>();
  CLI::App* cmd = app.add_subcommand(
      "compare",
      "Compare two results files (run/kernel --out) case by case: baseline, new, delta % and a\n"
      "verdict per metric (regression, improvement, unchanged, noisy: within the runs' own spread\n"
      "by a rank test over the timed iterations), exact metrics (bytes, area, imbalance, check)\n"
      "compared exactly. Exit 7 on a regression or a changed exact metric (of those --fail-on\n"
      "judges), 0 otherwise.");
  cmd->add_option("BASE", cli->base, "The baseline results file (JSON)")->required();
  cmd->add_option("NEW", cli->now, "The results file to judge (JSON)")->required();
  cmd->add_option("--threshold", cli->threshold,
                  "Smallest change of a timing that counts, in percent of the smaller side (5% or 5; "
                  "100%: one side twice the other)")
      ->capture_default_str();
  cmd->add_option("--metric", cli->metrics,
                  "Timing metrics to judge, comma-separated (default fwd_tflops_per_gpu,bwd_tflops_per_gpu; "
                  "also fwd_ms, bwd_ms and the *_mean_rank variants; fwd_tflops = fwd_tflops_per_gpu)")
      ->delimiter(',');
  cmd->add_option("--alpha", cli->alpha, "Significance level of the rank test over iterations")
      ->capture_default_str();
  cmd->add_option("--timing-gate", cli->timing_gate,
                  "What a timing regression fails: case (any case's) or geomean (only the geometric mean "
                  "over the cases; single cases are reported: for shared, noisy machines)")
      ->capture_default_str();
  cmd->add_option("--fail-on", cli->fail_on,
                  "Which verdicts set the exit status: all, exact (bytes, area, imbalance, check, a case "
                  "that no longer runs) or timings (as --timing-gate counts them); the others are "
                  "still reported")
      ->capture_default_str();
  cmd->add_option("--json", cli->out_json, "Write the verdicts as JSON to this file")->check(output_file_name());
  cmd->add_flag("-f,--force", cli->force, "Replace the --json file if it exists (regular files only)");
  cmd->callback([&ctx, cli] { run_compare(ctx, *cli); });
}

}  // namespace magi::app
