#include "core/results/compare_report.h"

#include "core/base/schema.h"

#include <fmt/format.h>

#include <cmath>

namespace magi {

namespace {

using json = nlohmann::json;

std::string value_text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_number_float()) return fmt::format("{:.4g}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string delta_text(double pct) { return std::isfinite(pct) ? fmt::format("{:+.1f}%", pct) : "-"; }

// Verdicts that need a reader's eye are in capitals, as nccl-tests prints FAILED.
std::string verdict_text(Verdict v) {
  switch (v) {
    case Verdict::regression: return "REGRESSION";
    case Verdict::changed: return "CHANGED";
    default: return std::string(to_string(v));
  }
}

std::string side(const json& metadata, const std::string& origin) {
  return fmt::format("{} (git {}, {}, backend {})", origin, metadata.value("git_sha", std::string("?")),
                     metadata.value("start_time_utc", std::string("?")),
                     metadata.value("backend", std::string("?")));
}

std::string fail_on_text(FailOn f) {
  switch (f) {
    case FailOn::all: return "";
    case FailOn::exact: return "# Only exact metrics fail (--fail-on exact); timings are reported.\n";
    case FailOn::timings: return "# Only timings fail (--fail-on timings); exact metrics are reported.\n";
  }
  return "";
}

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

std::string comparison_table(const Comparison& c) {
  std::string out = fmt::format(
      "# magi-bench compare\n# base: {}\n# new:  {}\n"
      "# Timings: unchanged within {:g}% (larger side over smaller); beyond it, noisy unless a rank "
      "test over the timed iterations (alpha {:g}) or, without samples, the iterations' range says "
      "otherwise. {}\n"
      "# Exact metrics (bytes, area, imbalance, check) are compared exactly; only those that "
      "differ are listed.\n{}",
      side(c.base_metadata, c.base_origin), side(c.new_metadata, c.new_origin),
      100 * c.options.threshold, c.options.alpha,
      c.options.gate == TimingGate::each_case
          ? "A timing regression of any case fails."
          : "Timing regressions of single cases are reported; only the geometric mean over the cases fails (--timing-gate geomean).",
      fail_on_text(c.options.fail_on));
  for (const std::string& n : c.notes) out += "# Note: " + n + "\n";
  out += fmt::format("#{:>22} {:>18} {:>9} {:>4} {:>9} {:>28} {:>12} {:>12} {:>9} {:>11}  {}\n", "case",
                     "mask", "tokens", "cp", "strategy", "metric", "base", "new", "delta", "verdict", "why");
  for (const CaseComparison& cc : c.cases) {
    bool first = true;
    for (const MetricComparison& m : cc.metrics) {
      if (m.exact && m.verdict == Verdict::unchanged) continue;
      out += fmt::format(" {:>22} {:>18} {:>9} {:>4} {:>9} {:>28} {:>12} {:>12} {:>9} {:>11}  {}\n",
                         first ? cc.new_case : "", first ? cc.mask : "",
                         first ? std::to_string(cc.total_tokens) : "", first ? std::to_string(cc.cp) : "",
                         first ? cc.strategy : "", m.metric, value_text(m.base), value_text(m.now),
                         delta_text(m.delta_pct), verdict_text(m.verdict), m.why);
      first = false;
    }
    if (first) {
      out += fmt::format(" {:>22} {:>18} {:>9} {:>4} {:>9} {:>28}\n", cc.new_case, cc.mask,
                         cc.total_tokens, cc.cp, cc.strategy, "skipped on both sides");
    }
  }
  for (const std::string& l : c.only_in_base) out += "# Only in base (not run by new): " + l + "\n";
  for (const std::string& l : c.only_in_new) out += "# Only in new (no baseline): " + l + "\n";
  for (const GeoMean& g : c.geomeans) {
    out += fmt::format("# Geomean new/base {} : {:.4f} ({:+.1f}%) over {} case{}: {}\n", g.metric, g.ratio,
                       100 * (g.ratio - 1), g.cases, g.cases == 1 ? "" : "s", verdict_text(g.verdict));
  }
  out += fmt::format(
      "# Cases: {} matched ({} regression, {} changed, {} noisy, {} missing, {} improvement, {} "
      "unchanged), {} only in base, {} only in new\n",
      c.cases.size(), c.count(Verdict::regression), c.count(Verdict::changed), c.count(Verdict::noisy),
      c.count(Verdict::missing), c.count(Verdict::improvement), c.count(Verdict::unchanged),
      c.only_in_base.size(), c.only_in_new.size());
  out += fmt::format("# Result: {}\n", c.failed() ? "REGRESSION" : "OK");
  return out;
}

json to_json(const Comparison& c) {
  json cases = json::array();
  for (const CaseComparison& cc : c.cases) {
    json metrics = json::array();
    for (const MetricComparison& m : cc.metrics) {
      metrics.push_back({{"metric", m.metric}, {"exact", m.exact}, {"base", m.base}, {"new", m.now},
                         {"delta_pct", finite_or_null(m.delta_pct)}, {"verdict", to_string(m.verdict)},
                         {"p_value", m.p_value >= 0 ? json(m.p_value) : json(nullptr)}, {"why", m.why}});
    }
    cases.push_back({{"key", cc.key}, {"base_case", cc.base_case}, {"new_case", cc.new_case},
                     {"mask", cc.mask}, {"total_tokens", cc.total_tokens}, {"cp", cc.cp},
                     {"strategy", cc.strategy}, {"verdict", to_string(cc.verdict)}, {"metrics", metrics}});
  }
  json geomeans = json::object();
  for (const GeoMean& g : c.geomeans) {
    geomeans[g.metric] = {{"ratio", g.ratio}, {"cases", g.cases}, {"verdict", to_string(g.verdict)}};
  }
  json summary = {{"matched", c.cases.size()}, {"only_in_base", c.only_in_base.size()},
                  {"only_in_new", c.only_in_new.size()}, {"failed", c.failed()}};
  for (Verdict v : {Verdict::regression, Verdict::changed, Verdict::noisy, Verdict::missing,
                    Verdict::improvement, Verdict::unchanged}) {
    summary[std::string(to_string(v))] = c.count(v);
  }
  return {{"schema", kCompareSchema},
          {"base", {{"path", c.base_origin}, {"metadata", c.base_metadata}}},
          {"new", {{"path", c.new_origin}, {"metadata", c.new_metadata}}},
          {"options", {{"threshold_pct", 100 * c.options.threshold}, {"alpha", c.options.alpha},
                       {"timing_gate", to_string(c.options.gate)}, {"fail_on", to_string(c.options.fail_on)},
                       {"metrics", c.options.metrics}, {"exact_metrics", exact_metric_names()}}},
          {"cases", cases},
          {"only_in_base", c.only_in_base},
          {"only_in_new", c.only_in_new},
          {"geomean", geomeans},
          {"notes", c.notes},
          {"summary", summary}};
}

}  // namespace magi
