// Golden result pairs for compare: a baseline and a new document built from known timings, and
// the verdicts they must give (regression, improvement, noise, missing and extra cases, exact
// metrics, schema versions).
#include "core/results/compare.h"
#include "core/results/compare_report.h"

#include "core/base/error.h"
#include "core/base/schema.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace magi {
namespace {

using json = nlohmann::json;

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

json timing(const std::vector<double>& samples, bool keep_samples = true) {
  json t = {{"count", samples.size()}, {"median_ms", median_of(samples)},
            {"min_ms", *std::min_element(samples.begin(), samples.end())},
            {"max_ms", *std::max_element(samples.begin(), samples.end())}};
  if (keep_samples) t["samples_ms"] = samples;
  return t;
}

struct RowSpec {
  std::string name = "w/0";
  std::string mask = "causal";
  int cp = 1;
  std::string strategy = "magi";
  std::vector<double> fwd{10, 10.1, 10.2, 9.9, 9.8, 10, 10.1, 9.9, 10, 10.2};
  std::vector<double> bwd{20, 20.2, 20.4, 19.8, 19.6, 20, 20.2, 19.8, 20, 20.4};
  int iters = 10;
  int64_t bytes = 4096;
  int64_t area = 1000;
  double imbalance = 1.25;
  std::string check = "passed";
  bool samples = true;
};

// One rank's row: FLOPs chosen so that TFLOP/s = 1 / (ms * cp) (fwd) and 2.5 / (ms * cp) (bwd).
json row(const RowSpec& s) {
  const double fwd_ms = median_of(s.fwd), bwd_ms = median_of(s.bwd);
  json key = {{"mask", {{"type", s.mask}}}, {"run", {{"iters", s.iters}}}, {"description", "any"}};
  return {{"case", s.name}, {"case_key", key.dump()}, {"mask", s.mask}, {"total_tokens", 1024},
          {"cp", s.cp}, {"strategy", s.strategy}, {"backend", "cpu"}, {"skipped", false},
          {"area", s.area}, {"fwd_ms", fwd_ms}, {"bwd_ms", bwd_ms},
          {"fwd_tflops_per_gpu", 1 / (fwd_ms * s.cp)}, {"bwd_tflops_per_gpu", 2.5 / (bwd_ms * s.cp)},
          {"planned_fwd_bytes", s.bytes}, {"measured_fwd_bytes", s.bytes}, {"imbalance", s.imbalance},
          {"bytes_match_plan", true}, {"check", s.check},
          {"ranks", json::array({{{"rank", 0}, {"fwd", timing(s.fwd, s.samples)}, {"bwd", timing(s.bwd, s.samples)}}})}};
}

json doc(const std::vector<json>& rows, const std::string& schema = std::string(kResultsSchema)) {
  return {{"schema", schema},
          {"metadata", {{"backend", "cpu"}, {"git_sha", "abc"}, {"devices", json::array({{{"kind", "cpu"}, {"name", "X"}}})}}},
          {"cases", rows}};
}

std::vector<double> scaled(std::vector<double> v, double f) {
  for (double& x : v) x *= f;
  return v;
}

const MetricComparison& metric(const CaseComparison& c, const std::string& name) {
  for (const MetricComparison& m : c.metrics) {
    if (m.metric == name) return m;
  }
  throw std::runtime_error("no metric " + name);
}

Comparison compare(const json& b, const json& n, CompareOptions o = {}) {
  return compare_results(b, "base.json", n, "new.json", o);
}

TEST(Compare, SameResultsAreUnchanged) {
  const json d = doc({row({})});
  const Comparison c = compare(d, d);
  ASSERT_EQ(c.cases.size(), 1u);
  EXPECT_EQ(c.cases[0].verdict, Verdict::unchanged);
  EXPECT_FALSE(c.failed());
  ASSERT_EQ(c.geomeans.size(), 2u);
  EXPECT_DOUBLE_EQ(c.geomeans[0].ratio, 1.0);
  EXPECT_NE(comparison_table(c).find("# Result: OK"), std::string::npos);
}

TEST(Compare, SlowerBeyondTheSpreadIsARegression) {
  RowSpec slow;
  slow.fwd = scaled(slow.fwd, 1.5);
  const Comparison c = compare(doc({row({})}), doc({row(slow)}));
  const MetricComparison& m = metric(c.cases[0], "fwd_tflops_per_gpu");
  EXPECT_EQ(m.verdict, Verdict::regression);
  EXPECT_NEAR(m.delta_pct, 100 * (1 / 1.5 - 1), 1e-9);
  EXPECT_LT(m.p_value, 0.05);
  EXPECT_EQ(metric(c.cases[0], "bwd_tflops_per_gpu").verdict, Verdict::unchanged);
  EXPECT_EQ(c.cases[0].verdict, Verdict::regression);
  EXPECT_TRUE(c.failed());
  const std::string table = comparison_table(c);
  EXPECT_NE(table.find("REGRESSION"), std::string::npos) << table;
  EXPECT_NE(table.find("# Result: REGRESSION"), std::string::npos) << table;
}

TEST(Compare, FasterBeyondTheSpreadIsAnImprovement) {
  RowSpec fast;
  fast.bwd = scaled(fast.bwd, 0.7);
  const Comparison c = compare(doc({row({})}), doc({row(fast)}));
  EXPECT_EQ(metric(c.cases[0], "bwd_tflops_per_gpu").verdict, Verdict::improvement);
  EXPECT_EQ(c.cases[0].verdict, Verdict::improvement);
  EXPECT_FALSE(c.failed());
}

TEST(Compare, AChangeInsideTheRunsSpreadIsNoisy) {
  // Medians 10% apart, iterations from 5 to 30 ms on both sides: the rank test cannot tell.
  RowSpec wide, wider;
  wide.fwd = {5, 30, 8, 25, 10, 20, 12, 15, 28, 6};
  wider.fwd = {5.5, 29, 9, 26, 11.5, 22, 13, 16.5, 27, 7};
  const Comparison c = compare(doc({row(wide)}), doc({row(wider)}));
  const MetricComparison& m = metric(c.cases[0], "fwd_tflops_per_gpu");
  EXPECT_GT(std::abs(m.delta_pct), 5);
  EXPECT_EQ(m.verdict, Verdict::noisy) << m.why;
  EXPECT_GT(m.p_value, 0.05);
  EXPECT_FALSE(c.failed());
}

TEST(Compare, WithoutSamplesTheIterationsRangeDecides) {
  RowSpec b, tight, loose;
  b.samples = tight.samples = loose.samples = false;
  tight.fwd = scaled(b.fwd, 1.5);  // range 4%: a 33% drop is real
  const Comparison c1 = compare(doc({row(b)}), doc({row(tight)}));
  EXPECT_EQ(metric(c1.cases[0], "fwd_tflops_per_gpu").verdict, Verdict::regression);
  EXPECT_NE(metric(c1.cases[0], "fwd_tflops_per_gpu").why.find("no per-iteration samples"), std::string::npos);
  loose.fwd = {8, 30, 9, 25, 10, 20, 12, 15, 28, 11};  // range far wider than the change
  b.fwd = {7, 29, 8, 24, 9, 19, 11, 14, 27, 10};
  const Comparison c2 = compare(doc({row(b)}), doc({row(loose)}));
  EXPECT_EQ(metric(c2.cases[0], "fwd_tflops_per_gpu").verdict, Verdict::noisy);
}

TEST(Compare, TooFewIterationsForTheTestFallBackToTheRange) {
  RowSpec b, n;
  b.fwd = {10, 10.1, 9.9};
  n.fwd = {15, 15.1, 14.9};
  const MetricComparison m = metric(compare(doc({row(b)}), doc({row(n)})).cases[0], "fwd_tflops_per_gpu");
  EXPECT_EQ(m.verdict, Verdict::regression);
  EXPECT_EQ(m.p_value, -1);
  EXPECT_NE(m.why.find("cannot reach"), std::string::npos) << m.why;
}

TEST(Compare, ExactMetricsAreComparedExactlyWithTheirDirection) {
  RowSpec more_bytes, fewer_bytes, other_area, failed, balanced;
  more_bytes.bytes = 4097;
  fewer_bytes.bytes = 2048;
  other_area.area = 999;
  failed.check = "failed";
  balanced.imbalance = 1.0;
  const json b = doc({row({})});
  EXPECT_EQ(metric(compare(b, doc({row(more_bytes)})).cases[0], "planned_fwd_bytes").verdict, Verdict::regression);
  EXPECT_EQ(metric(compare(b, doc({row(fewer_bytes)})).cases[0], "measured_fwd_bytes").verdict, Verdict::improvement);
  const Comparison area = compare(b, doc({row(other_area)}));
  EXPECT_EQ(metric(area.cases[0], "area").verdict, Verdict::changed);
  EXPECT_TRUE(area.failed());
  EXPECT_EQ(metric(compare(b, doc({row(failed)})).cases[0], "check").verdict, Verdict::regression);
  EXPECT_EQ(metric(compare(b, doc({row(balanced)})).cases[0], "imbalance").verdict, Verdict::improvement);
  // An exact metric that differs is printed; equal ones are not.
  const std::string table = comparison_table(compare(b, doc({row(more_bytes)})));
  EXPECT_NE(table.find("planned_fwd_bytes"), std::string::npos);
  EXPECT_EQ(table.find("imbalance "), std::string::npos) << table;
}

TEST(Compare, MissingAndExtraCasesAreListed) {
  RowSpec a, gone, extra;
  gone.name = "w/1";
  gone.cp = 2;
  extra.name = "w/2";
  extra.strategy = "ring";
  const Comparison c = compare(doc({row(a), row(gone)}), doc({row(a), row(extra)}));
  EXPECT_EQ(c.cases.size(), 1u);
  EXPECT_EQ(c.only_in_base, std::vector<std::string>{"w/1 cp=2 magi"});
  EXPECT_EQ(c.only_in_new, std::vector<std::string>{"w/2 cp=1 ring"});
  EXPECT_FALSE(c.failed());
  const std::string table = comparison_table(c);
  EXPECT_NE(table.find("Only in base (not run by new): w/1 cp=2 magi"), std::string::npos) << table;
  EXPECT_NE(table.find("Only in new (no baseline): w/2 cp=1 ring"), std::string::npos) << table;
}

TEST(Compare, CasesMatchByTheirPointNotTheirNameOrIterations) {
  RowSpec b, n;
  n.name = "renamed/7";
  n.iters = 50;
  EXPECT_EQ(compare(doc({row(b)}), doc({row(n)})).cases.size(), 1u);
}

TEST(Compare, SchemaVersionsAndOtherFilesAreClearErrors) {
  const json good = doc({row({})});
  try {
    compare(good, doc({row({})}, "magi-bench/results/2"));
    FAIL() << "no error";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("new.json: schema \"magi-bench/results/2\": another version"), std::string::npos) << e.what();
  }
  json untagged = good;
  untagged.erase("schema");
  try {
    compare(untagged, good);
    FAIL() << "no error";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("base.json: no \"schema\" tag"), std::string::npos) << e.what();
  }
  try {
    compare(good, doc({}, std::string(kPlanReportSchema)));
    FAIL() << "no error";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("not a results document"), std::string::npos) << e.what();
  }
  EXPECT_THROW(compare(good, json::array()), FileError);
}

TEST(Compare, TwoRowsOfOnePointAreRefused) {
  RowSpec a, b;
  b.name = "w/9";
  EXPECT_THROW(compare(doc({row(a), row(b)}), doc({row(a)})), FileError);
}

TEST(Compare, ACaseThatNoLongerRunsIsARegression) {
  json skipped = row({});
  skipped["skipped"] = true;
  skipped["skip_reason"] = "cp > heads_kv";
  const Comparison c = compare(doc({row({})}), doc({skipped}));
  EXPECT_EQ(c.cases[0].verdict, Verdict::regression);
  EXPECT_EQ(compare(doc({skipped}), doc({skipped})).cases[0].verdict, Verdict::unchanged);
}

TEST(Compare, GeometricMeanOverCases) {
  RowSpec a, b, a2, b2;
  b.name = b2.name = "w/1";
  b.mask = b2.mask = "full";
  a2.fwd = scaled(a.fwd, 0.5);  // fwd TFLOP/s x 2
  b2.fwd = scaled(b.fwd, 2.0);  // x 0.5
  const Comparison c = compare(doc({row(a), row(b)}), doc({row(a2), row(b2)}));
  ASSERT_EQ(c.geomeans[0].metric, "fwd_tflops_per_gpu");
  EXPECT_NEAR(c.geomeans[0].ratio, 1.0, 1e-12);
  EXPECT_EQ(c.geomeans[0].cases, 2);
}

TEST(Compare, MetricsByNameAndAlias) {
  EXPECT_EQ(resolve_timing_metric("fwd_tflops"), "fwd_tflops_per_gpu");
  EXPECT_EQ(resolve_timing_metric("bwd_ms"), "bwd_ms");
  try {
    resolve_timing_metric("fwd_tflop");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean \"fwd_tflops\""), std::string::npos) << e.what();
  }
  // fwd_ms is lower-better: 1.5x the time is a regression there too.
  RowSpec slow;
  slow.fwd = scaled(slow.fwd, 1.5);
  CompareOptions o;
  o.metrics = {"fwd_ms"};
  EXPECT_EQ(metric(compare(doc({row({})}), doc({row(slow)}), o).cases[0], "fwd_ms").verdict, Verdict::regression);
}

TEST(Compare, TheThresholdIsTheSmallestChangeThatCounts) {
  RowSpec slow;
  slow.fwd = scaled(slow.fwd, 1.5);
  CompareOptions o;
  o.threshold = 0.5;  // a 33% drop is inside 50%
  EXPECT_EQ(metric(compare(doc({row({})}), doc({row(slow)}), o).cases[0], "fwd_tflops_per_gpu").verdict,
            Verdict::unchanged);
}

TEST(Compare, TheThresholdIsSymmetricInTimeAndRate) {
  // Twice the time is a 100% change whether judged in ms or in TFLOP/s (-50% of the rate).
  RowSpec slow;
  slow.fwd = scaled(slow.fwd, 2.0);
  CompareOptions o;
  o.threshold = 0.99;
  o.metrics = {"fwd_tflops_per_gpu", "fwd_ms"};
  const Comparison c = compare(doc({row({})}), doc({row(slow)}), o);
  EXPECT_EQ(metric(c.cases[0], "fwd_tflops_per_gpu").verdict, Verdict::regression);
  EXPECT_EQ(metric(c.cases[0], "fwd_ms").verdict, Verdict::regression);
  o.threshold = 1.0;
  const Comparison d = compare(doc({row({})}), doc({row(slow)}), o);
  EXPECT_EQ(metric(d.cases[0], "fwd_tflops_per_gpu").verdict, Verdict::unchanged);
  EXPECT_EQ(metric(d.cases[0], "fwd_ms").verdict, Verdict::unchanged);
}

TEST(Compare, TheGeomeanGateFailsOnlyOnTheMeanOverCases) {
  RowSpec a, b, a_slow, b_slow;
  b.name = b_slow.name = "w/1";
  b.mask = b_slow.mask = "full";
  a_slow.fwd = scaled(a.fwd, 1.5);
  b_slow.fwd = scaled(b.fwd, 1.5);
  CompareOptions o;
  o.threshold = 0.3;
  o.gate = TimingGate::geomean;
  // One case of two 1.5x slower: reported, but the mean moves by 22% < 30%.
  const Comparison one = compare(doc({row(a), row(b)}), doc({row(a_slow), row(b)}), o);
  EXPECT_EQ(one.cases[0].verdict, Verdict::regression);
  EXPECT_EQ(one.geomeans[0].verdict, Verdict::unchanged);
  EXPECT_FALSE(one.failed());
  // Both: the mean moves by 50%.
  const Comparison both = compare(doc({row(a), row(b)}), doc({row(a_slow), row(b_slow)}), o);
  EXPECT_EQ(both.geomeans[0].verdict, Verdict::regression);
  EXPECT_TRUE(both.failed());
  EXPECT_NE(comparison_table(both).find("over 2 cases: REGRESSION"), std::string::npos) << comparison_table(both);
  // Exact metrics fail whatever the gate.
  RowSpec bytes;
  bytes.bytes = 8192;
  EXPECT_TRUE(compare(doc({row(a)}), doc({row(bytes)}), o).failed());
  // The same pair under the per-case gate fails on the one case.
  o.gate = TimingGate::each_case;
  EXPECT_TRUE(compare(doc({row(a), row(b)}), doc({row(a_slow), row(b)}), o).failed());
}

TEST(Compare, FailOnJudgesOneKindOfVerdictAndReportsTheOther) {
  RowSpec slow, bytes, slow_bytes;
  slow.fwd = scaled(slow.fwd, 1.5);
  bytes.bytes = 8192;
  slow_bytes.fwd = scaled(slow_bytes.fwd, 1.5);
  slow_bytes.bytes = 8192;
  CompareOptions o;
  o.threshold = 0.3;
  o.fail_on = FailOn::exact;
  const Comparison timing_only = compare(doc({row({})}), doc({row(slow)}), o);
  EXPECT_EQ(timing_only.cases[0].verdict, Verdict::regression);  // still reported
  EXPECT_FALSE(timing_only.failed());
  EXPECT_NE(comparison_table(timing_only).find("--fail-on exact"), std::string::npos);
  EXPECT_TRUE(compare(doc({row({})}), doc({row(bytes)}), o).failed());
  o.fail_on = FailOn::timings;
  const Comparison exact_only = compare(doc({row({})}), doc({row(bytes)}), o);
  EXPECT_EQ(metric(exact_only.cases[0], "planned_fwd_bytes").verdict, Verdict::regression);
  EXPECT_FALSE(exact_only.failed());
  EXPECT_TRUE(compare(doc({row({})}), doc({row(slow)}), o).failed());
  EXPECT_TRUE(compare(doc({row({})}), doc({row(slow_bytes)}), o).failed());
  // The geometric-mean gate counts under --fail-on timings as it does under all.
  o.gate = TimingGate::geomean;
  EXPECT_TRUE(compare(doc({row({})}), doc({row(slow)}), o).failed());
  EXPECT_EQ(to_json(compare(doc({row({})}), doc({row(slow)}), o))["options"]["fail_on"], "timings");
}

TEST(Compare, VerdictsAsJson) {
  RowSpec slow;
  slow.fwd = scaled(slow.fwd, 1.5);
  const json j = to_json(compare(doc({row({})}), doc({row(slow)})));
  EXPECT_EQ(j["schema"], std::string(kCompareSchema));
  EXPECT_EQ(j["summary"]["regression"], 1);
  EXPECT_EQ(j["summary"]["failed"], true);
  EXPECT_EQ(j["cases"][0]["verdict"], "regression");
  EXPECT_EQ(j["cases"][0]["metrics"][0]["metric"], "fwd_tflops_per_gpu");
  EXPECT_TRUE(j["cases"][0]["metrics"][0]["p_value"].is_number());
}

}  // namespace
}  // namespace magi
