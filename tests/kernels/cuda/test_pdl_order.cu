// The order the stage-wise kernels rely on under programmatic dependent launch
// (pdl_end_after_previous, flex_device_helpers.cuh): in a chain K1 -> K2 -> K3, each launched
// dependent on the one before, K3 waits only for K2, so K2 must not end before K1. K1 spins, then
// raises a flag; K2 waits for nothing unless it calls pdl_end_after_previous; K3 waits for K2 and
// reads the flag. With the call, K3 must see the flag raised, whichever of K2's blocks ends first.
// Without it the outcome is the hardware's: printed, not asserted, since that is what the call
// makes irrelevant.
#include "cuda/flex_device_helpers.cuh"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>

namespace {

using magi::kernels::cuda::detail::pdl_end_after_previous;
using magi::kernels::cuda::detail::pdl_launch_dependents;
using magi::kernels::cuda::detail::pdl_wait_previous;

__global__ void spin_then_raise(int* flag, long long cycles) {
  pdl_launch_dependents();
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
  __threadfence();
  atomicExch(flag, 1);
}

__global__ void wait_for_nothing(bool end_in_order) {
  pdl_launch_dependents();
  if (end_in_order) pdl_end_after_previous();
}

__global__ void read_after_wait(const int* flag, int* seen) {
  pdl_wait_previous();
  *seen = atomicAdd(const_cast<int*>(flag), 0);
}

template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), unsigned grid, Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(32);
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

// Whether K3 saw K1's flag, with K2 of `k2_blocks` blocks calling pdl_end_after_previous or not.
bool k3_sees_k1(bool end_in_order, unsigned k2_blocks, long long spin_cycles) {
  int* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, 2 * sizeof(int)), cudaSuccess);
  EXPECT_EQ(cudaMemset(d, 0, 2 * sizeof(int)), cudaSuccess);
  spin_then_raise<<<1, 32>>>(d, spin_cycles);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(launch_dependent(wait_for_nothing, k2_blocks, end_in_order), cudaSuccess);
  EXPECT_EQ(launch_dependent(read_after_wait, 1u, static_cast<const int*>(d), d + 1), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  int seen = -1;
  EXPECT_EQ(cudaMemcpy(&seen, d + 1, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  return seen == 1;
}

TEST(PdlOrder, KernelEndsAfterThePreviousOne) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    GTEST_SKIP() << "no CUDA device visible";
  }
  int major = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);
  if (major < 9) GTEST_SKIP() << "programmatic dependent launch needs sm_90";
  constexpr long long kSpin = 20'000'000;  // about 10 ms at 2 GHz: K2 and K3 start well inside it
  for (unsigned blocks : {1u, 4u, 264u}) {
    for (int rep = 0; rep < 3; ++rep)
      EXPECT_TRUE(k3_sees_k1(true, blocks, kSpin)) << "K2 of " << blocks << " blocks, run " << rep;
    int ordered = 0;
    for (int rep = 0; rep < 3; ++rep) ordered += k3_sees_k1(false, blocks, kSpin) ? 1 : 0;
    std::printf("  without pdl_end_after_previous, K2 of %u blocks: K3 saw K1 done in %d of 3 runs\n", blocks,
                ordered);
  }
}

}  // namespace
