// Malformed workloads: each is one ConfigError / FileError line naming the file, the JSON path,
// the value and what was expected, with the error kind's exit code.
#include "core/base/error.h"
#include "core/base/json_reader.h"
#include "core/workload/workload.h"
#include "workload_test_util.h"

#include <gtest/gtest.h>

#include <functional>

namespace magi {
namespace {

using json = nlohmann::json;

// The smallest valid workload; each case breaks one thing.
json valid() { return {{"name", "t"}, {"sequence", {{"total_tokens", 1024}}}}; }

struct BadCase {
  std::string label;
  std::function<std::string()> file;  // writes the workload, returns its path
  ExitCode code;
  std::vector<std::string> needles;  // all must appear in the message (path, value, ...)
};

std::function<std::string()> edited(std::function<void(json&)> edit) {
  return [edit] {
    json doc = valid();
    edit(doc);
    return testing::write_scratch("bad.json", doc.dump(2));
  };
}

std::function<std::string()> text(std::string body) {
  return [body] { return testing::write_scratch("bad.json", body); };
}

json slice(int64_t qa, int64_t qb, int64_t ka, int64_t kb, const char* type) {
  return {{"q", {qa, qb}}, {"k", {ka, kb}}, {"type", type}};
}

std::vector<BadCase> bad_cases() {
  const ExitCode cfg = ExitCode::config;
  const ExitCode file = ExitCode::file;
  return {
      {"unknown top-level key",
       edited([](json& d) { d["modle"] = json::object(); }),
       cfg,
       {": modle: unknown key", "\"modle\"", "did you mean \"model\""}},
      {"unknown nested key",
       edited([](json& d) { d["model"]["head_q"] = 8; }),
       cfg,
       {": model.head_q: unknown key", "\"head_q\"", "did you mean \"heads_q\""}},
      {"key in the wrong section",
       edited([](json& d) { d["model"]["cp"] = 2; }),
       cfg,
       {"model.cp: unknown key", "\"cp\" belongs in parallel"}},
      {"odd key characters",
       edited([](json& d) { d["run"]["a b\n"] = 1; }),
       cfg,
       {"run[\"a b\\n\"]: unknown key"}},
      {"wrong type",
       edited([](json& d) { d["model"]["heads_q"] = "8"; }),
       cfg,
       {"model.heads_q: wrong type", "got \"8\"", "expected an integer in [1, 65536]"}},
      {"float for an integer",
       edited([](json& d) { d["parallel"]["cp"] = 1.5; }),
       cfg,
       {"parallel.cp: not an integer", "got 1.5"}},
      {"null",
       edited([](json& d) { d["run"]["check"] = nullptr; }),
       cfg,
       {"run.check: wrong type", "got null", "true or false"}},
      {"zero size",
       edited([](json& d) { d["sequence"]["total_tokens"] = 0; }),
       cfg,
       {"sequence.total_tokens: out of range", "got 0"}},
      {"negative size",
       edited([](json& d) { d["parallel"]["chunk_tokens"] = -4; }),
       cfg,
       {"parallel.chunk_tokens: out of range", "got -4"}},
      {"chunk size not auto",
       edited([](json& d) { d["parallel"]["chunk_tokens"] = "big"; }),
       cfg,
       {"parallel.chunk_tokens: unknown chunk size", "\"auto\""}},
      {"huge integer",
       edited([](json& d) { d["sequence"]["total_tokens"] = UINT64_MAX; }),
       cfg,
       {"sequence.total_tokens: out of range", "got 18446744073709551615"}},
      {"zero iters",
       edited([](json& d) { d["run"]["iters"] = 0; }),
       cfg,
       {"run.iters: out of range", "got 0"}},
      {"negative warmup",
       edited([](json& d) { d["run"]["warmup"] = -1; }),
       cfg,
       {"run.warmup", "got -1"}},
      {"negative seed",
       edited([](json& d) { d["run"]["seed"] = -1; }),
       cfg,
       {"run.seed", "got -1"}},
      {"heads not divisible",
       edited([](json& d) {
         d["model"] = {{"heads_q", 12}, {"heads_kv", 8}};
       }),
       cfg,
       {"model.heads_q: not divisible by heads_kv", "got 12", "a multiple of model.heads_kv = 8"}},
      {"heads not divisible in a sweep",
       edited([](json& d) {
         d["model"] = {{"heads_q", 16}, {"heads_kv", {8, 3}}};
       }),
       cfg,
       {"model.heads_q: not divisible", "got 16", "model.heads_kv[1] = 3"}},
      {"head_dim not a multiple of 8",
       edited([](json& d) { d["model"]["head_dim"] = 100; }),
       cfg,
       {"model.head_dim: not a multiple of 8", "got 100"}},
      {"unknown dtype",
       edited([](json& d) { d["model"]["dtype"] = "bf61"; }),
       cfg,
       {"model.dtype: unknown dtype", "got \"bf61\"", "bf16, fp16, fp32", "did you mean \"bf16\""}},
      {"unknown strategy",
       edited([](json& d) {
         d["parallel"]["strategy"] = {"magi", "rnig"};
       }),
       cfg,
       {"parallel.strategy[1]: unknown strategy", "got \"rnig\"", "did you mean \"ring\""}},
      {"unknown solver",
       edited([](json& d) { d["parallel"]["solver"] = "best"; }),
       cfg,
       {"parallel.solver: unknown solver", "\"best\"", "greedy, refine"}},
      {"non-positive rate",
       edited([](json& d) { d["parallel"]["comm_gbps"] = 0; }),
       cfg,
       {"parallel.comm_gbps: out of range", "got 0", "(0, "}},
      {"reversed slice range",
       edited([](json& d) {
         d["mask"] = {{"type", "slices"}, {"slices", {slice(5, 3, 0, 8, "full")}}};
       }),
       cfg,
       {"mask.slices[0].q: reversed range", "got [5, 3]"}},
      {"slice out of bounds",
       edited([](json& d) {
         d["mask"] = {{"type", "slices"},
                      {"slices", {slice(0, 8, 0, 8, "full"), slice(8, 16, 0, 2000, "full")}}};
       }),
       cfg,
       {"mask.slices[1].k", "2000", "1024"}},
      {"malformed slice",
       edited([](json& d) {
         d["mask"] = {{"type", "slices"},
                      {"slices", {{{"q", {0, 8, 9}}, {"k", {0, 8}}, {"type", "full"}}}}};
       }),
       cfg,
       {"mask.slices[0].q: not a pair", "got [0, 8, 9]"}},
      {"unknown slice type",
       edited([](json& d) {
         d["mask"] = {{"type", "slices"}, {"slices", {slice(0, 8, 0, 8, "casual")}}};
       }),
       cfg,
       {"mask.slices[0].type: unknown slice type", "\"casual\"", "did you mean \"causal\""}},
      {"slices covering a pair twice",
       edited([](json& d) {
         d["mask"] = {{"type", "slices"},
                      {"slices", {slice(0, 64, 0, 64, "causal"), slice(32, 64, 0, 16, "full")}}};
       }),
       cfg,
       {"mask.slices", "covering a common (q, k) pair"}},
      {"unknown mask",
       edited([](json& d) {
         d["mask"] = {{"type", "causual"}};
       }),
       cfg,
       {"mask.type: unknown mask type", "got \"causual\"", "did you mean \"causal\""}},
      {"mask parameter missing",
       edited([](json& d) {
         d["mask"] = {{"type", "sliding_window"}};
       }),
       cfg,
       {"mask.window", "got 0", "sliding_window"}},
      {"mask parameter the type does not use",
       edited([](json& d) {
         d["mask"] = {{"type", "causal"}, {"window", 5}};
       }),
       cfg,
       {"mask.window", "got 5"}},
      {"mask parameter bad in one alternative",
       edited([](json& d) {
         d["mask"] = {{{"type", "causal"}}, {{"type", "sliding_window"}, {"window", 0}}};
       }),
       cfg,
       {": mask[1].window:", "got 0"}},
      {"mask parameter bad in one sweep point",
       edited([](json& d) {
         d["mask"] = {{"type", "sliding_window"}, {"window", {16, 0}}};
       }),
       cfg,
       {": mask.window[1]:", "got 0"}},
      {"mask parameter too large for the sequence",
       edited([](json& d) {
         d["mask"] = {{"type", "prefix_lm"}, {"prefix_tokens", 5000}};
       }),
       cfg,
       {"mask.prefix_tokens", "5000", "1024"}},
      {"unknown distribution",
       edited([](json& d) {
         d["sequence"]["documents"] = {{"distribution", "poisson"}};
       }),
       cfg,
       {"sequence.documents.distribution: unknown distribution", "got \"poisson\"", "lognormal"}},
      {"missing distribution",
       edited([](json& d) {
         d["sequence"]["documents"] = {{"tokens", 5}};
       }),
       cfg,
       {"sequence.documents.distribution: missing"}},
      {"field the distribution does not use",
       edited([](json& d) {
         d["sequence"]["documents"] = {
             {"distribution", "lognormal"}, {"mean_tokens", 100}, {"tokens", 512}};
       }),
       cfg,
       {"sequence.documents.tokens: not used by the lognormal distribution", "got 512",
        "only fixed reads it"}},
      {"field the distribution requires",
       edited([](json& d) {
         d["sequence"]["documents"] = {{"distribution", "fixed"}};
       }),
       cfg,
       {"sequence.documents.tokens: missing", "fixed"}},
      {"max below min",
       edited([](json& d) {
         d["sequence"]["documents"] = {
             {"distribution", "uniform"}, {"min_tokens", 50}, {"max_tokens", 10}};
       }),
       cfg,
       {"sequence.documents.max_tokens: below min_tokens", "got 10", "50"}},
      {"preset with bins",
       edited([](json& d) {
         d["sequence"]["documents"] = {{"distribution", "histogram"},
                                       {"preset", "pretrain_corpus"},
                                       {"bins", {{{"lo", 1}, {"hi", 2}, {"weight", 1}}}}};
       }),
       cfg,
       {"sequence.documents.preset: preset with bins", "\"pretrain_corpus\""}},
      {"reversed bin",
       edited([](json& d) {
         d["sequence"]["documents"] = {{"distribution", "histogram"},
                                       {"bins", {{{"lo", 9}, {"hi", 2}, {"weight", 1}}}}};
       }),
       cfg,
       {"sequence.documents.bins[0].hi: reversed bin", "got 2"}},
      {"too many documents",
       edited([](json& d) {
         d["sequence"] = {{"total_tokens", 1 << 21},
                          {"documents", {{"distribution", "fixed"}, {"tokens", 1}}}};
         d["mask"] = {{"type", "varlen_causal"}};
       }),
       cfg,
       {"sequence.documents: too many documents", "2097152"}},
      {"unreadable file",
       [] { return (testing::scratch_dir() / "does_not_exist.json").string(); },
       file,
       {"does_not_exist.json", "No such file or directory"}},
      {"a directory", [] { return testing::scratch_dir().string(); }, file, {"is a directory"}},
      {"not JSON",
       text("{\"name\": \"t\",\n  \"sequence\": {\"total_tokens\": 1024,}}\n"),
       file,
       {"not valid JSON at line 2, column 37", "unexpected '}'"}},
      {"empty file",
       text(""),
       file,
       {"not valid JSON at line 1, column 1", "unexpected end of input"}},
      {"number overflow",
       text("{\"name\": \"t\", \"sequence\": {\"total_tokens\": 1e400}}"),
       file,
       {"not valid JSON at line 1, column 48", "number overflow", "1e400"}},
      {"top level not an object", text("[1, 2]"), cfg, {": (top level): wrong type", "got [1, 2]"}},
      {"empty sweep",
       edited([](json& d) { d["parallel"]["cp"] = json::array(); }),
       cfg,
       {"parallel.cp: empty sweep", "got []"}},
      {"empty mask sweep",
       edited([](json& d) { d["mask"] = json::array(); }),
       cfg,
       {"mask: empty sweep"}},
      {"bad overlap_degree string",
       edited([](json& d) { d["parallel"]["overlap_degree"] = "fast"; }),
       cfg,
       {"parallel.overlap_degree: unknown overlap degree", "got \"fast\"", "\"auto\""}},
      {"bad overlap_degree in a sweep",
       edited([](json& d) {
         d["parallel"]["overlap_degree"] = {2, 0};
       }),
       cfg,
       {"parallel.overlap_degree[1]: out of range", "got 0"}},
      {"ranks_per_node not dividing cp",
       edited([](json& d) {
         d["parallel"]["cp"] = 6;
         d["parallel"]["ranks_per_node"] = {2, 4};
       }),
       cfg,
       {"parallel.ranks_per_node[1]: does not divide parallel.cp", "got 4", "a divisor of parallel.cp = 6"}},
      {"ranks_per_node with head groups",
       edited([](json& d) {
         d["parallel"]["cp"] = 4;
         d["parallel"]["heads"] = 2;
         d["parallel"]["strategy"] = "magi";
         d["parallel"]["ranks_per_node"] = 2;
       }),
       cfg,
       {"parallel.ranks_per_node: node-aware routing between head groups is not built", "got 2",
        "\"auto\" or parallel.cp (one node) with parallel.heads > 1"}},
      {"bad ranks_per_node string",
       edited([](json& d) { d["parallel"]["ranks_per_node"] = "all"; }),
       cfg,
       {"parallel.ranks_per_node: unknown ranks per node", "got \"all\"", "\"auto\""}},
      {"duplicate pass",
       edited([](json& d) {
         d["run"]["passes"] = {"fwd", "fwd"};
       }),
       cfg,
       {"run.passes[1]: duplicate pass", "got \"fwd\""}},
      {"no passes",
       edited([](json& d) { d["run"]["passes"] = json::array(); }),
       cfg,
       {"run.passes: no passes"}},
      {"unknown pass",
       edited([](json& d) {
         d["run"]["passes"] = {"fwd", "backward"};
       }),
       cfg,
       {"run.passes[1]: unknown pass", "\"backward\""}},
      {"run fields are not sweepable",
       edited([](json& d) {
         d["run"]["iters"] = {1, 2};
       }),
       cfg,
       {"run.iters: wrong type", "got [1, 2]"}},
      {"missing name", edited([](json& d) { d.erase("name"); }), cfg, {": name: missing"}},
      {"empty name",
       edited([](json& d) { d["name"] = ""; }),
       cfg,
       {": name: bad name", "got \"\""}},
      {"missing total_tokens",
       edited([](json& d) { d["sequence"] = json::object(); }),
       cfg,
       {"sequence.total_tokens: missing"}},
      {"too many cases",
       edited([](json& d) {
         d["parallel"]["cp"] = json::array();
         d["parallel"]["chunk_tokens"] = json::array();
         for (int i = 1; i <= 101; ++i) {
           d["parallel"]["cp"].push_back(i);
           d["parallel"]["chunk_tokens"].push_back(i);
         }
       }),
       cfg,
       {"sweep: too many cases", "10201", "at most 10000"}},
      {"nesting at the cap",
       text("{\"name\": " + std::string(kMaxJsonDepth - 1, '[') + std::string(kMaxJsonDepth - 1, ']') + "}"),
       cfg,
       {": name: wrong type", "got [[[...]]]"}},
      {"nesting past the cap",
       text("{\"name\": " + std::string(100000, '[') + std::string(100000, ']') + "}"),
       cfg,
       {": line 1, column 73: nested too deep", "expected at most 64"}},
      {"trailing NUL byte",
       text(std::string(R"({"name": "t", "sequence": {"total_tokens": 1024}})") + '\0'),
       file,
       {"not valid JSON at line 1, column 50: a NUL byte"}},
      {"bytes that are not UTF-8",
       text("{\"name\": \"t\", \"sequence\": {\"total_tokens\": 1024}, \"k\xff\xfe\": 1}"),
       file,
       {"not valid JSON", "\\xFF"}},
      {"long key",
       edited([](json& d) { d["model"][std::string(1 << 20, 'k')] = 1; }),
       cfg,
       {"model[\"kkkk", "...\"]: unknown key"}},
      {"zero-area mask",
       edited([](json& d) {
         d["mask"] = {{{"type", "causal"}}, {{"type", "slices"}, {"slices", {slice(0, 8, 0, 4, "bi_causal")}}}};
       }),
       cfg,
       {"mask[1].slices: zero area", "got 1 slices over 1024 tokens"}},
      {"long string value",
       edited([](json& d) { d["model"]["dtype"] = std::string(5000, 'x'); }),
       cfg,
       {"model.dtype: unknown dtype", "xxx...\""}},
  };
}

TEST(WorkloadErrors, EachIsOneLineNamingFilePathAndValue) {
  const auto cases = bad_cases();
  ASSERT_GE(cases.size(), 15u);
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = c.file();
    try {
      load_workload(path);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.code(), c.code) << msg;
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "does not start with the file: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_LT(msg.size(), 1000u) << msg;
      EXPECT_NO_THROW(json(msg).dump()) << "not UTF-8: " << msg;
      for (const std::string& needle : c.needles) {
        EXPECT_NE(msg.find(needle), std::string::npos)
            << "missing \"" << needle << "\" in: " << msg;
      }
    }
  }
}

// The position in a JSON error is the one nlohmann's own parse_error reports.
TEST(WorkloadErrors, JsonErrorPositionsMatchTheParser) {
  for (const std::string body : {"{\"a\": 1,}", "\n\n  [1, 2\n", "{\"a\":\n\"\x01\"}",
                                 "{\"a\": tru}", "\n", "[1]\n[2]", "{\"a\"\n:\n\n}"}) {
    SCOPED_TRACE(body);
    std::string where;
    try {
      const json parsed = json::parse(body);
      FAIL() << "parsed: " << parsed.dump();
    } catch (const json::parse_error& e) {
      const std::string what = e.what();
      const size_t at = what.find("at line ");
      ASSERT_NE(at, std::string::npos) << what;
      where = what.substr(at, what.find(':', at) - at);
    }
    const std::string path = testing::write_scratch("pos.json", body);
    try {
      load_workload(path);
      FAIL() << "accepted";
    } catch (const FileError& e) {
      EXPECT_NE(std::string(e.what()).find("not valid JSON " + where + ":"), std::string::npos)
          << e.what() << " vs " << where;
    }
  }
}

// JSON keeps the last of two equal keys; a workload that has them is refused, naming the key and
// where it is, whatever the depth (exit 3: the file is JSON, the workload is not valid).
TEST(WorkloadErrors, DuplicateKeysAreRefused) {
  const std::string base = R"({"name": "d", "model": {"heads_q": 2, "heads_kv": 1, "head_dim": 16},
    "sequence": {"total_tokens": 128}, "mask": [{"type": "causal"}, {"type": "full"}]})";
  load_workload(testing::write_scratch("ok.json", base));
  const std::pair<std::string, std::string> cases[] = {
      {R"({"name": "x", "name": "y"})", "key \"name\" appears twice in the top-level object"},
      {R"({"name": "d", "model": {"heads_q": 2, "heads_q": 4}})", "key \"heads_q\" appears twice in model"},
      {R"({"name": "d", "mask": [{"type": "full"}, {"type": "full", "type": "causal"}]})",
       "key \"type\" appears twice in mask[]"},
  };
  for (const auto& [body, needle] : cases) {
    SCOPED_TRACE(body);
    try {
      load_workload(testing::write_scratch("dup.json", body));
      ADD_FAILURE() << "accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST(WorkloadErrors, ErrorKindsCarryDistinctExitCodes) {
  EXPECT_EQ(static_cast<int>(ConfigError("x").code()), 3);
  EXPECT_EQ(static_cast<int>(FileError("x").code()), 4);
}

TEST(WorkloadErrors, ParseWorkloadNamesItsOrigin) {
  json doc = valid();
  doc["parallel"] = {{"cp", 0}};
  try {
    parse_workload(doc, "<memory>");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "<memory>: parallel.cp: out of range; got 0, expected an integer in [1, 1048576]");
  }
  // Values no JSON text can hold, built in memory, are rejected too.
  doc = valid();
  doc["parallel"] = {{"comm_gbps", std::nan("")}};
  EXPECT_THROW(parse_workload(doc, "<memory>"), ConfigError);
  doc = valid();
  doc["sequence"]["total_tokens"] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(parse_workload(doc, "<memory>"), ConfigError);
}

}  // namespace
}  // namespace magi
