// Device building blocks shared by the forward and backward flexible attention kernels: the
// work-list records and slice band (common/flex_work_list.h), element conversions, swizzled
// shared-memory tiles, cp.async and the tile loads wgmma reads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/flex_work_list.h"

#include <cstdint>

namespace magi::kernels::cuda::detail {

using flex::BwdEntry;
using flex::BwdItem;
using flex::BwdTileCursor;
using flex::DevSlice;
using flex::FwdEntry;
using flex::FwdItem;
using flex::band_hi;
using flex::band_lo;
using flex::tile_inside;

template <typename T> struct ElemTraits;
template <> struct ElemTraits<__nv_bfloat16> {
  __device__ static inline uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  __device__ static inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static inline __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct ElemTraits<__half> {
  __device__ static inline uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  __device__ static inline float to_float(__half x) { return __half2float(x); }
  __device__ static inline __half from_float(float x) { return __float2half_rn(x); }
};

__device__ inline uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte asynchronous copy global -> shared; zero-fills when !pred (src must still be mapped).
__device__ inline void cp_async16(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(pred ? 16 : 0));
}
__device__ inline void cp_async4(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(pred ? 4 : 0));
}
// Brings the line holding p into the L1 (no register waits for it).
__device__ inline void prefetch_l1(const void* p) { asm volatile("prefetch.global.L1 [%0];\n" ::"l"(p)); }
// Programmatic dependent launch (sm_90; FlexAttention's Launch::overlap). launch_dependents: the
// next kernel on the stream, if launched dependent, may start once every block of this one has
// started or ended. wait_previous: returns once the kernel this one was launched dependent on has
// completed with its memory visible (at once when it was launched plainly).
__device__ inline void pdl_launch_dependents() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
__device__ inline void pdl_wait_previous() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
// What the kernel after a dependent one waits for is that one's completion, and nothing documents
// that it implies the completion of the kernel it depends on: a dependent kernel none of whose
// threads waited could end first, and the kernel after it read what the earlier one still writes.
// A kernel that may wait for nothing calls this before its threads exit: block 0 waits, and since a
// grid ends when its last block does, the kernel ends after the one it depends on. Block 0 runs
// one of the longest items (the host launches the longest groups first), so it seldom ends first;
// the wait returns at once when the kernel was launched plainly or the block waited already.
__device__ inline void pdl_end_after_previous() {
  if (blockIdx.x == 0) pdl_wait_previous();
}

// Ends the basic block here for ptxas, which schedules each block on its own, so that what comes
// before stays before: a branch on a condition the caller knows to be false (it traps if ever
// true), which no compiler pass can drop.
__device__ inline void schedule_boundary(bool never) {
  if (never) __trap();
}

__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Rows [r0, r0 + ROWS) of a [rows, stride] global matrix (columns [0, D)) into the layout wgmma
// reads with 128-byte swizzle: D / 64 column blocks, each [ROWS][64] with 128-byte rows whose
// 16-byte chunks are XOR-ed with row % 8 (blocks must start 1024-byte aligned).
template <int ROWS, int D, int NT, typename T>
__device__ inline void load_tile_sw128(T* dst, const T* src, int64_t stride, int r0, int rows_end) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = ROWS * kChunksPerRow;
#pragma unroll
  for (int i = 0; i < (kChunks + NT - 1) / NT; ++i) {
    const int c = static_cast<int>(threadIdx.x) + i * NT;
    if (kChunks % NT == 0 || c < kChunks) {
      const int r = c / kChunksPerRow, ch = c % kChunksPerRow;
      const int g = r0 + r;
      const bool ok = g >= 0 && g < rows_end;
      const T* s = ok ? src + static_cast<int64_t>(g) * stride + ch * 8 : src;
      cp_async16(dst + (ch >> 3) * (ROWS * 64) + r * 64 + (((ch & 7) ^ (r & 7)) << 3), s, ok);
    }
  }
}

// Offset of element (row, col) in a [rows][W] tile whose 16-byte chunks are XOR-swizzled by
// row % 8 (row % (W / 8) for narrower tiles, so a chunk never leaves its row). For W = 64 (128-byte
// rows) this is the 128-byte swizzle wgmma reads (the backward's dS^T tile).
template <int W>
__device__ inline int swz(int row, int col) {
  constexpr int kMask = (W / 8 < 8 ? W / 8 : 8) - 1;
  return row * W + ((((col >> 3) ^ (row & kMask)) << 3) | (col & 7));
}

// A staging tile's layout: element (row, col) of a [rows][W] tile at swz<W>(row, col).
template <int W>
struct SwizzledRows {
  __device__ static int at(int row, int col) { return swz<W>(row, col); }
};

// Rows [0, n) of a [ROWS][D] tile staged in shared memory (Layout::at(row, col): SwizzledRows, or
// any layout whose 16-byte chunks stay whole) to global rows dst + r * stride, one 16-byte chunk
// per thread and step: whole rows per warp, where storing the accumulator fragments directly
// would cost eight 128-byte lines per 4-byte store instruction. tid: the thread's index among the
// NT that share the work.
template <int ROWS, int D, int NT, typename Layout = SwizzledRows<D>, typename T>
__device__ inline void store_staged_rows(const T* tile, T* dst, int64_t stride, int n, int tid) {
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int c = tid; c < ROWS * kChunks; c += NT) {
    const int r = c / kChunks, ch = c % kChunks;
    if (r < n) *reinterpret_cast<uint4*>(dst + r * stride + ch * 8) = *reinterpret_cast<const uint4*>(tile + Layout::at(r, ch * 8));
  }
}

// The inverse of store_staged_rows: global rows src + r * stride, r in [0, n), into a [ROWS][D]
// tile in Layout, by cp.async; rows from n on are zero-filled without a read. The caller commits
// and waits.
template <int ROWS, int D, int NT, typename Layout = SwizzledRows<D>, typename T>
__device__ inline void load_staged_rows(T* tile, const T* src, int64_t stride, int n, int tid) {
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int c = tid; c < ROWS * kChunks; c += NT) {
    const int r = c / kChunks, ch = c % kChunks;
    cp_async16(tile + Layout::at(r, ch * 8), r < n ? src + r * stride + ch * 8 : src, r < n);
  }
}

__device__ inline float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ inline float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

}  // namespace magi::kernels::cuda::detail
