// Reference backward against float64 central finite differences and against dense gradients.
#include "common/test_seed.h"
#include "kernels/cpu/dense_attention.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace magi::kernels::testing {
namespace {

// d(sum(out * G))/dx for x in {q, k, v}, by central differences of the dense forward in double.
struct FiniteDifferences {
  std::vector<double> dq, dk, dv;
};

FiniteDifferences finite_differences(const Problem& p) {
  const std::vector<char> mask = dense_mask(p.shape, p.slices);
  std::vector<double> q = to_double(p.q), k = to_double(p.k), v = to_double(p.v);
  const std::vector<double> weights = to_double(p.dout);
  auto loss = [&] {
    const DenseForward f = dense_forward(p.shape, mask, q, k, v, p.scale);
    double l = 0.0;
    for (size_t i = 0; i < f.out.size(); ++i) l += f.out[i] * weights[i];
    return l;
  };
  auto gradient = [&](std::vector<double>& x) {
    constexpr double kStep = 1e-5;
    std::vector<double> g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + kStep;
      const double up = loss();
      x[i] = x0 - kStep;
      const double down = loss();
      x[i] = x0;
      g[i] = (up - down) / (2 * kStep);
    }
    return g;
  };
  FiniteDifferences fd;
  fd.dq = gradient(q);
  fd.dk = gradient(k);
  fd.dv = gradient(v);
  return fd;
}

void expect_gradients(const Grads& g, const std::vector<double>& dq, const std::vector<double>& dk,
                      const std::vector<double>& dv, const std::string& what) {
  expect_close(g.dq, dq, 1e-5 * peak_abs(dq), 1e-5, what + " dq");
  expect_close(g.dk, dk, 1e-5 * peak_abs(dk), 1e-5, what + " dk");
  expect_close(g.dv, dv, 1e-5 * peak_abs(dv), 1e-5, what + " dv");
}

TEST(ReferenceBackward, MatchesFiniteDifferences) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceBackward.MatchesFiniteDifferences", 4242));
  const AttnShape shape{6, 7, 2, 1, 4};
  // Row 0 is fully masked (the causal slice has more queries than keys); rows 2 and 3 see keys of
  // two slices, row 5 too (inv_causal and full); the last slice is empty.
  Problem fixed = random_problem(rng, shape, 0);
  fixed.slices = {{0, 4, 0, 3, KernelSliceType::causal},
                  {2, 6, 3, 7, KernelSliceType::full},
                  {5, 6, 0, 3, KernelSliceType::inv_causal},
                  {1, 1, 0, 7, KernelSliceType::full}};
  std::vector<Problem> problems{fixed};
  for (int trial = 0; trial < 5; ++trial) problems.push_back(random_problem(rng, shape, 1));
  for (size_t n = 0; n < problems.size(); ++n) {
    const Problem& p = problems[n];
    const Grads g = run_backward(p, p.slices, run_forward(p, p.slices));
    const FiniteDifferences fd = finite_differences(p);
    expect_gradients(g, fd.dq, fd.dk, fd.dv, "problem " + std::to_string(n));
  }
  // The fully masked row of the fixed mask gets exactly zero gradient.
  const Grads g = run_backward(fixed, fixed.slices, run_forward(fixed, fixed.slices));
  for (int64_t c = 0; c < shape.hq * shape.d; ++c) EXPECT_EQ(g.dq[c], 0.0f);
}

TEST(ReferenceBackward, MatchesDenseGradientsOnRandomMasks) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceBackward.MatchesDenseGradientsOnRandomMasks", 99));
  // As the forward's test: keys over several key chunks, and one row a task.
  const std::array<std::array<int64_t, 2>, 6> lengths{{{37, 53}, {53, 37}, {1, 1}, {48, 48}, {70, 9}, {45, 700}}};
  const std::array<std::array<int32_t, 2>, 4> heads{{{4, 2}, {2, 2}, {3, 1}, {40, 1}}};
  const std::array<int32_t, 3> dims{1, 5, 16};
  for (int trial = 0; trial < 30; ++trial) {
    const auto [sq, sk] = lengths[trial % lengths.size()];
    const auto [hq, hkv] = heads[rng() % heads.size()];
    const AttnShape shape{sq, sk, hq, hkv, dims[rng() % dims.size()]};
    const Problem p = random_problem(rng, shape, 2);
    const Grads g = run_backward(p, p.slices, run_forward(p, p.slices));
    const DenseGrads want = dense_backward(shape, dense_mask(shape, p.slices), to_double(p.q), to_double(p.k),
                                           to_double(p.v), to_double(p.dout), p.scale);
    expect_gradients(g, want.dq, want.dk, want.dv, "trial " + std::to_string(trial));
  }
}

// dk and dv both null: dq alone, the same bits as with them; one of them null is refused.
TEST(ReferenceBackward, DqAloneWhenDkAndDvAreNull) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceBackward.DqAloneWhenDkAndDvAreNull", 7));
  const Problem p = random_problem(rng, {60, 300, 4, 2, 16}, 2);
  const Forward f = run_forward(p, p.slices);
  const Grads g = run_backward(p, p.slices, f);
  std::vector<float> dq(p.q.size(), kPoison), dk(p.k.size());
  cpu::attention_backward(p.shape, p.slices.data(), p.slices.size(), p.q.data(), p.k.data(), p.v.data(), f.out.data(),
                          p.dout.data(), f.lse.data(), p.scale, dq.data(), nullptr, nullptr);
  EXPECT_EQ(0, std::memcmp(dq.data(), g.dq.data(), dq.size() * sizeof(float)));
  EXPECT_THROW(cpu::attention_backward(p.shape, p.slices.data(), p.slices.size(), p.q.data(), p.k.data(), p.v.data(),
                                       f.out.data(), p.dout.data(), f.lse.data(), p.scale, dq.data(), dk.data(),
                                       nullptr),
               std::invalid_argument);
}

}  // namespace
}  // namespace magi::kernels::testing
