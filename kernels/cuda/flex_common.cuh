// Device building blocks shared by the forward and backward flexible attention kernels:
// the slice band (DESIGN.md §1) on the device, the work-list records the host builds,
// swizzled shared-memory tiles, cp.async, ldmatrix and the m16n8k16 bf16/fp16 tensor-core product.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace magi::kernels::cuda::detail {

// A slice in the kernel's int32 coordinates. type: 0 full, 1 causal, 2 inv_causal, 3 bi_causal.
struct DevSlice {
  int qs, qe, ks, ke, type;
};

// Forward: one record per (query segment, slice) whose band meets the segment; the slice's key tiles
// are k_lo + t * BN for t in [0, ntiles).
struct FwdEntry {
  int slice, k_lo, ntiles, pad;
};
// Forward work item: (query block, query head), entries [entry_begin, entry_end).
struct FwdItem {
  int q0, head, entry_begin, entry_end, ntiles, q_end, pad1, pad2;  // rows [q0, q_end)
};
// Backward: one record per (key block, slice); query tiles q_lo + t * BM, t in [0, ntiles).
struct BwdEntry {
  int slice, q_lo, ntiles, pad;
};
// Backward work item: (key block, kv head); walks every query head of the GQA group.
struct BwdItem {
  int k0, kvhead, entry_begin, entry_end, ntiles, k_end, pad1, pad2;  // keys [k0, k_end)
};

__host__ __device__ inline int band_lo(const DevSlice& s, int q) {
  return (s.type & 2) ? s.ks + (q - s.qs) : s.ks;  // inv_causal (2), bi_causal (3)
}
__host__ __device__ inline int band_hi(const DevSlice& s, int q) {
  return (s.type & 1) ? s.ke - (s.qe - 1 - q) : s.ke;  // causal (1), bi_causal (3)
}
// Whether every (q, k) of [q0, q1) x [k0, k1) is visible in slice s (lo and hi are
// non-decreasing in q, and lo >= ks, hi <= ke).
__host__ __device__ inline bool tile_inside(const DevSlice& s, int q0, int q1, int k0, int k1) {
  return q0 >= s.qs && q1 <= s.qe && band_lo(s, q1 - 1) <= k0 && k1 <= band_hi(s, q0);
}

template <typename T> struct ElemTraits;
template <> struct ElemTraits<__nv_bfloat16> {
  __device__ static inline uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  __device__ static inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static inline __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  __device__ static inline void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <> struct ElemTraits<__half> {
  __device__ static inline uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  __device__ static inline float to_float(__half x) { return __half2float(x); }
  __device__ static inline __half from_float(float x) { return __float2half_rn(x); }
  __device__ static inline void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
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
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ inline void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ inline void ldsm_x4_t(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// Offset of element (row, col) in a [rows][W] tile whose 16-byte chunks are XOR-swizzled by
// row % 8 (row % (W / 8) for narrower tiles, so a chunk never leaves its row), so that the 8 row
// addresses of one ldmatrix fall in different bank groups.
template <int W>
__device__ inline int swz(int row, int col) {
  constexpr int kMask = (W / 8 < 8 ? W / 8 : 8) - 1;
  return row * W + ((((col >> 3) ^ (row & kMask)) << 3) | (col & 7));
}

// Copies rows [r0, r0 + ROWS) of a [rows, stride] global matrix (columns [0, W)) into a swizzled
// shared tile; rows outside [0, rows_end) are zero-filled.
template <int ROWS, int W, int NT, typename T>
__device__ inline void load_tile(T* dst, const T* src, int64_t stride, int r0, int rows_end) {
  constexpr int kChunksPerRow = W / 8;
  constexpr int kChunks = ROWS * kChunksPerRow;
#pragma unroll
  for (int i = 0; i < (kChunks + NT - 1) / NT; ++i) {
    const int c = static_cast<int>(threadIdx.x) + i * NT;
    if (kChunks % NT == 0 || c < kChunks) {
      const int r = c / kChunksPerRow, ch = c % kChunksPerRow;
      const int g = r0 + r;
      const bool ok = g >= 0 && g < rows_end;
      const T* s = ok ? src + static_cast<int64_t>(g) * stride + ch * 8 : src;
      cp_async16(dst + swz<W>(r, ch * 8), s, ok);
    }
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
