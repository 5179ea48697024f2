// Checked arithmetic: exact results in range, a ConfigError naming the figure beyond it.
#include "core/base/checked.h"

#include <gtest/gtest.h>

#include <limits>

namespace magi {
namespace {

TEST(Checked, ExactInRangeErrorBeyond) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(checked_mul(int64_t{1} << 31, int64_t{1} << 31, "x"), int64_t{1} << 62);
  EXPECT_EQ(checked_add(kMax - 1, 1, "x"), kMax);
  EXPECT_EQ(checked_mul(-3, 5, "x"), -15);
  try {
    checked_mul(int64_t{1} << 32, int64_t{1} << 31, "total_tokens x K/V bytes per token");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("total_tokens x K/V bytes per token"), std::string::npos) << what;
    EXPECT_NE(what.find("4294967296 x 2147483648"), std::string::npos) << what;
  }
  EXPECT_THROW(checked_add(kMax, 1, "sum"), ConfigError);
  EXPECT_THROW(checked_mul(kMax / 2 + 1, 2, "product"), ConfigError);
}

}  // namespace
}  // namespace magi
