// Hybrid head x context parallelism under mpirun -np 4: heads 2 x cp 2 (magi, ring), heads 4 x
// cp 1 and heads 2 x cp 1 (on the first two ranks), on a random slice list with fully masked rows
// and a varlen causal mask, forward and backward. Each case must pass the check against the
// single-process reference, and every rank's bytes of each dimension, counted from the real
// messages (sent_bytes_to its head group, the rest to its cp group), must equal the plan's
// (hybrid_planned_bytes).
#include "executor_test_util.h"
#include "common/test_seed.h"

#include "core/plan/comm_volume.h"
#include "core/plan/hybrid_plan.h"
#include "core/plan/planner.h"
#include "runtime/cpu_device.h"
#include "runtime/executor.h"
#include "runtime/mpi_communicator.h"

#include <gtest/gtest.h>
#include <mpi.h>


namespace magi {
namespace {

int world_ranks() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

void run_hybrid(const std::string& mask_type, Strategy strategy, int heads, int cp, ModelShape model) {
  const int n = heads * cp;
  if (world_ranks() < n) GTEST_SKIP() << "needs " << n << " ranks";
  MaskSpec spec;
  spec.type = mask_type;
  const int64_t S = 330;  // groups and shards of ragged sizes
  if (spec.type == "slices") spec.slices = testing::random_slices(testing::test_seed("hybrid slices", 16), S);
  Case c = testing::make_exec_case(spec, S, cp, strategy, model, 0, 16);
  c.parallel.heads = heads;
  const std::vector<AttnSlice> mask = testing::make_mask(c);
  const Plan plan = build_plan(mask, c);
  ASSERT_FALSE(plan.skipped) << plan.skip_reason;
  const HybridBytes planned = hybrid_planned_bytes(plan, sizeof(float));

  auto world = MpiCommunicator::world();
  auto comm = world->split_first(n);
  if (comm) {
    const ExecResult res = testing::run_checked(*comm, plan, mask);
    const std::string what = fmt::format("{} {} heads {} x cp {}", mask_type, to_string(strategy), heads, cp);
    EXPECT_TRUE(res.check_passed) << what;
    for (const TensorError& t : res.checks) {
      EXPECT_TRUE(t.ok) << what << ": " << t.name << " rel_l2 " << t.rel_l2 << " max_abs " << t.max_abs;
    }
    const size_t w = static_cast<size_t>(comm->rank());
    const RankTimes& me = res.ranks.front();  // rank 0 holds every rank's, in rank order
    EXPECT_EQ(me.fwd_sent_head_bytes, planned.head.fwd[w].sent) << what << " rank " << w;
    EXPECT_EQ(me.bwd_sent_head_bytes, planned.head.bwd[w].sent) << what << " rank " << w;
    EXPECT_EQ(me.fwd_sent_bytes - me.fwd_sent_head_bytes, planned.context.fwd[w].sent) << what << " rank " << w;
    EXPECT_EQ(me.bwd_sent_bytes - me.bwd_sent_head_bytes, planned.context.bwd[w].sent) << what << " rank " << w;
    if (w == 0) {
      ASSERT_EQ(static_cast<int>(res.ranks.size()), n);
      int64_t head = 0, all = 0;
      for (const RankTimes& t : res.ranks) {
        head += t.fwd_sent_head_bytes;
        all += t.fwd_sent_bytes;
      }
      EXPECT_EQ(head, plan.head_volume.fwd_bytes) << what;
      EXPECT_EQ(all - head, plan.context_volume.fwd_bytes) << what;
    }
  }
  comm.reset();
  world->barrier();
}

TEST(HybridMpi, Heads2Cp2) {
  for (const char* m : {"slices", "varlen_causal"}) {
    for (Strategy s : {Strategy::magi, Strategy::ring}) run_hybrid(m, s, 2, 2, ModelShape{8, 2, 8, DType::fp32});
  }
}

TEST(HybridMpi, Heads4Cp1) {
  run_hybrid("slices", Strategy::magi, 4, 1, ModelShape{8, 4, 8, DType::fp32});
}

TEST(HybridMpi, Heads2Cp1OnTwoOfFourRanks) {
  run_hybrid("varlen_causal", Strategy::ring, 2, 1, ModelShape{4, 2, 8, DType::fp32});
}

}  // namespace
}  // namespace magi
