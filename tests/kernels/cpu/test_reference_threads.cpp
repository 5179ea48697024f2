// Every thread count gives the single-threaded result bit for bit.
#include "common/test_seed.h"
#include "kernels/cpu/dense_attention.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace magi::kernels::testing {
namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ReferenceThreads, BitIdenticalToSingleThread) {
  std::mt19937_64 rng(magi::testing::test_seed("ReferenceThreads.BitIdenticalToSingleThread", 31337));
  for (int trial = 0; trial < 4; ++trial) {
    // Odd trials: keys over several of the reference's key chunks, eight heads a kv head.
    const AttnShape shape = trial % 2 == 0 ? AttnShape{150, 170, 4, 2, 24} : AttnShape{90, 600, 16, 2, 24};
    const Problem p = random_problem(rng, shape, 3);
    const Forward f1 = run_forward(p, p.slices, 1);
    const Grads g1 = run_backward(p, p.slices, f1, 1);
    for (int threads : {2, 3, 7, 0}) {
      const Forward f = run_forward(p, p.slices, threads);
      const Grads g = run_backward(p, p.slices, f1, threads);
      EXPECT_TRUE(same_bits(f.out, f1.out)) << "out, threads " << threads;
      EXPECT_TRUE(same_bits(f.lse, f1.lse)) << "lse, threads " << threads;
      EXPECT_TRUE(same_bits(g.dq, g1.dq)) << "dq, threads " << threads;
      EXPECT_TRUE(same_bits(g.dk, g1.dk)) << "dk, threads " << threads;
      EXPECT_TRUE(same_bits(g.dv, g1.dv)) << "dv, threads " << threads;
    }
  }
}

}  // namespace
}  // namespace magi::kernels::testing
