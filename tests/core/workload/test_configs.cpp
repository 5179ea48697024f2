// Every shipped workload (configs/*.json) loads; the quickstart is the small sweep the README runs.
#include "core/mask/catalogue.h"
#include "core/workload/documents.h"
#include "core/workload/workload.h"
#include "workload_test_util.h"

#include <gtest/gtest.h>

#include <set>

namespace magi {
namespace {

TEST(Configs, EveryShippedWorkloadLoads) {
  const auto files = testing::shipped_configs();
  ASSERT_GE(files.size(), 4u);
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    const Workload w = load_workload(path.string());
    EXPECT_EQ(w.name + ".json", path.filename().string()) << "a workload is named after its file";
    EXPECT_FALSE(w.cases.empty());
    std::set<std::string> names;
    for (const Case& c : w.cases) names.insert(c.name);
    EXPECT_EQ(names.size(), w.cases.size()) << "case names are unique";
  }
}

TEST(Configs, QuickstartIsSmall) {
  const Workload w = load_workload(MAGI_CONFIGS_DIR "/quickstart.json");
  ASSERT_EQ(w.cases.size(), 8u);  // cp {1, 2} x 4 strategies
  for (const Case& c : w.cases) {
    EXPECT_EQ(c.total_tokens, 2048);
    EXPECT_EQ(c.mask.type, "varlen_causal");
    EXPECT_TRUE(c.run.check);
    EXPECT_LE(c.run.iters, 3);
  }
  const auto docs = sample_documents(w.cases[0].documents, w.cases[0].total_tokens);
  EXPECT_GT(docs.size(), 3u) << "quickstart should pack several documents";
}

TEST(Configs, PretrainUsesThePreset) {
  const Workload w = load_workload(MAGI_CONFIGS_DIR "/varlen_causal_pretrain.json");
  ASSERT_EQ(w.cases.size(), 12u);
  const Case& c = w.cases[0];
  EXPECT_EQ(c.documents.preset, "pretrain_corpus");
  EXPECT_EQ(c.total_tokens, 1048576);
  const DocumentStats s = document_stats(sample_documents(c.documents, c.total_tokens));
  EXPECT_GT(s.count, 100);
  EXPECT_LE(s.max, 196608);
}

TEST(Configs, MasksSmallCoversTheCatalogue) {
  const Workload w = load_workload(MAGI_CONFIGS_DIR "/masks_small.json");
  std::set<std::string> types;
  for (const Case& c : w.cases) types.insert(c.mask.type);
  std::set<std::string> expected(mask_types().begin(), mask_types().end());
  expected.erase("slices");  // slices_example.json
  EXPECT_EQ(types, expected);
}

}  // namespace
}  // namespace magi
