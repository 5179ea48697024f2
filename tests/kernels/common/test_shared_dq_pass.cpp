// The call order of plans sharing one dQ (kernels/common/shared_dq_pass.h): every pass each member
// once, the first writing, the rest accumulating into the same dq; anything else is refused before
// it is recorded, so a caller that breaks the order cannot leave a device's shared sums half-converted.
#include "common/shared_dq_pass.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace magi::kernels::testing {
namespace {

// The message of the logic_error `f` throws ("" when it throws none).
template <typename F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const std::logic_error& e) {
    return e.what();
  }
  return "";
}

TEST(SharedDqPass, PassesOfEveryMemberOnceInAnyOrder) {
  SharedDqPass pass(3);
  float dq = 0;
  EXPECT_TRUE(pass.between_passes());
  EXPECT_TRUE(pass.enter(1, Into::write, &dq));
  EXPECT_FALSE(pass.between_passes());
  EXPECT_FALSE(pass.enter(0, Into::accumulate, &dq));
  EXPECT_FALSE(pass.enter(2, Into::accumulate, &dq));
  EXPECT_TRUE(pass.between_passes());
  // The next pass starts afresh, in another order.
  EXPECT_TRUE(pass.enter(2, Into::write, &dq));
  EXPECT_FALSE(pass.enter(1, Into::accumulate, &dq));
  EXPECT_FALSE(pass.enter(0, Into::accumulate, &dq));
  EXPECT_TRUE(pass.between_passes());
  // One member: every call is a whole pass.
  SharedDqPass one(1);
  EXPECT_TRUE(one.enter(0, Into::write, &dq));
  EXPECT_TRUE(one.enter(0, Into::write, &dq));
}

TEST(SharedDqPass, RefusesCallsOutOfOrderWithoutRecordingThem) {
  SharedDqPass pass(2);
  float dq = 0, other = 0;
  EXPECT_NE(refusal([&] { pass.enter(0, Into::accumulate, &dq); }).find("first backward call of a pass must write"),
            std::string::npos);
  EXPECT_TRUE(pass.between_passes());
  pass.enter(0, Into::write, &dq);
  EXPECT_NE(refusal([&] { pass.enter(0, Into::accumulate, &dq); }).find("member 0 called twice"), std::string::npos);
  EXPECT_NE(refusal([&] { pass.enter(1, Into::write, &dq); }).find("only the first writes"), std::string::npos);
  EXPECT_NE(refusal([&] { pass.enter(1, Into::accumulate, &other); }).find("another dq"), std::string::npos);
  EXPECT_NE(refusal([&] { pass.enter(2, Into::accumulate, &dq); }).find("member 2 of 2"), std::string::npos);
  // None of the refused calls counted: member 1's proper call ends the pass.
  EXPECT_FALSE(pass.between_passes());
  EXPECT_FALSE(pass.enter(1, Into::accumulate, &dq));
  EXPECT_TRUE(pass.between_passes());
  EXPECT_THROW(SharedDqPass(0), std::invalid_argument);
}

}  // namespace
}  // namespace magi::kernels::testing
