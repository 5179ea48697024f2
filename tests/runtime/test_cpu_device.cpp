// CpuDevice (runtime/cpu_device.h): every operation against plain float64 loops on random
// inputs (seeds printed; replay with MAGI_TEST_SEED=<n>), the attention op against the reference
// kernel called directly, ops sharing dQ (their pass order), compute() with a pending request,
// waits, memory accounting and the refusal of 16-bit dtypes.
#include "common/test_seed.h"

#include "core/base/error.h"
#include "runtime/cpu_device.h"

#include "cpu/reference_attention.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace magi {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> random_floats(std::mt19937_64& rng, int64_t n) {
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

int64_t uni(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

Buffer upload(CpuDevice& dev, const std::vector<float>& host) {
  Buffer b = dev.alloc(static_cast<int64_t>(host.size()), DType::fp32);
  dev.upload(host.data(), b, 0, b.elems());
  return b;
}

std::vector<float> download(CpuDevice& dev, const Buffer& b) {
  std::vector<float> host(static_cast<size_t>(b.elems()));
  dev.download(b, 0, b.elems(), host.data());
  return host;
}

// Ragged segments (some empty) over distinct destination rows, sources anywhere.
std::vector<RowCopy> random_segments(std::mt19937_64& rng, int64_t src_rows, int64_t dst_rows) {
  std::vector<RowCopy> segs;
  int64_t dst = uni(rng, 0, 2);
  while (dst < dst_rows) {
    const int64_t n = std::min(uni(rng, 0, 5), dst_rows - dst);
    const int64_t n_src = std::min(n, src_rows);
    segs.push_back({uni(rng, 0, src_rows - n_src), dst, n_src});
    dst += n + uni(rng, 0, 3);
  }
  return segs;
}

TEST(CpuDevice, CopyAndAddRowsMatchPlainLoops) {
  const uint64_t seed = testing::test_seed("CpuDevice.CopyAndAddRows", 11);
  std::mt19937_64 rng(seed);
  CpuDevice dev(2);
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t src_rows = uni(rng, 1, 40), dst_rows = uni(rng, 1, 40);
    const int64_t width = uni(rng, 1, 9);
    const int64_t src_col = uni(rng, 0, 3), dst_col = uni(rng, 0, 3);
    const int64_t src_stride = width + src_col + uni(rng, 0, 4) * (trial % 2);
    const int64_t dst_stride = width + dst_col + uni(rng, 0, 4) * (trial % 3 == 0);
    const std::vector<float> src = random_floats(rng, src_rows * src_stride);
    const std::vector<float> dst0 = random_floats(rng, dst_rows * dst_stride);
    const std::vector<RowCopy> segs = trial == 0 ? std::vector<RowCopy>{} : random_segments(rng, src_rows, dst_rows);
    const RowMap map = dev.prepare(segs);
    EXPECT_EQ(map.on_device(), nullptr);
    for (bool add : {false, true}) {
      const Buffer s = upload(dev, src), d = upload(dev, dst0);
      const Rows from = rows_of(s, src_stride, src_col), to = rows_of(d, dst_stride, dst_col);
      if (add) {
        dev.add_rows(map, from, to, width);
      } else {
        dev.copy_rows(map, from, to, width);
      }
      std::vector<double> want(dst0.begin(), dst0.end());
      for (const RowCopy& sg : segs) {
        for (int64_t i = 0; i < sg.rows; ++i) {
          for (int64_t j = 0; j < width; ++j) {
            double& w = want[(sg.dst_row + i) * dst_stride + dst_col + j];
            const double x = src[(sg.src_row + i) * src_stride + src_col + j];
            w = add ? w + x : x;
          }
        }
      }
      const std::vector<float> got = download(dev, d);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], static_cast<float>(want[i])) << "trial " << trial << (add ? " add" : " copy")
                                                       << " element " << i << " (seed " << seed << ")";
      }
    }
  }
}

TEST(CpuDevice, RefusesAMapThatWritesARowTwice) {
  // A GPU runs a map's segments at once: two of them adding into one row would race there.
  CpuDevice dev(1);
  EXPECT_NO_THROW(dev.prepare({{0, 4, 2}, {5, 0, 4}, {9, 6, 0}}));
  try {
    dev.prepare({{0, 0, 5}, {7, 9, 1}, {10, 3, 2}});
    FAIL() << "overlapping destinations accepted";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("destination row 3 twice"), std::string::npos) << e.what();
  }
}

TEST(CpuDevice, CopyAddFillMatchPlainLoops) {
  const uint64_t seed = testing::test_seed("CpuDevice.CopyAddFill", 12);
  std::mt19937_64 rng(seed);
  CpuDevice dev(1);
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}}) {
    const std::vector<float> a = random_floats(rng, n + 3), b = random_floats(rng, n + 3);
    const Buffer x = upload(dev, a), y = upload(dev, b);
    dev.add(x.f32(1), DType::fp32, y.f32(2), DType::fp32, n);
    std::vector<float> got = download(dev, y);
    for (int64_t i = 0; i < n + 3; ++i) {
      const double want = i >= 2 && i < n + 2 ? double{b[i]} + a[i - 1] : b[i];
      ASSERT_EQ(got[i], static_cast<float>(want)) << "add, n " << n << " element " << i;
    }
    dev.copy(x.f32(), DType::fp32, y.f32(1), DType::fp32, n);
    got = download(dev, y);
    for (int64_t i = 1; i < n + 1; ++i) ASSERT_EQ(got[i], a[i - 1]) << "copy, n " << n;
    dev.fill(y.f32(1), DType::fp32, n, -3.5f);
    got = download(dev, y);
    for (int64_t i = 1; i < n + 1; ++i) ASSERT_EQ(got[i], -3.5f) << "fill, n " << n;
    EXPECT_EQ(got[0], b[0]);  // outside every range
    if (n > 0) {
      EXPECT_EQ(got[n + 1], static_cast<float>(double{b[n + 1]} + a[n]));
    }
  }
}

TEST(CpuDevice, AttentionOpIsTheReferenceKernel) {
  const uint64_t seed = testing::test_seed("CpuDevice.AttentionOp", 14);
  std::mt19937_64 rng(seed);
  CpuDevice dev(2);
  const kernels::AttnShape shape{37, 29, 4, 2, 8};
  // Ragged slices of every type, a row range covered by none (out 0, lse -inf).
  const std::vector<kernels::KernelSlice> slices{
      {0, 10, 0, 29, kernels::KernelSliceType::full}, {10, 20, 0, 12, kernels::KernelSliceType::causal},
      {10, 20, 12, 29, kernels::KernelSliceType::inv_causal}, {25, 37, 3, 20, kernels::KernelSliceType::bi_causal}};
  const int64_t q_n = shape.sq * shape.hq * shape.d;
  const int64_t kv_n = shape.sk * shape.hkv * shape.d;
  const std::vector<float> q = random_floats(rng, q_n), k = random_floats(rng, kv_n), v = random_floats(rng, kv_n),
                           dout = random_floats(rng, q_n);
  const float scale = static_cast<float>(1.0 / std::sqrt(8.0));
  std::vector<float> out(q_n), lse(shape.sq * shape.hq), dq(q_n), dk(kv_n), dv(kv_n);
  kernels::cpu::attention_forward(shape, slices.data(), slices.size(), q.data(), k.data(), v.data(), scale,
                                  out.data(), lse.data(), 1);
  kernels::cpu::attention_backward(shape, slices.data(), slices.size(), q.data(), k.data(), v.data(), out.data(),
                                   dout.data(), lse.data(), scale, dq.data(), dk.data(), dv.data(), 1);

  const int64_t held = dev.memory_bytes();
  auto op = dev.attention(shape, slices);
  EXPECT_EQ(dev.memory_bytes(), held + op->workspace_bytes());
  const Buffer bq = upload(dev, q), bk = upload(dev, k), bv = upload(dev, v), bdo = upload(dev, dout);
  const Buffer bo = dev.alloc(q_n, DType::fp32), bl = dev.alloc(static_cast<int64_t>(lse.size()), DType::fp32);
  const Buffer bdq = dev.alloc(q_n, DType::fp32), bdk = dev.alloc(kv_n, DType::fp32), bdv = dev.alloc(kv_n, DType::fp32);
  op->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::write);
  op->backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), bdq.data(), bdk.data(), bdv.data(),
               kernels::Into::write);
  EXPECT_EQ(download(dev, bo), out);
  EXPECT_EQ(download(dev, bl), lse);
  EXPECT_EQ(download(dev, bdq), dq);
  EXPECT_EQ(download(dev, bdk), dk);
  EXPECT_EQ(download(dev, bdv), dv);
  EXPECT_EQ(lse[22 * shape.hq], kNegInf);  // row 22 sees no key

  // The mask as two ops, the second accumulating (a runner's stages): rows 0..20 are seen by
  // both, rows 25..37 only by the second, rows 20..25 by neither. Float32 merges of float64 sums.
  const std::vector<kernels::KernelSlice> first{slices[0], slices[1]}, rest{slices[2], slices[3]};
  auto op_a = dev.attention(shape, first), op_b = dev.attention(shape, rest);
  op_a->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::write);
  const int64_t before = dev.memory_bytes();
  op_b->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::accumulate);
  EXPECT_EQ(dev.memory_bytes(), before + (q_n + shape.sq * shape.hq) * 4) << "partial buffers counted";
  auto near = [](const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::isinf(want[i])) {
        EXPECT_EQ(got[i], want[i]) << what << " [" << i << "]";
      } else {
        EXPECT_NEAR(got[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << what << " [" << i << "]";
      }
    }
  };
  near(download(dev, bo), out, "accumulated out");
  near(download(dev, bl), lse, "accumulated lse");
  // The same from nothing, as a runner whose first stage gives keys to few rows: lse = -inf, out
  // NaN but 0 on rows 20..25 (no op gives them a key); the first op writes only its keyed rows,
  // so row 30 keeps its NaN out until the second merges into it.
  const int64_t row = shape.hq * shape.d;
  dev.fill(bo.data(), DType::fp32, q_n, std::numeric_limits<float>::quiet_NaN());
  dev.fill(bo.at(20 * row), DType::fp32, 5 * row, 0.f);
  dev.fill(bl.f32(), DType::fp32, bl.elems(), kNegInf);
  op_a->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::write_keyed);
  EXPECT_TRUE(std::isnan(download(dev, bo)[static_cast<size_t>(30 * row)])) << "a row the first op gives no key";
  EXPECT_EQ(download(dev, bl)[static_cast<size_t>(30 * shape.hq)], kNegInf);
  op_b->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::accumulate);
  near(download(dev, bo), out, "out from nothing");
  near(download(dev, bl), lse, "lse from nothing");
  // Told that only rows 0..20 (the first op's) hold results, the second reads nothing elsewhere:
  // rows from 20 on hold NaN lse here instead of the -inf the caller promises.
  dev.fill(bo.data(), DType::fp32, q_n, std::numeric_limits<float>::quiet_NaN());
  dev.fill(bo.at(20 * row), DType::fp32, 5 * row, 0.f);
  dev.fill(bl.f32(), DType::fp32, bl.elems(), kNegInf);
  op_a->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::write_keyed);
  dev.fill(bl.f32() + 20 * shape.hq, DType::fp32, (shape.sq - 20) * shape.hq, std::numeric_limits<float>::quiet_NaN());
  op_b->set_merged_rows({{0, 20}});
  op_b->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::accumulate);
  near(download(dev, bo), out, "out merged into the first op's rows only");
  near(download(dev, bl), lse, "lse merged into the first op's rows only");
  EXPECT_THROW(op_b->set_merged_rows({{5, 30}, {20, 31}}), InternalError);
  op_a->backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), bdq.data(), bdk.data(), bdv.data(),
                 kernels::Into::write);
  std::vector<float> sum_dk = download(dev, bdk), sum_dv = download(dev, bdv);
  op_b->backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), bdq.data(), bdk.data(), bdv.data(),
                 kernels::Into::accumulate);
  const std::vector<float> dk_b = download(dev, bdk), dv_b = download(dev, bdv);
  for (size_t i = 0; i < sum_dk.size(); ++i) {
    sum_dk[i] += dk_b[i];
    sum_dv[i] += dv_b[i];
  }
  near(download(dev, bdq), dq, "accumulated dq");
  near(sum_dk, dk, "summed dk");
  near(sum_dv, dv, "summed dv");
}

// Device::share_dq: the ops' backward calls keep their results and must follow the pass order a
// GPU's shared dQ relies on (common/shared_dq_pass.h), so that the CPU suites catch a runner that
// breaks it; mismatched or repeated ops are refused.
TEST(CpuDevice, SharedDqOpsKeepTheirResultsAndCheckThePassOrder) {
  const uint64_t seed = testing::test_seed("CpuDevice.SharedDq", 15);
  std::mt19937_64 rng(seed);
  CpuDevice dev(1);
  const kernels::AttnShape shape{21, 17, 2, 1, 8};
  const std::vector<kernels::KernelSlice> a{{0, 12, 0, 17, kernels::KernelSliceType::causal}},
      b{{8, 21, 0, 9, kernels::KernelSliceType::full}};
  const int64_t q_n = shape.sq * shape.hq * shape.d, kv_n = shape.sk * shape.hkv * shape.d;
  const Buffer bq = upload(dev, random_floats(rng, q_n)), bk = upload(dev, random_floats(rng, kv_n)),
               bv = upload(dev, random_floats(rng, kv_n)), bdo = upload(dev, random_floats(rng, q_n));
  const Buffer bo = dev.alloc(q_n, DType::fp32), bl = dev.alloc(shape.sq * shape.hq, DType::fp32);
  const Buffer bdq = dev.alloc(q_n, DType::fp32), bdk = dev.alloc(kv_n, DType::fp32), bdv = dev.alloc(kv_n, DType::fp32);
  const Buffer other = dev.alloc(q_n, DType::fp32);
  auto plain_a = dev.attention(shape, a), plain_b = dev.attention(shape, b);
  auto op_a = dev.attention(shape, a), op_b = dev.attention(shape, b);
  plain_a->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::write);
  plain_b->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), kernels::Into::accumulate);
  auto backward = [&](AttentionOp& op, kernels::Into into, const Buffer& dq) {
    op.backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), dq.data(), bdk.data(), bdv.data(),
                into);
  };
  backward(*plain_a, kernels::Into::write, bdq);
  backward(*plain_b, kernels::Into::accumulate, bdq);
  const std::vector<float> want = download(dev, bdq);

  const auto other_rows = dev.attention({22, 17, 2, 1, 8}, a);
  EXPECT_THROW(dev.share_dq({op_a.get(), other_rows.get()}), InternalError);
  EXPECT_THROW(dev.share_dq({op_a.get(), op_a.get()}), InternalError);
  EXPECT_THROW(dev.share_dq({}), InternalError);
  dev.share_dq({op_a.get(), op_b.get()});
  EXPECT_THROW(dev.share_dq({op_b.get(), plain_a.get()}), InternalError);
  for (int pass = 0; pass < 2; ++pass) {  // either op may come first
    AttentionOp& first = pass == 0 ? *op_a : *op_b;
    AttentionOp& second = pass == 0 ? *op_b : *op_a;
    dev.fill(bdq.data(), DType::fp32, q_n, std::nanf(""));
    EXPECT_THROW(backward(second, kernels::Into::accumulate, bdq), std::logic_error) << "a pass starts by writing";
    backward(first, kernels::Into::write, bdq);
    EXPECT_THROW(backward(first, kernels::Into::accumulate, bdq), std::logic_error) << "one call per op and pass";
    EXPECT_THROW(backward(second, kernels::Into::accumulate, other), std::logic_error) << "one dq";
    backward(second, kernels::Into::accumulate, bdq);
    const std::vector<float> got = download(dev, bdq);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << i;
  }
}

// A request that completes after a number of test() calls, counting them.
struct CountingRequest final : Request {
  int tests = 0, complete_after = 0;
  bool waited = false;
  bool test() override { return ++tests > complete_after; }
  void wait() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    waited = true;
  }
};

TEST(CpuDevice, ComputeKeepsPendingRequestsMovingAndTimesEachStep) {
  CpuDevice dev(1);
  dev.begin_pass();
  CountingRequest req;
  req.complete_after = 5;
  bool ran = false;
  dev.compute(
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        ran = true;
      },
      {&req, nullptr});
  EXPECT_TRUE(ran);
  EXPECT_GT(req.tests, 5);  // tested on this thread while the work ran
  dev.compute([&] {}, {});
  CountingRequest other;
  other.complete_after = 1000000;
  dev.wait(&other);
  dev.wait(nullptr);
  EXPECT_TRUE(other.waited);
  const PassStats st = dev.end_pass();
  ASSERT_EQ(st.compute_ms.size(), 2u);
  EXPECT_GE(st.compute_ms[0], 25.0);
  EXPECT_GE(st.comm_wait_ms, 4.0);
  dev.begin_pass();
  EXPECT_TRUE(dev.end_pass().compute_ms.empty());
}

// A request whose test() fails while compute runs on the worker thread: compute() must join the
// worker and let the error through (it used to std::terminate, losing the MPI error message).
TEST(CpuDevice, ARequestErrorDuringComputeReachesTheCaller) {
  struct FailingRequest final : Request {
    int calls = 0;
    bool test() override {
      if (++calls > 1) throw RuntimeError("MPI_Testall failed (test)");
      return false;  // pending at first, so compute() starts the worker
    }
    void wait() override {}
  } req;
  CpuDevice dev(1);
  bool computed = false;
  EXPECT_THROW(dev.compute(
                   [&] {
                     std::this_thread::sleep_for(std::chrono::milliseconds(20));
                     computed = true;
                   },
                   {&req}),
               RuntimeError);
  EXPECT_TRUE(computed);
  // And an error of the work itself, with a request pending.
  CountingRequest slow;
  slow.complete_after = 1000000;
  EXPECT_THROW(dev.compute([] { throw ConfigError("from the work"); }, {&slow}), ConfigError);
}

TEST(CpuDevice, CountsMemoryHeldAndPeak) {
  CpuDevice dev(1);
  EXPECT_EQ(dev.memory_bytes(), 0);
  {
    const Buffer a = dev.alloc(100, DType::fp32);
    EXPECT_EQ(a.bytes(), 400);
    for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(a.f32()[i], 0.f);  // zero-filled
    {
      const Buffer b = dev.alloc(50, DType::fp32);
      const Buffer shared = b;  // a handle, not a copy of the memory
      EXPECT_EQ(dev.memory_bytes(), 600);
    }
    EXPECT_EQ(dev.memory_bytes(), 400);
    EXPECT_EQ(dev.peak_memory_bytes(), 600);
    const Buffer empty = dev.alloc(0, DType::fp32);
    EXPECT_NE(empty.data(), nullptr);
    EXPECT_EQ(dev.memory_bytes(), 400);
  }
  EXPECT_EQ(dev.memory_bytes(), 0);
  EXPECT_EQ(dev.peak_memory_bytes(), 600);
  {
    const Buffer held = dev.alloc(10, DType::fp32);
    dev.reset_peak_memory();  // the next case's peak starts from what is held now
    EXPECT_EQ(dev.peak_memory_bytes(), 40);
  }
  EXPECT_EQ(dev.peak_memory_bytes(), 40);
  {
    auto op = dev.attention({4, 4, 1, 1, 4}, {{0, 4, 0, 4, kernels::KernelSliceType::causal}});
    EXPECT_EQ(op->workspace_bytes(), static_cast<int64_t>(sizeof(kernels::KernelSlice)));
    EXPECT_EQ(dev.memory_bytes(), op->workspace_bytes());
  }
  EXPECT_EQ(dev.memory_bytes(), 0);
}

TEST(CpuDevice, RefusesSixteenBitDtypesNamingThem) {
  CpuDevice dev(1);
  EXPECT_EQ(dev.dtype(), DType::fp32);
  EXPECT_EQ(dev.description(), "cpu (float32, 1 thread)");
  const Buffer f = dev.alloc(4, DType::fp32);
  for (DType t : {DType::bf16, DType::fp16}) {
    const std::string name(to_string(t));
    auto expect_refused = [&](auto&& call, const char* what) {
      try {
        call();
        ADD_FAILURE() << what << " accepted " << name;
      } catch (const ConfigError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("the cpu device stores fp32"), std::string::npos) << msg;
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
      }
    };
    expect_refused([&] { dev.alloc(4, t); }, "alloc");
    expect_refused([&] { dev.copy(f.data(), DType::fp32, f.data(), t, 4); }, "copy");
    expect_refused([&] { dev.add(f.data(), t, f.data(), DType::fp32, 4); }, "add");
    expect_refused([&] { dev.fill(f.data(), t, 4, 0.f); }, "fill");
    const RowMap map = dev.prepare({{0, 0, 1}});
    expect_refused([&] { dev.copy_rows(map, {f.data(), t, 2}, rows_of(f, 2), 2); }, "copy_rows");
    expect_refused([&] { dev.add_rows(map, rows_of(f, 2), {f.data(), t, 2}, 2); }, "add_rows");
  }
  EXPECT_THROW(CpuDevice(0), ConfigError);
}

}  // namespace
}  // namespace magi
