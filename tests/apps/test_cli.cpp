// The executable as a user meets it (single process, no mpirun): help, errors with their exit
// codes, a quick run that writes JSON and CSV, and result files that are never clobbered.
#include "apps/cli_run.h"
#include "core/base/file_io.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using magi::testing::Outcome;
using magi::testing::run;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("magi_cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

const char* kTiny = R"({
  "name": "tiny",
  "model": {"heads_q": 4, "heads_kv": 2, "head_dim": 16, "dtype": "bf16"},
  "sequence": {"total_tokens": 256,
               "documents": {"distribution": "uniform", "min_tokens": 16, "max_tokens": 96, "seed": 3}},
  "mask": [{"type": "varlen_causal"}, {"type": "sliding_window", "window": 32}],
  "parallel": {"cp": 1, "strategy": "magi", "chunk_tokens": 64},
  "run": {"warmup": 0, "iters": 2, "check": true}
})";

TEST_F(Cli, HelpListsEverySubcommandAndOption) {
  const Outcome top = run("--help");
  EXPECT_EQ(top.exit_code, 0);
  for (const char* s : {"run", "plan", "kernel", "Exit codes"}) EXPECT_NE(top.output.find(s), std::string::npos) << s;
  // kernel exists in every build; without CUDA its help says it needs one.
  const Outcome kernel = run("kernel --help");
  EXPECT_EQ(kernel.exit_code, 0);
  EXPECT_NE(kernel.output.find("CUDA"), std::string::npos) << kernel.output;
  const Outcome sub = run("run --help");
  EXPECT_EQ(sub.exit_code, 0);
  for (const char* s : {"--config", "--backend", "--out", "--csv", "--force", "--check", "--warmup",
                        "--iters", "--threads", "--timeout", "--ranks-needed"}) {
    EXPECT_NE(sub.output.find(s), std::string::npos) << s;
  }
  EXPECT_EQ(run("--version").exit_code, 0);
}

TEST_F(Cli, UsageErrorsExitWithCodeTwo) {
  // Bare magi-bench prints the usage (it used to say "A subcommand is required", although run
  // is the default).
  const Outcome bare = run("");
  EXPECT_EQ(bare.exit_code, 2);
  for (const char* s : {"Usage:", "mpirun -np N magi-bench --config", "run", "plan", "Exit codes"}) {
    EXPECT_NE(bare.output.find(s), std::string::npos) << s << " in: " << bare.output;
  }
  EXPECT_EQ(bare.output.find("subcommand is required"), std::string::npos) << bare.output;
  EXPECT_EQ(run("run").exit_code, 2);  // --config is required
  EXPECT_EQ(run("--config x.json --bogus").exit_code, 2);
  const std::string cfg = write("p.json", kTiny);
  for (const char* flag : {"--cp 0", "--cp 2000000", "--show-rank -1", "--max-rank-rows -3"}) {
    const Outcome p = run("plan --config " + cfg + " " + flag);
    EXPECT_EQ(p.exit_code, 2) << flag << ": " << p.output;
    EXPECT_NE(p.output.find(std::string(flag).substr(0, std::string(flag).find(' '))), std::string::npos) << p.output;
    EXPECT_NE(p.output.find("magi-bench: error: "), std::string::npos) << p.output;  // one process: no rank
  }
  const Outcome convert = run("plan --config " + cfg + " --cp abc");
  EXPECT_EQ(convert.exit_code, 2);
  EXPECT_NE(convert.output.find("magi-bench: error: "), std::string::npos) << convert.output;
  const Outcome word = run("bogus --config x.json");
  EXPECT_EQ(word.exit_code, 2);
  EXPECT_NE(word.output.find("bogus: not a subcommand"), std::string::npos) << word.output;
  const Outcome b = run("--config " + write("w.json", kTiny) + " --backend tpu");
  EXPECT_EQ(b.exit_code, 2);
  EXPECT_NE(b.output.find("--backend tpu"), std::string::npos) << b.output;
  for (const char* t : {"-1", "nan"}) {
    const Outcome o = run("--config " + write("w.json", kTiny) + " --timeout " + t);
    EXPECT_EQ(o.exit_code, 2) << o.output;
    EXPECT_NE(o.output.find(std::string("--timeout ") + t + ": expected seconds >= 0"), std::string::npos) << o.output;
  }
}

// An empty output name used to be taken as "no file": the run went ahead and wrote nothing.
TEST_F(Cli, EmptyOutputNameIsAUsageError) {
  const std::string cfg = write("w.json", kTiny);
  for (const char* opt : {"--out", "--csv"}) {
    const Outcome o = run("--config " + cfg + " " + opt + " ''");
    EXPECT_EQ(o.exit_code, 2) << o.output;
    EXPECT_NE(o.output.find(std::string(opt) + ": expected a file name, got an empty string"), std::string::npos)
        << o.output;
    EXPECT_EQ(o.output.find("varlen_causal"), std::string::npos) << o.output;  // no case ran
  }
  const Outcome plan = run("plan --config " + cfg + " --json ''");
  EXPECT_EQ(plan.exit_code, 2) << plan.output;
  EXPECT_NE(plan.output.find("--json: expected a file name, got an empty string"), std::string::npos) << plan.output;
}

// The test hook MAGI_FAIL_RANK: a rank the job does not have is a warning (it used to be
// ignored silently), a malformed value a usage error (atoi made "abc" rank 0).
TEST_F(Cli, FaultInjectionOutsideTheJobIsAWarning) {
  const std::string cfg = write("w.json", kTiny);
  const Outcome o = run("--config " + cfg + " --iters 1 --no-check", "", "MAGI_FAIL_RANK=5");
  EXPECT_EQ(o.exit_code, 0) << o.output;
  EXPECT_NE(o.output.find("magi-bench: warning: MAGI_FAIL_RANK=5: the job has no rank 5 (1 ranks)"),
            std::string::npos)
      << o.output;
  const Outcome bad = run("--config " + cfg, "", "MAGI_FAIL_RANK=abc");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("MAGI_FAIL_RANK=abc: expected"), std::string::npos) << bad.output;
}

TEST_F(Cli, BadWorkloadsNameFileFieldAndValue) {
  const Outcome missing = run("--config " + (dir_ / "absent.json").string());
  EXPECT_EQ(missing.exit_code, 4) << missing.output;
  EXPECT_NE(missing.output.find("absent.json"), std::string::npos);

  const Outcome not_json = run("--config " + write("bad.json", "{ \"name\": "));
  EXPECT_EQ(not_json.exit_code, 4) << not_json.output;

  // A FIFO used to block forever in fopen, waiting for a writer.
  const std::string fifo = (dir_ / "fifo.json").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const Outcome f = run("--config " + fifo);
  EXPECT_EQ(f.exit_code, 4) << f.output;
  EXPECT_NE(f.output.find(fifo + ": cannot read: it is a FIFO"), std::string::npos) << f.output;

  std::string heads = kTiny;
  heads.replace(heads.find("\"heads_kv\": 2"), 13, "\"heads_kv\": 3");
  const Outcome h = run("--config " + write("h.json", heads));
  EXPECT_EQ(h.exit_code, 3) << h.output;
  EXPECT_NE(h.output.find("heads_kv"), std::string::npos) << h.output;
  EXPECT_NE(h.output.find("h.json"), std::string::npos) << h.output;
}

TEST_F(Cli, TooFewRanksForCpIsAClearError) {
  std::string two = kTiny;
  two.replace(two.find("\"cp\": 1"), 7, "\"cp\": 2");
  const Outcome o = run("--config " + write("cp2.json", two));
  EXPECT_EQ(o.exit_code, 2) << o.output;
  EXPECT_NE(o.output.find("mpirun -np 2"), std::string::npos) << o.output;
  const Outcome n = run("--config " + write("cp2b.json", two) + " --ranks-needed");
  EXPECT_EQ(n.exit_code, 0);
  EXPECT_EQ(n.output, "2\n");
}

TEST_F(Cli, RunPrintsATableAndWritesJsonAndCsvWhole) {
  const std::string cfg = write("w.json", kTiny);
  const std::string json = (dir_ / "r.json").string(), csv = (dir_ / "r.csv").string();
  const Outcome o = run("--config " + cfg + " --out " + json + " --csv " + csv);
  ASSERT_EQ(o.exit_code, 0) << o.output;
  EXPECT_NE(o.output.find("# magi-bench"), std::string::npos);
  EXPECT_NE(o.output.find("varlen_causal"), std::string::npos);
  EXPECT_NE(o.output.find("#wrong 0"), std::string::npos) << o.output;

  const auto report = nlohmann::json::parse(magi::read_file(json));
  ASSERT_EQ(report["cases"].size(), 2u);
  for (const auto& c : report["cases"]) {
    EXPECT_EQ(c["check"], "passed");
    EXPECT_GT(c["fwd_tflops_per_gpu"].get<double>(), 0);
    EXPECT_GT(c["bwd_ms"].get<double>(), 0);
    EXPECT_EQ(c["ranks"].size(), 1u);
  }
  EXPECT_FALSE(report["metadata"]["git_sha"].get<std::string>().empty());
  EXPECT_EQ(report["metadata"]["argv"].size(), 7u);
  const std::string table = magi::read_file(csv);
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 3);

  // A second run refuses to overwrite either file, before doing any work.
  const Outcome again = run("--config " + cfg + " --out " + json);
  EXPECT_EQ(again.exit_code, 4) << again.output;
  EXPECT_NE(again.output.find("refusing to overwrite"), std::string::npos);
  EXPECT_EQ(again.output.find("varlen_causal"), std::string::npos);  // no case ran
  EXPECT_EQ(run("--config " + cfg + " --out " + json + " --force").exit_code, 0);
}

// --out and --csv naming one file used to pass the pre-run checks, run every case, write the
// JSON and then fail on the CSV (or, with --force, replace the JSON by the CSV).
TEST_F(Cli, SameFileForOutAndCsvIsAUsageErrorBeforeAnyWork) {
  const std::string cfg = write("w.json", kTiny);
  const std::string json = (dir_ / "r.json").string();
  // Also bare names in the working directory ("r.json" and "./r.json"), which a canonical form
  // of the existing prefix alone told apart.
  for (const std::string& csv : {json, (dir_ / "." / "r.json").string()}) {
    for (const char* force : {"", " --force"}) {
      const Outcome o = run("--config " + cfg + " --out " + json + " --csv " + csv + force);
      EXPECT_EQ(o.exit_code, 2) << o.output;
      EXPECT_NE(o.output.find("the same file"), std::string::npos) << o.output;
      EXPECT_EQ(o.output.find("varlen_causal"), std::string::npos) << o.output;  // no case ran
      EXPECT_FALSE(fs::exists(json));
    }
  }
  const Outcome bare = run("--config " + cfg + " --out r.json --csv ./r.json", dir_.string());
  EXPECT_EQ(bare.exit_code, 2) << bare.output;
  EXPECT_NE(bare.output.find("the same file"), std::string::npos) << bare.output;
  EXPECT_FALSE(fs::exists(json));
}

// A directory that refuses new files is found before any case runs, and the error names the
// path given (procfs refuses files even to root).
TEST_F(Cli, UnwritableOutputIsFoundBeforeAnyWork) {
  const std::string cfg = write("w.json", kTiny);
  const std::string json = (dir_ / "r.json").string();
  const Outcome o = run("--config " + cfg + " --out " + json + " --csv /proc/self/r.csv");
  EXPECT_EQ(o.exit_code, 4) << o.output;
  EXPECT_NE(o.output.find("/proc/self/r.csv: cannot create a file in its directory"), std::string::npos) << o.output;
  EXPECT_EQ(o.output.find("varlen_causal"), std::string::npos) << o.output;  // no case ran
  EXPECT_FALSE(fs::exists(json));
  const Outcome plan = run("plan --config " + cfg + " --json /proc/self/p.json");
  EXPECT_EQ(plan.exit_code, 4) << plan.output;
}

// An existing output that is not a regular file is refused before any work, with or without
// --force: a symlink was replaced by a regular file (its target untouched), a FIFO likewise, and
// a directory as --csv under --force failed only after the whole run, with the JSON written.
TEST_F(Cli, NonRegularOutputsAreRefusedBeforeAnyWork) {
  const std::string cfg = write("w.json", kTiny);
  const std::string json = (dir_ / "r.json").string(), target = write("target.json", "kept");
  const fs::path link = dir_ / "link.json", fifo = dir_ / "fifo.csv", sub = dir_ / "sub";
  fs::create_symlink(target, link);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  fs::create_directory(sub);
  for (const std::string& args : {"--out " + link.string(), "--out " + json + " --csv " + fifo.string(),
                                  "--out " + json + " --csv " + sub.string(), "--out " + sub.string()}) {
    for (const char* force : {"", " --force"}) {
      const Outcome o = run("--config " + cfg + " " + args + force);
      EXPECT_EQ(o.exit_code, 4) << args << force << ": " << o.output;
      EXPECT_NE(o.output.find("not a regular file; refusing to replace it"), std::string::npos) << o.output;
      EXPECT_EQ(o.output.find("varlen_causal"), std::string::npos) << o.output;  // no case ran
      EXPECT_FALSE(fs::exists(json)) << args << force;
    }
  }
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(magi::read_file(target), "kept");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(fs::is_empty(sub));
}

// A case's config in the report is what ran: command-line overrides and the CPU backend's
// float32 storage included (it used to repeat the file's run section and dtype).
TEST_F(Cli, ReportConfigRecordsOverrides) {
  const std::string cfg = write("w.json", kTiny);  // iters 2, check true, warmup 0, bf16
  const std::string json = (dir_ / "r.json").string();
  const Outcome o = run("--config " + cfg + " --iters 1 --warmup 1 --no-check --out " + json);
  ASSERT_EQ(o.exit_code, 0) << o.output;
  const auto report = nlohmann::json::parse(magi::read_file(json));
  for (const auto& c : report["cases"]) {
    const auto& config = c["details"]["config"];
    EXPECT_EQ(config["run"]["iters"], 1);
    EXPECT_EQ(config["run"]["warmup"], 1);
    EXPECT_EQ(config["run"]["check"], false);
    EXPECT_EQ(config["model"]["dtype"], "fp32");
  }
}

// Bytes that are not UTF-8 in argv (or the environment) used to make the JSON dump throw after
// the whole run: exit 70 and no report.
TEST_F(Cli, NonUtf8ArgumentStillWritesTheReport) {
  const std::string cfg = write("w.json", kTiny);
  const std::string json = (dir_ / "r\xff.json").string();
  const Outcome o = run("--config " + cfg + " --iters 1 --out '" + json + "'");
  ASSERT_EQ(o.exit_code, 0) << o.output;
  const auto report = nlohmann::json::parse(magi::read_file(json));
  EXPECT_EQ(report["cases"].size(), 2u);
}

// `plan --max-rank-rows N` shows N rank rows (the first ceil(N/2), the last floor(N/2)) and says
// how many it left out; N = 1 used to read past the last rank (segfault), odd N miscounted.
TEST_F(Cli, PlanMaxRankRowsShowsExactlyThatManyRanks) {
  const std::string cfg = write("w.json", kTiny);
  auto rank_rows = [](const std::string& out) {
    int n = 0;
    size_t pos = 0;
    while ((pos = out.find("\n  ", pos)) != std::string::npos) ++n, ++pos;  // rank rows start "  "
    return n;
  };
  for (int rows : {1, 2, 3}) {
    const Outcome o = run("plan --config " + cfg + " --cp 4 --no-compare --max-rank-rows " + std::to_string(rows));
    ASSERT_EQ(o.exit_code, 0) << o.output;
    EXPECT_EQ(rank_rows(o.output), 2 * rows) << o.output;  // two cases
    std::string hidden = "(";
    hidden += std::to_string(4 - rows);
    hidden += " ranks not shown";
    EXPECT_NE(o.output.find(hidden), std::string::npos) << o.output;
  }
  const Outcome all = run("plan --config " + cfg + " --cp 4 --no-compare --max-rank-rows 0");
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_EQ(rank_rows(all.output), 8) << all.output;
}

// `plan --show-rank` gives each stage's GPU kernel items and tiles per head, and at cp 1 cut into
// local stages the one launch's beside their sum. A 1024-token causal mask at d 128 (128 x 128
// forward tiles, 64-row x 128-key backward ones) cut at key 512: stage 0 walks query blocks 0-3 on
// the diagonal (1 + 2 + 3 + 4 tiles) and 4-7 over all four key tiles, stage 1 blocks 4-7 on its
// diagonal; the backward's key blocks walk (1024 - 128 j) / 64 query tiles either way. So the cut
// adds four forward items and no tile. Worked out by hand, not read from the program.
TEST_F(Cli, PlanShowRankCountsTheKernelWorkOfEachStage) {
  const std::string cfg = write("staged.json", R"({
  "name": "staged", "model": {"heads_q": 2, "heads_kv": 2, "head_dim": 128, "dtype": "bf16"},
  "sequence": {"total_tokens": 1024}, "mask": {"type": "causal"},
  "parallel": {"cp": 1, "strategy": "magi", "overlap_degree": 1}, "run": {"warmup": 0, "iters": 1}})");
  const Outcome o = run("plan --config " + cfg + " --show-rank 0 --no-compare");
  ASSERT_EQ(o.exit_code, 0) << o.output;
  for (const char* line : {"stage 0: buffer 512 tokens (1 ranges), area 393472, 2 slices; host KV\n",
                           "GPU kernel per head: fwd 8 items, 26 tiles; bwd 4 items, 52 tiles",
                           "stage 1: buffer 512 tokens (1 ranges), area 131328, 1 slices; host KV [512, 1024)",
                           "GPU kernel per head: fwd 4 items, 10 tiles; bwd 4 items, 20 tiles",
                           "GPU kernel per head, all stages: fwd 12 items, 36 tiles; bwd 8 items, 72 tiles",
                           "GPU kernel per head, one launch (overlap_degree auto): fwd 8 items, 36 tiles; bwd 8 items, "
                           "72 tiles"}) {
    EXPECT_NE(o.output.find(line), std::string::npos) << line << "\n" << o.output;
  }
  EXPECT_EQ(o.output.find("received from"), std::string::npos) << o.output;  // nothing is, at cp 1
}

// `plan` states the dtype its bytes assume, in the text and the JSON, and `--dtype` asks for
// another: the CPU run's fp32 doubles kTiny's bf16 figures.
TEST_F(Cli, PlanBytesStateTheirDtypeAndDtypeOverridesIt) {
  const std::string cfg = write("w.json", kTiny);
  const std::string bf16_json = (dir_ / "bf16.json").string(), fp32_json = (dir_ / "fp32.json").string();
  const Outcome bf16 = run("plan --config " + cfg + " --cp 2 --json " + bf16_json);
  ASSERT_EQ(bf16.exit_code, 0) << bf16.output;
  EXPECT_NE(bf16.output.find("comm (bf16, 2 B per element)"), std::string::npos) << bf16.output;
  EXPECT_NE(bf16.output.find("# Strategies (bf16, 2 B per element;"), std::string::npos) << bf16.output;
  const Outcome fp32 = run("plan --config " + cfg + " --cp 2 --dtype fp32 --json " + fp32_json);
  ASSERT_EQ(fp32.exit_code, 0) << fp32.output;
  EXPECT_NE(fp32.output.find("comm (fp32, 4 B per element)"), std::string::npos) << fp32.output;
  const auto a = nlohmann::json::parse(magi::read_file(bf16_json));
  const auto b = nlohmann::json::parse(magi::read_file(fp32_json));
  ASSERT_EQ(a["cases"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a["cases"][i]["bytes_dtype"], "bf16");
    EXPECT_EQ(b["cases"][i]["bytes_dtype"], "fp32");
    EXPECT_EQ(b["cases"][i]["resolved"]["model"]["dtype"], "fp32");
    const int64_t fwd = a["cases"][i]["plan"]["volume"]["fwd_bytes"].get<int64_t>();
    EXPECT_GT(fwd, 0);
    EXPECT_EQ(b["cases"][i]["plan"]["volume"]["fwd_bytes"].get<int64_t>(), 2 * fwd);
  }
  EXPECT_EQ(run("plan --config " + cfg + " --dtype fp64").exit_code, 2);
}

// A 4096-token pack led by one 2560-token document at cp 8, 512-token chunks: magi cuts the
// heavy chunks for balance, and at the workload's slow link (0.01 GB/s) the cost gate declines them.
const char* kHeavyDoc = R"({
  "name": "heavy_doc",
  "model": {"heads_q": 4, "heads_kv": 2, "head_dim": 16, "dtype": "bf16"},
  "sequence": {"total_tokens": 4096,
               "documents": {"distribution": "list", "lengths": [2560, 40, 100, 7, 300, 64, 150, 90, 1, 230],
                             "max_doc_fraction": 1.0}},
  "mask": [{"type": "varlen_causal"}],
  "parallel": {"cp": 8, "strategy": "magi", "chunk_tokens": 512, "comm_gbps": 0.01}
})";

// `plan --comm-gbps` and `--compute-tflops` override the rates the cost gate prices magi's cuts
// at: the workload's slow link declines them and the plan states what the declined cut dispatch
// would have been; a fast link, or a slow kernel, given on the command line keeps them, and the
// kept plan is exactly that dispatch. Bad values are usage errors naming the option.
TEST_F(Cli, PlanRateOverridesDecideTheCuts) {
  const Outcome help = run("plan --help");
  for (const char* s : {"--compute-tflops", "--comm-gbps"}) EXPECT_NE(help.output.find(s), std::string::npos) << s;
  const std::string cfg = write("heavy.json", kHeavyDoc);
  const std::string slow_json = (dir_ / "slow.json").string(), fast_json = (dir_ / "fast.json").string();
  const Outcome slow = run("plan --config " + cfg + " --no-compare --json " + slow_json);
  ASSERT_EQ(slow.exit_code, 0) << slow.output;
  EXPECT_NE(slow.output.find("#   cuts declined: the cost model (overlap_degree auto's, at 400 TF/s and 0.01 GB/s) "
                             "estimates the forward at "),
            std::string::npos)
      << slow.output;
  EXPECT_NE(slow.output.find("#   the declined cut dispatch: "), std::string::npos) << slow.output;
  const Outcome fast = run("plan --config " + cfg + " --no-compare --comm-gbps 100000 --json " + fast_json);
  ASSERT_EQ(fast.exit_code, 0) << fast.output;
  EXPECT_NE(fast.output.find("#   cuts kept: the cost model (overlap_degree auto's, at 400 TF/s and 100000 GB/s)"),
            std::string::npos)
      << fast.output;
  EXPECT_EQ(fast.output.find("the declined cut dispatch"), std::string::npos) << fast.output;
  const Outcome kernel = run("plan --config " + cfg + " --no-compare --compute-tflops 0.001");
  ASSERT_EQ(kernel.exit_code, 0) << kernel.output;
  EXPECT_NE(kernel.output.find("#   cuts kept: the cost model (overlap_degree auto's, at 0.001 TF/s and 0.01 GB/s)"),
            std::string::npos)
      << kernel.output;

  const auto a = nlohmann::json::parse(magi::read_file(slow_json))["cases"][0];
  const auto b = nlohmann::json::parse(magi::read_file(fast_json))["cases"][0];
  EXPECT_EQ(a["resolved"]["parallel"]["comm_gbps"], 0.01);
  EXPECT_EQ(b["resolved"]["parallel"]["comm_gbps"], 100000.0);
  const auto& declined = a["plan"]["dispatch"];
  EXPECT_EQ(declined["cuts_declined"], true);
  EXPECT_EQ(declined["split_chunks"], 0);
  EXPECT_EQ(declined["cut_gate"]["comm_gbps"], 0.01);
  EXPECT_GT(declined["cut_gate"]["cut"]["forward_ms"].get<double>(), declined["cut_gate"]["uncut"]["forward_ms"].get<double>());
  EXPECT_EQ(b["plan"]["dispatch"]["cuts_declined"], false);
  EXPECT_GT(b["plan"]["dispatch"]["split_chunks"].get<int64_t>(), 0);
  EXPECT_EQ(b["plan"]["dispatch"]["split_chunks"], declined["cut_gate"]["cut"]["split_chunks"]);
  EXPECT_EQ(b["plan"]["balance"]["imbalance"], declined["cut_gate"]["cut"]["imbalance"]);
  EXPECT_EQ(b["plan"]["zero_redundancy_bound"]["fwd_bytes"], declined["cut_gate"]["cut"]["zero_redundancy_fwd_bytes"]);
  EXPECT_EQ(a["plan"]["balance"]["imbalance"], declined["cut_gate"]["uncut"]["imbalance"]);
  EXPECT_LT(b["plan"]["balance"]["imbalance"].get<double>(), a["plan"]["balance"]["imbalance"].get<double>());

  for (const char* flag : {"--comm-gbps 0", "--comm-gbps -3", "--compute-tflops nan", "--compute-tflops inf",
                           "--comm-gbps 2e9"}) {
    const Outcome o = run("plan --config " + cfg + " " + flag);
    EXPECT_EQ(o.exit_code, 2) << flag << ": " << o.output;
    const std::string option = std::string(flag).substr(0, std::string(flag).find(' '));
    EXPECT_NE(o.output.find(option + " "), std::string::npos) << o.output;
    EXPECT_NE(o.output.find(": expected "), std::string::npos) << o.output;
    EXPECT_NE(o.output.find("in (0, 1e+09]"), std::string::npos) << o.output;
  }
}

// --ranks-per-node turns a one-node plan into a node-aware one (the tiers as the config's own field
// gives them) and is refused, naming the option, where the field would be.
TEST_F(Cli, PlanRanksPerNodeOverride) {
  EXPECT_NE(run("plan --help").output.find("--ranks-per-node"), std::string::npos);
  const std::string flat = write("flat.json", R"({
  "name": "flat",
  "model": {"heads_q": 2, "heads_kv": 2, "head_dim": 16},
  "sequence": {"total_tokens": 512, "documents": {"distribution": "uniform", "min_tokens": 16, "max_tokens": 128, "seed": 3}},
  "mask": {"type": "varlen_causal"},
  "parallel": {"cp": 8, "strategy": "magi", "chunk_tokens": 32}
})");
  const std::string with_field = write("field.json", R"({
  "name": "field",
  "model": {"heads_q": 2, "heads_kv": 2, "head_dim": 16},
  "sequence": {"total_tokens": 512, "documents": {"distribution": "uniform", "min_tokens": 16, "max_tokens": 128, "seed": 3}},
  "mask": {"type": "varlen_causal"},
  "parallel": {"cp": 8, "ranks_per_node": 2, "strategy": "magi", "chunk_tokens": 32}
})");
  const Outcome one = run("plan --config " + flat + " --no-compare");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("tiers (1 node of 8 ranks"), std::string::npos) << one.output;
  const std::string a_json = (dir_ / "override.json").string(), b_json = (dir_ / "field_plan.json").string();
  const Outcome over = run("plan --config " + flat + " --no-compare --ranks-per-node 2 --json " + a_json);
  ASSERT_EQ(over.exit_code, 0) << over.output;
  EXPECT_NE(over.output.find("tiers (4 nodes of 2 ranks, node-aware GroupCast)"), std::string::npos) << over.output;
  ASSERT_EQ(run("plan --config " + with_field + " --no-compare --json " + b_json).exit_code, 0);
  const auto a = nlohmann::json::parse(magi::read_file(a_json))["cases"][0]["plan"];
  const auto b = nlohmann::json::parse(magi::read_file(b_json))["cases"][0]["plan"];
  EXPECT_EQ(a["tiers"]["ranks_per_node"], 2);
  EXPECT_EQ(a, b);  // the same plan as the field's

  for (const char* flag : {"--ranks-per-node 0", "--ranks-per-node 3", "--ranks-per-node 2 --heads 2"}) {
    const Outcome o = run("plan --config " + flat + " " + flag);
    EXPECT_EQ(o.exit_code, 2) << flag << ": " << o.output;
    EXPECT_NE(o.output.find(std::string(flag).substr(0, std::string(flag).find(' ', 17))), std::string::npos)
        << flag << ": " << o.output;
  }
}

// A valid workload whose plan would not fit is refused before any work, naming the field and the
// estimate; --allow-large lets it through.
TEST_F(Cli, LargePlansAreRefusedUnlessAllowed) {
  const std::string huge = write("huge.json", R"({
  "name": "huge",
  "model": {"heads_q": 4, "heads_kv": 2, "head_dim": 16},
  "sequence": {"total_tokens": 2147483648},
  "mask": {"type": "causal"},
  "parallel": {"cp": 1, "chunk_tokens": 1}
})");
  for (const char* cmd : {"plan", "run"}) {
    const Outcome o = run(std::string(cmd) + " --config " + huge);
    EXPECT_EQ(o.exit_code, 3) << cmd << ": " << o.output;
    EXPECT_NE(o.output.find("parallel.chunk_tokens = 1: 2147483648 chunks"), std::string::npos) << o.output;
    EXPECT_NE(o.output.find("--allow-large"), std::string::npos) << o.output;
  }
  const std::string cfg = write("w.json", kTiny);
  const Outcome pairs = run("plan --config " + cfg + " --cp 16384 --strategy ulysses --no-compare");
  EXPECT_EQ(pairs.exit_code, 3) << pairs.output;
  EXPECT_NE(pairs.output.find("parallel.cp = 16384: the ulysses plan holds cp x cp = 268435456 rank pairs"),
            std::string::npos) << pairs.output;
  // Allowed, the case goes on to the planner (which skips it: cp > heads_kv).
  const Outcome allowed = run("plan --config " + cfg + " --cp 16384 --strategy ulysses --no-compare --allow-large");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
  EXPECT_NE(allowed.output.find("SKIPPED: cp = 16384 > heads_kv = 2"), std::string::npos) << allowed.output;
}

// The kernel model of a head dim is per tile of the tiles its rows ran: rows written before the
// results recorded them are the 128 x 128 / 64 x 128 kernel's, recorded ones are taken as they
// are (a committed run's d 64 rows given 192-key forward tiles: the fit says so and counts in them),
// and two fit files that ran one head dim with different tiles are refused.
TEST_F(Cli, CalibrateFitsEachHeadDimInTheTilesItsRowsRan) {
  const std::string base = std::string(MAGI_SOURCE_DIR) + "/results/kernel/2026-12-02_v11_h200_kernel_h100.json";
  const Outcome before = run("calibrate --fit " + base);
  ASSERT_EQ(before.exit_code, 0) << before.output;
  EXPECT_NE(before.output.find("#   fwd d  64 tiles 128x128/64x128"), std::string::npos) << before.output;
  nlohmann::json doc = nlohmann::json::parse(magi::read_file(base));
  for (auto& c : doc["cases"]) {
    const bool d64 = c["head_dim"].get<int>() == 64;
    c["details"]["kernel"]["tiles"] = {{"fwd_rows", 128}, {"fwd_keys", d64 ? 192 : 128}, {"bwd_rows", 64}, {"bwd_keys", 128}};
  }
  const std::string recorded = write("recorded.json", doc.dump());
  const Outcome after = run("calibrate --fit " + recorded);
  ASSERT_EQ(after.exit_code, 0) << after.output;
  EXPECT_NE(after.output.find("#   fwd d  64 tiles 128x192/64x128"), std::string::npos) << after.output;
  EXPECT_NE(after.output.find("#   fwd d 128 tiles 128x128/64x128"), std::string::npos) << after.output;
  // The counts the rows recorded are of 128-key tiles: against the 192-key model they differ.
  const Outcome mixed_held_out = run("calibrate --fit " + recorded + " --held-out " + base);
  ASSERT_EQ(mixed_held_out.exit_code, 0) << mixed_held_out.output;
  EXPECT_NE(mixed_held_out.output.find("kernel rows recorded tile counts other than the model's"), std::string::npos)
      << mixed_held_out.output;
  for (auto& c : doc["cases"]) c["details"]["config"]["run"]["seed"] = c["details"]["config"]["run"]["seed"].get<int>() + 1;
  const std::string other = write("other_cases.json", doc.dump());  // other measurements, not repeats
  const Outcome mixed = run("calibrate --fit " + base + " " + other);
  EXPECT_EQ(mixed.exit_code, 2) << mixed.output;
  EXPECT_NE(mixed.output.find("ran head dim 64 with different kernel tiles"), std::string::npos) << mixed.output;
}

// Repeated runs of one case (a case in several files) fold into one row with the fastest repeat
// per pass: a copy of a committed kernel run slowed 2x and 3x leaves the predictions' count and
// every measured time as they were.
TEST_F(Cli, CalibrateKeepsTheFastestRepeatOfACase) {
  const std::string base = std::string(MAGI_SOURCE_DIR) + "/results/kernel/2026-12-01_v10_h200_kernel_h100.json";
  nlohmann::json doc = nlohmann::json::parse(magi::read_file(base));
  const size_t cases = doc["cases"].size();
  for (auto& c : doc["cases"]) c["fwd_ms"] = 2 * c["fwd_ms"].get<double>();
  const std::string slow_fwd = write("slow_fwd.json", doc.dump());
  for (auto& c : doc["cases"]) {
    c["fwd_ms"] = 1.5 * c["fwd_ms"].get<double>();
    c["bwd_ms"] = 3 * c["bwd_ms"].get<double>();
  }
  const std::string slow_both = write("slow_both.json", doc.dump());
  const Outcome once = run("calibrate --fit " + base);
  const Outcome thrice = run("calibrate --fit " + slow_fwd + " " + base + " " + slow_both);
  ASSERT_EQ(once.exit_code, 0) << once.output;
  ASSERT_EQ(thrice.exit_code, 0) << thrice.output;
  EXPECT_NE(thrice.output.find("# " + std::to_string(3 * cases) + " measured rows are " + std::to_string(cases) + " cases measured several times"),
            std::string::npos) << thrice.output;
  // The model and every row's measured and predicted times are those of the single run: the
  // lines of the fitted coefficients and, per row, all but its first column (file: case).
  auto table = [](const std::string& out) {
    std::istringstream in(out);
    std::string rows, line;
    while (std::getline(in, line)) {
      if (line.rfind("#   ", 0) == 0) rows += line + "\n";
      const size_t role = line.rfind(" fit");
      if (line.rfind("  ", 0) != 0 || role == std::string::npos) continue;
      std::istringstream fields(line);
      std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
      for (size_t i = f.size() - 9; i < f.size(); ++i) rows += f[i] + " ";
      rows += "\n";
    }
    return rows;
  };
  EXPECT_NE(table(once.output).find("full 8192 1 none fwd"), std::string::npos) << once.output;
  EXPECT_EQ(table(thrice.output), table(once.output));
}

}  // namespace
