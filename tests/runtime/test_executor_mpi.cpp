// Distributed executors under mpirun -np 4: every strategy x every catalogue mask and an
// explicit random slice list, forward and backward, at cp = 4 (multi-head), cp = 2 (GQA, on
// a sub-communicator of the first two ranks; the others wait), cp = 3 and cp = 1; and node-aware
// magi at cp = 4 as two nodes of two ranks (bytes to the other node counted per rank). Each case must
// pass the check against the single-process reference, and the bytes counted from the real
// messages must equal the executor's per-rank figure and the plan's CommVolume.
#include "executor_test_util.h"
#include "common/test_seed.h"

#include "core/base/error.h"
#include "core/plan/comm_volume.h"
#include "core/plan/planner.h"
#include "runtime/cpu_device.h"
#include "runtime/executor.h"
#include "runtime/mpi_communicator.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cstdlib>

namespace magi {
namespace {

using testing::MaskCase;

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Runs one case on the first cp ranks; asserts on every participating rank.
void run_case(const MaskCase& mc, Strategy strategy, int cp, ModelShape model, int overlap_degree,
              int ranks_per_node = 0) {
  if (world_size() < cp) GTEST_SKIP() << "needs " << cp << " ranks";
  MaskSpec spec = mc.spec;
  const int64_t S = 512;
  if (spec.type == "slices" && spec.slices.empty())
    spec.slices = testing::random_slices(magi::testing::test_seed("random slices", 42), S);
  Case c = testing::make_exec_case(spec, S, cp, strategy, model, overlap_degree);
  c.parallel.ranks_per_node = ranks_per_node;
  const std::vector<AttnSlice> mask = testing::make_mask(c);
  const Plan plan = build_plan(mask, c);
  if (plan.skipped) GTEST_SKIP() << plan.skip_reason;

  auto world = MpiCommunicator::world();
  auto comm = world->split_first(cp);
  if (comm) {
    const ExecResult res = testing::run_checked(*comm, plan, mask);
    const int r = comm->rank();
    EXPECT_TRUE(res.check_ran);
    EXPECT_TRUE(res.check_passed) << mc.name << " " << to_string(strategy) << " cp " << cp;
    for (const TensorError& t : res.checks) {
      EXPECT_TRUE(t.ok) << t.name << ": rel_l2 " << t.rel_l2 << " (tolerance " << t.tolerance
                        << "), max_abs " << t.max_abs << ", inf mismatches " << t.inf_mismatches;
    }
    const PlannedBytes planned = planned_bytes(plan, sizeof(float));
    ASSERT_FALSE(res.ranks.empty());
    const RankTimes& me = r == 0 ? res.ranks.at(0) : res.ranks.front();
    EXPECT_EQ(me.fwd_sent_bytes, planned.fwd[r].sent) << "rank " << r << " forward";
    EXPECT_EQ(me.bwd_sent_bytes, planned.bwd[r].sent) << "rank " << r << " backward";
    EXPECT_EQ(me.fwd_sent_bytes, plan.ranks[r].send_bytes_fwd) << "rank " << r << " vs plan";
    // Bytes to other nodes, from the plan's messages: forward K/V out, backward K/V out again and
    // dK/dV of what it received back.
    const int rpn = plan.ranks_per_node;
    const int64_t kv = kv_bytes_per_token(plan.model, sizeof(float));
    int64_t inter_out = 0, inter_in = 0;
    for (const Transfer& t : plan.transfers) {
      if (t.src / rpn == t.dst / rpn) continue;
      if (t.src == r) inter_out += t.tokens * kv;
      if (t.dst == r) inter_in += t.tokens * kv;
    }
    EXPECT_EQ(me.fwd_inter_node_sent_bytes, inter_out) << "rank " << r << " forward, inter-node";
    EXPECT_EQ(me.bwd_inter_node_sent_bytes, inter_out + inter_in) << "rank " << r << " backward, inter-node";
    int64_t fwd = 0, bwd = 0;
    for (int p = 0; p < cp; ++p) {
      fwd += planned.fwd[p].sent;
      bwd += planned.bwd[p].sent;
    }
    EXPECT_EQ(fwd, plan.volume.fwd_bytes) << "forward total vs plan.volume";
    EXPECT_EQ(bwd, plan.volume.bwd_bytes) << "backward total vs plan.volume";
    if (r == 0) {
      EXPECT_EQ(res.checks.size(), 5u);  // out, lse, dq, dk, dv
      ASSERT_EQ(static_cast<int>(res.ranks.size()), cp);
      int64_t measured = 0;
      for (const RankTimes& t : res.ranks) measured += t.fwd_sent_bytes;
      EXPECT_EQ(measured, plan.volume.fwd_bytes);
    }
  }
  comm.reset();
  world->barrier();
}

class ExecutorMpi : public ::testing::TestWithParam<std::tuple<Strategy, int>> {};

TEST_P(ExecutorMpi, Cp4MultiHead) {
  const auto [strategy, mi] = GetParam();
  const MaskCase mc = testing::test_masks().at(mi);
  run_case(mc, strategy, 4, ModelShape{4, 4, 32, DType::fp32}, 1 + mi % 3);
}

TEST_P(ExecutorMpi, Cp2GroupedQuery) {
  const auto [strategy, mi] = GetParam();
  const MaskCase mc = testing::test_masks().at(mi);
  run_case(mc, strategy, 2, ModelShape{4, 2, 32, DType::fp32}, mi % 2 ? 0 : 2);
}

// One rank: the runners' single-stage paths (the kernel straight into the results, ring, ulysses
// and allgather on the rank's own K and V), nothing sent.
TEST_P(ExecutorMpi, Cp1) {
  const auto [strategy, mi] = GetParam();
  const MaskCase mc = testing::test_masks().at(mi);
  run_case(mc, strategy, 1, ModelShape{4, 2, 32, DType::fp32}, 1 + mi % 2);
}

// cp 1 in three local stages (overlap degree 2: keys [0, 171), [171, 342), [342, 512)) whose
// middle one no query sees: its dK/dV rows are zeros written by no kernel (the outputs start as
// NaN under the check).
TEST(ExecutorMpiCheck, LocalStageWithoutSlices) {
  MaskSpec spec;
  spec.type = "slices";
  spec.slices = {{{0, 512}, {0, 160}, SliceType::causal}, {{300, 512}, {350, 512}, SliceType::full}};
  run_case({"unseen middle stage", spec}, Strategy::magi, 1, ModelShape{4, 2, 32, DType::fp32}, 2);
}

// cp 1 in three local stages whose first gives keys to rows [0, 200) only: the pass starts from
// lse = -inf, the last stage writes rows [400, 512) by merging into nothing (the causal slice is
// bottom-right aligned), and rows [200, 400), which no stage reaches, get out = 0 from the runner
// (the outputs start as NaN under the check).
TEST(ExecutorMpiCheck, FirstStageReachesSomeRows) {
  MaskSpec spec;
  spec.type = "slices";
  spec.slices = {{{0, 200}, {0, 100}, SliceType::full}, {{300, 512}, {400, 512}, SliceType::causal}};
  run_case({"first stage reaches some rows", spec}, Strategy::magi, 1, ModelShape{4, 2, 32, DType::fp32}, 2);
}

TEST_P(ExecutorMpi, Cp3) {
  const auto [strategy, mi] = GetParam();
  const MaskCase mc = testing::test_masks().at(mi);
  run_case(mc, strategy, 3, ModelShape{6, 3, 16, DType::fp32}, 2);
}

// Node-aware magi: cp 4 as two nodes of two ranks (virtual nodes of this job), every overlap
// degree from 1 to 3 across the masks; the inter-node tier at its bound.
TEST_P(ExecutorMpi, Cp4TwoNodes) {
  const auto [strategy, mi] = GetParam();
  if (strategy != Strategy::magi) GTEST_SKIP() << "node-aware routing is magi's";
  const MaskCase mc = testing::test_masks().at(mi);
  run_case(mc, strategy, 4, ModelShape{4, 2, 32, DType::fp32}, 1 + mi % 3, 2);
}

std::string name_of(const ::testing::TestParamInfo<std::tuple<Strategy, int>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" +
         testing::test_masks().at(std::get<1>(info.param)).name;
}

INSTANTIATE_TEST_SUITE_P(Magi, ExecutorMpi,
                         ::testing::Combine(::testing::Values(Strategy::magi), ::testing::Range(0, 12)),
                         name_of);
INSTANTIATE_TEST_SUITE_P(Ring, ExecutorMpi,
                         ::testing::Combine(::testing::Values(Strategy::ring), ::testing::Range(0, 12)),
                         name_of);
INSTANTIATE_TEST_SUITE_P(Ulysses, ExecutorMpi,
                         ::testing::Combine(::testing::Values(Strategy::ulysses), ::testing::Range(0, 12)),
                         name_of);
INSTANTIATE_TEST_SUITE_P(Allgather, ExecutorMpi,
                         ::testing::Combine(::testing::Values(Strategy::allgather), ::testing::Range(0, 12)),
                         name_of);

// The timing tests' case: causal over 256 tokens on cp ranks, magi with 2 stages, 2 heads of 16.
Case timing_case(int cp) {
  MaskSpec spec;
  spec.type = "causal";
  return testing::make_exec_case(spec, 256, cp, Strategy::magi, ModelShape{2, 2, 16, DType::fp32}, 2);
}
std::vector<AttnSlice> timing_mask(int cp) { return testing::make_mask(timing_case(cp)); }

// Timing fields: warmup + iters, one entry per timed iteration, on every rank of rank 0's list.
TEST(ExecutorMpiTiming, RecordsEveryRankAndIteration) {
  const int cp = world_size();
  const std::vector<AttnSlice> mask = timing_mask(cp);
  const Plan plan = build_plan(mask, timing_case(cp));
  auto world = MpiCommunicator::world();
  ExecOptions opt;
  opt.warmup = 1;
  opt.iters = 3;
  CpuDevice dev(1);
  const ExecResult res = execute_plan(*world, *world, dev, plan, mask, opt);
  EXPECT_FALSE(res.check_ran);
  if (world->rank() == 0) {
    ASSERT_EQ(static_cast<int>(res.ranks.size()), cp);
    for (int p = 0; p < cp; ++p) {
      EXPECT_EQ(res.ranks[p].rank, p);
      EXPECT_FALSE(res.ranks[p].host.empty());
      EXPECT_EQ(res.ranks[p].fwd_ms.size(), 3u);
      EXPECT_EQ(res.ranks[p].bwd_ms.size(), 3u);
      for (double t : res.ranks[p].fwd_ms) EXPECT_GT(t, 0.0);
      EXPECT_GE(res.ranks[p].fwd_comm_wait_ms, 0.0);
      // magi: one compute step per stage, each timed; their medians within the passes' time.
      ASSERT_FALSE(res.ranks[p].fwd_compute_ms.empty());
      EXPECT_EQ(res.ranks[p].fwd_compute_ms.size(), res.ranks[p].bwd_compute_ms.size());
      double steps = 0;
      for (double t : res.ranks[p].fwd_compute_ms) {
        EXPECT_GE(t, 0.0);
        steps += t;
      }
      double passes = 0;
      for (double t : res.ranks[p].fwd_ms) passes += t;
      EXPECT_LE(steps, passes);
      // At least the rank's q, k, v, dout, out, dq, dk, dv (2 heads of 16) and lse in fp32.
      const int64_t tokens = plan.ranks[p].tokens;
      EXPECT_GE(res.ranks[p].peak_memory_bytes, tokens * (8 * 2 * 16 + 2) * 4);
    }
  } else {
    ASSERT_EQ(res.ranks.size(), 1u);
    EXPECT_EQ(res.ranks[0].rank, world->rank());
  }
}

// A device whose state settles only after some time under load and then swings (as a GPU's clocks
// at its power cap): the CPU device's work, a minimum warm-up of `settle_s`, a minimum timed
// window of `swing_s`, and a count of the passes it ran.
class SlowToSettleDevice final : public Device {
 public:
  SlowToSettleDevice(double settle_s, double swing_s) : cpu_(1), settle_s_(settle_s), swing_s_(swing_s) {}
  int64_t passes = 0;

  std::string description() const override { return "slow to settle " + cpu_.description(); }
  DType dtype() const override { return cpu_.dtype(); }
  double min_warmup_seconds() const override { return settle_s_; }
  double min_timed_seconds() const override { return swing_s_; }
  Buffer alloc(int64_t elems, DType dtype) override { return cpu_.alloc(elems, dtype); }
  int64_t memory_bytes() const override { return cpu_.memory_bytes(); }
  int64_t peak_memory_bytes() const override { return cpu_.peak_memory_bytes(); }
  void reset_peak_memory() override { cpu_.reset_peak_memory(); }
  RowMap prepare(std::vector<RowCopy> segs) override { return cpu_.prepare(std::move(segs)); }
  std::unique_ptr<AttentionOp> attention(const kernels::AttnShape& shape,
                                         std::vector<kernels::KernelSlice> slices) override {
    return cpu_.attention(shape, std::move(slices));
  }
  void share_dq(const std::vector<AttentionOp*>& ops) override { cpu_.share_dq(ops); }
  void upload(const float* host, const Buffer& dst, int64_t offset, int64_t n) override {
    cpu_.upload(host, dst, offset, n);
  }
  void download(const Buffer& src, int64_t offset, int64_t n, float* host) override {
    cpu_.download(src, offset, n, host);
  }
  void copy_rows(const RowMap& map, Rows src, Rows dst, int64_t width) override { cpu_.copy_rows(map, src, dst, width); }
  void add_rows(const RowMap& map, Rows src, Rows dst, int64_t width) override { cpu_.add_rows(map, src, dst, width); }
  void copy(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) override {
    cpu_.copy(src, src_dtype, dst, dst_dtype, n);
  }
  void add(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) override {
    cpu_.add(src, src_dtype, dst, dst_dtype, n);
  }
  void fill(void* dst, DType dtype, int64_t n, float value) override { cpu_.fill(dst, dtype, n, value); }
  void compute(const std::function<void()>& work, const std::vector<Request*>& progress) override {
    cpu_.compute(work, progress);
  }
  void wait(Request* req) override { cpu_.wait(req); }
  void begin_pass() override {
    ++passes;
    cpu_.begin_pass();
  }
  PassStats end_pass() override { return cpu_.end_pass(); }
  void synchronize() override { cpu_.synchronize(); }

 private:
  CpuDevice cpu_;
  double settle_s_, swing_s_;
};

// A device's minimums: each pass warms until it has lasted that long and is then timed until the
// timed iterations have lasted theirs, every rank running as many iterations (they exchange data
// in each) and keeping as many samples; with no warm-up asked for, nothing is added (a check-only
// run stays one pass).
TEST(ExecutorMpiTiming, WarmupAndTimedIterationsLastTheDevicesMinimumsOnEveryRank) {
  const int cp = world_size();
  const std::vector<AttnSlice> mask = timing_mask(cp);
  const Plan plan = build_plan(mask, timing_case(cp));
  auto world = MpiCommunicator::world();
  constexpr double kSettle = 0.25, kSwing = 0.25;
  SlowToSettleDevice dev(kSettle, kSwing);
  ExecOptions opt;
  opt.warmup = 1;
  opt.iters = 2;
  const auto t0 = std::chrono::steady_clock::now();
  const ExecResult res = execute_plan(*world, *world, dev, plan, mask, opt);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Forward and backward each warmed for about kSettle and timed for about kSwing (the pace is
  // estimated from the iterations before, so a busy machine may end a phase a little early; one
  // of each in all is certain).
  EXPECT_GE(seconds, kSettle + kSwing);
  EXPECT_GT(dev.passes, 2 * (opt.warmup + opt.iters));
  int64_t most_least[2] = {dev.passes, -dev.passes};
  world->all_reduce_max(most_least, 2);
  EXPECT_EQ(most_least[0], dev.passes) << "ranks ran different numbers of passes";
  EXPECT_EQ(-most_least[1], dev.passes) << "ranks ran different numbers of passes";
  if (world->rank() == 0) {
    ASSERT_EQ(static_cast<int>(res.ranks.size()), cp);
    const size_t fwd_samples = res.ranks[0].fwd_ms.size(), bwd_samples = res.ranks[0].bwd_ms.size();
    EXPECT_GT(fwd_samples, static_cast<size_t>(opt.iters));
    EXPECT_GT(bwd_samples, static_cast<size_t>(opt.iters));
    for (const RankTimes& t : res.ranks) {
      EXPECT_EQ(t.fwd_ms.size(), fwd_samples) << "rank " << t.rank;
      EXPECT_EQ(t.bwd_ms.size(), bwd_samples) << "rank " << t.rank;
    }
  }
  dev.passes = 0;
  opt.warmup = 0;
  execute_plan(*world, *world, dev, plan, mask, opt);
  EXPECT_EQ(dev.passes, 2 * opt.iters);
}

// A plan for another number of ranks, a skipped plan and a plan in a dtype the device does not
// store are clear errors.
TEST(ExecutorMpiErrors, RejectsPlansItCannotRun) {
  const int cp = world_size();
  MaskSpec spec;
  spec.type = "causal";
  Case c = testing::make_exec_case(spec, 256, cp, Strategy::magi, ModelShape{2, 2, 16, DType::fp32}, 1);
  const auto mask = testing::make_mask(c);
  auto world = MpiCommunicator::world();
  CpuDevice dev(1);
  Plan plan = build_plan(mask, c);
  plan.cp = cp + 1;
  EXPECT_THROW(execute_plan(*world, *world, dev, plan, mask, {}), RuntimeError);
  plan = build_plan(mask, c);
  plan.model.dtype = DType::bf16;
  try {
    execute_plan(*world, *world, dev, plan, mask, {});
    ADD_FAILURE() << "a bf16 plan ran on the fp32 cpu device";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("stores fp32; the plan was built for bf16"), std::string::npos)
        << e.what();
  }
  plan = build_plan(mask, c);
  plan.skipped = true;
  plan.skip_reason = "test";
  EXPECT_THROW(execute_plan(*world, *world, dev, plan, mask, {}), ConfigError);
}

}  // namespace
}  // namespace magi

namespace magi {
namespace {

// A small causal magi case over the whole world, run once with the check on.
struct CheckedCausalRun {
  int cp = world_size();
  Case c = testing::make_exec_case(causal_spec(), 256, cp, Strategy::magi, ModelShape{2, 2, 16, DType::fp32}, 1);
  std::vector<AttnSlice> mask = testing::make_mask(c);
  Plan plan = build_plan(mask, c);
  std::unique_ptr<MpiCommunicator> world = MpiCommunicator::world();
  ExecOptions opt = checked_once();
  CpuDevice dev{1};

  static MaskSpec causal_spec() {
    MaskSpec spec;
    spec.type = "causal";
    return spec;
  }
  static ExecOptions checked_once() {
    ExecOptions o;
    o.check = true;
    o.warmup = 0;
    o.iters = 1;
    return o;
  }
};

// The check is not vacuous: a plan run against another mask's reference fails it, with the
// failing tensors named, on every rank alike.
TEST(ExecutorMpiCheck, DetectsWrongResults) {
  CheckedCausalRun run;
  auto& [cp, c, mask, plan, world, opt, dev] = run;
  const ExecResult good = execute_plan(*world, *world, dev, plan, mask, opt);
  EXPECT_TRUE(good.check_passed);
  if (world->rank() == 0) {
    for (const TensorError& t : good.checks) {
      std::printf("[check] %s rel_l2 %.3g max_abs %.3g\n", t.name.c_str(), t.rel_l2, t.max_abs);
    }
  }
  std::vector<AttnSlice> other = mask;
  other.back().type = SliceType::full;  // the last slice of causal made full: other values
  const ExecResult bad = execute_plan(*world, *world, dev, plan, other, opt);
  EXPECT_TRUE(bad.check_ran);
  EXPECT_FALSE(bad.check_passed);
  if (world->rank() == 0) {
    bool any_failed = false;
    for (const TensorError& t : bad.checks) any_failed |= !t.ok;
    EXPECT_TRUE(any_failed);
  }
}

// One NaN in one rank's forward output (MAGI_FAIL_RANK=<r>:nan) fails the check: the L2 error
// skips it, so only the count of non-finite mismatches can catch it.
TEST(ExecutorMpiCheck, DetectsANanInOneRanksOutput) {
  CheckedCausalRun run;
  auto& [cp, c, mask, plan, world, opt, dev] = run;
  ::setenv("MAGI_FAIL_RANK", fmt::format("{}:nan", cp - 1).c_str(), 1);
  const ExecResult bad = execute_plan(*world, *world, dev, plan, mask, opt);
  ::unsetenv("MAGI_FAIL_RANK");
  EXPECT_TRUE(bad.check_ran);
  EXPECT_FALSE(bad.check_passed);
  if (world->rank() == 0) {
    ASSERT_FALSE(bad.checks.empty());
    const TensorError& out = bad.checks[0];
    EXPECT_EQ(out.name, "out");
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.inf_mismatches, 1);
    EXPECT_LE(out.rel_l2, out.tolerance);  // the NaN is invisible to the L2 error
  }
}

}  // namespace
}  // namespace magi
