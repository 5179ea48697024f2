// Document-length sampling: exact packing, bounds, determinism and the distributions' shapes.
#include "common/test_seed.h"
#include "core/base/error.h"
#include "core/workload/documents.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <random>

namespace magi {
namespace {

int64_t sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

DocumentSpec spec_of(DocDistribution d, uint64_t seed) {
  DocumentSpec s;
  s.distribution = d;
  s.seed = seed;
  return s;
}

// Random specs of every distribution, for the properties every sample must have.
std::vector<DocumentSpec> random_specs(std::mt19937_64& rng) {
  auto in = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % uint64_t(hi - lo + 1));
  };
  std::vector<DocumentSpec> specs;
  DocumentSpec s = spec_of(DocDistribution::fixed, rng());
  s.tokens = in(1, 5000);
  specs.push_back(s);
  s = spec_of(DocDistribution::uniform, rng());
  s.min_tokens = in(1, 300);
  s.max_tokens = s.min_tokens + in(0, 3000);
  specs.push_back(s);
  s = spec_of(DocDistribution::lognormal, rng());
  s.mean_tokens = static_cast<double>(in(1, 4000));
  s.sigma = static_cast<double>(in(0, 30)) / 10;
  s.min_tokens = in(1, 50);
  s.max_tokens = rng() % 2 ? 0 : s.min_tokens + in(0, 8000);
  specs.push_back(s);
  s = spec_of(DocDistribution::zipf, rng());
  s.alpha = static_cast<double>(in(1, 40)) / 10;
  s.min_tokens = in(1, 100);
  s.max_tokens = rng() % 2 ? 0 : s.min_tokens + in(0, 8000);
  specs.push_back(s);
  s = spec_of(DocDistribution::list, rng());
  s.lengths.resize(static_cast<size_t>(in(1, 6)));
  for (auto& len : s.lengths) len = in(1, 2000);
  specs.push_back(s);
  s = spec_of(DocDistribution::histogram, rng());
  s.bins = {{1, 10, 1.0}, {100, 200, 0.0}, {300, 900, 2.5}};
  specs.push_back(s);
  s = spec_of(DocDistribution::histogram, rng());
  s.preset = "pretrain_corpus";
  specs.push_back(s);
  for (auto& spec : specs) spec.max_doc_fraction = static_cast<double>(in(1, 100)) / 100;
  return specs;
}

TEST(Documents, EverySampleFillsThePackWithinBounds) {
  std::mt19937_64 rng(testing::test_seed("Documents.EverySampleFillsThePack", 101));
  for (int it = 0; it < 60; ++it) {
    const int64_t total = 1 + static_cast<int64_t>(rng() % 200000);
    for (const DocumentSpec& spec : random_specs(rng)) {
      SCOPED_TRACE(
          fmt::format("{} total {} seed {}", to_string(spec.distribution), total, spec.seed));
      const auto lengths = sample_documents(spec, total);
      ASSERT_EQ(sum(lengths), total);
      const int64_t cap = std::max<int64_t>(
          1, static_cast<int64_t>(std::floor(spec.max_doc_fraction * double(total))));
      for (int64_t len : lengths) {
        ASSERT_GE(len, 1);
        ASSERT_LE(len, cap);
      }
      // Drawn lengths stay in [min, max]; when max <= the cap nothing is cut but the last one.
      if (spec.distribution == DocDistribution::uniform ||
          spec.distribution == DocDistribution::zipf ||
          spec.distribution == DocDistribution::lognormal) {
        const int64_t hi = spec.max_tokens ? spec.max_tokens : total;
        for (size_t i = 0; i + 1 < lengths.size(); ++i) {
          ASSERT_LE(lengths[i], hi);
          if (hi <= cap) {
            ASSERT_GE(lengths[i], spec.min_tokens);
          }
        }
      }
      EXPECT_EQ(sample_documents(spec, total), lengths) << "not deterministic";
    }
  }
}

TEST(Documents, ExactPackingAndCutting) {
  DocumentSpec fixed = spec_of(DocDistribution::fixed, 0);
  fixed.tokens = 300;
  fixed.max_doc_fraction = 1;
  EXPECT_EQ(sample_documents(fixed, 1000), (std::vector<int64_t>{300, 300, 300, 100}));
  fixed.tokens = 1000;
  fixed.max_doc_fraction = 0.25;  // cut into pieces of at most 250
  EXPECT_EQ(sample_documents(fixed, 1000), (std::vector<int64_t>{250, 250, 250, 250}));
  fixed.max_doc_fraction = 0.3;  // 300, 300, 300, then the pack's end
  EXPECT_EQ(sample_documents(fixed, 1000), (std::vector<int64_t>{300, 300, 300, 100}));

  DocumentSpec list = spec_of(DocDistribution::list, 0);
  list.lengths = {3, 5};
  list.max_doc_fraction = 1;
  EXPECT_EQ(sample_documents(list, 20), (std::vector<int64_t>{3, 5, 3, 5, 3, 1}));
  list.max_doc_fraction = 0.2;  // cap 4: each 5 becomes 4 + 1
  EXPECT_EQ(sample_documents(list, 20), (std::vector<int64_t>{3, 4, 1, 3, 4, 1, 3, 1}));

  EXPECT_EQ(sample_documents(DocumentSpec{}, 777), (std::vector<int64_t>{777}));
  DocumentSpec tiny = spec_of(DocDistribution::fixed, 0);
  tiny.tokens = 5;
  EXPECT_EQ(sample_documents(tiny, 1), (std::vector<int64_t>{1}));  // cap max(1, floor(0.25))
}

TEST(Documents, SeedChangesTheSample) {
  for (DocDistribution d : {DocDistribution::uniform, DocDistribution::lognormal,
                            DocDistribution::zipf, DocDistribution::histogram}) {
    DocumentSpec a = spec_of(d, 1);
    a.max_tokens = d == DocDistribution::histogram ? 0 : 4000;
    a.mean_tokens = 500;
    a.preset = "pretrain_corpus";
    DocumentSpec b = a;
    b.seed = 2;
    EXPECT_EQ(sample_documents(a, 100000), sample_documents(a, 100000)) << to_string(d);
    EXPECT_NE(sample_documents(a, 100000), sample_documents(b, 100000)) << to_string(d);
  }
}

TEST(Documents, TooManyDocumentsIsAConfigError) {
  DocumentSpec s = spec_of(DocDistribution::fixed, 0);
  s.tokens = 1;
  EXPECT_EQ(sample_documents(s, kMaxDocuments).size(), static_cast<size_t>(kMaxDocuments));
  try {
    sample_documents(s, kMaxDocuments + 1);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("sequence.documents: too many documents"),
              std::string::npos)
        << e.what();
  }
}

// Drawn lengths (no cutting: a huge pack and max_doc_fraction 1; the last, cut one dropped).
std::vector<int64_t> draws(DocumentSpec s, int64_t total) {
  s.max_doc_fraction = 1;
  auto v = sample_documents(s, total);
  v.pop_back();
  return v;
}

// |observed - expected| within 6 standard errors of a frequency over n draws (plus a hair).
void expect_frequency(double observed, double expected, size_t n, const std::string& what) {
  const double se = std::sqrt(expected * (1 - expected) / static_cast<double>(n));
  EXPECT_NEAR(observed, expected, 6 * se + 1e-4) << what;
}

TEST(Documents, PretrainPresetMatchesItsHistogram) {
  const auto bins = histogram_preset("pretrain_corpus");
  ASSERT_TRUE(bins.has_value());
  ASSERT_EQ(bins->size(), 14u);
  EXPECT_EQ(bins->front().lo, 1);
  EXPECT_EQ(bins->back().hi, 196608);
  EXPECT_DOUBLE_EQ((*bins)[4].weight, 28.19);
  EXPECT_FALSE(histogram_preset("nope").has_value());

  DocumentSpec s =
      spec_of(DocDistribution::histogram, testing::test_seed("Documents.PretrainPreset", 5));
  s.preset = "pretrain_corpus";
  const auto lengths = draws(s, int64_t{1} << 28);
  ASSERT_GT(lengths.size(), 100000u);
  double weight_sum = 0;
  for (const auto& b : *bins) weight_sum += b.weight;
  std::vector<size_t> counts(bins->size());
  for (int64_t len : lengths) {
    size_t i = 0;
    while (i < bins->size() && !(len >= (*bins)[i].lo && len <= (*bins)[i].hi)) ++i;
    ASSERT_LT(i, bins->size()) << "length " << len << " outside every bin";
    ++counts[i];
  }
  for (size_t i = 0; i < bins->size(); ++i) {
    expect_frequency(double(counts[i]) / double(lengths.size()), (*bins)[i].weight / weight_sum,
                     lengths.size(), fmt::format("bin [{}, {}]", (*bins)[i].lo, (*bins)[i].hi));
  }
}

TEST(Documents, HistogramSkipsZeroWeightBinsAndIsUniformInside) {
  DocumentSpec s =
      spec_of(DocDistribution::histogram, testing::test_seed("Documents.Histogram", 6));
  s.bins = {{1, 4, 1.0}, {10, 20, 0.0}, {30, 31, 3.0}};
  const auto lengths = draws(s, 2000000);
  std::map<int64_t, size_t> counts;
  for (int64_t len : lengths) ++counts[len];
  const size_t n = lengths.size();
  for (int64_t len = 1; len <= 4; ++len) {
    expect_frequency(double(counts[len]) / double(n), 0.25 / 4, n, fmt::format("{}", len));
  }
  expect_frequency(double(counts[30]) / double(n), 0.375, n, "30");
  expect_frequency(double(counts[31]) / double(n), 0.375, n, "31");
  EXPECT_EQ(counts.size(), 6u) << "a length outside the positive-weight bins";
}

TEST(Documents, ZipfFollowsThePowerLaw) {
  DocumentSpec s = spec_of(DocDistribution::zipf, testing::test_seed("Documents.Zipf", 8));
  s.alpha = 1.5;
  s.min_tokens = 2;
  s.max_tokens = 6;
  const auto lengths = draws(s, 2000000);
  double norm = 0;
  for (int k = 2; k <= 6; ++k) norm += std::pow(k, -1.5);
  std::map<int64_t, size_t> counts;
  for (int64_t len : lengths) ++counts[len];
  ASSERT_EQ(counts.size(), 5u);
  for (int k = 2; k <= 6; ++k) {
    expect_frequency(double(counts[k]) / double(lengths.size()), std::pow(k, -1.5) / norm,
                     lengths.size(), fmt::format("P({})", k));
  }
  s.alpha = 1.0;  // the log branch
  s.min_tokens = 1;
  s.max_tokens = 3;
  const auto ones = draws(s, 1000000);
  counts.clear();
  for (int64_t len : ones) ++counts[len];
  const double h3 = 1 + 0.5 + 1.0 / 3;
  for (int k = 1; k <= 3; ++k) {
    expect_frequency(double(counts[k]) / double(ones.size()), 1.0 / k / h3, ones.size(),
                     fmt::format("P({})", k));
  }
}

TEST(Documents, LognormalAndUniformMeans) {
  DocumentSpec s = spec_of(DocDistribution::lognormal, testing::test_seed("Documents.Means", 9));
  s.mean_tokens = 500;
  s.sigma = 0.5;
  auto stats = document_stats(draws(s, 50000000));
  EXPECT_NEAR(stats.mean, 500, 10);
  EXPECT_NEAR(static_cast<double>(stats.p50), 500 * std::exp(-0.125), 10);  // median exp(mu)

  DocumentSpec u = spec_of(DocDistribution::uniform, s.seed);
  u.min_tokens = 100;
  u.max_tokens = 300;
  stats = document_stats(draws(u, 20000000));
  EXPECT_NEAR(stats.mean, 200, 1.5);
  EXPECT_EQ(stats.min, 100);
  EXPECT_EQ(stats.max, 300);
}

TEST(Documents, StatsAreNearestRank) {
  const DocumentStats a = document_stats({5, 1, 3, 2, 4});
  EXPECT_EQ(a.count, 5);
  EXPECT_EQ(a.min, 1);
  EXPECT_EQ(a.p50, 3);
  EXPECT_EQ(a.p90, 5);
  EXPECT_EQ(a.p99, 5);
  EXPECT_EQ(a.max, 5);
  EXPECT_DOUBLE_EQ(a.mean, 3.0);

  std::vector<int64_t> hundred(100);
  std::iota(hundred.rbegin(), hundred.rend(), 1);  // 100 .. 1
  const DocumentStats b = document_stats(hundred);
  EXPECT_EQ(b.p50, 50);
  EXPECT_EQ(b.p90, 90);
  EXPECT_EQ(b.p99, 99);
  EXPECT_DOUBLE_EQ(b.mean, 50.5);

  const DocumentStats empty = document_stats({});
  EXPECT_EQ(empty.count, 0);
  EXPECT_EQ(empty.max, 0);
}

TEST(Documents, StatsJsonAsReportsWriteIt) {
  EXPECT_EQ(to_json(document_stats({5, 1, 3, 2, 4})),
            (nlohmann::json{{"count", 5}, {"min", 1}, {"p50", 3}, {"p90", 5}, {"p99", 5},
                            {"max", 5}, {"mean", 3.0}}));
}

}  // namespace
}  // namespace magi
