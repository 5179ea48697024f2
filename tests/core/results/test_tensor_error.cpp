#include "core/results/tensor_error.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

TEST(TensorError, TheToleranceBoundsTheNamedFigure) {
  const TensorDiff d{0.5, 0.01, 0};
  EXPECT_FALSE(judge("out", d, ErrorBound::rel_l2, 0.02).ok);  // rel_l2 0.5 > 0.02
  EXPECT_TRUE(judge("lse", d, ErrorBound::max_abs, 0.02).ok);  // max_abs 0.01 <= 0.02
  const TensorError e = judge("lse", d, ErrorBound::max_abs, 0.02);
  EXPECT_EQ(e.name, "lse");
  EXPECT_DOUBLE_EQ(e.rel_l2, 0.5);
  EXPECT_DOUBLE_EQ(e.max_abs, 0.01);
  EXPECT_EQ(to_string(e.bound), "max_abs");
}

TEST(TensorError, ANonFiniteMismatchFailsWhateverTheFigures) {
  EXPECT_FALSE(judge("lse", TensorDiff{0, 0, 1}, ErrorBound::max_abs, 1.0).ok);
}

}  // namespace
}  // namespace magi
