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
  EXPECT_EQ(c.resolved["parallel"]["overlap_degree"], "auto");
  EXPECT_EQ(c.resolved["sequence"]["documents"]["distribution"], "single");
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
          EXPECT_EQ(c.resolved["model"]["heads_q"], hq);
          EXPECT_EQ(c.resolved["sequence"]["total_tokens"], s);
          EXPECT_EQ(c.resolved["parallel"]["cp"], cp);
          EXPECT_EQ(c.resolved["parallel"]["strategy"], to_string(st));
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
  EXPECT_EQ(last.resolved["mask"]["slices"][0]["type"], "bi_causal");
  EXPECT_FALSE(w.cases[0].resolved["mask"].contains("window"));
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
      EXPECT_EQ(again.cases[i].resolved, w.cases[i].resolved);
      EXPECT_EQ(again.cases[i].name, w.cases[i].name);
      const Workload one = parse_workload(w.cases[i].resolved, "<case>");
      ASSERT_EQ(one.cases.size(), 1u);
      EXPECT_EQ(one.cases[0].resolved, w.cases[i].resolved);
      EXPECT_EQ(one.cases[0].mask.slices, w.cases[i].mask.slices);
    }
  }
}

}  // namespace
}  // namespace magi
