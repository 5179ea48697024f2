// Seeds for property tests: printed, and overridable with MAGI_TEST_SEED=<n> in the environment.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace magi::testing {

// The seed a property test uses: MAGI_TEST_SEED if set, else `fallback`. Printed so that a
// failure can be replayed with MAGI_TEST_SEED=<seed>.
inline uint64_t test_seed(const char* test_name, uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("MAGI_TEST_SEED"); env && *env) {
    seed = std::strtoull(env, nullptr, 10);
  }
  std::printf("[seed] %s: MAGI_TEST_SEED=%llu\n", test_name, static_cast<unsigned long long>(seed));
  return seed;
}

// Like test_seed, but without MAGI_TEST_SEED a new seed every run (from std::random_device):
// for tests whose inputs must be fresh each run (the GPU kernels' checks). Printed for replay.
inline uint64_t fresh_test_seed(const char* test_name) {
  std::random_device device;
  const uint64_t fresh = (static_cast<uint64_t>(device()) << 32) | device();
  return test_seed(test_name, fresh);
}

}  // namespace magi::testing
