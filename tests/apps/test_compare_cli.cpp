// `magi-bench compare`, the --min-*-tflops gate and the progress lines, driven as a user would:
// real results files from a quick run, then copies with an injected change; exit codes, the
// report, the verdicts file.
#include "apps/cli_run.h"
#include "core/base/file_io.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using magi::testing::Outcome;
using magi::testing::run;
using json = nlohmann::json;

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// Two cases, 8 timed iterations each (enough for the rank test: 8 + 8 reach p < 0.05).
const char* kWorkload = R"({
  "name": "cmp",
  "model": {"heads_q": 4, "heads_kv": 2, "head_dim": 16},
  "sequence": {"total_tokens": 256,
               "documents": {"distribution": "uniform", "min_tokens": 16, "max_tokens": 96, "seed": 3}},
  "mask": [{"type": "varlen_causal"}, {"type": "causal"}],
  "parallel": {"cp": 1, "strategy": "magi", "chunk_tokens": 64},
  "run": {"warmup": 1, "iters": 8, "check": true}
})";

class CompareCli : public ::testing::Test {
 protected:
  // One real run, shared by the tests (a few seconds on a loaded machine).
  static void SetUpTestSuite() {
    // ctest runs each test in its own process, several at once: one folder per process.
    dir_ = fs::temp_directory_path() / ("magi_compare_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "w.json") << kWorkload;
    run_output_ = new Outcome(run("--config " + (dir_ / "w.json").string() + " --out " +
                                  (dir_ / "base.json").string() + " --threads 1"));
  }
  static void TearDownTestSuite() {
    fs::remove_all(dir_);
    delete run_output_;
  }
  void SetUp() override { ASSERT_EQ(run_output_->exit_code, 0) << run_output_->output; }

  static json base() { return json::parse(magi::read_file((dir_ / "base.json").string())); }
  static std::string write(const std::string& name, const json& j) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << j.dump();
    return p.string();
  }
  // Every forward time of case i multiplied by f (samples, summaries and derived figures).
  static json slow_forward(json doc, size_t i, double f) {
    json& c = doc["cases"][i];
    for (json& r : c["ranks"]) {
      for (const char* k : {"median_ms", "mean_ms", "min_ms", "max_ms"}) r["fwd"][k] = r["fwd"][k].get<double>() * f;
      for (json& s : r["fwd"]["samples_ms"]) s = s.get<double>() * f;
    }
    c["fwd_ms"] = c["fwd_ms"].get<double>() * f;
    c["fwd_tflops_per_gpu"] = c["fwd_tflops_per_gpu"].get<double>() / f;
    return doc;
  }

  static fs::path dir_;
  static Outcome* run_output_;
};

fs::path CompareCli::dir_;
Outcome* CompareCli::run_output_ = nullptr;

TEST_F(CompareCli, TheRunRecordsSamplesDispatchAndProgress) {
  const json b = base();
  const json& rank = b["cases"][0]["ranks"][0];
  EXPECT_EQ(rank["fwd"]["samples_ms"].size(), 8u);
  const json& d = b["cases"][0]["details"]["dispatch"];
  EXPECT_EQ(d["rank_q_ranges"].size(), 1u);
  EXPECT_EQ(d["mask_slice_count"].get<size_t>(), d["mask_slices"].size());
  // Not a terminal: one plain progress line per case, on stderr.
  EXPECT_TRUE(has(run_output_->output, "# progress: case 1/2 (cmp/0) finished")) << run_output_->output;
  EXPECT_TRUE(has(run_output_->output, "# progress: case 2/2 (cmp/1) finished")) << run_output_->output;
  EXPECT_TRUE(has(run_output_->output, "remaining")) << run_output_->output;
}

TEST_F(CompareCli, AFileAgainstItselfPasses) {
  const std::string f = (dir_ / "base.json").string();
  const Outcome o = run("compare " + f + " " + f);
  EXPECT_EQ(o.exit_code, 0) << o.output;
  EXPECT_TRUE(has(o.output, "2 matched")) << o.output;
  EXPECT_TRUE(has(o.output, "# Result: OK")) << o.output;
  EXPECT_TRUE(has(o.output, "# Geomean new/base fwd_tflops_per_gpu : 1.0000")) << o.output;
}

TEST_F(CompareCli, AnInjectedSlowdownFailsWithAReadableReportAndVerdictsFile) {
  const std::string b = (dir_ / "base.json").string();
  const std::string n = write("slow.json", slow_forward(base(), 1, 3.0));
  const std::string verdicts = (dir_ / "verdicts.json").string();
  const Outcome o = run("compare " + b + " " + n + " --json " + verdicts);
  EXPECT_EQ(o.exit_code, 7) << o.output;
  EXPECT_TRUE(has(o.output, "REGRESSION")) << o.output;
  EXPECT_TRUE(has(o.output, "-66.7%")) << o.output;
  EXPECT_TRUE(has(o.output, "rank test p = ")) << o.output;
  EXPECT_TRUE(has(o.output, "# Result: REGRESSION")) << o.output;
  const json v = json::parse(magi::read_file(verdicts));
  EXPECT_EQ(v["schema"], "magi-bench/compare/1");
  EXPECT_EQ(v["summary"]["regression"], 1);
  EXPECT_EQ(v["cases"][1]["verdict"], "regression");
  // The verdicts file is not replaced without --force.
  EXPECT_EQ(run("compare " + b + " " + n + " --json " + verdicts).exit_code, 4);
  // A threshold wider than the change (3x: 200%) lets it pass.
  EXPECT_EQ(run("compare " + b + " " + n + " --threshold 210%").exit_code, 0);
  // Under the geomean gate one case of two 3x slower moves the mean by 73%: fails at 50%, not at 80%.
  EXPECT_EQ(run("compare " + b + " " + n + " --timing-gate geomean --threshold 50%").exit_code, 7);
  EXPECT_EQ(run("compare " + b + " " + n + " --timing-gate geomean --threshold 80%").exit_code, 0);
  EXPECT_EQ(run("compare " + b + " " + n + " --timing-gate mean").exit_code, 2);
  // Judged on the backward only, the forward's slowdown is not looked at.
  EXPECT_EQ(run("compare " + b + " " + n + " --metric bwd_tflops").exit_code, 0);
}

TEST_F(CompareCli, ChangedBytesFailWhateverTheThreshold) {
  json d = base();
  d["cases"][0]["planned_fwd_bytes"] = d["cases"][0]["planned_fwd_bytes"].get<int64_t>() + 64;
  const Outcome o = run("compare " + (dir_ / "base.json").string() + " " + write("bytes.json", d) + " --threshold 1000");
  EXPECT_EQ(o.exit_code, 7) << o.output;
  EXPECT_TRUE(has(o.output, "planned_fwd_bytes")) << o.output;
}

TEST_F(CompareCli, MissingAndExtraCasesAreListedNotFailed) {
  json fewer = base();
  fewer["cases"].erase(1);
  const Outcome o = run("compare " + (dir_ / "base.json").string() + " " + write("fewer.json", fewer));
  EXPECT_EQ(o.exit_code, 0) << o.output;
  EXPECT_TRUE(has(o.output, "# Only in base (not run by new): cmp/1 cp=1 magi")) << o.output;
}

TEST_F(CompareCli, BadInputsAreClearErrors) {
  const std::string b = (dir_ / "base.json").string();
  json v2 = base();
  v2["schema"] = "magi-bench/results/2";
  const Outcome schema = run("compare " + b + " " + write("v2.json", v2));
  EXPECT_EQ(schema.exit_code, 4) << schema.output;
  EXPECT_TRUE(has(schema.output, "v2.json: schema \"magi-bench/results/2\": another version")) << schema.output;
  const Outcome missing = run("compare " + b + " " + (dir_ / "nope.json").string());
  EXPECT_EQ(missing.exit_code, 4) << missing.output;
  const Outcome threshold = run("compare " + b + " " + b + " --threshold five");
  EXPECT_EQ(threshold.exit_code, 2) << threshold.output;
  EXPECT_TRUE(has(threshold.output, "--threshold \"five\"")) << threshold.output;
  const Outcome metric = run("compare " + b + " " + b + " --metric fwd_tflop");
  EXPECT_EQ(metric.exit_code, 2) << metric.output;
  EXPECT_TRUE(has(metric.output, "did you mean")) << metric.output;
  EXPECT_EQ(run("compare " + b).exit_code, 2);
}

TEST_F(CompareCli, TheGateFailsARunBelowTheFloor) {
  const std::string cfg = (dir_ / "w.json").string();
  const Outcome below = run("--config " + cfg + " --iters 1 --warmup 0 --no-check --min-tflops 1e6");
  EXPECT_EQ(below.exit_code, 7) << below.output;
  EXPECT_TRUE(has(below.output, "BELOW FLOOR: fwd ")) << below.output;
  EXPECT_TRUE(has(below.output, "< --min-fwd-tflops 1e+06")) << below.output;
  EXPECT_TRUE(has(below.output, "# Throughput floor (--min-*-tflops) : 2 cases BELOW")) << below.output;
  // Per pass: a floor on the backward alone marks only the backward.
  const Outcome bwd = run("--config " + cfg + " --iters 1 --warmup 0 --no-check --min-bwd-tflops 1e6");
  EXPECT_EQ(bwd.exit_code, 7) << bwd.output;
  EXPECT_FALSE(has(bwd.output, "BELOW FLOOR: fwd")) << bwd.output;
  const Outcome met = run("--config " + cfg + " --iters 1 --warmup 0 --no-check --min-tflops 1e-12");
  EXPECT_EQ(met.exit_code, 0) << met.output;
  EXPECT_TRUE(has(met.output, "every case meets it")) << met.output;
  const Outcome negative = run("--config " + cfg + " --min-fwd-tflops -1");
  EXPECT_EQ(negative.exit_code, 2) << negative.output;
  EXPECT_TRUE(has(negative.output, "--min-fwd-tflops -1")) << negative.output;
}

}  // namespace
