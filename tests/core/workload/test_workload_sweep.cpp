// Sweeps: lists expand to the cartesian product in schema order (last axis fastest); defaults;
// typed values; the resolved config re-parses to the same cases.
#include "core/base/error.h"
#include "core/workload/workload.h"
#include "workload_test_util.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

using json = nlohmann::json;

TEST(WorkloadSweep, DefaultsAreTheContractsDefaults) {
  const Workload w =
      parse_workload({{"name", "d"}, {"sequence", {{"total_tokens", 4096}}}}, "<memory>");
  ASSERT_EQ(w.cases.size(), 1u);
  const Case& c = w.cases[0];
  EXPECT_EQ(c.name, "d/0");
  EXPECT_EQ(c.total_tokens, 4096);
  const ModelShape m{};
  EXPECT_EQ(c.model.heads_q, m.heads_q);
  EXPECT_EQ(c.model.heads_kv, m.heads_kv);
  EXPECT_EQ(c.model.head_dim, m.head_dim);
  EXPECT_EQ(c.model.dtype, m.dtype);
  EXPECT_EQ(c.documents.distribution, DocDistribution::single);
  EXPECT_EQ(c.mask.type, "causal");
  const ParallelSpec p{};
  EXPECT_EQ(c.parallel.cp, p.cp);
  EXPECT_EQ(c.parallel.strategy, p.strategy);
  EXPECT_EQ(c.parallel.chunk_tokens, p.chunk_tokens);
  EXPECT_EQ(c.parallel.overlap_degree, 0);
  EXPECT_EQ(c.parallel.solver, p.solver);
  EXPECT_EQ(c.parallel.compute_tflops, p.compute_tflops);
  EXPECT_EQ(c.parallel.comm_gbps, p.comm_gbps);
  const RunSpec r{};
  EXPECT_TRUE(c.run.fwd && c.run.bwd);
  EXPECT_EQ(c.run.warmup, r.warmup);
  EXPECT_EQ(c.run.iters, r.iters);
  EXPECT_EQ(c.run.check, r.check);
  EXPECT_EQ(c.run.seed, r.seed);
  EXPECT_EQ(resolved_config(c)["parallel"]["overlap_degree"], "auto");
  EXPECT_EQ(resolved_config(c)["parallel"]["ranks_per_node"], "auto");
  EXPECT_EQ(resolved_config(c)["sequence"]["documents"]["distribution"], "single");
  EXPECT_EQ(w.resolved["run"]["passes"], json({"fwd", "bwd"}));
  EXPECT_EQ(w.path, "");
}

TEST(WorkloadSweep, CartesianProductInSchemaOrderLastAxisFastest) {
  // Keys deliberately out of schema order in the file: the order is the schema's.
  const json doc = {
      {"name", "s"},
      {"parallel", {{"strategy", {"magi", "ring"}}, {"cp", {1, 2, 4}}}},
      {"sequence", {{"total_tokens", {1024, 2048}}}},
      {"model", {{"heads_kv", 2}, {"heads_q", {8, 16}}}},
  };
  const Workload w = parse_workload(doc, "<memory>");
  ASSERT_EQ(w.cases.size(), 24u);
  size_t i = 0;
  for (int hq : {8, 16}) {
    for (int64_t s : {1024, 2048}) {
      for (int cp : {1, 2, 4}) {
        for (Strategy st : {Strategy::magi, Strategy::ring}) {
          const Case& c = w.cases[i];
          SCOPED_TRACE(c.name);
          EXPECT_EQ(c.name, fmt::format("s/{}", i));
          EXPECT_EQ(c.model.heads_q, hq);
          EXPECT_EQ(c.total_tokens, s);
          EXPECT_EQ(c.parallel.cp, cp);
          EXPECT_EQ(c.parallel.strategy, st);
          EXPECT_EQ(resolved_config(c)["model"]["heads_q"], hq);
          EXPECT_EQ(resolved_config(c)["sequence"]["total_tokens"], s);
          EXPECT_EQ(resolved_config(c)["parallel"]["cp"], cp);
          EXPECT_EQ(resolved_config(c)["parallel"]["strategy"], to_string(st));
          ++i;
        }
      }
    }
  }
  EXPECT_EQ(w.resolved["parallel"]["cp"], json({1, 2, 4}));
}

TEST(WorkloadSweep, MaskAlternativesExpandInOrder) {
  const json doc = {
      {"name", "m"},
      {"sequence",
       {{"total_tokens", 512}, {"documents", {{"distribution", "fixed"}, {"tokens", 100}}}}},
      {"mask",
       {{{"type", {"causal", "varlen_causal"}}},
        {{"type", "sliding_window"}, {"window", {16, 32}}},
        {{"type", "slices"},
         {"slices", {{{"q", {0, 512}}, {"k", {0, 512}}, {"type", "bi_causal"}}}}}}},
      {"parallel", {{"cp", {1, 2}}}},
  };
  const Workload w = parse_workload(doc, "<memory>");
  ASSERT_EQ(w.cases.size(), 10u);
  const std::vector<std::pair<std::string, int64_t>> masks = {{"causal", 0},
                                                              {"varlen_causal", 0},
                                                              {"sliding_window", 16},
                                                              {"sliding_window", 32},
                                                              {"slices", 0}};
  for (size_t i = 0; i < w.cases.size(); ++i) {
    const Case& c = w.cases[i];
    EXPECT_EQ(c.mask.type, masks[i / 2].first) << i;
    EXPECT_EQ(c.mask.window, masks[i / 2].second) << i;
    EXPECT_EQ(c.parallel.cp, 1 + static_cast<int>(i % 2)) << i;
  }
  const Case& last = w.cases.back();
  ASSERT_EQ(last.mask.slices.size(), 1u);
  EXPECT_EQ(last.mask.slices[0], (AttnSlice{{0, 512}, {0, 512}, SliceType::bi_causal}));
  EXPECT_EQ(resolved_config(last)["mask"]["slices"][0]["type"], "bi_causal");
  EXPECT_FALSE(resolved_config(w.cases[0])["mask"].contains("window"));
  EXPECT_TRUE(w.resolved["mask"].is_array());
}

TEST(WorkloadSweep, TypedValues) {
  const json doc = {
      {"name", "v"},
      {"model", {{"heads_q", 32}, {"heads_kv", 4}, {"head_dim", 96}, {"dtype", "fp16"}}},
      {"sequence",
       {{"total_tokens", 65536.0},
        {"documents",
         {{"distribution", "lognormal"},
          {"mean_tokens", 900},
          {"sigma", 0.7},
          {"min_tokens", 32},
          {"max_tokens", 8192},
          {"max_doc_fraction", 0.5},
          {"seed", 99}}}}},
      {"mask", {{"type", "varlen_block_causal"}, {"block_tokens", 128}}},
      {"parallel",
       {{"cp", 8},
        {"strategy", "ulysses"},
        {"chunk_tokens", 256},
        {"overlap_degree", {"auto", 3}},
        {"solver", "greedy"},
        {"ranks_per_node", 4},
        {"compute_tflops", 500},
        {"comm_gbps", 25.5}}},
      {"run",
       {{"passes", {"bwd"}},
        {"warmup", 0},
        {"iters", 7},
        {"check", true},
        {"seed", 18446744073709551615ull}}},
  };
  const Workload w = parse_workload(doc, "<memory>");
  ASSERT_EQ(w.cases.size(), 2u);
  const Case& c = w.cases[1];
  EXPECT_EQ(c.model.heads_q, 32);
  EXPECT_EQ(c.model.heads_kv, 4);
  EXPECT_EQ(c.model.head_dim, 96);
  EXPECT_EQ(c.model.dtype, DType::fp16);
  EXPECT_EQ(dtype_bytes(c.model.dtype), 2);
  EXPECT_EQ(c.total_tokens, 65536);
  EXPECT_EQ(c.documents.distribution, DocDistribution::lognormal);
  EXPECT_EQ(c.documents.mean_tokens, 900);
  EXPECT_EQ(c.documents.sigma, 0.7);
  EXPECT_EQ(c.documents.min_tokens, 32);
  EXPECT_EQ(c.documents.max_tokens, 8192);
  EXPECT_EQ(c.documents.max_doc_fraction, 0.5);
  EXPECT_EQ(c.documents.seed, 99u);
  EXPECT_EQ(c.mask.block_tokens, 128);
  EXPECT_EQ(c.parallel.strategy, Strategy::ulysses);
  EXPECT_EQ(w.cases[0].parallel.overlap_degree, 0);
  EXPECT_EQ(c.parallel.overlap_degree, 3);
  EXPECT_EQ(c.parallel.solver, DispatchSolver::greedy);
  EXPECT_EQ(c.parallel.ranks_per_node, 4);
  EXPECT_EQ(resolved_config(c)["parallel"]["ranks_per_node"], 4);
  EXPECT_EQ(c.parallel.comm_gbps, 25.5);
  EXPECT_FALSE(c.run.fwd);
  EXPECT_TRUE(c.run.bwd);
  EXPECT_EQ(c.run.warmup, 0);
  EXPECT_EQ(c.run.iters, 7);
  EXPECT_TRUE(c.run.check);
  EXPECT_EQ(c.run.seed, 18446744073709551615ull);
}

TEST(WorkloadSweep, DocumentSpecsOfEveryDistribution) {
  auto docs_of = [](json documents) {
    const json doc = {{"name", "d"},
                      {"sequence", {{"total_tokens", 4096}, {"documents", documents}}},
                      {"mask", {{"type", "varlen_causal"}}}};
    return parse_workload(doc, "<memory>").cases.at(0).documents;
  };
  EXPECT_EQ(docs_of({{"distribution", "fixed"}, {"tokens", 300}}).tokens, 300);
  const DocumentSpec u =
      docs_of({{"distribution", "uniform"}, {"min_tokens", 5}, {"max_tokens", 9}});
  EXPECT_EQ(u.min_tokens, 5);
  EXPECT_EQ(u.max_tokens, 9);
  EXPECT_EQ(docs_of({{"distribution", "zipf"}, {"alpha", 2.5}}).alpha, 2.5);
  EXPECT_EQ(docs_of({{"distribution", "list"}, {"lengths", {7, 8}}}).lengths,
            (std::vector<int64_t>{7, 8}));
  const DocumentSpec h =
      docs_of({{"distribution", "histogram"}, {"bins", {{{"lo", 2}, {"hi", 4}, {"weight", 0.5}}}}});
  ASSERT_EQ(h.bins.size(), 1u);
  EXPECT_EQ(h.bins[0].hi, 4);
  EXPECT_EQ(h.bins[0].weight, 0.5);
  const DocumentSpec p = docs_of({{"distribution", "histogram"}, {"preset", "pretrain_corpus"}});
  EXPECT_EQ(p.preset, "pretrain_corpus");
  EXPECT_EQ(docs_of({{"distribution", "single"}}).distribution, DocDistribution::single);
}

// Documents are checked whatever the mask (runs sample them for every case), so a pack that
// cannot be sampled fails at load time even when the mask ignores documents.
TEST(WorkloadSweep, DocumentsAreCheckedForEveryMask) {
  json doc = {{"name", "d"},
              {"sequence",
               {{"total_tokens", 1 << 20}, {"documents", {{"distribution", "fixed"}, {"tokens", 1}}}}},
              {"mask", {{"type", "causal"}}}};
  EXPECT_EQ(parse_workload(doc, "<memory>").cases.size(), 1u);
  doc["sequence"]["total_tokens"] = {1 << 20, (1 << 20) + 1};
  EXPECT_THROW(parse_workload(doc, "<memory>"), ConfigError);
}

// The resolved config is itself a valid workload with the same cases, and so is each case's.
TEST(WorkloadSweep, ResolvedConfigsReparseToTheSameCases) {
  for (const auto& path : testing::shipped_configs()) {
    SCOPED_TRACE(path.string());
    const Workload w = load_workload(path.string());
    EXPECT_EQ(w.path, path.string());
    const Workload again = parse_workload(w.resolved, "<resolved>");
    ASSERT_EQ(again.cases.size(), w.cases.size());
    EXPECT_EQ(again.resolved, w.resolved);
    for (size_t i = 0; i < w.cases.size(); ++i) {
      EXPECT_EQ(resolved_config(again.cases[i]), resolved_config(w.cases[i]));
      EXPECT_EQ(again.cases[i].name, w.cases[i].name);
      const Workload one = parse_workload(resolved_config(w.cases[i]), "<case>");
      ASSERT_EQ(one.cases.size(), 1u);
      EXPECT_EQ(resolved_config(one.cases[0]), resolved_config(w.cases[i]));
      EXPECT_EQ(one.cases[0].mask.slices, w.cases[i].mask.slices);
    }
  }
}

}  // namespace
}  // namespace magi

namespace magi {
namespace {

// What cases have in common is held once: a 1 MB description swept over many cases is one string,
// and no case's resolved config (a report row's) repeats it.
TEST(WorkloadSweep, CasesShareTheCommonConfig) {
  json doc = {{"name", "shared"},
              {"description", std::string(1 << 20, 'd')},
              {"sequence", {{"total_tokens", {256, 512}}}},
              {"mask", {{{"type", "causal"}}, {{"type", "full"}}}},
              {"parallel", {{"cp", {1, 2, 4}}}}};
  const Workload w = parse_workload(doc, "<memory>");
  ASSERT_EQ(w.cases.size(), 12u);
  for (const Case& c : w.cases) {
    EXPECT_EQ(c.workload_config.get(), w.cases[0].workload_config.get()) << c.name;
    EXPECT_FALSE(resolved_config(c).contains("description")) << c.name;
  }
  // One mask point, one resolved mask: cases 0-2 (causal) share it, 3-5 (full) share another.
  EXPECT_EQ(w.cases[1].mask_config.get(), w.cases[0].mask_config.get());
  EXPECT_EQ(w.cases[3].mask_config.get(), w.cases[5].mask_config.get());
  EXPECT_NE(w.cases[0].mask_config.get(), w.cases[3].mask_config.get());
  EXPECT_EQ(w.cases[6].mask_config.get(), w.cases[0].mask_config.get());
}

// The key matches the rows of one sweep point across cp and strategy, and nothing else.
TEST(WorkloadSweep, CaseKeyIsThePointUpToCpAndStrategy) {
  const json doc = {{"name", "k"},
                    {"sequence", {{"total_tokens", {256, 512}}}},
                    {"parallel", {{"cp", {1, 2}}, {"strategy", {"magi", "ring"}}}}};
  const Workload w = parse_workload(doc, "<memory>");
  ASSERT_EQ(w.cases.size(), 8u);
  for (size_t i = 0; i < w.cases.size(); ++i) {
    for (size_t j = 0; j < w.cases.size(); ++j) {
      const bool same_point = w.cases[i].total_tokens == w.cases[j].total_tokens;
      EXPECT_EQ(case_key(w.cases[i]) == case_key(w.cases[j]), same_point) << i << " " << j;
    }
  }
  const json key = json::parse(case_key(w.cases[0]));
  EXPECT_FALSE(key.contains("name"));
  EXPECT_FALSE(key["parallel"].contains("cp"));
  EXPECT_FALSE(key["parallel"].contains("strategy"));
  EXPECT_EQ(key["parallel"]["chunk_tokens"], 512);
}

// The resolved config follows the case's values, so an override shows in reports.
TEST(WorkloadSweep, ResolvedConfigFollowsTheCase) {
  Case c = parse_workload({{"name", "o"}, {"sequence", {{"total_tokens", 256}}}}, "<memory>").cases[0];
  c.run.iters = 7;
  c.parallel.cp = 4;
  c.parallel.overlap_degree = 3;
  c.model.dtype = DType::fp32;
  const json r = resolved_config(c);
  EXPECT_EQ(r["run"]["iters"], 7);
  EXPECT_EQ(r["parallel"]["cp"], 4);
  EXPECT_EQ(r["parallel"]["overlap_degree"], 3);
  EXPECT_EQ(r["model"]["dtype"], "fp32");
  EXPECT_EQ(r["name"], "o");
}

// chunk_tokens "auto" is 0 in the case (the planner resolves it) and "auto" in the resolved config;
// in a list it is one sweep point among sizes.
TEST(WorkloadSweep, ChunkTokensAuto) {
  const Workload w = parse_workload(
      {{"name", "a"}, {"sequence", {{"total_tokens", 256}}}, {"parallel", {{"chunk_tokens", {"auto", 64}}}}},
      "<memory>");
  ASSERT_EQ(w.cases.size(), 2u);
  EXPECT_EQ(w.cases[0].parallel.chunk_tokens, 0);
  EXPECT_EQ(resolved_config(w.cases[0])["parallel"]["chunk_tokens"], "auto");
  EXPECT_EQ(w.cases[1].parallel.chunk_tokens, 64);
  EXPECT_EQ(resolved_config(w.cases[1])["parallel"]["chunk_tokens"], 64);
}

TEST(WorkloadSweep, PassesResolveInTheOrderTheyRun) {
  const Workload w = parse_workload(
      {{"name", "p"}, {"sequence", {{"total_tokens", 256}}}, {"run", {{"passes", {"bwd", "fwd"}}}}},
      "<memory>");
  EXPECT_EQ(w.resolved["run"]["passes"], json({"fwd", "bwd"}));
  EXPECT_EQ(resolved_config(w.cases[0])["run"]["passes"], json({"fwd", "bwd"}));
}

}  // namespace
}  // namespace magi
