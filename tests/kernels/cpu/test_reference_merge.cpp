// merge_partial, and stage-wise use: forward per subset of slices merged with the log-sum-exp rule,
// backward per subset with the global out and lse, each on a partial KV buffer.
#include "common/test_seed.h"
#include "kernels/cpu/dense_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace magi::kernels::testing {
namespace {

TEST(MergePartial, HandComputedRows) {
  // Four (row, head) pairs, d = 3: both finite (weights 1/4, 3/4), only the part (the
  // accumulator's NaN out is not read), only the accumulator, neither (the accumulator's row
  // stays as it is).
  const float inf = INFINITY;
  const float nan = NAN;
  std::vector<float> out_acc{4, 0, 8, nan, nan, nan, 5, 6, 7, 2, 2, 2};
  std::vector<float> lse_acc{0.0f, -inf, 0.7f, -inf};
  const std::vector<float> out_part{0, 4, -8, 1, 2, 3, 9, 9, 9, 7, 7, 7};
  const std::vector<float> lse_part{std::log(3.0f), 1.5f, -inf, -inf};
  cpu::merge_partial(2, 2, 3, out_acc.data(), lse_acc.data(), out_part.data(), lse_part.data());
  const std::vector<double> want_out{1, 3, -4, 1, 2, 3, 5, 6, 7, 2, 2, 2};
  const std::vector<double> want_lse{std::log(4.0), 1.5, 0.7f, -inf};
  expect_close(out_acc, want_out, 1e-6, 1e-6, "out");
  expect_close(lse_acc, want_lse, 1e-6, 1e-6, "lse");
  EXPECT_THROW(cpu::merge_partial(2, 0, 3, out_acc.data(), lse_acc.data(), out_part.data(), lse_part.data()),
               std::invalid_argument);
}

// A subset of a problem's slices as a stage sees it: a KV buffer holding only the hull of their
// key ranges, slice keys local to that buffer.
struct Stage {
  Problem problem;
  int64_t k_offset = 0;
};

Stage make_stage(const Problem& whole, const std::vector<KernelSlice>& subset) {
  int64_t lo = whole.shape.sk, hi = 0;
  for (const KernelSlice& s : subset) {
    if (s.k_start == s.k_end) continue;
    lo = std::min(lo, s.k_start);
    hi = std::max(hi, s.k_end);
  }
  if (lo >= hi) lo = hi = 0;
  Stage st{whole, lo};
  Problem& p = st.problem;
  p.shape.sk = hi - lo;
  const int64_t row = whole.shape.hkv * whole.shape.d;
  p.k.assign(whole.k.begin() + lo * row, whole.k.begin() + hi * row);
  p.v.assign(whole.v.begin() + lo * row, whole.v.begin() + hi * row);
  p.slices.clear();
  for (KernelSlice s : subset) {
    if (s.k_start == s.k_end) {
      s.k_start = s.k_end = 0;
    } else {
      s.k_start -= lo;
      s.k_end -= lo;
    }
    p.slices.push_back(s);
  }
  return st;
}

// Random problems whose slices are dealt at random to two stages.
template <class Check>
void for_random_splits(const char* test_name, uint64_t fallback_seed, const Check& check) {
  std::mt19937_64 rng(magi::testing::test_seed(test_name, fallback_seed));
  const std::vector<AttnShape> shapes{{37, 53, 4, 2, 8}, {53, 37, 2, 2, 5}, {40, 12, 3, 1, 16}};
  for (int trial = 0; trial < 24; ++trial) {
    const Problem whole = random_problem(rng, shapes[trial % shapes.size()], 2);
    std::vector<KernelSlice> a, b;
    for (const KernelSlice& s : whole.slices) (rng() % 2 ? a : b).push_back(s);
    check(whole, make_stage(whole, a), make_stage(whole, b), "trial " + std::to_string(trial));
  }
}

TEST(MergePartial, StageForwardsMergeToTheWhole) {
  for_random_splits("MergePartial.StageForwardsMergeToTheWhole", 1234,
                    [](const Problem& whole, const Stage& a, const Stage& b, const std::string& what) {
                      Forward merged = run_forward(a.problem, a.problem.slices);
                      const Forward fb = run_forward(b.problem, b.problem.slices);
                      cpu::merge_partial(whole.shape.sq, whole.shape.hq, whole.shape.d, merged.out.data(),
                                         merged.lse.data(), fb.out.data(), fb.lse.data());
                      const Forward want = run_forward(whole, whole.slices);
                      expect_close(merged.out, to_double(want.out), 1e-5, 1e-5, what + " out");
                      expect_close(merged.lse, to_double(want.lse), 1e-5, 1e-5, what + " lse");
                    });
}

TEST(MergePartial, StageBackwardsWithGlobalLseSumToTheWhole) {
  for_random_splits(
      "MergePartial.StageBackwardsWithGlobalLseSumToTheWhole", 5678,
      [](const Problem& whole, const Stage& a, const Stage& b, const std::string& what) {
        const Forward global = run_forward(whole, whole.slices);
        std::vector<double> dq(whole.q.size(), 0.0), dk(whole.k.size(), 0.0), dv(whole.v.size(), 0.0);
        for (const Stage* st : {&a, &b}) {
          const Grads g = run_backward(st->problem, st->problem.slices, global);
          for (size_t i = 0; i < dq.size(); ++i) dq[i] += g.dq[i];
          const size_t offset = st->k_offset * whole.shape.hkv * whole.shape.d;
          for (size_t i = 0; i < g.dk.size(); ++i) {
            dk[offset + i] += g.dk[i];
            dv[offset + i] += g.dv[i];
          }
        }
        const Grads want = run_backward(whole, whole.slices, global);
        expect_close(want.dq, dq, 1e-5 * peak_abs(dq), 1e-5, what + " dq");
        expect_close(want.dk, dk, 1e-5 * peak_abs(dk), 1e-5, what + " dk");
        expect_close(want.dv, dv, 1e-5 * peak_abs(dv), 1e-5, what + " dv");
      });
}

}  // namespace
}  // namespace magi::kernels::testing
