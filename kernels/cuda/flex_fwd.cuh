// Forward kernel (Hopper: TMA loads, wgmma, exp2 online softmax), warp-specialised in FlashAttention-3's
// manner. Persistent: one thread block per SM runs work items (query block of 128 rows, query
// head) one after another: block b first runs item b, then takes the next from a ticket counter as
// it goes, so items are handed out in the host's order as blocks free, as the hardware would hand
// out blocks, and a block starts on its first item without a round trip for its ticket. Three
// warpgroups: a producer (one thread) takes the tickets, walks each item's key tiles and loads Q
// once and K, V per tile by TMA into a STAGES-deep ring guarded by full/empty mbarriers, running
// into the next item (its Q and first tiles) while the consumers finish the last; two consumer
// warpgroups of 64 query rows each compute, with the registers the producer gave back
// (setmaxnreg).
// Each consumer overlaps inside itself: S(t) = Q K(t)^T and O += P(t-1) V(t-1) are issued together,
// the softmax of tile t runs while P(t-1) V(t-1) is still on the tensor cores, and O is rescaled
// once that product has landed (at d 128 only where a row's max has moved: kFwdRescaleSlack). The
// two consumers take turns issuing (ping-pong on named barriers), so one's softmax runs under the
// other's products.
// The item walks the key tiles of every slice that meets its rows (host-built entries), so rows
// shared by several slices get one softmax over the union of their keys: the merge is exact and
// needs no second pass.
// MERGE (FlexAttention::forward with Into::accumulate): the epilogue merges the item's result
// into what out and lse already hold for its rows (the result over other keys) by log-sum-exp,
// in fp32, rounding once; the earlier out rows are staged through shared memory like the output,
// the earlier lse prefetched meanwhile (one round trip), and an item whose rows the caller says
// hold no earlier result (FlexAttention::set_merged_rows) reads nothing and writes.
// Launched to overlap the previous stage's kernel (Launch::overlap), a MERGE block computes its
// items while that kernel's last blocks run and waits for it only before reading out and lse.
#pragma once

#include "flex_device_helpers.cuh"
#include "flex_pipeline.cuh"
#include "flex_wgmma.cuh"

#include <cuda.h>  // CUtensorMap (a plain struct; no driver call here)

#include <type_traits>

namespace magi::kernels::cuda::detail {

template <typename T>
struct FwdParams {
  // q as [sq][hq][d], k and v as [sk][hkv][d]; boxes of 64 columns x 1 head x 128 rows (q) or
  // BN rows (k, v), 128-byte swizzle: the layout wgmma reads.
  CUtensorMap q_map, k_map, v_map;
  T* out;
  float* lse;
  const DevSlice* slices;
  const FwdEntry* entries;
  const FwdItem* items;
  // Tickets: block b runs item b first (the grid is at most nitems), and the block that draws
  // ticket_base + i then runs item grid + i (while that is < nitems); each block draws one more
  // ticket than it runs items after its first, so a launch takes nitems tickets and the host
  // moves ticket_base on by that much. A ticket past that range means two launches share the
  // counter.
  unsigned long long* ticket;
  unsigned long long ticket_base;
  int nitems;
  int hq, hkv;
  float scale_log2;  // softmax scale * log2(e)
};

constexpr int kFwdRows = 128;            // query rows per item: two consumer warpgroups of 64
constexpr int kFwdThreads = 3 * 128;     // producer warpgroup + two consumers
constexpr int kFwdConsumerThreads = 256;
// Head dim 128: how far (log2 units) a tile's max may exceed a row's running max before O and l
// are rescaled to it. P stays below 2^8, far inside bf16's and fp16's range, O and l share the max
// they are normalised by, and a warp whose rows all kept theirs skips O's rescale: most tiles of a
// long walk (FlashAttention-4's conditional rescale; full 32k +1-3%). Head dim 64 rescales at every
// tile: its 192-key tiles give a thread 96 exponentials against O's 32 multiplies, and the skip
// made it 3-5% slower (results/kernel/NOTES.md, v26).
constexpr float kFwdRescaleSlack = 8.f;
template <int D>
constexpr bool fwd_lazy_rescale() {
  return D == 128;
}

// Q, the K and V rings, and the output staging (its own, so the next item's Q can load while an
// item's output leaves).
template <int D, int BN, int STAGES>
constexpr int fwd_smem_bytes() {
  return (2 * kFwdRows * D + 2 * STAGES * BN * D) * 2 + 1024;
}

// Named barriers of the forward: 1 joins the two consumers before the epilogue; 2 + c is
// consumer c's turn to issue its products.
constexpr int kFwdBarEpilogue = 1, kFwdBarTurn = 2;

// Consumer c (0, 1) waits for its turn to issue products; after issuing it hands the turn to the
// other one. Consumer 1 starts by handing the first turn to consumer 0 and skips its hand-over
// after its item's last issue, so every bar.sync meets exactly one bar.arrive.
__device__ inline void fwd_take_turn(int c) { named_sync(kFwdBarTurn + c, kFwdConsumerThreads); }
__device__ inline void fwd_pass_turn(int c, bool last) {
  if (!(c == 1 && last)) named_arrive(kFwdBarTurn + (1 - c), kFwdConsumerThreads);
}

template <typename T, int D, int BN, int STAGES, bool MERGE>
__global__ void __launch_bounds__(kFwdThreads, 1) flex_fwd_kernel(const __grid_constant__ FwdParams<T> p) {
  constexpr int BM = kFwdRows;
  constexpr int NC = kFwdConsumerThreads;
  static_assert(BN % 64 == 0 && D % 64 == 0 && STAGES >= 2, "tile shapes");
  constexpr bool kBF16 = std::is_same_v<T, __nv_bfloat16>;
  using WS = Wgmma<BN, kBF16>;
  using WO = Wgmma<D, kBF16>;
  using E = ElemTraits<T>;
  constexpr uint32_t kQBytes = BM * D * sizeof(T), kKVBytes = BN * D * sizeof(T);
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  T* sQ = reinterpret_cast<T*>(base);
  T* sK = sQ + BM * D;
  T* sV = sK + STAGES * BN * D;
  T* sO = sV + STAGES * BN * D;
  __shared__ __align__(8) uint64_t q_full, q_free, k_full[STAGES], k_free[STAGES], v_full[STAGES], v_free[STAGES];
  // The producer's next items, two deep: item_full[j] completes once s_item[j] holds one (nitems
  // as the index: no more), item_free[j] once every consumer thread has read it.
  __shared__ __align__(8) uint64_t item_full[2], item_free[2];
  __shared__ FwdItem s_item[2];
  __shared__ int s_item_index[2];

  pdl_launch_dependents();
  if (threadIdx.x == 0) {
    tma_prefetch_map(&p.q_map);
    tma_prefetch_map(&p.k_map);
    tma_prefetch_map(&p.v_map);
    mbar_init(&q_full, 1);
    mbar_init(&q_free, NC);
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&k_full[s], 1);
      mbar_init(&v_full[s], 1);
      mbar_init(&k_free[s], NC);
      mbar_init(&v_free[s], NC);
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      mbar_init(&item_full[j], 1);
      mbar_init(&item_free[j], NC);
    }
    mbar_init_fence();
  }
  __syncthreads();
  const int wg = static_cast<int>(threadIdx.x) / 128;

  if (wg == 0) {
    // Producer: per item, Q once (after the consumers' last S of the item before), then K and V of
    // every tile, each into its stage once the consumers freed it; the ring's tiles count on
    // across items.
    regs_release<24>();
    if (threadIdx.x == 0) {
      uint32_t g = 0, nq = 0;
      for (uint32_t n = 0;; ++n) {
        int index = static_cast<int>(blockIdx.x);
        if (n > 0) {
          const unsigned long long ticket = atomicAdd(p.ticket, 1ull) - p.ticket_base;
          if (ticket >= static_cast<unsigned long long>(p.nitems)) __trap();
          const unsigned long long next = gridDim.x + ticket;
          index = next < static_cast<unsigned long long>(p.nitems) ? static_cast<int>(next) : p.nitems;
        }
        const int j = n & 1;
        if (n >= 2) mbar_wait(&item_free[j], ((n - 2) / 2) & 1);
        FwdItem item{};
        if (index < p.nitems) item = p.items[index];
        s_item[j] = item;
        s_item_index[j] = index;
        mbar_arrive(&item_full[j]);
        if (index == p.nitems) break;
        const int ntot = item.ntiles;
        if (ntot == 0) continue;
        const int h = item.head, kvh = h / (p.hq / p.hkv);
        if (nq > 0) mbar_wait(&q_free, (nq - 1) & 1);
        ++nq;
        mbar_arrive_expect_tx(&q_full, kQBytes);
#pragma unroll
        for (int c = 0; c < D / 64; ++c) tma_load_3d(sQ + c * BM * 64, &p.q_map, &q_full, c * 64, h, item.q0);
        int le = item.entry_begin, lt = 0;
        for (int t = 0; t < ntot; ++t, ++g) {
          if (t > 0 && ++lt == p.entries[le].ntiles) { ++le; lt = 0; }
          const int k0 = t == 0 ? item.k_first : p.entries[le].k_lo + lt * BN;
          const int s = g % STAGES;
          const uint32_t use = g / STAGES;
          if (use > 0) mbar_wait(&k_free[s], (use - 1) & 1);
          mbar_arrive_expect_tx(&k_full[s], kKVBytes);
#pragma unroll
          for (int c = 0; c < D / 64; ++c) tma_load_3d(sK + s * BN * D + c * BN * 64, &p.k_map, &k_full[s], c * 64, kvh, k0);
          if (use > 0) mbar_wait(&v_free[s], (use - 1) & 1);
          mbar_arrive_expect_tx(&v_full[s], kKVBytes);
#pragma unroll
          for (int c = 0; c < D / 64; ++c) tma_load_3d(sV + s * BN * D + c * BN * 64, &p.v_map, &v_full[s], c * 64, kvh, k0);
        }
      }
    }
    return;
  }

  regs_claim<240>();
  const int c = wg - 1;  // consumer: query rows [64 c, 64 c + 64) of the item
  const int tid = static_cast<int>(threadIdx.x) - 128;
  const int warp = tid / 32, lane = tid % 32;
  const int64_t q_stride = static_cast<int64_t>(p.hq) * D;
  const int row_in_blk = warp * 16 + lane / 4;
  const uint32_t q_addr = smem_addr(sQ) + c * 64 * 128;
  uint32_t g = 0, nq = 0;  // the ring's tiles and the Q loads of the items before this one
  for (uint32_t n = 0;; ++n) {
    const int j = n & 1;
    mbar_wait(&item_full[j], (n / 2) & 1);
    const FwdItem item = s_item[j];
    const bool no_more = s_item_index[j] == p.nitems;
    mbar_arrive(&item_free[j]);
    if (no_more) break;
    const int ntot = item.ntiles;
    const int h = item.head;
    const int q0 = item.q0;        // first row of the item (host: segment start)
    const int q_end = item.q_end;  // rows [q0, q_end) are this item's to write

    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float m_run[2] = {-INFINITY, -INFINITY};
    float l_run[2] = {0.f, 0.f};
    uint32_t pk[BN / 16][4];  // P of the tile whose P V is issued next, packed to the input dtype
    float sacc[BN / 2];
    int ce = item.entry_begin, ct = 0;  // the entry and tile of the next S

    // S = Q K^T of the ring's tile t (stage t % STAGES) into sacc: issued, not waited for.
    auto issue_s = [&](uint32_t t) {
      const uint32_t k_addr = smem_addr(sK + (t % STAGES) * BN * D);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint64_t da = wgmma_desc(q_addr + (kk / 4) * (BM * 128) + (kk % 4) * 32, 0, 1024);
        const uint64_t db = wgmma_desc(k_addr + (kk / 4) * (BN * 128) + (kk % 4) * 32, 0, 1024);
        WS::ss(sacc, da, db, kk > 0 ? 1 : 0);
      }
      wgmma_commit();
    };
    // O += P V of tile t from pk: issued, not waited for.
    auto issue_pv = [&](uint32_t t) {
      const uint32_t v_addr = smem_addr(sV + (t % STAGES) * BN * D);
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) WO::rs_t(o, pk[kk], wgmma_desc(v_addr + kk * 16 * 128, BN * 128, 1024));
      wgmma_commit();
    };
    // Masks sacc (tile of the cursor), turns it into P (base 2, m_run in units of score * scale *
    // log2(e)) with the row sums, and returns in corr what O must be scaled by once the products
    // issued before have landed (1 where m_run stays: kFwdRescaleSlack); advances the cursor.
    auto softmax = [&](float (&corr)[2]) {
      const FwdEntry ent = p.entries[ce];
      const DevSlice sl = p.slices[ent.slice];
      const int k0 = ent.k_lo + ct * BN;
      if (!tile_inside(sl, q0, q_end, k0, k0 + BN)) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int q = q0 + row_in_blk + 8 * r;
          int lo = 1, hi = 0;
          if (q >= sl.qs && q < sl.qe) { lo = band_lo(sl, q); hi = band_hi(sl, q); }
#pragma unroll
          for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int k = k0 + j * 8 + (lane & 3) * 2 + e;
              if (k < lo || k >= hi) sacc[4 * j + 2 * r + e] = -INFINITY;
            }
          }
        }
      }
      if (++ct == ent.ntiles) { ++ce; ct = 0; }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(sacc[4 * j + 2 * r], sacc[4 * j + 2 * r + 1]));
        mx = quad_max(mx);
        const float m_tile = mx * p.scale_log2;
        if constexpr (fwd_lazy_rescale<D>()) {
          corr[r] = 1.f;
          if (m_tile > m_run[r] + kFwdRescaleSlack) {  // a row's first tile with a key moves it from -inf
            corr[r] = exp2f(m_run[r] - m_tile);
            m_run[r] = m_tile;
          }
        } else {
          const float m_new = fmaxf(m_run[r], m_tile);
          corr[r] = exp2f(m_run[r] - (m_new == -INFINITY ? 0.f : m_new));
          m_run[r] = m_new;
        }
        const float m_use = m_run[r] == -INFINITY ? 0.f : m_run[r];
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float x = exp2f(fmaf(sacc[4 * j + 2 * r + e], p.scale_log2, -m_use));
            sacc[4 * j + 2 * r + e] = x;
            sum += x;
          }
        }
        l_run[r] = l_run[r] * corr[r] + sum;
      }
    };
    auto pack_p = [&]() {
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
        for (int i = 0; i < 4; ++i) pk[kk][i] = E::pack(sacc[8 * kk + 2 * i], sacc[8 * kk + 2 * i + 1]);
      }
    };

    if (ntot > 0) {
      if (c == 1) named_arrive(kFwdBarTurn, NC);  // consumer 0 issues first
      mbar_wait(&q_full, nq & 1);
      ++nq;
      mbar_wait(&k_full[g % STAGES], (g / STAGES) & 1);
      fwd_take_turn(c);
      wgmma_fence();
      issue_s(g);
      fwd_pass_turn(c, false);
      wgmma_wait<0>();
      fence_operands(sacc);
      mbar_arrive(&k_free[g % STAGES]);
      float corr[2];
      softmax(corr);
      pack_p();
      for (uint32_t t = g + 1; t < g + ntot; ++t) {
        const uint32_t s = t % STAGES, sp = (t - 1) % STAGES;
        mbar_wait(&k_full[s], (t / STAGES) & 1);
        mbar_wait(&v_full[sp], ((t - 1) / STAGES) & 1);
        fwd_take_turn(c);
        wgmma_fence();
        issue_s(t);
        issue_pv(t - 1);
        fwd_pass_turn(c, false);
        wgmma_wait<1>();  // S(t) has landed; P(t-1) V(t-1) may still run
        fence_operands(sacc);
        mbar_arrive(&k_free[s]);
        softmax(corr);
        wgmma_wait<0>();
        fence_operands(o);
        mbar_arrive(&v_free[sp]);
        if (!fwd_lazy_rescale<D>() || __any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
#pragma unroll
          for (int i = 0; i < D / 8; ++i) {
            o[4 * i] *= corr[0];
            o[4 * i + 1] *= corr[0];
            o[4 * i + 2] *= corr[1];
            o[4 * i + 3] *= corr[1];
          }
        }
        pack_p();
      }
      mbar_arrive(&q_free);  // every S of the item has landed: the next item's Q may load
      const uint32_t last = g + ntot - 1, sl = last % STAGES;
      mbar_wait(&v_full[sl], (last / STAGES) & 1);
      fwd_take_turn(c);
      wgmma_fence();
      issue_pv(last);
      fwd_pass_turn(c, true);
      wgmma_wait<0>();
      fence_operands(o);
      mbar_arrive(&v_free[sl]);
      g += ntot;
    }
    named_sync(kFwdBarEpilogue, NC);  // the previous item's output has left sO

    // Epilogue: normalise, out (input dtype) through shared memory to whole rows, lse (natural log,
    // -inf for empty rows). MERGE: the earlier out of the item's rows staged in sO while their
    // earlier lse comes into the L1, then merged in place (each thread reads the elements it then
    // writes). A row at -inf is written as if by Into::write and its staged out is never
    // used (it may be anything), so a stage-wise caller sets lse = -inf where no stage has
    // computed yet instead of writing zeros into out (kernel_args.h).
    // An item none of whose rows holds an earlier result (FwdItem::merge == 0) reads nothing; it
    // still waits for the previous stage, whose writes may reach its rows (a 128-row item of that
    // stage writes rows it gives no key) and whose completion the next stage counts on.
    const bool merge = MERGE && item.merge != 0;
    if constexpr (MERGE) pdl_wait_previous();  // out and lse as the previous stage left them
    if (merge) {
      load_staged_rows<BM, D, NC>(sO, p.out + static_cast<int64_t>(q0) * q_stride + static_cast<int64_t>(h) * D,
                                  q_stride, q_end - q0, tid);
      cp_async_commit();
      // The rows' earlier lse into the L1 meanwhile, where the merge below finds it.
      if (tid < BM && q0 + tid < q_end) prefetch_l1(p.lse + static_cast<int64_t>(q0 + tid) * p.hq + h);
      cp_async_wait<0>();
      named_sync(kFwdBarEpilogue, NC);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float l = quad_sum(l_run[r]);
      const int row = row_in_blk + 8 * r;
      const bool mine = q0 + row < q_end;
      float lse_new = l > 0.f ? m_run[r] * kLn2 + logf(l) : -INFINITY;
      float w_new = l > 0.f ? 1.f / l : 0.f, w_prev = 0.f;
      if constexpr (MERGE) {
        // lse' = log(e^prev + e^new); a side at -inf weighs 0 (its staged out is never read). The quad's
        // writer reads prev and hands it round, so no lane reads after the writer stored. (Read
        // from shared memory instead, it made ptxas spill 96 bytes here against 44.)
        const bool reader = (lane & 3) == 0 && mine && merge;
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
        if (merge && w_prev > 0.f) {
          lo = fmaf(E::to_float(sO[at]), w_prev, lo);
          hi = fmaf(E::to_float(sO[at + 1]), w_prev, hi);
        }
        *reinterpret_cast<uint32_t*>(sO + at) = E::pack(lo, hi);
      }
      if ((lane & 3) == 0 && mine) p.lse[static_cast<int64_t>(q0 + row) * p.hq + h] = lse_new;
    }
    named_sync(kFwdBarEpilogue, NC);
    store_staged_rows<BM, D, NC>(sO, p.out + static_cast<int64_t>(q0) * q_stride + static_cast<int64_t>(h) * D, q_stride,
                                 q_end - q0, tid);
  }
}

}  // namespace magi::kernels::cuda::detail
