// Two results documents (docs/results_schema.md) compared case by case: the verdicts of
// `magi-bench compare` and of the CI regression suite (docs/compare.md). Cases are matched by
// their stable key; timings get a noise-aware verdict (a threshold and a rank test over the timed
// iterations), exact metrics (bytes, area, imbalance, the check) are compared exactly.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace magi {

enum class Verdict {
  unchanged,    // within the threshold, or an exact metric equal
  improvement,  // better beyond the threshold and beyond the runs' spread
  regression,   // worse beyond the threshold and beyond the runs' spread
  noisy,        // beyond the threshold, but the runs' own spread explains it
  changed,      // an exact metric differs and has no better side (area, the bound)
  missing,      // the metric exists on one side only (a pass run on one side only)
};
std::string_view to_string(Verdict v);

// What a timing regression fails: each case's own verdict, or only the geometric mean over the
// cases (per-case verdicts then inform): on a shared machine, load moves single cases by
// multiples but the mean of many by little (docs/compare.md).
enum class TimingGate { each_case, geomean };
std::string_view to_string(TimingGate g);

// Which verdicts fail the comparison; the others are still computed and reported. The CI suite
// splits one question in two (docs/compare.md): exact metrics against the committed baseline
// (deterministic, so any machine and any time), timings against the baseline's commit measured
// again on the same machine just now (whose exact metrics may differ when the change moved them
// on purpose and retook the baseline).
enum class FailOn { all, exact, timings };
std::string_view to_string(FailOn f);

struct CompareOptions {
  // Smallest change of a timing that counts, as the larger side over the smaller minus one
  // (0.05 = 5%; 1.0 = one side twice the other), the same for ms and TFLOP/s.
  double threshold = 0.05;
  TimingGate gate = TimingGate::each_case;
  FailOn fail_on = FailOn::all;
  double alpha = 0.05;      // the rank test's significance level
  std::vector<std::string> metrics = {"fwd_tflops_per_gpu", "bwd_tflops_per_gpu"};
};

// The timing metrics `--metric` accepts (JSON field names of a case row), and the short names
// that stand for them (fwd_tflops = fwd_tflops_per_gpu).
std::vector<std::string> timing_metric_names();
// The full name of a timing metric; UsageError naming it (with "did you mean") when unknown.
std::string resolve_timing_metric(std::string_view name);
// The metrics compared exactly, every case, whatever --metric says.
std::vector<std::string> exact_metric_names();

struct MetricComparison {
  std::string metric;
  bool exact = false;
  nlohmann::json base, now;  // the values as the files hold them (null when absent)
  double delta_pct = 0;      // 100 (now - base) / base; NaN when not numeric or base is 0
  Verdict verdict = Verdict::unchanged;
  double p_value = -1;       // the rank test's, when it decided; -1 otherwise
  std::string why;           // how the verdict was reached, in words
};

struct CaseComparison {
  std::string key;           // the stable key (below)
  std::string base_case, new_case;  // each side's `case` name
  std::string mask, strategy;
  int64_t total_tokens = 0;
  int cp = 1;
  std::vector<MetricComparison> metrics;  // timing metrics first, then exact ones
  Verdict verdict = Verdict::unchanged;   // the worst of its metrics
};

struct GeoMean {
  std::string metric;
  double ratio = 0;  // geometric mean over cases of now / base
  int cases = 0;
  Verdict verdict = Verdict::unchanged;  // against the threshold (no test: one figure per run)
};

struct Comparison {
  std::string base_origin, new_origin;
  CompareOptions options;
  nlohmann::json base_metadata, new_metadata;
  std::vector<CaseComparison> cases;              // in the new file's order
  std::vector<std::string> only_in_base, only_in_new;  // "<case> cp=<cp> <strategy>"
  std::vector<GeoMean> geomeans;                  // one per timing metric
  std::vector<std::string> notes;                 // what makes the files hard to compare

  int count(Verdict v) const;                     // cases with that verdict
  // An exact metric regressed or changed, a case no longer runs, or a timing regressed as the
  // gate counts them (each case, or the geometric mean), of those options.fail_on judges: the
  // exit status's reason.
  bool failed() const;
};

// A case's stable key: its `case_key` without the settings of how it was measured (`run`:
// warm-up, iterations, check, seed) and the workload's description, then cp and strategy. Two
// runs of one sweep point match whatever their case names and iteration counts.
std::string stable_key(const nlohmann::json& row, const std::string& origin, size_t index);

// Compares two results documents. Throws FileError naming the file when one is not a results
// document of the schema this build reads (kResultsSchema), or a case lacks what matching needs;
// when two cases of one file share a key.
Comparison compare_results(const nlohmann::json& base, const std::string& base_origin,
                           const nlohmann::json& now, const std::string& new_origin,
                           const CompareOptions& options);

}  // namespace magi
