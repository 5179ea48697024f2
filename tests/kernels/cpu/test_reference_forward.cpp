// Reference forward against an independent dense softmax, hand values, and argument checks.
#include "common/test_seed.h"
#include "kernels/cpu/dense_attention.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace magi::kernels::testing {
namespace {

// Rows seeing keys of two or more slices, rows seeing no key, and rows inside a non-empty slice
// that see nothing of it: what the random masks must exercise.
struct MaskFeatures {
  int64_t multi_slice_rows = 0, blind_rows = 0, empty_rows_in_slice = 0;
};

void count_features(const AttnShape& shape, const std::vector<KernelSlice>& slices, MaskFeatures& f) {
  for (int64_t q = 0; q < shape.sq; ++q) {
    int slices_seen = 0;
    for (const KernelSlice& s : slices) {
      bool sees = false;
      for (int64_t k = 0; k < shape.sk; ++k) sees = sees || covers(s, q, k);
      slices_seen += sees ? 1 : 0;
      const bool inside = q >= s.q_start && q < s.q_end && s.k_start < s.k_end;
      f.empty_rows_in_slice += inside && !sees ? 1 : 0;
    }
    f.multi_slice_rows += slices_seen >= 2 ? 1 : 0;
    f.blind_rows += slices_seen == 0 ? 1 : 0;
  }
}

TEST(ReferenceForward, MatchesDenseSoftmaxOnRandomMasks) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceForward.MatchesDenseSoftmaxOnRandomMasks", 20240601));
  // {45, 700}: rows whose keys span several of the reference's key chunks; {40, 1}: more heads a
  // kv head than a task's pairs, so one row a task.
  const std::array<std::array<int64_t, 2>, 7> lengths{
      {{37, 53}, {53, 37}, {1, 1}, {64, 64}, {100, 9}, {9, 100}, {45, 700}}};
  const std::array<std::array<int32_t, 2>, 4> heads{{{4, 2}, {2, 2}, {3, 1}, {40, 1}}};
  const std::array<int32_t, 4> dims{1, 3, 8, 32};
  MaskFeatures features;
  for (int trial = 0; trial < 60; ++trial) {
    const auto [sq, sk] = lengths[trial % lengths.size()];
    const auto [hq, hkv] = heads[rng() % heads.size()];
    const AttnShape shape{sq, sk, hq, hkv, dims[rng() % dims.size()]};
    const Problem p = random_problem(rng, shape, 2);
    count_features(shape, p.slices, features);
    const Forward f = run_forward(p, p.slices);
    const DenseForward want =
        dense_forward(shape, dense_mask(shape, p.slices), to_double(p.q), to_double(p.k), to_double(p.v), p.scale);
    const std::string what = "trial " + std::to_string(trial);
    expect_close(f.out, want.out, 1e-5, 1e-5, what + " out");
    expect_close(f.lse, want.lse, 1e-5, 1e-5, what + " lse");
    for (size_t r = 0; r < f.lse.size(); ++r) {
      if (f.lse[r] != -INFINITY) continue;
      for (int64_t c = 0; c < shape.d; ++c) ASSERT_EQ(f.out[r * shape.d + c], 0.0f) << what << " blind row " << r;
    }
  }
  EXPECT_GT(features.multi_slice_rows, 0);
  EXPECT_GT(features.blind_rows, 0);
  EXPECT_GT(features.empty_rows_in_slice, 0);
}

TEST(ReferenceForward, HandComputedCausalWithMoreQueriesThanKeys) {
  // 3 queries, 2 keys, causal: row 0 sees nothing, row 1 key 0, row 2 keys 0 and 1.
  // q = 1, k = (0, ln 3): row 2 weights are 1/4 and 3/4.
  const AttnShape shape{3, 2, 1, 1, 1};
  const std::vector<KernelSlice> slices{{0, 3, 0, 2, KernelSliceType::causal}};
  const Problem p{shape, slices, {1.0f, 1.0f, 1.0f}, {0.0f, std::log(3.0f)}, {2.0f, 6.0f}, {}, 1.0f};
  const Forward f = run_forward(p, slices);
  EXPECT_EQ(f.out[0], 0.0f);
  EXPECT_EQ(f.lse[0], -INFINITY);
  EXPECT_FLOAT_EQ(f.out[1], 2.0f);
  EXPECT_FLOAT_EQ(f.lse[1], 0.0f);
  EXPECT_FLOAT_EQ(f.out[2], 5.0f);
  EXPECT_FLOAT_EQ(f.lse[2], std::log(4.0f));
}

TEST(ReferenceForward, LargeScoresStayFinite) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceForward.LargeScoresStayFinite", 77));
  const AttnShape shape{29, 31, 2, 1, 16};
  Problem p = random_problem(rng, shape, 1);
  p.scale = 60.0f;  // scores of several hundred: exp overflows without the max subtraction
  const Forward f = run_forward(p, p.slices);
  const DenseForward want =
      dense_forward(shape, dense_mask(shape, p.slices), to_double(p.q), to_double(p.k), to_double(p.v), p.scale);
  expect_close(f.out, want.out, 1e-5, 1e-5, "out");
  expect_close(f.lse, want.lse, 1e-5, 1e-5, "lse");
}

TEST(ReferenceForward, NoSliceGivesZeroOutputAndNegativeInfinity) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceForward.NoSliceGivesZeroOutputAndNegativeInfinity", 5));
  Problem p = random_problem(rng, {5, 4, 2, 2, 3}, 0);
  const Forward f = run_forward(p, {});
  for (float o : f.out) EXPECT_EQ(o, 0.0f);
  for (float l : f.lse) EXPECT_EQ(l, -INFINITY);
}

TEST(ReferenceForward, RejectsImpossibleArguments) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceForward.RejectsImpossibleArguments", 11));
  const Problem p = random_problem(rng, {8, 8, 4, 2, 4}, 0);
  std::vector<float> out(p.q.size()), lse(8 * 4);
  auto forward = [&](AttnShape shape, std::vector<KernelSlice> slices, float scale = 0.5f, int threads = 1) {
    cpu::attention_forward(shape, slices.data(), slices.size(), p.q.data(), p.k.data(), p.v.data(), scale,
                           out.data(), lse.data(), threads);
  };
  const AttnShape ok = p.shape;
  const KernelSlice full{0, 8, 0, 8, KernelSliceType::full};
  EXPECT_NO_THROW(forward(ok, {full}));
  EXPECT_THROW(forward({8, 8, 4, 3, 4}, {full}), std::invalid_argument);  // hq % hkv
  EXPECT_THROW(forward({8, 8, 0, 2, 4}, {full}), std::invalid_argument);
  EXPECT_THROW(forward({8, 8, 4, 2, 0}, {full}), std::invalid_argument);
  EXPECT_THROW(forward({-1, 8, 4, 2, 4}, {}), std::invalid_argument);
  EXPECT_THROW(forward(ok, {{0, 9, 0, 8, KernelSliceType::full}}), std::invalid_argument);  // q past sq
  EXPECT_THROW(forward(ok, {{0, 8, -1, 8, KernelSliceType::full}}), std::invalid_argument);
  EXPECT_THROW(forward(ok, {{5, 4, 0, 8, KernelSliceType::full}}), std::invalid_argument);  // reversed
  EXPECT_THROW(forward(ok, {{0, 8, 0, 8, static_cast<KernelSliceType>(7)}}), std::invalid_argument);
  EXPECT_THROW(forward(ok, {full}, NAN), std::invalid_argument);
  EXPECT_THROW(forward(ok, {full}, 0.5f, -1), std::invalid_argument);
  EXPECT_THROW(cpu::attention_forward(ok, nullptr, 1, p.q.data(), p.k.data(), p.v.data(), 0.5f, out.data(),
                                      lse.data()),
               std::invalid_argument);
  EXPECT_THROW(cpu::attention_forward(ok, &full, 1, nullptr, p.k.data(), p.v.data(), 0.5f, out.data(), lse.data()),
               std::invalid_argument);
  // A causal slice and an inv_causal one that share the pair (7, 7), named in the message.
  try {
    forward(ok, {{0, 8, 0, 8, KernelSliceType::causal}, {7, 8, 7, 8, KernelSliceType::inv_causal}});
    ADD_FAILURE() << "double cover accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("slice 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("slice 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(q 7, k 7)"), std::string::npos) << msg;
  }
  // Touching bands are not a double cover: causal on and below the diagonal, inv_causal above it.
  EXPECT_NO_THROW(forward(ok, {{0, 8, 0, 8, KernelSliceType::causal}, {0, 7, 1, 8, KernelSliceType::inv_causal}}));
}

}  // namespace
}  // namespace magi::kernels::testing
