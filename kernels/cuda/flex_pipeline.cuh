// The primitives of a warp-specialised Hopper pipeline (sm_90a): shared-memory mbarriers with
// transaction counts, TMA tile loads that complete on them, register reallocation between the
// producer and consumer warpgroups, and named barriers for the warpgroups that keep running
// after the producer has left.
#pragma once

#include "flex_device_helpers.cuh"

#include <cstdint>

namespace magi::kernels::cuda::detail {

__device__ inline void mbar_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}
// Makes the barriers one thread initialised visible to the block and to the TMA unit (the async
// proxy); the block synchronises after it.
__device__ inline void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
}
// One arrival that also announces `bytes` of TMA transactions the current phase waits for.
__device__ inline void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ inline void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// An arrival on `bar` once every cp.async this thread issued before has landed; the barrier's
// expected arrival count includes it (.noinc).
__device__ inline void cp_async_mbar_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Waits until the phase of parity `parity` has completed (phases alternate 0, 1, 0, ...).
__device__ inline void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  } while (!done);
}

// TMA load of a 3D box (c0, c1, c2 its first element) through a tensor map (the address of a
// __grid_constant__ kernel parameter) into shared memory; its bytes complete on `bar` (which
// mbar_arrive_expect_tx announced them to). Elements outside the tensor arrive as zeros.
__device__ inline void tma_load_3d(void* dst, const void* tensor_map, uint64_t* bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(
          smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// Fetches a tensor map (the address of a __grid_constant__ kernel parameter) into the TMA unit's
// descriptor cache, so that a block's first loads do not wait for it.
__device__ inline void tma_prefetch_map(const void* tensor_map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(tensor_map)) : "memory");
}

// Register reallocation: every thread of the warpgroup executes it.
template <int N>
__device__ inline void regs_release() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ inline void regs_claim() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads, whole warps.
__device__ inline void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ inline void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Pins the values of an accumulator array at this point: the compiler may not move reads or
// writes of them across it (wgmma writes them asynchronously until its wait).
template <int N>
__device__ inline void fence_operands(float (&a)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(a[i])::"memory");
}

}  // namespace magi::kernels::cuda::detail
