// Forward kernel (Hopper wgmma, a two-stage cp.async K/V ring, exp2 online softmax). One thread
// block per work item (query block of BM rows, query head). The item walks the key tiles of every
// slice that meets its rows (host-built entries), so rows shared by several slices get one softmax
// over the union of their keys: the merge is exact and needs no second pass.
// MERGE (FlexAttention::forward with Into::accumulate): the epilogue merges the item's result
// into what out and lse already hold for its rows (the result over other keys) by log-sum-exp,
// in fp32, rounding once; the earlier out rows are staged through shared memory like the output.
// Launched to overlap the previous stage's kernel (Launch::overlap), a MERGE block computes its
// item while that kernel's last blocks run and waits for it only before reading out and lse.
#pragma once

#include "flex_device_helpers.cuh"
#include "flex_wgmma.cuh"

#include <type_traits>

namespace magi::kernels::cuda::detail {

template <typename T>
struct FwdParams {
  const T* q;
  const T* k;
  const T* v;
  T* out;
  float* lse;
  const DevSlice* slices;
  const FwdEntry* entries;
  const FwdItem* items;
  int sq, sk, hq, hkv;
  float scale_log2;  // softmax scale * log2(e)
};

template <int D, int BM, int BN, int STAGES>
constexpr int fwd_wgmma_smem_bytes() {
  return (BM * D + 2 * STAGES * BN * D) * 2 + 1024;
}

// The two matrix products on wgmma: S = Q K^T (both operands from shared memory) and O += P V (P from registers,
// V from shared memory, transposed). NWG warpgroups of 64 query rows each; every thread also
// issues cp.async loads into a STAGES-deep K/V ring (no producer specialisation yet).
template <typename T, int D, int NWG, int BN, int STAGES, int MINB, bool MERGE>
__global__ void __launch_bounds__(NWG * 128, MINB) flex_fwd_wgmma_kernel(const FwdParams<T> p) {
  constexpr int NW = NWG * 4;
  constexpr int BM = NWG * 64;
  constexpr int NT = NW * 32;
  static_assert(BN % 64 == 0 && D % 64 == 0 && STAGES >= 2, "tile shapes");
  constexpr bool kBF16 = std::is_same_v<T, __nv_bfloat16>;
  using WS = Wgmma<BN, kBF16>;
  using WO = Wgmma<D, kBF16>;
  using E = ElemTraits<T>;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  T* sQ = reinterpret_cast<T*>(base);
  T* sK = sQ + BM * D;
  T* sV = sK + STAGES * BN * D;

  pdl_launch_dependents();
  const FwdItem item = p.items[blockIdx.x];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int wg = warp / 4;
  const int q0 = item.q0;   // first row of the item (host: segment start)
  const int q_end = item.q_end;  // rows [q0, q_end) are this item's to write
  const int h = item.head;
  const int kvh = h / (p.hq / p.hkv);
  const int64_t q_stride = static_cast<int64_t>(p.hq) * D;
  const int64_t k_stride = static_cast<int64_t>(p.hkv) * D;
  const T* gq = p.q + static_cast<int64_t>(h) * D;
  const T* gk = p.k + static_cast<int64_t>(kvh) * D;
  const T* gv = p.v + static_cast<int64_t>(kvh) * D;

  load_tile_sw128<BM, D, NT>(sQ, gq, q_stride, q0, p.sq);

  const int ntot = item.ntiles;
  int le = item.entry_begin, lt = 0;
  int ce = item.entry_begin, ct = 0;
  auto issue = [&](int tile_index) {
    if (tile_index < ntot) {
      if (tile_index > 0 && ++lt == p.entries[le].ntiles) { ++le; lt = 0; }
      const int k0n = tile_index == 0 ? item.k_first : p.entries[le].k_lo + lt * BN;
      const int st = tile_index % STAGES;
      load_tile_sw128<BN, D, NT>(sK + st * BN * D, gk, k_stride, k0n, p.sk);
      load_tile_sw128<BN, D, NT>(sV + st * BN * D, gv, k_stride, k0n, p.sk);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) issue(i);

  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.f, 0.f};
  const int row_in_blk = warp * 16 + lane / 4;
  const uint32_t q_addr = smem_addr(sQ) + wg * 64 * 128;

  for (int it = 0; it < ntot; ++it) {
    cp_async_wait<STAGES - 2>();
    fence_proxy_async();  // cp.async wrote what the tensor cores read next
    __syncthreads();
    issue(it + STAGES - 1);

    const FwdEntry ent = p.entries[ce];
    const DevSlice sl = p.slices[ent.slice];
    const int k0 = ent.k_lo + ct * BN;
    const uint32_t k_addr = smem_addr(sK + (it % STAGES) * BN * D);
    const uint32_t v_addr = smem_addr(sV + (it % STAGES) * BN * D);

    float sacc[BN / 2];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint64_t da = wgmma_desc(q_addr + (kk / 4) * (BM * 128) + (kk % 4) * 32, 0, 1024);
      const uint64_t db = wgmma_desc(k_addr + (kk / 4) * (BN * 128) + (kk % 4) * 32, 0, 1024);
      WS::ss(sacc, da, db, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    wgmma_wait<0>();

    if (!tile_inside(sl, q0, q_end, k0, k0 + BN)) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int q = q0 + row_in_blk + 8 * r;
        int lo = 1, hi = 0;
        if (q >= sl.qs && q < sl.qe) { lo = band_lo(sl, q); hi = band_hi(sl, q); }
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int k = k0 + j * 8 + (lane & 3) * 2 + c;
            if (k < lo || k >= hi) sacc[4 * j + 2 * r + c] = -INFINITY;
          }
        }
      }
    }

    // Online softmax (base 2); m_run is in units of score * scale * log2(e).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(sacc[4 * j + 2 * r], sacc[4 * j + 2 * r + 1]));
      mx = quad_max(mx);
      const float m_new = fmaxf(m_run[r], mx * p.scale_log2);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;
      const float corr = exp2f(m_run[r] - m_use);
      m_run[r] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float e = exp2f(fmaf(sacc[4 * j + 2 * r + c], p.scale_log2, -m_use));
          sacc[4 * j + 2 * r + c] = e;
          sum += e;
        }
      }
      l_run[r] = l_run[r] * corr + sum;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) { o[4 * i + 2 * r] *= corr; o[4 * i + 2 * r + 1] *= corr; }
    }

    // O += P V.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t a[4];
      a[0] = E::pack(sacc[8 * kk + 0], sacc[8 * kk + 1]);
      a[1] = E::pack(sacc[8 * kk + 2], sacc[8 * kk + 3]);
      a[2] = E::pack(sacc[8 * kk + 4], sacc[8 * kk + 5]);
      a[3] = E::pack(sacc[8 * kk + 6], sacc[8 * kk + 7]);
      WO::rs_t(o, a, wgmma_desc(v_addr + kk * 16 * 128, BN * 128, 1024));
    }
    wgmma_commit();
    wgmma_wait<0>();
    if (++ct == ent.ntiles) { ++ce; ct = 0; }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warpgroup is done with sQ, which stages the output

  // Epilogue: normalise, out (input dtype) through shared memory to whole rows, lse (natural log,
  // -inf for empty rows). MERGE: the rows' earlier out staged in the free K/V ring first.
  T* sO = sQ;
  T* sPrev = sK;
  static_assert(!MERGE || 2 * STAGES * BN >= BM, "the K/V ring holds the earlier out rows");
  if constexpr (MERGE) {
    pdl_wait_previous();  // out and lse as the previous stage left them
    load_staged_rows<BM, D, NT>(sPrev, p.out + static_cast<int64_t>(q0) * q_stride + static_cast<int64_t>(h) * D,
                                q_stride, q_end - q0);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float l = quad_sum(l_run[r]);
    const int row = row_in_blk + 8 * r;
    const bool mine = q0 + row < q_end;
    float lse_new = l > 0.f ? m_run[r] * kLn2 + logf(l) : -INFINITY;
    float w_new = l > 0.f ? 1.f / l : 0.f, w_prev = 0.f;
    if constexpr (MERGE) {
      // lse' = log(e^prev + e^new); a side at -inf weighs 0 (its out is never read). The quad's
      // writer reads prev and hands it round, so no lane reads after the writer stored.
      const bool reader = (lane & 3) == 0 && mine;
      const float prev = __shfl_sync(0xffffffffu, reader ? p.lse[static_cast<int64_t>(q0 + row) * p.hq + h] : -INFINITY,
                                     lane & ~3);
      const float mx = fmaxf(prev, lse_new);
      if (mx != -INFINITY) {
        const float ep = expf(prev - mx), en = expf(lse_new - mx), sum = ep + en;
        w_prev = ep / sum;
        w_new *= en / sum;
        lse_new = mx + logf(sum);
      }
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      const int at = swz<D>(row, i * 8 + (lane & 3) * 2);
      float lo = o[4 * i + 2 * r] * w_new, hi = o[4 * i + 2 * r + 1] * w_new;
      if (MERGE && w_prev > 0.f) {
        lo = fmaf(E::to_float(sPrev[at]), w_prev, lo);
        hi = fmaf(E::to_float(sPrev[at + 1]), w_prev, hi);
      }
      *reinterpret_cast<uint32_t*>(sO + at) = E::pack(lo, hi);
    }
    if ((lane & 3) == 0 && mine) p.lse[static_cast<int64_t>(q0 + row) * p.hq + h] = lse_new;
  }
  __syncthreads();
  store_staged_rows<BM, D, NT>(sO, p.out + static_cast<int64_t>(q0) * q_stride + static_cast<int64_t>(h) * D, q_stride, q_end - q0);
}


}  // namespace magi::kernels::cuda::detail
