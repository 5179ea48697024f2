// Single-process tests of the runtime's pure parts: the counter-based inputs, the row maps the
// executors copy with, and the overlap helper's error path (no MPI calls).
#include "executor_test_util.h"

#include "core/base/error.h"
#include "runtime/exec_detail.h"
#include "runtime/executor.h"
#include "runtime/inputs.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
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
  // Values in [-1, 1), not constant, different per tensor and seed.
  std::set<float> distinct(whole.begin(), whole.end());
  EXPECT_GT(distinct.size(), whole.size() / 2);
  for (float x : whole) {
    EXPECT_GE(x, -1.f);
    EXPECT_LT(x, 1.f);
  }
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
  detail::copy_rows(segs, s.data(), d.data(), 1);
  EXPECT_EQ(d[100], 12);
  EXPECT_EQ(d[101], 13);
  EXPECT_EQ(d[102], 2);
  EXPECT_EQ(d[109], 9);
  EXPECT_EQ(d[110], 15);
  EXPECT_EQ(d[111], 16);
  std::vector<float> back(25, 0);
  detail::add_rows(detail::inverse(segs), d.data(), back.data(), 1);
  EXPECT_EQ(back[12], 12);
  EXPECT_EQ(back[2], 2);
  EXPECT_EQ(back[0], 0);
  EXPECT_THROW(detail::map_rows(src, {{5, 11}}), InternalError);
  EXPECT_TRUE(detail::is_identity(detail::map_rows(src, src)));
}

// A request whose test() fails while compute runs on the worker thread: overlap() must join the
// worker and let the error through (it used to std::terminate, losing the MPI error message).
TEST(Overlap, ARequestErrorDuringComputeReachesTheCaller) {
  struct FailingRequest final : Request {
    int calls = 0;
    bool test() override {
      if (++calls > 1) throw RuntimeError("MPI_Testall failed (test)");
      return false;  // pending at first, so overlap() starts the worker
    }
    void wait() override {}
  } req;
  detail::PassStats st;
  bool computed = false;
  EXPECT_THROW(detail::overlap(
                   [&] {
                     std::this_thread::sleep_for(std::chrono::milliseconds(20));
                     computed = true;
                   },
                   {}, &req, st),
               RuntimeError);
  EXPECT_TRUE(computed);
}

}  // namespace
}  // namespace magi
