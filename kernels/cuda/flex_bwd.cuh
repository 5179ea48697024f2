// Backward kernel, FlashAttention-2 style with the key block as the outer loop, warp-specialised in
// FlashAttention-3's manner: one thread block per work item (key block of BN keys, query heads of
// one GQA group) keeps the dK and dV rows of its keys in registers while the item walks, for each
// of its query heads, the query tiles of every slice that sees its keys. Per query tile of BM rows:
//   S^T = K Q^T, P^T = exp(S^T * scale - lse), dP^T = V dO^T, dS^T = P^T (dP^T - Delta),
//   dV += P^T dO, dK += dS^T Q, dQ += dS K (dS through shared memory; the dQ tile staged in
//   shared memory and added into the fp32 workspace by TMA reduce-adds).
// Three warpgroups. The producer gives its registers away (setmaxnreg): its first warp loads K and
// V once and every query tile's Q and dO (TMA) with its lse and Delta rows (cp.async) into a
// two-stage ring guarded by full/free mbarriers; its second warp sends each staged dQ tile to the
// workspace (TMA reduce-add) and frees the staging once the TMA has read it. Two consumer
// warpgroups of 64 keys each compute, meeting once per tile at a named barrier, where both halves
// of dS^T are in shared memory for dQ; dS^T is double-buffered, so the next tile's dS^T can be
// written while the other warpgroup's dQ still reads this one, and dV, dK are issued before that
// barrier and run while a consumer waits at it.
// dQ is converted inside the kernel: the workspace is cut into units of BM rows x one head; each
// unit knows how many tiles cover it (from the work lists), an item counts its tiles into their
// units once their sums have landed, and the item that completes a unit converts it to the input
// dtype and zeroes it and its count again, so the workspace is clean for the next call (it is
// zeroed once, when allocated). In the launch's last wave an item converts a few of the units it
// completes and leaves the rest to flex_dq_finish_kernel, launched after it: a head's or a
// document's last key block completes all of its units at once, and converting them one after
// another on one SM while the others idle was the end of the launch (results/kernel/NOTES.md,
// v19). Preprocess: Delta = rowsum(dO * O) where a tile covers the row (unless the caller hands
// Delta in, computed for every row once per pass), and dQ zeroed in the units no tile covers.
// dq_accumulate (Into::accumulate, kernel_args.h): a completed unit is added into dq (fp32, one
// rounding) and uncovered units are left as they are; launched to overlap the previous stage's
// kernel (Launch::overlap), the block waits for that kernel before its first conversion, the
// only read of what the previous stage wrote. Plans sharing dQ
// (share_backward_dq) run without it: their workspace and unit counts span the pass, so a unit
// completes once, its conversion writes dq, and no item waits. Either way block 0 waits for that
// kernel before it exits (pdl_end_after_previous), so that a kernel ends after the one before it:
// flex_dq_finish_kernel, which waits for the pass's last member only, then finds no unit that an
// earlier member still converts. (The forward needs no such wait: every block of an accumulating
// forward waits before its first epilogue.)
// An item walks its whole GQA group unless that walk is long (common/flex_work_list.h says why and
// when). Then the group's items of one key block each add their dK and dV (fp32, from registers)
// into a workspace and count themselves into the block's unit; the last of them converts the
// unit's rows to the input dtype and leaves them and the count at zero, as dQ's units do.
#pragma once

#include "cuda/flex_tiles.h"
#include "flex_device_helpers.cuh"
#include "flex_pipeline.cuh"
#include "flex_wgmma.cuh"

#include <cuda.h>  // CUtensorMap (a plain struct; no driver call here)

#include <type_traits>

namespace magi::kernels::cuda::detail {

template <typename T>
struct BwdParams {
  // q and dout as [sq][hq][d], boxes of 64 columns x 1 head x BM rows; k and v as [sk][hkv][d],
  // boxes of 64 columns x 1 head x BN rows (128-byte swizzle: the layout wgmma reads); the fp32 dQ
  // workspace as [sq][hq][d], boxes of 32 columns x 1 head x BM rows (the staging layout).
  CUtensorMap q_map, do_map, k_map, v_map, dq_map;
  const float* lse;
  const float* delta;
  float* dq_acc;            // [sq, hq, d] fp32, zero between calls
  int* dq_count;            // [units][hq], tiles landed per unit, zero between calls
  const int* unit_tiles;    // [units], tiles covering each unit (per head)
  float* dkv_acc;           // split groups: [2][sk][hkv][d] fp32, dK (scaled) then dV, zero between calls
  int* dkv_count;           // split groups: [kv units][hkv], items landed per key block, zero between calls
  T* dq;
  T* dk;
  T* dv;
  int dq_accumulate;  // 1: dq += this call's dQ; 0: dq = dQ
  // Items from this index on (the launch's last wave) convert at most kDqTailConversions of the
  // units they complete at one end and leave the others complete for flex_dq_finish_kernel; the
  // item count: none leaves any.
  int defer_from;
  const DevSlice* slices;
  const BwdEntry* entries;
  const BwdItem* items;
  int sq, sk, hq, hkv;
  float scale;       // softmax scale
  float scale_log2;  // softmax scale * log2(e)
};

// dQ staging boxes for the TMA: 32 fp32 columns x 64 rows each (8 KB, 128-byte swizzle).
constexpr int kDqBoxCols = 32;

constexpr int kBwdThreads = 3 * 128;  // producer warpgroup (loader warp, dQ writer warp) + two consumers
constexpr int kBwdConsumerThreads = 256;

// Named barriers of the backward: 1 joins the consumers once both halves of a tile's dS^T are
// stored; 2 joins them at the item's end; 3 joins them with the dQ writer once its sums have landed.
constexpr int kBwdBarDs = 1, kBwdBarItem = 2, kBwdBarDqLanded = 3;

// K, V; Q and dO in two stages; dS^T in two buffers; the fp32 dQ staging; lse and Delta in two stages.
template <int D, int BM, int BN>
constexpr int bwd_wgmma_smem_bytes() {
  return (2 * BN * D + 4 * BM * D + 2 * BN * BM) * 2 + BM * D * 4 + 4 * BM * 4 + 1024;
}

// One thread sends a staged dQ tile (query rows [q0, q0 + BM) of head h) to the workspace: one
// TMA reduce-add per 32-column box, its lines under `policy` (l2_policy_evict_last), so that they
// leave the L2 after the others: the fp32 workspace (268 MB at 32k x 16 heads x d 128) does not
// fit the L2, and a unit's partial sums evicted before its last tile lands are written to HBM and
// read back (results/kernel/NOTES.md, v22: full 8k +5%, varlen sliding window +3%).
template <int D, int BM, typename P>
__device__ __forceinline__ void send_dq_tile(const P& p, const float* sdQ, int q0, int h, uint64_t policy) {
#pragma unroll
  for (int b = 0; b < D / kDqBoxCols; ++b)
    tma_reduce_add_3d(&p.dq_map, sdQ + b * BM * kDqBoxCols, b * kDqBoxCols, h, q0, policy);
  bulk_commit();
}

// Converts dQ unit `unit` (rows [u BM, (u + 1) BM) of head h, unit = u * hq + h), whose sums have
// all landed, to the input dtype, and leaves its workspace rows and count at zero. tid: the
// thread's index among the NT that share the work.
template <typename T, int D, int BM, int NT>
__device__ __forceinline__ void convert_dq_unit(const BwdParams<T>& p, int unit, int tid) {
  using E = ElemTraits<T>;
  constexpr int kCols4 = D / 4, kPer = BM * kCols4 / NT;  // float4s per thread
  const int u = unit / p.hq, h = unit % p.hq;
  float4 v[kPer];
  uint2 prev[kPer];  // accumulating: dq as it was, loaded with the sums (all loads in flight at once)
  int64_t off[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = tid + j * NT, q = u * BM + i / kCols4;
    off[j] = q < p.sq ? (static_cast<int64_t>(q) * p.hq + h) * D + (i % kCols4) * 4 : -1;
    if (off[j] >= 0) {
      v[j] = __ldcg(reinterpret_cast<const float4*>(p.dq_acc + off[j]));
      if (p.dq_accumulate) prev[j] = __ldcg(reinterpret_cast<const uint2*>(p.dq + off[j]));
    }
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    if (off[j] < 0) continue;
    if (p.dq_accumulate) {
      const T* e = reinterpret_cast<const T*>(&prev[j]);
      v[j].x += E::to_float(e[0]);
      v[j].y += E::to_float(e[1]);
      v[j].z += E::to_float(e[2]);
      v[j].w += E::to_float(e[3]);
    }
    *reinterpret_cast<uint2*>(p.dq + off[j]) = make_uint2(E::pack(v[j].x, v[j].y), E::pack(v[j].z, v[j].w));
    __stcg(reinterpret_cast<float4*>(p.dq_acc + off[j]), make_float4(0.f, 0.f, 0.f, 0.f));
  }
  if (tid == 0) p.dq_count[unit] = 0;
}

// At the end of the last wave, an item that completes many dQ units (a head's or a document's
// last key block) would convert them alone, one unit after another, while the other SMs idle:
// it converts this many and leaves the rest to flex_dq_finish_kernel, which spreads them over
// the GPU.
constexpr int kDqTailConversions = 8;

// An item's end, once every reduce-add it issued has landed (the dQ writer waited for them and
// fenced before the consumers, NT threads of index tid, met it at kBwdBarDqLanded): the item
// counts its tiles into the units they cover, one atomic per (query head, entry, unit) with the
// number of the entry's tiles that cover the unit (release); the units this completes (acquire)
// are converted by the consumers. Tile t of an entry starting at q_lo covers units u0 + t and,
// unless q_lo is a multiple of BM, u0 + t + 1 (u0 = q_lo / BM): so unit u0 + k gets one tile
// when aligned, else two but at k = 0 and k = ntiles.
template <typename T, int D, int BM, int NT>
__device__ __forceinline__ void finish_dq_units(const BwdParams<T>& p, const BwdItem& item, int tid) {
  __shared__ int s_units[NT];
  __shared__ int s_nunits;
  const int nunits_all = (p.sq + BM - 1) / BM;
  auto entry_units = [&](const BwdEntry& en) {
    const int u0 = en.q_lo / BM;
    return min(en.ntiles + (en.q_lo % BM != 0 ? 1 : 0), nunits_all - u0);
  };
  int per_head = 0;
  for (int e = item.entry_begin; e < item.entry_end; ++e) per_head += entry_units(p.entries[e]);
  const int ntot = per_head * item.nheads;
  for (int base = 0; base < ntot; base += NT) {
    if (tid == 0) s_nunits = 0;
    named_sync(kBwdBarItem, NT);
    if (base + tid < ntot) {
      const int h = item.head + (base + tid) / per_head;
      int k = (base + tid) % per_head, e = item.entry_begin;
      for (int n = entry_units(p.entries[e]); k >= n; n = entry_units(p.entries[e])) {
        k -= n;
        ++e;
      }
      const BwdEntry en = p.entries[e];
      const int tiles = en.q_lo % BM == 0 ? 1 : (k == 0 || k == en.ntiles ? 1 : 2);
      const int u = en.q_lo / BM + k, unit = u * p.hq + h;
      if (atomic_add_acq_rel_gpu(p.dq_count + unit, tiles) + tiles == p.unit_tiles[u]) s_units[atomicAdd(&s_nunits, 1)] = unit;
    }
    named_sync(kBwdBarItem, NT);
    const int n = static_cast<int>(blockIdx.x) < p.defer_from ? s_nunits : min(s_nunits, kDqTailConversions);
    if (n > 0 && p.dq_accumulate) pdl_wait_previous();  // dq as the previous stage left it
    for (int c = 0; c < n; ++c) convert_dq_unit<T, D, BM, NT>(p, s_units[c], tid);
    named_sync(kBwdBarItem, NT);
  }
}

// A split group: once each of the NT consumer threads (index tid) has added its part of the item's
// dK and dV into the workspace, the item counts itself into its key block's unit (release); the
// last of the group's `parts` items (acquire) converts the unit's rows [k0, k_end) of kv head kvh
// to the input dtype, into dk and dv, and leaves them and the count at zero.
template <typename T, int D, int NT>
__device__ __forceinline__ void finish_dkv_unit(const BwdParams<T>& p, const BwdItem& item, int kvh, int parts,
                                                int tid) {
  using E = ElemTraits<T>;
  __shared__ int s_last;
  __threadfence();  // this thread's adds, ordered before the count below (through the barrier)
  named_sync(kBwdBarItem, NT);
  const int unit = item.kv_unit * p.hkv + kvh;
  if (tid == 0) s_last = atomic_add_acq_rel_gpu(p.dkv_count + unit, 1) == parts - 1;
  named_sync(kBwdBarItem, NT);
  if (!s_last) return;
  constexpr int kCols4 = D / 4;
  const int64_t stride = static_cast<int64_t>(p.hkv) * D;
  const int64_t first = static_cast<int64_t>(item.k0) * stride + static_cast<int64_t>(kvh) * D;
  const int64_t v_plane = static_cast<int64_t>(p.sk) * stride;
  for (int i = tid; i < (item.k_end - item.k0) * kCols4; i += NT) {
    const int64_t off = first + (i / kCols4) * stride + (i % kCols4) * 4;
    const float4 a = __ldcg(reinterpret_cast<const float4*>(p.dkv_acc + off));
    const float4 b = __ldcg(reinterpret_cast<const float4*>(p.dkv_acc + v_plane + off));
    *reinterpret_cast<uint2*>(p.dk + off) = make_uint2(E::pack(a.x, a.y), E::pack(a.z, a.w));
    *reinterpret_cast<uint2*>(p.dv + off) = make_uint2(E::pack(b.x, b.y), E::pack(b.z, b.w));
    __stcg(reinterpret_cast<float4*>(p.dkv_acc + off), make_float4(0.f, 0.f, 0.f, 0.f));
    __stcg(reinterpret_cast<float4*>(p.dkv_acc + v_plane + off), make_float4(0.f, 0.f, 0.f, 0.f));
  }
  if (tid == 0) p.dkv_count[unit] = 0;
}

// Every matrix product on Hopper's wgmma. Two consumer warpgroups, each owning 64 of the block's
// BN = 128 keys:
//   S^T = K Q^T, dP^T = V dO^T            (A and B from shared memory, K-major)
//   dV += P^T dO, dK += dS^T Q            (A from registers, B = dO / Q transposed)
//   dQ = dS K                             (A = dS^T in shared memory transposed, B = K transposed)
// Query tiles of BM rows (flex_tiles.h): 64 at D = 128, where consumer c takes dQ's columns
// [64 c, 64 c + 64); 128 at D = 64, where it takes the tile's rows [64 c, 64 c + 64) with all 64
// columns. Either way each consumer computes a 64 x 64 block of dQ, so neither waits at the dS^T
// barrier for the other's product (at D = 64 with 64-row tiles consumer 0 computed all of dQ and
// consumer 1 spent 12% of its cycles at that barrier: results/kernel/NOTES.md, v27). dS^T is
// stored as BM / 64 blocks of [BN][64], the 128-byte-swizzled layout wgmma reads.
// kWalkBack: the instance for work lists with items that walk back (BwdItem::walk_back); the other
// one walks every item head by head, first to last, as if none did (FlexAttention picks).
template <typename T, int D, bool kWalkBack>
__global__ void __launch_bounds__(kBwdThreads, 1) flex_bwd_wgmma_kernel(const __grid_constant__ BwdParams<T> p) {
  constexpr FlexTiles kTiles = flex_tiles(FlexPass::backward, D);
  constexpr int BM = kTiles.rows, BN = kTiles.keys, NC = kBwdConsumerThreads;
  static_assert(BN == 2 * 64 && BM * D == 64 * 128, "two consumer warpgroups of 64 keys; a 64 x 64 block of dQ each");
  constexpr bool kBF16 = std::is_same_v<T, __nv_bfloat16>;
  constexpr int DQB = 64;              // each consumer's dQ block: DQB x DQB
  constexpr bool kDqRows = BM == 128;  // consumer c's block: rows [DQB c, +DQB) (else columns)
  using WSt = Wgmma<BM, kBF16>;   // m64 x BM
  using WD = Wgmma<D, kBF16>;     // m64 x D
  using WQ = Wgmma<DQB, kBF16>;   // m64 x DQB
  using E = ElemTraits<T>;
  constexpr uint32_t kKVBytes = 2u * BN * D * sizeof(T), kQBytes = 2u * BM * D * sizeof(T);
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  T* sK = reinterpret_cast<T*>(base);
  T* sV = sK + BN * D;
  T* sQ = sV + BN * D;        // 2 stages
  T* sdO = sQ + 2 * BM * D;   // 2 stages
  T* sdS = sdO + 2 * BM * D;  // 2 buffers of BM / 64 blocks [BN][64], 128-byte swizzle
  float* sdQ = reinterpret_cast<float*>(sdS + 2 * BN * BM);  // D / 32 TMA boxes [BM][32], 1024-aligned
  float* sLse = sdQ + BM * D;  // 2 stages
  float* sDelta = sLse + 2 * BM;
  // kv_full: K and V landed. q_full[s] / q_free[s]: stage s holds a query tile (TMA bytes, and the
  // loader warp's 32 lse/Delta arrivals) / the consumers are done with it. dq_full / dq_free: the
  // dQ staging holds a tile / the writer's TMA has read it.
  __shared__ __align__(8) uint64_t kv_full, q_full[2], q_free[2], dq_full, dq_free;

  pdl_launch_dependents();
  const BwdItem item = [&] {
    BwdItem it = p.items[blockIdx.x];
    if constexpr (!kWalkBack) it.walk_back = 0;
    return it;
  }();
  const int group = p.hq / p.hkv;
  const int ntot = item.ntiles * item.nheads;
  const int kvh = item.head / group;
  if (threadIdx.x == 0) {
    mbar_init(&kv_full, 1);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      mbar_init(&q_full[s], 1 + 32);
      mbar_init(&q_free[s], NC);
    }
    mbar_init(&dq_full, NC);
    mbar_init(&dq_free, 1);
    mbar_init_fence();
  }
  __syncthreads();
  const int wg = static_cast<int>(threadIdx.x) / 128;
  const int lane = static_cast<int>(threadIdx.x) % 32;

  if (wg == 0) {
    regs_release<24>();
    const int warp = static_cast<int>(threadIdx.x) / 32;
    if (ntot == 0) return;
    if (warp == 0) {
      // Loader: K and V once, then per query tile Q and dO by TMA and the tile's lse and Delta rows
      // by cp.async (one column of a [rows][heads] matrix: no TMA box), each lane arriving on the
      // stage's barrier once its copies have landed.
      if (lane == 0) {
        mbar_arrive_expect_tx(&kv_full, kKVBytes);
#pragma unroll
        for (int c = 0; c < D / 64; ++c) {
          tma_load_3d(sK + c * BN * 64, &p.k_map, &kv_full, c * 64, kvh, item.k0);
          tma_load_3d(sV + c * BN * 64, &p.v_map, &kv_full, c * 64, kvh, item.k0);
        }
      }
      BwdTileCursor cur(p.entries, item);
      for (int t = 0; t < ntot; ++t, cur.next(p.entries, item)) {
        const int s = t & 1;
        if (t >= 2) mbar_wait(&q_free[s], (t / 2 - 1) & 1);
        const int q0 = p.entries[cur.e].q_lo + cur.t * BM, qh = item.head + cur.h;
        if (lane == 0) {
          mbar_arrive_expect_tx(&q_full[s], kQBytes);
#pragma unroll
          for (int c = 0; c < D / 64; ++c) {
            tma_load_3d(sQ + s * BM * D + c * BM * 64, &p.q_map, &q_full[s], c * 64, qh, q0);
            tma_load_3d(sdO + s * BM * D + c * BM * 64, &p.do_map, &q_full[s], c * 64, qh, q0);
          }
        }
        for (int i = lane; i < 2 * BM; i += 32) {
          const int r = i % BM, q = q0 + r;
          const bool ok = q >= 0 && q < p.sq;
          const int64_t off = ok ? static_cast<int64_t>(q) * p.hq + qh : 0;
          if (i < BM) cp_async4(sLse + s * BM + r, p.lse + off, ok);
          else cp_async4(sDelta + s * BM + r, p.delta + off, ok);
        }
        cp_async_mbar_arrive(&q_full[s]);
      }
    } else if (warp == 1) {
      // dQ writer: each staged tile to the workspace; at the end, waits for every sum to land and
      // releases them to the consumers, which count them into their units.
      BwdTileCursor cur(p.entries, item);
      const uint64_t policy = l2_policy_evict_last();
      for (int t = 0; t < ntot; ++t, cur.next(p.entries, item)) {
        mbar_wait(&dq_full, t & 1);
        if (lane == 0) {
          send_dq_tile<D, BM>(p, sdQ, p.entries[cur.e].q_lo + cur.t * BM, item.head + cur.h, policy);
          bulk_wait_read_all();
          mbar_arrive(&dq_free);
        }
        __syncwarp();
      }
      if (lane == 0) {
        bulk_wait_all_writes();
        fence_acq_rel_gpu();  // the sums, seen by this thread, ordered before the consumers' counts
      }
      __syncwarp();
      named_arrive(kBwdBarDqLanded, NC + 32);
    }
    return;
  }

  regs_claim<240>();
  const int c = wg - 1;  // consumer: keys [64 c, 64 c + 64) of the item
  const int tid = static_cast<int>(threadIdx.x) - 128;
  const int warp = tid / 32;
  const int k0 = item.k0;        // first key of the item (host: segment start)
  const int k_end = item.k_end;  // keys [k0, k_end) are this item's to write
  const int64_t k_stride = static_cast<int64_t>(p.hkv) * D;

  float dk[D / 2], dv[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) { dk[i] = 0.f; dv[i] = 0.f; }
  const int key_in_blk = warp * 16 + lane / 4;  // and + 8
  const uint32_t k_addr = smem_addr(sK), v_addr = smem_addr(sV);
  if (ntot > 0) mbar_wait(&kv_full, 0);

  BwdTileCursor cur(p.entries, item);
  for (int t = 0; t < ntot; ++t, cur.next(p.entries, item)) {
    const int s = t & 1;
    const BwdEntry ent = p.entries[cur.e];
    const DevSlice sl = p.slices[ent.slice];
    const int q0 = ent.q_lo + cur.t * BM;
    const uint32_t q_addr = smem_addr(sQ + s * BM * D);
    const uint32_t do_addr = smem_addr(sdO + s * BM * D);
    T* sds = sdS + s * BN * BM;
    const uint32_t ds_addr = smem_addr(sds);
    const float* cLse = sLse + s * BM;
    const float* cDelta = sDelta + s * BM;
    mbar_wait(&q_full[s], (t / 2) & 1);

    // S^T = K Q^T and dP^T = V dO^T: this consumer's 64 keys x BM queries.
    float st[BM / 2], dpt[BM / 2];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t koff = (kk / 4) * (BN * 128) + c * 64 * 128 + (kk % 4) * 32;
      const uint32_t qoff = (kk / 4) * (BM * 128) + (kk % 4) * 32;
      WSt::ss(st, wgmma_desc(k_addr + koff, 0, 1024), wgmma_desc(q_addr + qoff, 0, 1024), kk > 0 ? 1 : 0);
      WSt::ss(dpt, wgmma_desc(v_addr + koff, 0, 1024), wgmma_desc(do_addr + qoff, 0, 1024), kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    wgmma_wait<0>();

    // P^T and dS^T (in place). Tiles inside the band skip the mask; otherwise key k of slice sl
    // is seen by the queries [qlo(k), qhi(k)): this thread's two keys get their visible rows of
    // the tile, [vis_lo, vis_hi), once per tile.
    auto probabilities = [&](auto masked, const int (&vis_lo)[2], const int (&vis_hi)[2]) {
#pragma unroll
      for (int j = 0; j < BM / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qc = j * 8 + (lane & 3) * 2 + (e & 1);
          bool vis = true;
          if constexpr (decltype(masked)::value) vis = qc >= vis_lo[e >> 1] && qc < vis_hi[e >> 1];
          const float pv = vis ? exp2f(fmaf(st[4 * j + e], p.scale_log2, -cLse[qc] * kLog2e)) : 0.f;
          st[4 * j + e] = pv;
          dpt[4 * j + e] = pv * (dpt[4 * j + e] - cDelta[qc]);
        }
      }
    };
    int vis_lo[2] = {0, 0}, vis_hi[2] = {BM, BM};
    if (tile_inside(sl, q0, q0 + BM, k0, k0 + BN)) {
      probabilities(std::false_type{}, vis_lo, vis_hi);
    } else {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int k = k0 + key_in_blk + 8 * r;
        // rows_lo / rows_hi of common/slice_band.h, written out: called, they compile to other
        // instructions (same registers and spills), and this keeps the measured kernel's code.
        int qlo = sl.qs, qhi = k >= sl.ks && k < sl.ke ? sl.qe : sl.qs;
        if (sl.type & 1) qlo = max(qlo, k - sl.ke + sl.qe);      // causal edge: k < band_hi(q)
        if (sl.type & 2) qhi = min(qhi, k - sl.ks + sl.qs + 1);  // inv_causal edge: k >= band_lo(q)
        vis_lo[r] = qlo - q0;
        vis_hi[r] = qhi - q0;
      }
      probabilities(std::true_type{}, vis_lo, vis_hi);
    }

    // dV += P^T dO, dK += dS^T Q (k dimension = the tile's queries), issued; dS^T to shared memory.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) {
      uint32_t ap[4], ads[4];
      ap[0] = E::pack(st[8 * kk + 0], st[8 * kk + 1]);
      ap[1] = E::pack(st[8 * kk + 2], st[8 * kk + 3]);
      ap[2] = E::pack(st[8 * kk + 4], st[8 * kk + 5]);
      ap[3] = E::pack(st[8 * kk + 6], st[8 * kk + 7]);
      ads[0] = E::pack(dpt[8 * kk + 0], dpt[8 * kk + 1]);
      ads[1] = E::pack(dpt[8 * kk + 2], dpt[8 * kk + 3]);
      ads[2] = E::pack(dpt[8 * kk + 4], dpt[8 * kk + 5]);
      ads[3] = E::pack(dpt[8 * kk + 6], dpt[8 * kk + 7]);
      {
        const int r0 = key_in_blk, c0 = (kk % 4) * 16 + (lane & 3) * 2;
        T* blk = sds + (kk / 4) * (BN * 64);
        *reinterpret_cast<uint32_t*>(blk + swz<64>(r0, c0)) = ads[0];
        *reinterpret_cast<uint32_t*>(blk + swz<64>(r0 + 8, c0)) = ads[1];
        *reinterpret_cast<uint32_t*>(blk + swz<64>(r0, c0 + 8)) = ads[2];
        *reinterpret_cast<uint32_t*>(blk + swz<64>(r0 + 8, c0 + 8)) = ads[3];
      }
      WD::rs_t(dv, ap, wgmma_desc(do_addr + kk * 16 * 128, BM * 128, 1024));
      WD::rs_t(dk, ads, wgmma_desc(q_addr + kk * 16 * 128, BM * 128, 1024));
    }
    wgmma_commit();
    fence_proxy_async();  // dS^T stores are read by the tensor cores next
    // Both halves of dS^T are stored. The other consumer passed this barrier for the tile before
    // only after its dQ of the tile before that had landed: the buffer written here was free.
    named_sync(kBwdBarDs, NC);

    // dQ = dS K: A = dS (M-major view of dS^T), B = K (N-major); this consumer's 64 x 64 block.
    {
      float dq[DQB / 2];
      const uint32_t a_addr = ds_addr + (kDqRows ? c * (BN * 128) : 0);
      const uint32_t b_addr = k_addr + (kDqRows ? 0 : c * (BN * 128));
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        WQ::ss_tt(dq, wgmma_desc(a_addr + kk * 16 * 128, BN * 128, 1024),
                  wgmma_desc(b_addr + kk * 16 * 128, BN * 128, 1024), kk > 0 ? 1 : 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      mbar_arrive(&q_free[s]);
      if (t > 0) mbar_wait(&dq_free, (t - 1) & 1);  // the writer's TMA has read the tile before
      // Staged in the TMA boxes (box = 32 columns x BM rows; 16-byte chunk c of row r at chunk
      // c ^ (r % 8), the TMA's 128-byte swizzle; a half-warp's float2 stores meet 2-way bank
      // conflicts); the writer adds the tile into the workspace, rows past sq dropped.
      float* sdq = sdQ + (kDqRows ? c * DQB * kDqBoxCols : c * (DQB / kDqBoxCols) * (BM * kDqBoxCols));
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = (warp % 4) * 16 + lane / 4 + 8 * r;
#pragma unroll
        for (int i = 0; i < DQB / 8; ++i) {
          const int box = i / 4, chunk = (i % 4) * 2 + (lane & 3) / 2;
          float* dst = sdq + box * (BM * kDqBoxCols) + row * kDqBoxCols + ((chunk ^ (row & 7)) * 4) + (lane & 1) * 2;
          *reinterpret_cast<float2*>(dst) = make_float2(dq[4 * i + 2 * r] * p.scale, dq[4 * i + 2 * r + 1] * p.scale);
        }
      }
      fence_proxy_async();  // read by the TMA next
      mbar_arrive(&dq_full);
    }
  }

  const int64_t kv_off = static_cast<int64_t>(k0) * k_stride + static_cast<int64_t>(kvh) * D;
  if (item.nheads == group) {
    // dK and dV through shared memory (the Q and dO stages, once both consumers' last products
    // have read them), then whole rows.
    static_assert(4 * BM >= 2 * BN, "dK and dV fit the Q and dO stages");
    named_sync(kBwdBarItem, NC);
    T* sdK = sQ;
    T* sdV = sQ + BN * D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = key_in_blk + 8 * r;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        const int off = swz<D>(row, i * 8 + (lane & 3) * 2);
        *reinterpret_cast<uint32_t*>(sdK + off) = E::pack(dk[4 * i + 2 * r] * p.scale, dk[4 * i + 2 * r + 1] * p.scale);
        *reinterpret_cast<uint32_t*>(sdV + off) = E::pack(dv[4 * i + 2 * r], dv[4 * i + 2 * r + 1]);
      }
    }
    named_sync(kBwdBarItem, NC);
    store_staged_rows<BN, D, NC>(sdK, p.dk + kv_off, k_stride, k_end - k0, tid);
    store_staged_rows<BN, D, NC>(sdV, p.dv + kv_off, k_stride, k_end - k0, tid);
  } else {
    // A split group: this item's share added into the workspace from registers (rows past k_end
    // dropped).
    const int64_t v_plane = static_cast<int64_t>(p.sk) * k_stride;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = key_in_blk + 8 * r;
      if (k0 + row >= k_end) continue;
      float* ak = p.dkv_acc + kv_off + row * k_stride;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        const int col = i * 8 + (lane & 3) * 2;
        atomicAdd(reinterpret_cast<float2*>(ak + col),
                  make_float2(dk[4 * i + 2 * r] * p.scale, dk[4 * i + 2 * r + 1] * p.scale));
        atomicAdd(reinterpret_cast<float2*>(ak + v_plane + col), make_float2(dv[4 * i + 2 * r], dv[4 * i + 2 * r + 1]));
      }
    }
    finish_dkv_unit<T, D, NC>(p, item, kvh, group / item.nheads, tid);
  }
  if (ntot > 0) {
    named_sync(kBwdBarDqLanded, NC + 32);  // the writer's sums have landed
    finish_dq_units<T, D, BM, NC>(p, item, tid);
  }
  pdl_end_after_previous();
}

// After the backward kernel whose last wave left complete dQ units unconverted (defer_from; a
// programmatic dependent launch, so it waits for that kernel before reading anything): block b of
// G checks the units b, b + G, b + 2G, ... (a head's units, hq apart, spread over the blocks),
// kDqFinishThreads at once, and converts those complete (count == tiles > 0), as the backward
// would have, leaving them and their counts at zero.
constexpr int kDqFinishThreads = 256;
template <typename T, int D>
__global__ void __launch_bounds__(kDqFinishThreads) flex_dq_finish_kernel(const __grid_constant__ BwdParams<T> p,
                                                                          int units) {
  constexpr int BM = flex_tiles(FlexPass::backward, D).rows;
  __shared__ int s_units[kDqFinishThreads];
  __shared__ int s_n;
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t G = gridDim.x;
  pdl_wait_previous();
  for (int64_t first = blockIdx.x; first < units; first += G * kDqFinishThreads) {
    if (tid == 0) s_n = 0;
    __syncthreads();
    const int64_t unit = first + tid * G;
    if (unit < units) {
      const int tiles = p.unit_tiles[unit / p.hq];
      if (tiles > 0 && __ldcg(p.dq_count + unit) == tiles) s_units[atomicAdd(&s_n, 1)] = static_cast<int>(unit);
    }
    __syncthreads();
    for (int c = 0; c < s_n; ++c) convert_dq_unit<T, D, BM, kDqFinishThreads>(p, s_units[c], tid);
    __syncthreads();
  }
}

// Before the backward kernel, one warp per (row, head): Delta = sum_d dout * out (fp32) where a
// tile covers the row's unit, else dQ zeroed (the kernel converts only covered units), or left as
// it is when accumulating. out, dout and dq rows are 16-byte aligned (FlexAttention checks its
// pointers).
template <typename T, int D>
__global__ void flex_bwd_prepare_kernel(const T* out, const T* dout, float* delta, const int* unit_tiles, T* dq,
                                        int hq, int bm, int64_t rows, bool dq_accumulate) {
  static_assert(D == 64 || D == 128, "head dim");
  using E = ElemTraits<T>;
  constexpr int kPerLane = D / 32;  // 2 or 4 elements
  using Vec = std::conditional_t<kPerLane == 4, uint2, uint32_t>;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (row >= rows) return;
  const int64_t off = row * D + lane * kPerLane;
  // unit_tiles null: Delta of every row (the caller's, for several calls); delta null: the caller
  // has Delta, only uncovered dQ is zeroed.
  if (unit_tiles && unit_tiles[row / hq / bm] == 0) {  // no tile reads this row's Delta or writes its dQ
    if (!dq_accumulate) *reinterpret_cast<Vec*>(dq + off) = Vec{};
    return;
  }
  if (!delta) return;
  const Vec ov = *reinterpret_cast<const Vec*>(out + off);
  const Vec gv = *reinterpret_cast<const Vec*>(dout + off);
  const T* o = reinterpret_cast<const T*>(&ov);
  const T* g = reinterpret_cast<const T*>(&gv);
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) acc += E::to_float(o[i]) * E::to_float(g[i]);
  for (int o2 = 16; o2 > 0; o2 >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o2);
  if (lane == 0) delta[row] = acc;
}

}  // namespace magi::kernels::cuda::detail
