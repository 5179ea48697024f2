#include "core/results/compare.h"

#include "core/base/error.h"
#include "core/base/json_reader.h"
#include "core/base/rank_test.h"
#include "core/base/schema.h"
#include "core/base/suggest.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace magi {

namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

enum class Better { higher, lower, none };

struct TimingMetric {
  const char* name;
  const char* alias;  // "" when none
  const char* pass;   // "fwd" or "bwd": where its per-iteration samples are
  bool mean_rank;     // over the mean rank rather than the slowest
  Better better;
};

constexpr TimingMetric kTimingMetrics[] = {
    {"fwd_tflops_per_gpu", "fwd_tflops", "fwd", false, Better::higher},
    {"bwd_tflops_per_gpu", "bwd_tflops", "bwd", false, Better::higher},
    {"fwd_tflops_per_gpu_mean_rank", "fwd_tflops_mean_rank", "fwd", true, Better::higher},
    {"bwd_tflops_per_gpu_mean_rank", "bwd_tflops_mean_rank", "bwd", true, Better::higher},
    {"fwd_ms", "", "fwd", false, Better::lower},
    {"bwd_ms", "", "bwd", false, Better::lower},
    {"fwd_ms_mean_rank", "", "fwd", true, Better::lower},
    {"bwd_ms_mean_rank", "", "bwd", true, Better::lower},
};

struct ExactMetric {
  const char* name;
  Better better;
};

// Deterministic given the plan and the mask: any difference is a change of the code or the
// workload, never noise.
constexpr ExactMetric kExactMetrics[] = {
    {"area", Better::none},
    {"planned_fwd_bytes", Better::lower},
    {"planned_bwd_bytes", Better::lower},
    {"measured_fwd_bytes", Better::lower},
    {"measured_bwd_bytes", Better::lower},
    {"zero_redundancy_fwd_bytes", Better::none},
    {"max_rank_fwd_sent_bytes", Better::lower},
    {"imbalance", Better::lower},
    {"bytes_match_plan", Better::higher},
    {"check", Better::higher},
};

const TimingMetric& timing_metric(const std::string& name) {
  for (const TimingMetric& m : kTimingMetrics) {
    if (name == m.name) return m;
  }
  throw InternalError(fmt::format("{}: not a timing metric", name));
}

int severity(Verdict v) {
  switch (v) {
    case Verdict::unchanged: return 0;
    case Verdict::improvement: return 1;
    case Verdict::noisy: return 2;
    case Verdict::missing: return 3;
    case Verdict::changed: return 4;
    case Verdict::regression: return 5;
  }
  return 0;
}

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw FileError(fmt::format("{}: {}", origin, what));
}

void check_schema(const json& doc, const std::string& origin) {
  const std::string ours(kResultsSchema);
  if (!doc.is_object()) fail(origin, fmt::format("not a results document: expected a JSON object tagged \"schema\": \"{}\", got {}", ours, show(doc)));
  if (!doc.contains("schema")) {
    fail(origin, fmt::format(
        "no \"schema\" tag: not a results document of this magi-bench (files written before the "
        "results schema have none); compare reads \"{}\"", ours));
  }
  const json& tag = doc["schema"];
  if (!tag.is_string()) fail(origin, fmt::format("schema: expected a string, got {}", show(tag)));
  const std::string s = tag.get<std::string>();
  if (s == ours) {
    if (!doc.contains("cases") || !doc["cases"].is_array()) fail(origin, "cases: expected a list of case rows");
    return;
  }
  const std::string kind = ours.substr(0, ours.rfind('/') + 1);
  if (s.starts_with(kind)) {
    fail(origin, fmt::format(
        "schema {}: another version of the results schema than this magi-bench reads ({}); fields "
        "may differ in name or meaning between versions, so compare refuses to match them: compare "
        "files written by magi-bench builds of the same schema version",
        quote(s), ours));
  }
  fail(origin, fmt::format("schema {}: not a results document (compare reads {})", quote(s), ours));
}

std::string field_string(const json& row, const char* key, const std::string& origin, size_t i) {
  if (!row.contains(key) || !row[key].is_string()) {
    fail(origin, fmt::format("cases[{}].{}: expected a string, got {}", i, key,
                             row.contains(key) ? show(row[key]) : std::string("nothing")));
  }
  return row[key].get<std::string>();
}

int64_t field_int(const json& row, const char* key, const std::string& origin, size_t i) {
  if (!row.contains(key) || !row[key].is_number_integer()) {
    fail(origin, fmt::format("cases[{}].{}: expected an integer, got {}", i, key,
                             row.contains(key) ? show(row[key]) : std::string("nothing")));
  }
  return row[key].get<int64_t>();
}

std::string case_label(const json& row) {
  return fmt::format("{} cp={} {}", row.value("case", std::string("?")), row.value("cp", 0),
                     row.value("strategy", std::string("?")));
}

double number_or_nan(const json& v) { return v.is_number() ? v.get<double>() : kNaN; }

// The job's time per timed iteration of one pass: the slowest rank's (or the ranks' mean) in
// each iteration. Empty when a rank recorded no samples (files written before they were kept)
// or the ranks' counts differ.
std::vector<double> job_samples(const json& row, const TimingMetric& m) {
  if (!row.contains("ranks") || !row["ranks"].is_array() || row["ranks"].empty()) return {};
  std::vector<double> out;
  size_t n = 0;
  for (const json& r : row["ranks"]) {
    const json* s = nullptr;
    if (r.contains(m.pass) && r[m.pass].is_object() && r[m.pass].contains("samples_ms")) {
      s = &r[m.pass]["samples_ms"];
    }
    if (!s || !s->is_array() || s->empty()) return {};
    if (out.empty()) {
      n = s->size();
      out.assign(n, m.mean_rank ? 0.0 : -std::numeric_limits<double>::infinity());
    }
    if (s->size() != n) return {};
    for (size_t k = 0; k < n; ++k) {
      const double v = number_or_nan((*s)[k]);
      if (!std::isfinite(v)) return {};
      out[k] = m.mean_rank ? out[k] + v : std::max(out[k], v);
    }
  }
  if (m.mean_rank) {
    for (double& v : out) v /= static_cast<double>(row["ranks"].size());
  }
  return out;
}

// The spread of the slowest rank's iterations, (max - min) / median; NaN when not recorded.
double relative_spread(const json& row, const TimingMetric& m) {
  if (!row.contains("ranks") || !row["ranks"].is_array()) return kNaN;
  double median = -1, spread = kNaN;
  for (const json& r : row["ranks"]) {
    if (!r.contains(m.pass) || !r[m.pass].is_object()) continue;
    const json& t = r[m.pass];
    const double med = number_or_nan(t.value("median_ms", json()));
    const double lo = number_or_nan(t.value("min_ms", json()));
    const double hi = number_or_nan(t.value("max_ms", json()));
    if (!(med > median) || !std::isfinite(lo) || !std::isfinite(hi) || med <= 0) continue;
    median = med;
    spread = (hi - lo) / med;
  }
  return spread;
}

// The larger over the smaller minus one: 2x slower is 1.0 in ms and in TFLOP/s alike.
double symmetric_change(double base, double now) { return std::max(now / base, base / now) - 1; }

Verdict direction_verdict(Better better, double base, double now) {
  if (better == Better::none) return Verdict::changed;
  const bool up = now > base;
  return (up == (better == Better::higher)) ? Verdict::improvement : Verdict::regression;
}

MetricComparison compare_timing(const json& b, const json& n, const TimingMetric& m,
                                const CompareOptions& opt) {
  MetricComparison c;
  c.metric = m.name;
  c.base = b.value(m.name, json());
  c.now = n.value(m.name, json());
  const double vb = number_or_nan(c.base), vn = number_or_nan(c.now);
  if (!std::isfinite(vb) && !std::isfinite(vn)) {
    c.verdict = Verdict::unchanged;
    c.delta_pct = kNaN;
    c.why = "not measured on either side";
    return c;
  }
  if (!std::isfinite(vb) || !std::isfinite(vn) || vb <= 0) {
    c.verdict = Verdict::missing;
    c.delta_pct = kNaN;
    c.why = fmt::format("measured in {} only", std::isfinite(vb) ? "base" : "new");
    return c;
  }
  c.delta_pct = 100 * (vn - vb) / vb;
  if (symmetric_change(vb, vn) <= opt.threshold) {
    c.verdict = Verdict::unchanged;
    c.why = fmt::format("within the threshold ({:g}%)", 100 * opt.threshold);
    return c;
  }
  const Verdict beyond = direction_verdict(m.better, vb, vn);
  const std::vector<double> sb = job_samples(b, m), sn = job_samples(n, m);
  const int nb = static_cast<int>(sb.size()), nn = static_cast<int>(sn.size());
  if (nb > 0 && nn > 0 && min_rank_test_p(nb, nn) < opt.alpha) {
    const RankTestResult t = mann_whitney_u(sb, sn);
    c.p_value = t.p_value;
    if (t.p_value >= opt.alpha) {
      c.verdict = Verdict::noisy;
      c.why = fmt::format("rank test p = {:.3g} >= {:g} over {} + {} iterations: the runs' spread explains the change",
                          t.p_value, opt.alpha, nb, nn);
    } else {
      c.verdict = beyond;
      c.why = fmt::format("rank test p = {:.3g} < {:g} over {} + {} iterations", t.p_value, opt.alpha, nb, nn);
    }
    return c;
  }
  // Too few samples for the test to ever decide, or none recorded: the range of iterations.
  const std::string no_test =
      nb > 0 && nn > 0
          ? fmt::format("{} + {} iterations cannot reach p < {:g}", nb, nn, opt.alpha)
          : std::string("no per-iteration samples in the file");
  const double spread = std::max(relative_spread(b, m), relative_spread(n, m));
  if (std::isfinite(spread) && std::abs(c.delta_pct) <= 100 * spread) {
    c.verdict = Verdict::noisy;
    c.why = fmt::format("{}; the iterations' spread ({:.1f}%) is wider than the change", no_test, 100 * spread);
  } else {
    c.verdict = beyond;
    c.why = std::isfinite(spread)
                ? fmt::format("{}; the change is wider than the iterations' spread ({:.1f}%)", no_test, 100 * spread)
                : fmt::format("{} and no spread recorded", no_test);
  }
  return c;
}

// Orders the check states: a failed check is worse than a passed one; not_run has no side.
double check_rank(const json& v) {
  if (v == "passed") return 1;
  if (v == "failed") return 0;
  return kNaN;
}

MetricComparison compare_exact(const json& b, const json& n, const ExactMetric& m) {
  MetricComparison c;
  c.metric = m.name;
  c.exact = true;
  c.base = b.value(m.name, json());
  c.now = n.value(m.name, json());
  c.delta_pct = kNaN;
  if (c.base == c.now) {
    c.verdict = Verdict::unchanged;
    return c;
  }
  if (c.base.is_null() || c.now.is_null()) {
    c.verdict = Verdict::missing;
    c.why = fmt::format("present in {} only", c.base.is_null() ? "new" : "base");
    return c;
  }
  double vb = kNaN, vn = kNaN;
  if (c.base.is_number() && c.now.is_number()) {
    vb = c.base.get<double>();
    vn = c.now.get<double>();
    if (vb != 0) c.delta_pct = 100 * (vn - vb) / vb;
  } else if (c.base.is_boolean() && c.now.is_boolean()) {
    vb = c.base.get<bool>();
    vn = c.now.get<bool>();
  } else if (std::string(m.name) == "check") {
    vb = check_rank(c.base);
    vn = check_rank(c.now);
  }
  c.verdict = std::isfinite(vb) && std::isfinite(vn) ? direction_verdict(m.better, vb, vn) : Verdict::changed;
  c.why = "exact: differs";
  return c;
}

struct Indexed {
  std::string key;
  const json* row;
};

std::vector<Indexed> index_rows(const json& doc, const std::string& origin) {
  std::vector<Indexed> out;
  std::map<std::string, size_t> seen;
  const json& cases = doc["cases"];
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string key = stable_key(cases[i], origin, i);
    if (auto [it, fresh] = seen.emplace(key, i); !fresh) {
      fail(origin, fmt::format("cases[{}] ({}) and cases[{}] ({}) are the same sweep point: compare "
                               "needs one row per point",
                               it->second, case_label(cases[it->second]), i, case_label(cases[i])));
    }
    out.push_back({key, &cases[i]});
  }
  return out;
}

std::string device_names(const json& metadata) {
  std::string names;
  if (!metadata.is_object() || !metadata.contains("devices") || !metadata["devices"].is_array()) return names;
  for (const json& d : metadata["devices"]) {
    if (d.is_object() && d.contains("name") && d["name"].is_string()) {
      names += (names.empty() ? "" : ", ") + d["name"].get<std::string>();
    }
  }
  return names;
}

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::unchanged: return "unchanged";
    case Verdict::improvement: return "improvement";
    case Verdict::regression: return "regression";
    case Verdict::noisy: return "noisy";
    case Verdict::changed: return "changed";
    case Verdict::missing: return "missing";
  }
  return "?";
}

std::string_view to_string(TimingGate g) { return g == TimingGate::each_case ? "case" : "geomean"; }

std::string_view to_string(FailOn f) {
  switch (f) {
    case FailOn::all: return "all";
    case FailOn::exact: return "exact";
    case FailOn::timings: return "timings";
  }
  return "?";
}

std::vector<std::string> timing_metric_names() {
  std::vector<std::string> names;
  for (const TimingMetric& m : kTimingMetrics) {
    names.emplace_back(m.name);
    if (*m.alias) names.emplace_back(m.alias);
  }
  return names;
}

std::string resolve_timing_metric(std::string_view name) {
  for (const TimingMetric& m : kTimingMetrics) {
    if (name == m.name || (*m.alias && name == m.alias)) return m.name;
  }
  std::string all;
  for (const std::string& n : timing_metric_names()) all += (all.empty() ? "" : ", ") + n;
  throw UsageError(fmt::format("--metric {}: not a timing metric{}; expected one of {}", quote(name),
                               did_you_mean(name, timing_metric_names()), all));
}

std::vector<std::string> exact_metric_names() {
  std::vector<std::string> names;
  for (const ExactMetric& m : kExactMetrics) names.emplace_back(m.name);
  return names;
}

std::string stable_key(const json& row, const std::string& origin, size_t index) {
  if (!row.is_object()) fail(origin, fmt::format("cases[{}]: expected a case row (an object), got {}", index, show(row)));
  const std::string key = field_string(row, "case_key", origin, index);
  const int64_t cp = field_int(row, "cp", origin, index);
  const std::string strategy = field_string(row, "strategy", origin, index);
  json parsed = json::parse(key, nullptr, /*allow_exceptions=*/false);
  std::string point = key;
  if (parsed.is_object()) {
    parsed.erase("run");
    parsed.erase("description");
    point = parsed.dump();
  }
  return fmt::format("{} cp={} strategy={}", point, cp, strategy);
}

int Comparison::count(Verdict v) const {
  return static_cast<int>(std::count_if(cases.begin(), cases.end(),
                                        [v](const CaseComparison& c) { return c.verdict == v; }));
}

bool Comparison::failed() const {
  const bool exact_fails = options.fail_on != FailOn::timings;
  const bool timings_fail = options.fail_on != FailOn::exact;
  for (const CaseComparison& cc : cases) {
    for (const MetricComparison& m : cc.metrics) {
      if (exact_fails && m.exact && (m.verdict == Verdict::regression || m.verdict == Verdict::changed)) return true;
      if (timings_fail && !m.exact && m.verdict == Verdict::regression && options.gate == TimingGate::each_case) {
        return true;
      }
    }
  }
  return timings_fail && std::any_of(geomeans.begin(), geomeans.end(), [this](const GeoMean& g) {
           return options.gate == TimingGate::geomean && g.verdict == Verdict::regression;
         });
}

Comparison compare_results(const json& base, const std::string& base_origin, const json& now,
                           const std::string& new_origin, const CompareOptions& options) {
  check_schema(base, base_origin);
  check_schema(now, new_origin);
  Comparison out;
  out.base_origin = base_origin;
  out.new_origin = new_origin;
  out.options = options;
  out.base_metadata = base.value("metadata", json::object());
  out.new_metadata = now.value("metadata", json::object());

  const std::vector<Indexed> base_rows = index_rows(base, base_origin);
  const std::vector<Indexed> new_rows = index_rows(now, new_origin);
  std::map<std::string, const json*> by_key;
  for (const Indexed& r : base_rows) by_key.emplace(r.key, r.row);

  std::map<std::string, std::pair<double, int>> log_ratio;  // metric -> (sum of logs, cases)
  std::map<std::string, bool> matched;
  for (const Indexed& r : new_rows) {
    auto it = by_key.find(r.key);
    if (it == by_key.end()) {
      out.only_in_new.push_back(case_label(*r.row));
      continue;
    }
    matched[r.key] = true;
    const json& b = *it->second;
    const json& n = *r.row;
    CaseComparison cc;
    cc.key = r.key;
    cc.base_case = b.value("case", std::string());
    cc.new_case = n.value("case", std::string());
    cc.mask = n.value("mask", std::string());
    cc.strategy = n.value("strategy", std::string());
    cc.total_tokens = n.value("total_tokens", int64_t{0});
    cc.cp = n.value("cp", 1);
    const bool b_skip = b.value("skipped", false), n_skip = n.value("skipped", false);
    if (b_skip || n_skip) {
      if (b_skip != n_skip) {
        MetricComparison m;
        m.metric = "skipped";
        m.exact = true;
        m.base = b_skip ? b.value("skip_reason", json("skipped")) : json(false);
        m.now = n_skip ? n.value("skip_reason", json("skipped")) : json(false);
        m.delta_pct = kNaN;
        m.verdict = n_skip ? Verdict::regression : Verdict::improvement;
        m.why = n_skip ? "the case no longer runs" : "the case runs now";
        cc.metrics.push_back(m);
      }
    } else {
      for (const std::string& name : options.metrics) {
        MetricComparison m = compare_timing(b, n, timing_metric(name), options);
        const double vb = number_or_nan(m.base), vn = number_or_nan(m.now);
        if (vb > 0 && vn > 0 && std::isfinite(vb) && std::isfinite(vn)) {
          auto& [sum, count] = log_ratio[name];
          sum += std::log(vn / vb);
          ++count;
        }
        cc.metrics.push_back(std::move(m));
      }
      for (const ExactMetric& e : kExactMetrics) {
        MetricComparison m = compare_exact(b, n, e);
        if (m.base.is_null() && m.now.is_null()) continue;
        cc.metrics.push_back(std::move(m));
      }
    }
    for (const MetricComparison& m : cc.metrics) {
      if (severity(m.verdict) > severity(cc.verdict)) cc.verdict = m.verdict;
    }
    out.cases.push_back(std::move(cc));
  }
  for (const Indexed& r : base_rows) {
    if (!matched.count(r.key)) out.only_in_base.push_back(case_label(*r.row));
  }
  for (const std::string& name : options.metrics) {
    const auto it = log_ratio.find(name);
    if (it == log_ratio.end()) continue;
    GeoMean g{name, std::exp(it->second.first / it->second.second), it->second.second};
    if (symmetric_change(1, g.ratio) > options.threshold) {
      g.verdict = direction_verdict(timing_metric(name).better, 1, g.ratio);
    }
    out.geomeans.push_back(g);
  }

  const std::string bb = out.base_metadata.value("backend", std::string());
  const std::string nb = out.new_metadata.value("backend", std::string());
  if (bb != nb) out.notes.push_back(fmt::format("backends differ: base {}, new {}", bb, nb));
  const std::string bd = device_names(out.base_metadata), nd = device_names(out.new_metadata);
  if (bd != nd) {
    out.notes.push_back(fmt::format("devices differ (base: {}; new: {}): timings compare the machines as well as the code",
                                    bd.empty() ? "unknown" : bd, nd.empty() ? "unknown" : nd));
  }
  if (out.cases.empty()) out.notes.push_back("no case of one file matches a case of the other");
  return out;
}

}  // namespace magi
