// Single-process tests of the runtime's pure parts: the counter-based inputs, the row maps the
// executors copy with, the check's comparison and tolerances, the warm-up's length, the watchdog
// and the fault-injection hook (no MPI calls). The CPU device's own tests: test_cpu_device.cpp.
#include "executor_test_util.h"

#include "core/base/error.h"
#include "runtime/check.h"
#include "runtime/cpu_device.h"
#include "runtime/exec_detail.h"
#include "runtime/executor.h"
#include "runtime/inputs.h"
#include "runtime/min_duration.h"
#include "runtime/watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <set>
#include <thread>

namespace magi {
namespace {

TEST(Inputs, RowsOfAnyLayoutMatchTheWholeTensor) {
  const int H = 3, D = 5;
  std::vector<float> whole(100 * H * D);
  fill_input_rows(7, InputTensor::k, {{0, 100}}, H, D, whole.data());
  const std::vector<Range> layout{{60, 70}, {3, 9}, {90, 100}};
  std::vector<float> part(26 * H * D);
  fill_input_rows(7, InputTensor::k, layout, H, D, part.data());
  int64_t row = 0;
  for (const Range& r : layout) {
    for (int64_t t = r.start; t < r.end; ++t, ++row) {
      for (int i = 0; i < H * D; ++i) ASSERT_EQ(part[row * H * D + i], whole[t * H * D + i]);
    }
  }
  // Values within +-2 sqrt(3), mean about 0 and variance about 1, not constant, different per
  // tensor and seed.
  std::set<float> distinct(whole.begin(), whole.end());
  EXPECT_GT(distinct.size(), whole.size() / 2);
  double sum = 0, sum2 = 0;
  for (float x : whole) {
    EXPECT_GE(x, -3.4642f);
    EXPECT_LE(x, 3.4642f);
    sum += x;
    sum2 += double{x} * x;
  }
  const double n = static_cast<double>(whole.size()), mean = sum / n;
  EXPECT_NEAR(mean, 0.0, 0.1);
  EXPECT_NEAR(sum2 / n - mean * mean, 1.0, 0.15);
  EXPECT_NE(input_value(7, InputTensor::q, 5, 1, 2), input_value(7, InputTensor::k, 5, 1, 2));
  EXPECT_NE(input_value(7, InputTensor::q, 5, 1, 2), input_value(8, InputTensor::q, 5, 1, 2));
}

TEST(RowMaps, MapsLayoutsAndInverts) {
  const std::vector<Range> src{{10, 20}, {0, 5}, {30, 40}};
  const std::vector<Range> dst{{2, 4}, {12, 20}, {30, 32}};
  const auto segs = detail::map_rows(src, dst, 100);
  // dst rows 100..101 <- src rows 10+2..; 102..109 <- src 2..9; 110..111 <- src 15..16
  std::vector<float> s(25), d(112, -1);
  for (int i = 0; i < 25; ++i) s[i] = static_cast<float>(i);
  CpuDevice dev(1);
  const Buffer sb = dev.alloc(25, DType::fp32), db = dev.alloc(112, DType::fp32), bb = dev.alloc(25, DType::fp32);
  dev.upload(s.data(), sb, 0, 25);
  dev.upload(d.data(), db, 0, 112);
  dev.copy_rows(dev.prepare(segs), rows_of(sb, 1), rows_of(db, 1), 1);
  dev.download(db, 0, 112, d.data());
  EXPECT_EQ(d[100], 12);
  EXPECT_EQ(d[101], 13);
  EXPECT_EQ(d[102], 2);
  EXPECT_EQ(d[109], 9);
  EXPECT_EQ(d[110], 15);
  EXPECT_EQ(d[111], 16);
  std::vector<float> back(25, 0);
  dev.add_rows(dev.prepare(detail::inverse(segs)), rows_of(db, 1), rows_of(bb, 1), 1);
  dev.download(bb, 0, 25, back.data());
  EXPECT_EQ(back[12], 12);
  EXPECT_EQ(back[2], 2);
  EXPECT_EQ(back[0], 0);
  EXPECT_THROW(detail::map_rows(src, {{5, 11}}), InternalError);
  EXPECT_TRUE(detail::is_identity(detail::map_rows(src, src)));
}

// One table of tolerances, one entry per dtype; 16-bit storage bounds the lse absolutely.
TEST(Check, TolerancesPerDtype) {
  EXPECT_EQ(check_tolerance(DType::fp32).rel_l2, 1e-5);
  EXPECT_EQ(check_tolerance(DType::fp32).lse_bound, ErrorBound::rel_l2);
  EXPECT_EQ(check_tolerance(DType::bf16).lse_bound, ErrorBound::max_abs);
  EXPECT_EQ(check_tolerance(DType::fp16).lse_tolerance, 1e-2);
  // max_abs decides where it is the bound: an lse off by 0.01 everywhere passes bf16's 2e-2.
  const std::vector<float> ref{100.f, -50.f, 3.f}, got{100.01f, -49.99f, 3.01f};
  EXPECT_TRUE(compare_with_reference("lse", got, ref, 2e-2, ErrorBound::max_abs).ok);
  EXPECT_FALSE(compare_with_reference("lse", got, ref, 1e-3, ErrorBound::max_abs).ok);
}

// The L2 and max errors skip non-finite entries, so the count of non-finite mismatches is the
// check's only guard against NaN and infinities: each of these must fail the tensor on its own,
// however small the error of the other entries.
TEST(Check, NonFiniteMismatchesFailTheTensor) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  constexpr float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> ref{0.5f, -1.f, 2.f, 0.25f};
  struct Bad {
    const char* what;
    float got, ref;
  };
  for (const Bad& b : {Bad{"NaN vs finite", nan, 1.f}, Bad{"finite vs NaN", 1.f, nan}, Bad{"NaN vs NaN", nan, nan},
                       Bad{"+inf vs -inf", inf, -inf}, Bad{"-inf vs finite", -inf, 1.f},
                       Bad{"finite vs -inf", 1.f, -inf}, Bad{"+inf vs finite", inf, 1.f}}) {
    std::vector<float> got = ref, want = ref;
    got.push_back(b.got);
    want.push_back(b.ref);
    const TensorError c = compare_with_reference("out", got, want, 1e-5);
    EXPECT_FALSE(c.ok) << b.what;
    EXPECT_EQ(c.inf_mismatches, 1) << b.what;
    EXPECT_EQ(c.rel_l2, 0.0) << b.what;  // the finite entries agree: only the guard fails it
  }
  // Rows that see no key: -inf on both sides (and equal +inf) match.
  for (float x : {-inf, inf}) {
    std::vector<float> got = ref;
    got.push_back(x);
    const TensorError c = compare_with_reference("lse", got, got, 1e-5);
    EXPECT_TRUE(c.ok);
    EXPECT_EQ(c.inf_mismatches, 0);
  }
  // And the L2 error still decides for finite values.
  std::vector<float> off = ref;
  off[0] += 0.1f;
  EXPECT_FALSE(compare_with_reference("dq", off, ref, 1e-5).ok);
}

// A phase made to last the minimum at its iterations' mean pace: none added without iterations,
// once it lasted long enough, or with no minimum; an iteration counted as at least 1 us.
TEST(MinDuration, ExtraIterationsReachTheMinimum) {
  EXPECT_EQ(extra_iterations_to_last(1.0, 4, 0.5), 4);   // 0.125 s each: 0.5 s more
  EXPECT_EQ(extra_iterations_to_last(1.0, 2, 0.6), 2);   // 0.3 s each: 1.33, rounded up
  EXPECT_EQ(extra_iterations_to_last(1.0, 1, 0.6), 1);
  EXPECT_EQ(extra_iterations_to_last(1.0, 3, 1.0), 0);
  EXPECT_EQ(extra_iterations_to_last(1.0, 3, 2.5), 0);
  EXPECT_EQ(extra_iterations_to_last(1.0, 0, 0.0), 0);
  EXPECT_EQ(extra_iterations_to_last(0.0, 5, 0.01), 0);
  EXPECT_EQ(extra_iterations_to_last(1.0, 2, 0.0), 1000000);  // instant iterations: 1 us each
}

// The watchdog fires once a step or a wait outlives the timeout, naming the step and what the
// rank was waiting for; a disarmed step, an ended wait and a zero timeout bound nothing.
TEST(Watchdog, FiresOnceNamingTheStepAndTheWait) {
  std::mutex m;
  std::vector<std::string> fired;
  auto record = [&](const std::string& message) {
    std::lock_guard<std::mutex> lock(m);
    fired.push_back(message);
  };
  auto fired_messages = [&] {
    std::lock_guard<std::mutex> lock(m);
    return fired;
  };
  {
    Watchdog w(0.2, record);
    w.arm("case a/0: forward iteration 1 of 2");
    const Watchdog::Wait wait(&w, "barrier");
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  ASSERT_EQ(fired_messages().size(), 1u);
  for (const char* part : {"case a/0: forward iteration 1 of 2: not done after ", "s, waiting for barrier",
                           "a peer rank may be stopped"}) {
    EXPECT_NE(fired_messages()[0].find(part), std::string::npos) << fired_messages()[0];
  }
  fired.clear();
  {
    Watchdog w(0.2, record);
    w.arm("case a/1: backward iteration 2 of 2");  // computing, not waiting
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  ASSERT_EQ(fired_messages().size(), 1u);
  EXPECT_NE(fired_messages()[0].find("in this rank's own compute"), std::string::npos) << fired_messages()[0];
  fired.clear();
  {
    Watchdog w(0.2, record);
    { const Watchdog::Wait wait(&w, "the check's verdict from rank 0");  // outside any step
      std::this_thread::sleep_for(std::chrono::milliseconds(600)); }
  }
  ASSERT_EQ(fired_messages().size(), 1u);
  EXPECT_NE(fired_messages()[0].find("still waiting for the check's verdict from rank 0"), std::string::npos)
      << fired_messages()[0];
  fired.clear();
  {
    Watchdog w(0.3, record);
    for (int i = 0; i < 6; ++i) {  // many short steps and waits, each well inside the timeout
      w.arm("step");
      { const Watchdog::Wait wait(&w, "barrier");
        std::this_thread::sleep_for(std::chrono::milliseconds(100)); }
      w.disarm();
    }
    Watchdog off(0, record);
    off.arm("never bounded");
    const Watchdog::Wait wait(&off, "barrier");
    const Watchdog::Wait none(nullptr, "barrier");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(fired_messages().empty()) << fired_messages()[0];
}

// MAGI_FAIL_RANK=<r>[:throw|stall|nan]; anything else is a usage error naming the value (it
// used to be read with atoi: "abc" made rank 0 fail).
TEST(FaultInjection, ParsesRankAndMode) {
  struct Case {
    const char* value;
    FaultInjection::Mode mode;
    int rank;
  };
  for (const Case& c : {Case{"2", FaultInjection::Mode::fail, 2}, Case{"0:throw", FaultInjection::Mode::fail, 0},
                        Case{"1:stall", FaultInjection::Mode::stall, 1}, Case{"3:nan", FaultInjection::Mode::nan, 3}}) {
    ::setenv("MAGI_FAIL_RANK", c.value, 1);
    const FaultInjection f = fault_injection_from_env();
    EXPECT_EQ(f.mode, c.mode) << c.value;
    EXPECT_EQ(f.rank, c.rank) << c.value;
  }
  for (const char* bad : {"abc", "-1", "1:sleep", ":nan", "1:"}) {
    ::setenv("MAGI_FAIL_RANK", bad, 1);
    try {
      fault_injection_from_env();
      FAIL() << bad << " accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("MAGI_FAIL_RANK=") + bad + ": expected"), std::string::npos)
          << e.what();
    }
  }
  ::unsetenv("MAGI_FAIL_RANK");
  EXPECT_EQ(fault_injection_from_env().mode, FaultInjection::Mode::none);
}

}  // namespace
}  // namespace magi
