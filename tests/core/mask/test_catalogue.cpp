// The mask catalogue against dense definitions written here independently of the generators:
// on random small sequences every visible (q, k) pair is covered exactly once and nothing else,
// the closed-form area equals the dense count; plus parameter errors and slice counts at 1M tokens.
#include "common/test_seed.h"
#include "core/base/error.h"
#include "core/mask/catalogue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>
#include <set>

namespace magi {
namespace {

constexpr int64_t kHuge = std::numeric_limits<int64_t>::max();

using Rng = std::mt19937_64;

int64_t uniform(Rng& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// Which document holds each token, and where each document starts.
struct Layout {
  int64_t tokens = 0;
  std::vector<int64_t> docs;
  std::vector<int64_t> doc_of;
  std::vector<int64_t> doc_start;

  explicit Layout(std::vector<int64_t> lengths) : docs(std::move(lengths)) {
    for (size_t d = 0; d < docs.size(); ++d) {
      doc_start.push_back(tokens);
      for (int64_t i = 0; i < docs[d]; ++i) doc_of.push_back(static_cast<int64_t>(d));
      tokens += docs[d];
    }
  }
};

// A MaskSpec from its type and the parameters it reads.
struct Params {
  int64_t window = 0;
  int64_t block_tokens = 0;
  int64_t prefix_tokens = 0;
  int64_t sink_tokens = 0;
  int64_t question_tokens = 0;
};

MaskSpec spec(std::string type, Params p = {}, std::vector<AttnSlice> slices = {}) {
  MaskSpec m;
  m.type = std::move(type);
  m.window = p.window;
  m.block_tokens = p.block_tokens;
  m.prefix_tokens = p.prefix_tokens;
  m.sink_tokens = p.sink_tokens;
  m.question_tokens = p.question_tokens;
  m.slices = std::move(slices);
  return m;
}

// DESIGN.md §1 and the catalogue's parameter table, pair by pair.
bool dense_visible(const MaskSpec& m, const Layout& l, int64_t q, int64_t k) {
  const bool same_doc = l.doc_of[q] == l.doc_of[k];
  const std::string& t = m.type;
  if (t == "full") return true;
  if (t == "causal") return k <= q;
  if (t == "varlen_full") return same_doc;
  if (t == "varlen_causal") return same_doc && k <= q;
  if (t == "sliding_window") return q - m.window <= k && k <= q;
  if (t == "varlen_sliding_window") return same_doc && q - m.window <= k && k <= q;
  if (t == "block_causal") return k / m.block_tokens <= q / m.block_tokens;
  if (t == "varlen_block_causal") {
    const int64_t ds = l.doc_start[l.doc_of[q]];
    return same_doc && (k - ds) / m.block_tokens <= (q - ds) / m.block_tokens;
  }
  if (t == "shared_question") {
    const int64_t qn = m.question_tokens;
    if (q < qn) return k <= q;
    return k < qn || (k <= q && same_doc);  // k >= qn here, so k and q lie in the same answer
  }
  if (t == "prefix_lm") return k < m.prefix_tokens || k <= q;
  if (t == "sink_sliding_window") return k <= q && (k < m.sink_tokens || k >= q - m.window);
  ADD_FAILURE() << "no dense definition for " << t;
  return false;
}

// Random document lengths summing to `tokens`: one document, mostly 1-token ones, short or long.
std::vector<int64_t> random_docs(Rng& rng, int64_t tokens) {
  const int64_t mode = uniform(rng, 0, 3);
  std::vector<int64_t> docs;
  for (int64_t left = tokens; left > 0;) {
    int64_t len = left;
    if (mode == 1) len = uniform(rng, 0, 9) < 7 ? 1 : uniform(rng, 1, 5);
    if (mode == 2) len = uniform(rng, 1, 10);
    if (mode == 3) len = uniform(rng, 1, tokens);
    len = std::min(len, left);
    docs.push_back(len);
    left -= len;
  }
  return docs;
}

// A size parameter >= lo, often at an edge: lo, just below / at / past S, or huge.
int64_t random_size(Rng& rng, int64_t tokens, int64_t lo) {
  const int64_t choices[] = {lo, lo + 1, tokens - 1, tokens, tokens + 1, kHuge,
                             uniform(rng, lo, std::max(lo, tokens)),
                             uniform(rng, lo, std::max(lo, tokens / 3))};
  return std::max(lo, choices[uniform(rng, 0, std::size(choices) - 1)]);
}

MaskSpec random_spec(Rng& rng, const std::string& type, int64_t tokens) {
  MaskSpec m;
  m.type = type;
  if (type.ends_with("sliding_window")) m.window = random_size(rng, tokens, 1);
  if (type.ends_with("block_causal")) m.block_tokens = random_size(rng, tokens, 1);
  if (type == "shared_question") m.question_tokens = std::min(random_size(rng, tokens, 1), tokens);
  if (type == "sink_sliding_window") m.sink_tokens = std::min(random_size(rng, tokens, 0), tokens + 3);
  if (type == "prefix_lm") {
    const int64_t choices[] = {0, tokens, uniform(rng, 0, tokens)};
    m.prefix_tokens = choices[uniform(rng, 0, 2)];
  }
  return m;
}

std::string describe(const MaskSpec& m, const Layout& l) {
  return fmt::format("type={} S={} docs=[{}] window={} block={} question={} prefix={} sink={}",
                     m.type, l.tokens, fmt::join(l.docs, ","), m.window, m.block_tokens,
                     m.question_tokens, m.prefix_tokens, m.sink_tokens);
}

// The most slices a type may use: a few per document or per block, never per token.
size_t max_slices(const MaskSpec& m, const Layout& l) {
  const std::string& t = m.type;
  auto blocks = [&](int64_t len) { return static_cast<size_t>((len + m.block_tokens - 1) / m.block_tokens); };
  if (t == "block_causal") return m.block_tokens >= l.tokens ? 1 : blocks(l.tokens);
  if (t == "varlen_block_causal") {
    size_t n = 0;
    for (int64_t len : l.docs) n += m.block_tokens >= len ? 1 : blocks(len);
    return n;
  }
  if (t == "varlen_full" || t == "varlen_causal") return l.docs.size();
  if (t == "varlen_sliding_window") return 2 * l.docs.size();
  if (t == "shared_question") return l.docs.size() + 2;
  if (t == "full" || t == "causal") return 1;
  if (t == "sliding_window" || t == "prefix_lm") return 2;
  if (t == "sink_sliding_window") return 3;
  ADD_FAILURE() << "no slice bound for " << t;
  return 0;
}

// Paints the slices into a dense count matrix and compares it with the dense definition.
void expect_matches_dense(const MaskSpec& m, const Layout& l, const std::vector<AttnSlice>& slices) {
  SCOPED_TRACE(describe(m, l));
  const int64_t n = l.tokens;
  std::vector<int> count(static_cast<size_t>(n * n), 0);
  for (const AttnSlice& s : slices) {
    ASSERT_TRUE(s.q.start >= 0 && s.q.end <= n && s.k.start >= 0 && s.k.end <= n) << fmt::format("{}", s);
    for (int64_t q = s.q.start; q < s.q.end; ++q) {
      const Range keys = visible_keys(s, q);
      for (int64_t k = keys.start; k < keys.end; ++k) ++count[static_cast<size_t>(q * n + k)];
    }
  }
  int64_t dense_area = 0;
  for (int64_t q = 0; q < n; ++q) {
    for (int64_t k = 0; k < n; ++k) {
      const int expected = dense_visible(m, l, q, k) ? 1 : 0;
      dense_area += expected;
      ASSERT_EQ(count[static_cast<size_t>(q * n + k)], expected) << "at (q, k) = (" << q << ", " << k << ")";
    }
  }
  EXPECT_EQ(mask_area(slices), dense_area);
  EXPECT_FALSE(find_double_cover(slices).has_value());
  EXPECT_LE(slices.size(), max_slices(m, l));
}

class CatalogueMask : public ::testing::TestWithParam<std::string> {};

TEST_P(CatalogueMask, EqualsDenseDefinitionOnRandomSmallCases) {
  const std::string& type = GetParam();
  Rng rng(testing::test_seed(("CatalogueMask." + type).c_str(), 20250 + type.size()));
  for (int it = 0; it < 400; ++it) {
    const int64_t tokens = it < 8 ? it + 1 : uniform(rng, 1, 100);
    const Layout l(mask_uses_documents(type) ? random_docs(rng, tokens) : std::vector<int64_t>{tokens});
    const MaskSpec m = random_spec(rng, type, tokens);
    expect_matches_dense(m, l, build_mask(m, tokens, l.docs));
    if (::testing::Test::HasFailure()) return;
  }
}

std::vector<std::string> generated_types() {
  std::vector<std::string> v = mask_types();
  std::erase(v, "slices");
  return v;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& p) { return p.param; }

INSTANTIATE_TEST_SUITE_P(AllTypes, CatalogueMask, ::testing::ValuesIn(generated_types()),
                         param_name);

TEST(Catalogue, ListsTheTwelveTypesInOrder) {
  EXPECT_EQ(mask_types(), (std::vector<std::string>{
                              "full", "causal", "varlen_full", "varlen_causal", "sliding_window",
                              "varlen_sliding_window", "block_causal", "varlen_block_causal",
                              "shared_question", "prefix_lm", "sink_sliding_window", "slices"}));
}

TEST(Catalogue, UsesDocuments) {
  const std::set<std::string> with_docs{"varlen_full", "varlen_causal", "varlen_sliding_window",
                                        "varlen_block_causal", "shared_question"};
  for (const std::string& t : mask_types()) EXPECT_EQ(mask_uses_documents(t), with_docs.count(t) == 1) << t;
  EXPECT_THROW(mask_uses_documents("causual"), ConfigError);
}

TEST(Catalogue, SlidingWindowIsTheTwoSlicesOfDesign) {
  const MaskSpec m = spec("sliding_window", {.window = 3});
  EXPECT_EQ(build_mask(m, 10, {10}),
            (std::vector<AttnSlice>{{{0, 3}, {0, 3}, SliceType::causal},
                                    {{3, 10}, {0, 10}, SliceType::bi_causal}}));
}

// Explicit slices: returned unchanged when no pair is covered twice, else an error naming two
// slices that really do share a pair (checked here on the dense count matrix).
TEST(Catalogue, ExplicitSlicesAreReturnedOrRejected) {
  Rng rng(testing::test_seed("Catalogue.ExplicitSlices", 77));
  int rejected = 0;
  for (int it = 0; it < 2000; ++it) {
    const int64_t n = uniform(rng, 1, 20);
    MaskSpec m = spec("slices");
    const int64_t count = uniform(rng, 1, 4);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t a = uniform(rng, 0, n), b = uniform(rng, 0, n), c = uniform(rng, 0, n), d = uniform(rng, 0, n);
      m.slices.push_back({{std::min(a, b), std::max(a, b)}, {std::min(c, d), std::max(c, d)},
                          static_cast<SliceType>(uniform(rng, 0, 3))});
    }
    // owner[q * n + k]: the slices covering the pair.
    std::vector<std::vector<size_t>> owners(static_cast<size_t>(n * n));
    bool twice = false;
    for (size_t i = 0; i < m.slices.size(); ++i) {
      for (int64_t q = m.slices[i].q.start; q < m.slices[i].q.end; ++q) {
        const Range keys = visible_keys(m.slices[i], q);
        for (int64_t k = keys.start; k < keys.end; ++k) {
          auto& o = owners[static_cast<size_t>(q * n + k)];
          o.push_back(i);
          twice = twice || o.size() > 1;
        }
      }
    }
    if (!twice) {
      EXPECT_EQ(build_mask(m, n, {n}), m.slices);
      continue;
    }
    ++rejected;
    try {
      build_mask(m, n, {n});
      ADD_FAILURE() << "double cover accepted";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      bool named_pair = false;
      for (const auto& o : owners) {
        for (size_t x = 0; x < o.size(); ++x) {
          for (size_t y = x + 1; y < o.size(); ++y) {
            named_pair = named_pair ||
                         (what.find(fmt::format("mask.slices[{}]", o[x])) != std::string::npos &&
                          what.find(fmt::format("mask.slices[{}]", o[y])) != std::string::npos);
          }
        }
      }
      EXPECT_TRUE(named_pair) << what;
    }
  }
  EXPECT_GT(rejected, 100);
}

void expect_config_error(const MaskSpec& m, int64_t tokens, const std::vector<int64_t>& docs,
                         const std::vector<std::string>& parts) {
  try {
    build_mask(m, tokens, docs);
    ADD_FAILURE() << "accepted: " << m.type;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.code(), ExitCode::config);
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(Catalogue, ParameterErrorsNameTheField) {
  expect_config_error(spec("causual"), 8, {8}, {"mask.type", "causual", "varlen_causal"});
  expect_config_error(spec("sliding_window"), 8, {8},
                      {"mask.window: got 0, expected an integer >= 1 for sliding_window"});
  expect_config_error(spec("varlen_sliding_window", {.window = -2}), 8, {8}, {"mask.window", "-2"});
  expect_config_error(spec("sink_sliding_window", {.window = 0}), 8, {8}, {"mask.window"});
  expect_config_error(spec("sink_sliding_window", {.window = 2, .sink_tokens = -1}), 8, {8},
                      {"mask.sink_tokens", "-1", ">= 0"});
  expect_config_error(spec("block_causal"), 8, {8}, {"mask.block_tokens", "got 0"});
  expect_config_error(spec("varlen_block_causal", {.block_tokens = -4}), 8, {8}, {"mask.block_tokens", "-4"});
  expect_config_error(spec("shared_question"), 8, {8}, {"mask.question_tokens", "got 0"});
  expect_config_error(spec("prefix_lm", {.prefix_tokens = 9}), 8, {8}, {"mask.prefix_tokens", "9", "[0, "});
  expect_config_error(spec("prefix_lm", {.prefix_tokens = -1}), 8, {8}, {"mask.prefix_tokens", "-1"});
  // Parameters set for a type that does not read them.
  expect_config_error(spec("causal", {.window = 4}), 8, {8}, {"mask.window", "causal", "sliding_window"});
  expect_config_error(spec("sliding_window", {.window = 2, .block_tokens = 4}), 8, {8}, {"mask.block_tokens"});
  expect_config_error(spec("full", {.prefix_tokens = 1}), 8, {8}, {"mask.prefix_tokens"});
  expect_config_error(spec("sliding_window", {.window = 2, .sink_tokens = 1}), 8, {8}, {"mask.sink_tokens"});
  expect_config_error(spec("varlen_causal", {.question_tokens = 2}), 8, {8}, {"mask.question_tokens"});
  expect_config_error(spec("causal", {}, {{{0, 1}, {0, 1}, SliceType::full}}), 8, {8}, {"mask.slices"});
  // Explicit slices.
  expect_config_error(spec("slices"), 8, {8}, {"mask.slices", "empty"});
  const AttnSlice ok{{0, 4}, {0, 4}, SliceType::causal};
  expect_config_error(spec("slices", {}, {ok, {{2, 9}, {0, 1}, SliceType::full}}), 8, {8},
                      {"mask.slices[1].q", "9"});
  expect_config_error(spec("slices", {}, {ok, {{0, 1}, {5, 3}, SliceType::full}}), 8, {8},
                      {"mask.slices[1].k"});
  expect_config_error(spec("slices", {}, {{{0, 1}, {-1, 3}, SliceType::full}}), 8, {8},
                      {"mask.slices[0].k"});
  expect_config_error(spec("slices", {}, {ok, {{4, 8}, {4, 8}, SliceType::full}, {{3, 4}, {0, 2}, SliceType::full}}),
                      8, {8}, {"mask.slices[0]", "mask.slices[2]"});
}

// A block mask makes one slice per block: 16-token blocks over 2^31 tokens would be 2^27 slices
// (5 GB) before any plan, so the block count is bounded before a slice is made, naming the field.
TEST(Catalogue, BlockCountIsBoundedBeforeAnySliceIsMade) {
  const int64_t s = int64_t{1} << 31;
  const auto start = std::chrono::steady_clock::now();
  expect_config_error(spec("block_causal", {.block_tokens = 16}), s, {s},
                      {"mask.block_tokens: got 16", "134217728 blocks", "at most 4194304"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  // The bound counts a partial block per document.
  expect_config_error(spec("varlen_block_causal", {.block_tokens = 1}), (int64_t{1} << 22), {(int64_t{1} << 22) - 1, 1},
                      {"mask.block_tokens: got 1", "4194306 blocks"});
}

// Parameters larger than the sequence act as the sequence length (configs/README.md): sweeps pair
// one window or block with several lengths.
TEST(Catalogue, ParametersBeyondTheSequenceActAsItsLength) {
  const int64_t S = 100;
  const std::vector<int64_t> one{S};
  const int64_t causal = mask_area(build_mask(spec("causal"), S, one));
  const int64_t full = mask_area(build_mask(spec("full"), S, one));
  EXPECT_EQ(mask_area(build_mask(spec("sliding_window", {.window = 5 * S}), S, one)), causal);
  EXPECT_EQ(mask_area(build_mask(spec("sink_sliding_window", {.window = 3, .sink_tokens = 5 * S}), S, one)), causal);
  EXPECT_EQ(mask_area(build_mask(spec("block_causal", {.block_tokens = 5 * S}), S, one)), full);
  EXPECT_EQ(mask_area(build_mask(spec("shared_question", {.question_tokens = 5 * S}), S, one)), causal);
  EXPECT_THROW(build_mask(spec("prefix_lm", {.prefix_tokens = S + 1}), S, one), ConfigError);
}

TEST(Catalogue, DocumentLengthsAreAnInvariant) {
  EXPECT_THROW(build_mask(spec("varlen_causal"), 8, {3, 4}), InternalError);
  EXPECT_THROW(build_mask(spec("varlen_causal"), 8, {8, 0}), InternalError);
  EXPECT_THROW(build_mask(spec("causal"), 0, {}), InternalError);
}

// At a million tokens the slice count stays linear in documents (or blocks) and the areas match
// closed forms computed per document here.
TEST(Catalogue, MillionTokensUseFewSlices) {
  constexpr int64_t kTokens = 1 << 20;
  Rng rng(testing::test_seed("Catalogue.MillionTokens", 5));
  std::vector<int64_t> cuts{0, kTokens};
  while (cuts.size() < 1001) cuts.push_back(uniform(rng, 1, kTokens - 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<int64_t> docs;
  for (size_t i = 1; i < cuts.size(); ++i) docs.push_back(cuts[i] - cuts[i - 1]);
  const size_t n_docs = docs.size();
  ASSERT_GE(n_docs, 990u);

  auto window_area = [](int64_t len, int64_t w) {  // sum over rows of min(row, w) + 1
    const int64_t head = std::min(len, w);
    return head * (head + 1) / 2 + (len - head) * (w + 1);
  };
  int64_t causal_area = 0, full_area = 0, window_docs_area = 0;
  for (int64_t len : docs) {
    causal_area += len * (len + 1) / 2;
    full_area += len * len;
    window_docs_area += window_area(len, 4096);
  }
  struct Expect {
    MaskSpec spec;
    size_t max_slices;
    int64_t area;  // -1: not checked here
  };
  const std::vector<Expect> cases{
      {spec("varlen_full"), n_docs, full_area},
      {spec("varlen_causal"), n_docs, causal_area},
      {spec("varlen_sliding_window", {.window = 4096}), 2 * n_docs, window_docs_area},
      {spec("sliding_window", {.window = 4096}), 2, window_area(kTokens, 4096)},
      {spec("block_causal", {.block_tokens = 64}), kTokens / 64, -1},
      {spec("varlen_block_causal", {.block_tokens = 64}), kTokens / 64 + n_docs, -1},
      {spec("shared_question", {.question_tokens = 1000}), n_docs + 2, -1},
      {spec("sink_sliding_window", {.window = 4096, .sink_tokens = 4}), 3, -1},
      {spec("prefix_lm", {.prefix_tokens = 1000}), 2, 1000 * 1000 + (kTokens + 1) * kTokens / 2 - 1000 * 1001 / 2},
  };
  for (const Expect& c : cases) {
    SCOPED_TRACE(c.spec.type);
    const auto slices = build_mask(c.spec, kTokens, mask_uses_documents(c.spec.type) ? docs : std::vector<int64_t>{kTokens});
    EXPECT_LE(slices.size(), c.max_slices);
    if (c.area >= 0) {
      EXPECT_EQ(mask_area(slices), c.area);
    }
    EXPECT_FALSE(find_double_cover(slices).has_value());
  }
}

}  // namespace
}  // namespace magi
