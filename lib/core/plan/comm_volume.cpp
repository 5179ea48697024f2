#include "core/plan/comm_volume.h"

#include "core/base/checked.h"
#include "core/base/error.h"
#include "core/plan/hybrid_plan.h"

#include <algorithm>

namespace magi {

namespace {

constexpr const char* kKvBytes = "K/V bytes per token (2 x model.heads_kv x model.head_dim x dtype bytes)";
constexpr const char* kRankBytes = "a rank's planned bytes (its tokens x heads x model.head_dim x dtype bytes)";

// Bytes of `tokens` rows of `heads` heads.
int64_t row_bytes(int64_t tokens, int64_t heads, const ModelShape& m, int element_bytes) {
  return checked_mul(checked_mul(tokens, heads, kRankBytes), int64_t{m.head_dim} * element_bytes, kRankBytes);
}

void add_to(int64_t& total, int64_t bytes) { total = checked_add(total, bytes, kRankBytes); }

}  // namespace

int64_t kv_bytes_per_token(const ModelShape& m, int element_bytes) {
  return checked_mul(2LL * m.heads_kv, int64_t{m.head_dim} * element_bytes, kKvBytes);
}

CommVolume ring_volume(int cp, int64_t total_tokens, const ModelShape& m, int element_bytes) {
  const int64_t P = cp;
  const int64_t kv = kv_bytes_per_token(m, element_bytes);
  const int64_t per_hop = checked_mul(total_tokens, kv, "ring bytes per step (total_tokens x K/V bytes per token)");
  // Backward: K/V rotate P - 1 steps again and the dK/dV accumulators travel P hops back to
  // their owners; on one rank nothing moves.
  return CommVolume{checked_mul(P - 1, per_hop, "ring forward bytes ((parallel.cp - 1) x total_tokens x K/V bytes)"),
                    P > 1 ? checked_mul(2 * P - 1, per_hop,
                                        "ring backward bytes ((2 parallel.cp - 1) x total_tokens x K/V bytes)")
                          : 0,
                    0};
}

CommVolume ulysses_volume(int cp, int64_t total_tokens, const ModelShape& m, int element_bytes) {
  const int64_t P = cp;
  // Q, K, V in and O out, on the receiving rank's heads: (2 Hq + 2 Hkv) / P heads per token.
  const int64_t heads = (2LL * m.heads_q + 2LL * m.heads_kv) / P;
  const int64_t per_token = checked_mul(heads, int64_t{m.head_dim} * element_bytes,
                                        "ulysses bytes per token ((2 model.heads_q + 2 model.heads_kv) / "
                                        "parallel.cp x model.head_dim x dtype bytes)");
  const int64_t fwd = checked_mul(checked_mul(P - 1, total_tokens, "(parallel.cp - 1) x total_tokens"), per_token,
                                  "ulysses forward bytes ((parallel.cp - 1) x total_tokens x bytes per token)");
  return CommVolume{fwd, fwd, 0};
}

CommVolume allgather_volume(int cp, int64_t total_tokens, const ModelShape& m, int element_bytes) {
  const int64_t P = cp;
  const int64_t kv = kv_bytes_per_token(m, element_bytes);
  const int64_t fwd = checked_mul(checked_mul(P - 1, total_tokens, "(parallel.cp - 1) x total_tokens"), kv,
                                  "allgather forward bytes ((parallel.cp - 1) x total_tokens x K/V bytes)");
  return CommVolume{fwd, checked_mul(2, fwd, "allgather backward bytes (2 x (parallel.cp - 1) x total_tokens x K/V bytes per token)"), 0};
}

CommVolume magi_volume(int64_t remote_kv_tokens, const ModelShape& m, int element_bytes) {
  const int64_t fwd = checked_mul(remote_kv_tokens, kv_bytes_per_token(m, element_bytes),
                                  "zero-redundancy forward bytes (remote K/V tokens, from total_tokens and parallel.cp, x K/V bytes per token)");
  return CommVolume{fwd, checked_mul(2, fwd, "zero-redundancy backward bytes (2 x remote K/V tokens x K/V bytes per token, from total_tokens, parallel.cp, model.heads_kv, model.head_dim, dtype)"), 0};
}

HeadSplit head_split(const Plan& plan, int rank) {
  const RankPlan& rp = plan.ranks.at(static_cast<size_t>(rank));
  HeadSplit h;
  h.q_begin = rp.head_begin;
  h.q_end = rp.head_end;
  if (h.q_end <= h.q_begin) {
    h.q_begin = 0;
    h.q_end = plan.model.heads_q;
  }
  const int group = plan.model.heads_q / plan.model.heads_kv;
  MAGI_CHECK(h.q_begin % group == 0 && h.q_end % group == 0,
             "rank {} heads [{}, {}) do not align with GQA groups of {}", rank, h.q_begin, h.q_end, group);
  h.kv_begin = h.q_begin / group;
  h.kv_end = h.q_end / group;
  return h;
}

namespace {

// Per context rank (plan.ranks), the strategy's bytes on all heads (plan.heads ignored).
PlannedBytes strategy_bytes(const Plan& plan, int element_bytes) {
  const size_t n = plan.ranks.size();
  PlannedBytes b;
  b.fwd.assign(n, RankBytes{});
  b.bwd.assign(n, RankBytes{});
  if (n < 2) return b;  // one rank moves nothing (ring's accumulators included)
  const ModelShape& m = plan.model;
  std::vector<int64_t> tokens(n);
  int64_t S = 0;
  for (size_t r = 0; r < n; ++r) S += tokens[r] = plan.ranks[r].tokens;
  switch (plan.strategy) {
    case Strategy::magi: {
      const int64_t kv = kv_bytes_per_token(m, element_bytes);
      for (const Transfer& t : plan.transfers) {
        if (t.src == t.dst) continue;
        const int64_t bytes = checked_mul(t.tokens, kv, "a message's bytes (its tokens x K/V bytes per token)");
        RankBytes& fs = b.fwd[static_cast<size_t>(t.src)];
        RankBytes& fd = b.fwd[static_cast<size_t>(t.dst)];
        RankBytes& bs = b.bwd[static_cast<size_t>(t.src)];
        RankBytes& bd = b.bwd[static_cast<size_t>(t.dst)];
        add_to(fs.sent, bytes);
        add_to(fd.received, bytes);
        // Backward: K/V again, then dK/dV back to the owner.
        add_to(bs.sent, bytes);
        add_to(bd.received, bytes);
        add_to(bd.sent, bytes);
        add_to(bs.received, bytes);
      }
      break;
    }
    case Strategy::ring: {
      const int64_t kv = kv_bytes_per_token(m, element_bytes);
      const int64_t all = checked_mul(S, kv, kRankBytes);
      for (size_t r = 0; r < n; ++r) {
        b.fwd[r].sent = all - tokens[(r + 1) % n] * kv;
        b.fwd[r].received = all - tokens[r] * kv;
        b.bwd[r].sent = checked_add(b.fwd[r].sent, all, kRankBytes);
        b.bwd[r].received = checked_add(b.fwd[r].received, all, kRankBytes);
      }
      break;
    }
    case Strategy::allgather: {
      const int64_t kv = kv_bytes_per_token(m, element_bytes);
      const int64_t all = checked_mul(S, kv, kRankBytes);
      for (size_t r = 0; r < n; ++r) {
        const int64_t own = tokens[r] * kv;
        const int64_t to_peers = checked_mul(own, static_cast<int64_t>(n) - 1, kRankBytes);
        b.fwd[r] = RankBytes{to_peers, all - own};
        b.bwd[r] = RankBytes{checked_add(to_peers, all - own, kRankBytes),
                             checked_add(all - own, to_peers, kRankBytes)};
      }
      break;
    }
    case Strategy::ulysses: {
      // Heads of every rank together are Hq query and Hkv K/V heads: a rank's peers hold the rest.
      for (size_t r = 0; r < n; ++r) {
        const HeadSplit h = head_split(plan, static_cast<int>(r));
        const int64_t q_own = h.q_end - h.q_begin, kv_own = h.kv_end - h.kv_begin;
        const int64_t q_peers = m.heads_q - q_own, kv_peers = m.heads_kv - kv_own;
        const int64_t peer_tokens = S - tokens[r];
        // Forward: Q, K, V of its tokens on the peers' heads out, out of the peers' tokens on its
        // heads back; in: Q, K, V of the peers' tokens on its heads, out of its tokens on theirs.
        b.fwd[r].sent = checked_add(row_bytes(tokens[r], q_peers + 2 * kv_peers, m, element_bytes),
                                    row_bytes(peer_tokens, q_own, m, element_bytes), kRankBytes);
        b.fwd[r].received = checked_add(row_bytes(peer_tokens, q_own + 2 * kv_own, m, element_bytes),
                                        row_bytes(tokens[r], q_peers, m, element_bytes), kRankBytes);
        // Backward: dO like Q; dQ, dK, dV like out with K/V heads added.
        b.bwd[r].sent = checked_add(row_bytes(tokens[r], q_peers, m, element_bytes),
                                    row_bytes(peer_tokens, q_own + 2 * kv_own, m, element_bytes), kRankBytes);
        b.bwd[r].received = checked_add(row_bytes(peer_tokens, q_own, m, element_bytes),
                                        row_bytes(tokens[r], q_peers + 2 * kv_peers, m, element_bytes), kRankBytes);
      }
      break;
    }
  }
  return b;
}

}  // namespace

PlannedBytes planned_bytes(const Plan& plan, int element_bytes) {
  if (plan.heads > 1) {
    const HybridBytes hb = hybrid_planned_bytes(plan, element_bytes);
    PlannedBytes b = hb.head;
    for (size_t w = 0; w < b.fwd.size(); ++w) {
      add_to(b.fwd[w].sent, hb.context.fwd[w].sent);
      add_to(b.fwd[w].received, hb.context.fwd[w].received);
      add_to(b.bwd[w].sent, hb.context.bwd[w].sent);
      add_to(b.bwd[w].received, hb.context.bwd[w].received);
    }
    return b;
  }
  return strategy_bytes(plan, element_bytes);
}

HybridBytes hybrid_planned_bytes(const Plan& plan, int element_bytes) {
  const int h = plan.heads;
  const size_t n = static_cast<size_t>(world_size(plan));
  HybridBytes b;
  for (PlannedBytes* d : {&b.head, &b.context}) {
    d->fwd.assign(n, RankBytes{});
    d->bwd.assign(n, RankBytes{});
  }
  if (plan.skipped) return b;
  const PlannedBytes ctx = strategy_bytes(plan, element_bytes);
  const ModelShape& m = plan.model;
  for (size_t w = 0; w < n; ++w) {
    const HybridRank x = hybrid_rank(plan, static_cast<int>(w));
    const size_t g = static_cast<size_t>(x.group);
    for (auto [dst, src] : {std::pair{&b.context.fwd[w], &ctx.fwd[g]}, std::pair{&b.context.bwd[w], &ctx.bwd[g]}}) {
      MAGI_CHECK(src->sent % h == 0 && src->received % h == 0, "group {} bytes {}/{} not divisible by heads {}", g,
                 src->sent, src->received, h);
      *dst = RankBytes{src->sent / h, src->received / h};
    }
    const int64_t q_own = x.heads.q_end - x.heads.q_begin, kv_own = x.heads.kv_end - x.heads.kv_begin;
    const int64_t q_peers = m.heads_q - q_own, kv_peers = m.heads_kv - kv_own;
    const int64_t t = x.tokens, peer_tokens = plan.ranks[g].tokens - t;
    b.head.fwd[w].sent = checked_add(row_bytes(t, q_peers + 2 * kv_peers, m, element_bytes),
                                     row_bytes(peer_tokens, q_own, m, element_bytes), kRankBytes);
    b.head.fwd[w].received = checked_add(row_bytes(peer_tokens, q_own + 2 * kv_own, m, element_bytes),
                                         row_bytes(t, q_peers, m, element_bytes), kRankBytes);
    b.head.bwd[w].sent = checked_add(row_bytes(t, q_peers, m, element_bytes),
                                     row_bytes(peer_tokens, q_own + 2 * kv_own, m, element_bytes), kRankBytes);
    b.head.bwd[w].received = checked_add(row_bytes(peer_tokens, q_own, m, element_bytes),
                                         row_bytes(t, q_peers + 2 * kv_peers, m, element_bytes), kRankBytes);
  }
  return b;
}

}  // namespace magi
