// Forward kernel (Hopper: TMA loads, wgmma, exp2 online softmax), warp-specialised in FlashAttention-3's
// manner. Persistent: one thread block per SM runs work items (query block of 128 rows, query
// head) one after another: block b first runs item b, then takes the next from a ticket counter as
// it goes, so items are handed out in the host's order as blocks free, as the hardware would hand
// out blocks, and a block starts on its first item without a round trip for its ticket. Three
// warpgroups: a producer (one thread) takes the tickets, walks each item's key tiles and loads Q
// once into one of two buffers and K, V per tile by TMA into a STAGES-deep ring guarded by
// full/empty mbarriers, the next item's Q loading while the consumers walk this one; two consumer
// warpgroups of 64 query rows each compute, with the registers the producer gave back
// (setmaxnreg).
// Each consumer overlaps inside itself: S(t) = Q K(t)^T and O += P(t-1) V(t-1) are issued together,
// the softmax of tile t runs while P(t-1) V(t-1) is still on the tensor cores, and O is rescaled
// once that product has landed (at d 128 only where a row's max has moved: kFwdRescaleSlack). The
// two consumers take turns issuing (ping-pong on named barriers), so one's softmax runs under the
// other's products. Tiles run on across items: the next item's first S is issued with an item's
// last P V, and each consumer's epilogue (its own rows, staged in the item's Q buffer) runs after
// the next item's first softmax, under the other consumer's products, so the tensor cores do not
// wait for an item's end on short walks (many items of a few tiles: documents, sliding windows).
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
// An accumulating call none of whose items merges (a stage whose rows no earlier stage reaches)
// runs the writing epilogue, waiting for the previous kernel at the same place (FwdEpilogue).
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

// Two Q buffers and the K and V rings. An item's Q buffer is also where its output is staged: a
// consumer's rows of Q are read by its own S products alone, so once its last S has landed it
// stages its output rows there, and the producer loads the item after next into the buffer once
// both consumers have stored theirs.
template <int D, int BN, int STAGES>
constexpr int fwd_smem_bytes() {
  return (2 * kFwdRows * D + 2 * STAGES * BN * D) * 2 + 1024;
}

// Named barriers of the forward: 2 + c is consumer c's turn to issue its products; 4 + c joins
// consumer c's threads around its output staging.
constexpr int kFwdBarTurn = 2, kFwdBarStaging = 4;

// The turns run on across a run of consecutive items with key tiles: each consumer issues once per
// tile and once more at the run's end, and passes the turn after every issue. Consumer 1 hands the
// run's first turn to consumer 0 and skips its hand-over after the run's last issue, so every
// bar.sync meets exactly one bar.arrive.
__device__ inline void fwd_take_turn(int c) { named_sync(kFwdBarTurn + c, kFwdConsumerThreads); }
__device__ inline void fwd_pass_turn(int c, bool last) {
  if (!(c == 1 && last)) named_arrive(kFwdBarTurn + (1 - c), kFwdConsumerThreads);
}

// Element (row, col) of a [BM][D] tile in the layout wgmma reads and the TMA writes with 128-byte
// swizzle: D / 64 column blocks of BM rows of 64 (a Q buffer).
template <int BM>
struct QTileLayout {
  __device__ static int at(int row, int col) { return (col >> 6) * (BM * 64) + swz<64>(row, col & 63); }
};

// What an item's epilogue does with what out and lse hold.
//   write      : writes its rows (Into::write, Into::write_keyed).
//   write_after: writes its rows once the kernel before it on the stream has completed, whose
//                writes may reach them and whose completion the next kernel counts on: an
//                Into::accumulate call launched to overlap that kernel, none of whose items
//                merges. In the MERGE code such calls cost the 32k varlen causal forward at 5
//                stages 2.7% of one launch (results/runtime/NOTES.md, session 47).
//   merge      : MERGE (above).
enum class FwdEpilogue { write, write_after, merge };

template <typename T, int D, int BN, int STAGES, FwdEpilogue EPI>
__global__ void __launch_bounds__(kFwdThreads, 1) flex_fwd_kernel(const __grid_constant__ FwdParams<T> p) {
  constexpr bool MERGE = EPI == FwdEpilogue::merge;
  constexpr int BM = kFwdRows;
  constexpr int NC = kFwdConsumerThreads;
  constexpr int NW = NC / 2;  // one consumer warpgroup's threads
  static_assert(BN % 64 == 0 && D % 64 == 0 && STAGES >= 2, "tile shapes");
  constexpr bool kBF16 = std::is_same_v<T, __nv_bfloat16>;
  using WS = Wgmma<BN, kBF16>;
  using WO = Wgmma<D, kBF16>;
  using E = ElemTraits<T>;
  constexpr uint32_t kQBytes = BM * D * sizeof(T), kKVBytes = BN * D * sizeof(T);
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  T* sQ = reinterpret_cast<T*>(base);  // two buffers of BM x D
  T* sK = sQ + 2 * BM * D;
  T* sV = sK + STAGES * BN * D;
  __shared__ __align__(8) uint64_t q_full[2], q_free[2], k_full[STAGES], k_free[STAGES], v_full[STAGES], v_free[STAGES];
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
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      mbar_init(&q_full[j], 1);
      mbar_init(&q_free[j], NC);
      mbar_init(&item_full[j], 1);
      mbar_init(&item_free[j], NC);
    }
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&k_full[s], 1);
      mbar_init(&v_full[s], 1);
      mbar_init(&k_free[s], NC);
      mbar_init(&v_free[s], NC);
    }
    mbar_init_fence();
  }
  __syncthreads();
  const int wg = static_cast<int>(threadIdx.x) / 128;

  if (wg == 0) {
    // Producer: hands the items to the consumers in turn and loads each one's Q into the buffer its
    // item two before has left (an item without key tiles gets the buffer for its staging, loaded
    // with nothing), then K and V of every tile into the ring's next stage once the consumers freed
    // it; the ring's tiles count on across items. An item's successor is drawn once the item's
    // last tile is issued, STAGES tiles before the consumers reach its end: its Q loads meanwhile
    // (the buffer's item two before ended long since, unless this item is a tile or two long), and
    // a block takes its next ticket no earlier than it must: drawn earlier, a block still busy
    // with a long item holds the next while others idle at the launch's end (8k causal 0.90).
    regs_release<24>();
    if (threadIdx.x == 0) {
      uint32_t n = 0, nq = 0, g = 0;
      auto next_item = [&](FwdItem& item) {
        int index = static_cast<int>(blockIdx.x);
        if (n > 0) {
          const unsigned long long ticket = atomicAdd(p.ticket, 1ull) - p.ticket_base;
          if (ticket >= static_cast<unsigned long long>(p.nitems)) __trap();
          const unsigned long long next = gridDim.x + ticket;
          index = next < static_cast<unsigned long long>(p.nitems) ? static_cast<int>(next) : p.nitems;
        }
        const int j = n & 1;
        if (n >= 2) mbar_wait(&item_free[j], ((n - 2) / 2) & 1);
        ++n;
        item = FwdItem{};
        if (index < p.nitems) item = p.items[index];
        s_item[j] = item;
        s_item_index[j] = index;
        mbar_arrive(&item_full[j]);
        if (index == p.nitems) return false;
        const uint32_t b = nq & 1, use = nq / 2;
        ++nq;
        if (use > 0) mbar_wait(&q_free[b], (use - 1) & 1);
        if (item.ntiles == 0) {
          mbar_arrive(&q_full[b]);
        } else {
          mbar_arrive_expect_tx(&q_full[b], kQBytes);
#pragma unroll
          for (int c = 0; c < D / 64; ++c)
            tma_load_3d(sQ + b * BM * D + c * BM * 64, &p.q_map, &q_full[b], c * 64, item.head, item.q0);
        }
        return true;
      };
      FwdItem item;
      bool more = next_item(item);
      while (more) {
        const FwdItem cur = item;
        const int ntot = cur.ntiles;
        if (ntot == 0) more = next_item(item);
        const int kvh = cur.head / (p.hq / p.hkv);
        int le = cur.entry_begin, lt = 0;
        for (int t = 0; t < ntot; ++t, ++g) {
          if (t > 0 && ++lt == p.entries[le].ntiles) { ++le; lt = 0; }
          const int k0 = t == 0 ? cur.k_first : p.entries[le].k_lo + lt * BN;
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
          if (t == ntot - 1) more = next_item(item);
        }
      }
    }
    return;
  }

  regs_claim<240>();
  const int c = wg - 1;  // consumer: query rows [64 c, 64 c + 64) of the item
  const int tid = static_cast<int>(threadIdx.x) - 128;
  const int ctid = tid - NW * c;  // among this consumer's threads
  const int warp = tid / 32, lane = tid % 32;
  const int64_t q_stride = static_cast<int64_t>(p.hq) * D;
  const int row_in_blk = warp * 16 + lane / 4;
  uint32_t n = 0, nq = 0, g = 0;  // items taken, Q buffers taken, the ring's tiles

  float o[D / 2];
  float m_run[2], l_run[2];
  uint32_t pk[BN / 16][4];  // P of the tile whose P V is issued next, packed to the input dtype
  float sacc[BN / 2];
  // The walked item: its rows, and the entry and tile of its next S, with that entry and its slice
  // in registers, read once when the cursor reaches the entry: read at each tile's softmax, the
  // loads could not be issued ahead of the waits and barriers before it, and every tile waited for
  // them (results/kernel/NOTES.md, v37).
  int wq0 = 0, wq_end = 0, ce = 0, ce_end = 0, ct = 0;
  FwdEntry went{};
  DevSlice wsl{};
  auto read_entry = [&]() {
    went = p.entries[ce];
    wsl = p.slices[went.slice];
  };

  // Takes the next item from the producer; false once there is none.
  auto take_item = [&](FwdItem& item) {
    const int j = n & 1;
    mbar_wait(&item_full[j], (n / 2) & 1);
    ++n;
    item = s_item[j];
    const bool more = s_item_index[j] != p.nitems;
    mbar_arrive(&item_free[j]);
    return more;
  };
  // Waits for the item's Q buffer (loaded, or given for staging); returns its index.
  auto take_q = [&]() {
    const uint32_t b = nq & 1;
    mbar_wait(&q_full[b], (nq / 2) & 1);
    ++nq;
    return b;
  };
  // O of an item without key tiles, whose epilogue writes empty rows from it (an item with key
  // tiles overwrites O with its first P V instead: issue_pv).
  auto clear_o = [&]() {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  };
  // Starts the softmax of an item's walk: an empty running max and sum, the cursor at its first
  // tile (O may still hold the item before's products).
  auto begin_walk = [&](const FwdItem& item) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      m_run[r] = -INFINITY;
      l_run[r] = 0.f;
    }
    wq0 = item.q0;
    wq_end = item.q_end;
    ce = item.entry_begin;
    ce_end = item.entry_end;
    ct = 0;
    if (ce < ce_end) read_entry();
  };

  // The descriptors of this consumer's rows of Q buffer 0 and of the rings' stage 0, from the base
  // at the layout's offsets (sQ, sK, sV above: the two Q buffers, then STAGES K tiles).
  const WgmmaDesc smem_desc(smem_addr(base), 0, 1024);
  const WgmmaDesc q_desc = smem_desc.plus(c * 64 * 128), k_desc = smem_desc.plus(2 * kQBytes),
                  v_desc = smem_desc.with_lbo(BN * 128).plus(2 * kQBytes + STAGES * kKVBytes);
  // S = Q K^T of the ring's tile t (stage t % STAGES), Q from buffer qb, into sacc: issued, not
  // waited for.
  auto issue_s = [&](uint32_t t, uint32_t qb) {
    const WgmmaDesc dq = q_desc.plus(qb * kQBytes), dk = k_desc.plus((t % STAGES) * kKVBytes);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      WS::ss(sacc, dq((kk / 4) * (BM * 128) + (kk % 4) * 32), dk((kk / 4) * (BN * 128) + (kk % 4) * 32), kk > 0 ? 1 : 0);
    wgmma_commit();
  };
  // O += P V of tile t from pk, or O = P V for an item's first tile (first: O still holds the item
  // before's products, so nothing clears it): issued, not waited for.
  auto issue_pv = [&](uint32_t t, bool first) {
    const WgmmaDesc dv = v_desc.plus((t % STAGES) * kKVBytes);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) WO::rs_t(o, pk[kk], dv(kk * 16 * 128), kk > 0 || !first ? 1 : 0);
    wgmma_commit();
  };
  // Masks sacc (tile of the cursor), turns it into P (base 2, m_run in units of score * scale *
  // log2(e)) with the row sums, and returns in corr what O must be scaled by once the products
  // issued before have landed (1 where m_run stays: kFwdRescaleSlack); advances the cursor.
  auto softmax = [&](float (&corr)[2]) {
    const FwdEntry ent = went;
    const DevSlice sl = wsl;
    const int k0 = ent.k_lo + ct * BN;
    if (!tile_inside(sl, wq0, wq_end, k0, k0 + BN)) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int q = wq0 + row_in_blk + 8 * r;
        int lo = 1, hi = 0;
        if (q >= sl.qs && q < sl.qe) { lo = band_lo(sl, q); hi = band_hi(sl, q); }
        // The row's keys [lo, hi) counted from this thread's first column: element (j, e) is its
        // column 8 j + e, so each test compares a constant with a register (written with the key
        // itself, each element cost an add and the compares of its sum).
        const int c0 = k0 + (lane & 3) * 2, a = lo - c0, b = hi - c0;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int m = j * 8 + e;
            if (m < a || m >= b) sacc[4 * j + 2 * r + e] = -INFINITY;
          }
        }
      }
    }
    if (++ct == ent.ntiles) {
      ct = 0;
      if (++ce < ce_end) read_entry();
    }
    // P = exp2(S scale - max) of row r, and its sum into l.
    auto exponentials = [&](int r, float m_use) {
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
    };
    // The MERGE kernel at d 128 takes both rows' maxima before any exponential and ends ptxas's
    // block there: ptxas sank them below the wait for P(t-1) V(t-1) that follows the softmax
    // (it keeps the writing kernel's above), which cost 0.2-2.4% in one launch and 0.8-3.8% at 5
    // stages of 32k. The writing kernel and d 64 keep ptxas's order: the maxima first slowed them
    // 1-4% (results/kernel/NOTES.md, v42, v43).
    constexpr bool kMaximaFirst = MERGE && D == 128;
    float m_use[2];
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
      m_use[r] = m_run[r] == -INFINITY ? 0.f : m_run[r];
      if constexpr (!kMaximaFirst) exponentials(r, m_use[r]);
    }
    if constexpr (kMaximaFirst) {
      schedule_boundary(p.nitems < 0);
      exponentials(0, m_use[0]);
      exponentials(1, m_use[1]);
    }
  };
  auto pack_p = [&]() {
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < 4; ++i) pk[kk][i] = E::pack(sacc[8 * kk + 2 * i], sacc[8 * kk + 2 * i + 1]);
    }
  };

  // This consumer's rows of an item: the first, their out (of the item's head), how many there are
  // (0 or fewer when the item ends inside consumer 0's), and their staging in the Q buffer qb.
  struct ConsumerRows {
    int64_t row0;
    int n;
    T* out;
    T* staging;
  };
  auto consumer_rows = [&](const FwdItem& item, uint32_t qb) {
    const int64_t row0 = item.q0 + 64 * c;
    return ConsumerRows{row0, item.q_end - item.q0 - 64 * c, p.out + row0 * q_stride + static_cast<int64_t>(item.head) * D,
                        sQ + qb * BM * D + c * 64 * 64};
  };
  // MERGE, before an item's epilogue, once this consumer's last S of the item has landed (or at
  // once for an item without key tiles): waits for the previous stage, then copies the rows'
  // earlier out into this consumer's rows of the item's Q buffer while their earlier lse comes
  // into the L1, where the epilogue finds them; issued before the item's last P V, so the round
  // trip runs under that product and the next item's first softmax. An item none of whose rows
  // holds an earlier result (FwdItem::merge == 0) reads nothing; it still waits for the previous
  // stage, whose writes may reach its rows (a 128-row item of that stage writes rows it gives no
  // key) and whose completion the next stage counts on.
  auto fetch_earlier = [&](const FwdItem& item, uint32_t qb) {
    if constexpr (EPI != FwdEpilogue::write) pdl_wait_previous();  // out and lse as the previous stage left them
    if constexpr (MERGE) {
      if (item.merge != 0) {
        const ConsumerRows cr = consumer_rows(item, qb);
        load_staged_rows<64, D, NW, QTileLayout<BM>>(cr.staging, cr.out, q_stride, cr.n, ctid);
        cp_async_commit();
        if (ctid < 64 && ctid < cr.n) prefetch_l1(p.lse + (cr.row0 + ctid) * p.hq + item.head);
      }
    }
  };
  // Epilogue of this consumer's rows of an item whose products have all landed, from O and its
  // running max and sum: normalise, out (input dtype) staged in the item's Q buffer and stored as
  // whole rows, lse (natural log, -inf for empty rows); then the buffer is handed back. MERGE:
  // merged in place with what fetch_earlier staged (each thread reads the elements it then
  // writes). A row at -inf is written as if by Into::write and its staged out is never used (it
  // may be anything), so a stage-wise caller sets lse = -inf where no stage has computed yet
  // instead of writing zeros into out (kernel_args.h).
  auto epilogue = [&](const FwdItem& item, uint32_t qb, const float (&m_fin)[2], const float (&l_fin)[2]) {
    using L = QTileLayout<BM>;
    T* stage = sQ + qb * BM * D;
    const int h = item.head;
    const ConsumerRows cr = consumer_rows(item, qb);
    const bool merge = MERGE && item.merge != 0;
    if (merge) {
      cp_async_wait<0>();  // fetch_earlier's copies
      named_sync(kFwdBarStaging + c, NW);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float l = quad_sum(l_fin[r]);
      const int row = row_in_blk + 8 * r;
      const bool mine = item.q0 + row < item.q_end;
      float lse_new = l > 0.f ? m_fin[r] * kLn2 + logf(l) : -INFINITY;
      float w_new = l > 0.f ? 1.f / l : 0.f, w_prev = 0.f;
      if constexpr (MERGE) {
        // lse' = log(e^prev + e^new); a side at -inf weighs 0 (its staged out is never read). The
        // quad's writer reads prev and hands it round, so no lane reads after the writer stored.
        const bool reader = (lane & 3) == 0 && mine && merge;
        const float prev = __shfl_sync(0xffffffffu, reader ? p.lse[static_cast<int64_t>(item.q0 + row) * p.hq + h] : -INFINITY,
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
        const int at = L::at(row, i * 8 + (lane & 3) * 2);
        float lo = o[4 * i + 2 * r] * w_new, hi = o[4 * i + 2 * r + 1] * w_new;
        if (merge && w_prev > 0.f) {
          lo = fmaf(E::to_float(stage[at]), w_prev, lo);
          hi = fmaf(E::to_float(stage[at + 1]), w_prev, hi);
        }
        *reinterpret_cast<uint32_t*>(stage + at) = E::pack(lo, hi);
      }
      if ((lane & 3) == 0 && mine) p.lse[static_cast<int64_t>(item.q0 + row) * p.hq + h] = lse_new;
    }
    named_sync(kFwdBarStaging + c, NW);
    store_staged_rows<64, D, NW, L>(cr.staging, cr.out, q_stride, cr.n, ctid);
    fence_proxy_async();  // the staging's writes before the producer's next Q load into the buffer
    mbar_arrive(&q_free[qb]);
  };

  // Items come in runs of consecutive ones with key tiles. A run's first S is issued alone; within
  // a run, S(t) of tile t and P(t-1) V(t-1) are issued together whether or not t starts a new item,
  // so the tensor cores run on across the items' ends: the next item's first S (its Q is in the
  // other buffer) goes with the last P V, the next softmax runs while that product lands, and the
  // item's epilogue after it, under the other consumer's products. The run's last P V is issued
  // alone. An item without key tiles ends a run and writes empty rows.
  FwdItem item;
  bool more = take_item(item);
  while (more) {
    uint32_t qb = take_q();
    FwdItem next;
    begin_walk(item);
    if (item.ntiles == 0) {
      clear_o();
      fetch_earlier(item, qb);
      more = take_item(next);
    } else {
      if (c == 1) named_arrive(kFwdBarTurn, NC);  // consumer 0 issues first
      mbar_wait(&k_full[g % STAGES], (g / STAGES) & 1);
      fwd_take_turn(c);
      wgmma_fence();
      issue_s(g, qb);
      fwd_pass_turn(c, false);
      wgmma_wait<0>();
      fence_operands(sacc);
      mbar_arrive(&k_free[g % STAGES]);
      float corr[2];
      softmax(corr);
      pack_p();
      for (;;) {
        const uint32_t first = g, end = g + item.ntiles;
        for (uint32_t t = first + 1; t < end; ++t) {
          const uint32_t s = t % STAGES, sp = (t - 1) % STAGES;
          mbar_wait(&k_full[s], (t / STAGES) & 1);
          mbar_wait(&v_full[sp], ((t - 1) / STAGES) & 1);
          fwd_take_turn(c);
          wgmma_fence();
          issue_s(t, qb);
          issue_pv(t - 1, t - 1 == first);
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
        g = end;
        fetch_earlier(item, qb);
        more = take_item(next);
        if (!more || next.ntiles == 0) break;
        // The next item's first S with this item's last P V.
        const uint32_t nb = take_q(), last = end - 1, sp = last % STAGES;
        mbar_wait(&k_full[g % STAGES], (g / STAGES) & 1);
        mbar_wait(&v_full[sp], (last / STAGES) & 1);
        fwd_take_turn(c);
        wgmma_fence();
        issue_s(g, nb);
        issue_pv(last, item.ntiles == 1);
        fwd_pass_turn(c, false);
        const float m_fin[2] = {m_run[0], m_run[1]}, l_fin[2] = {l_run[0], l_run[1]};
        begin_walk(next);
        wgmma_wait<1>();
        fence_operands(sacc);
        mbar_arrive(&k_free[g % STAGES]);
        softmax(corr);
        wgmma_wait<0>();
        fence_operands(o);
        mbar_arrive(&v_free[sp]);
        pack_p();  // the last P V, which read pk, has landed
        epilogue(item, qb, m_fin, l_fin);
        item = next;
        qb = nb;
      }
      // The run's last P V.
      const uint32_t last = g - 1, sp = last % STAGES;
      mbar_wait(&v_full[sp], (last / STAGES) & 1);
      fwd_take_turn(c);
      wgmma_fence();
      issue_pv(last, item.ntiles == 1);
      fwd_pass_turn(c, true);
      wgmma_wait<0>();
      fence_operands(o);
      mbar_arrive(&v_free[sp]);
    }
    epilogue(item, qb, m_run, l_run);
    item = next;
  }
}

}  // namespace magi::kernels::cuda::detail
