#include "core/plan/planner.h"

#include "core/base/error.h"
#include "core/plan/clip.h"
#include "core/plan/dispatch.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <tuple>

namespace magi {

namespace {

// A rank's keys as segments: each a global range living in one stage buffer at `offset`.
// Segments of one `group` are consecutive in their stage buffer and ascending in global order,
// so walking them in global order walks the buffer forwards (used to merge full slices early).
struct Segment {
  Range global;
  int stage = 0;
  int64_t offset = 0;
  int group = 0;
};

Plan plan_header(const Case& c, Strategy s) {
  Plan p;
  p.strategy = s;
  p.cp = c.parallel.cp;
  p.total_tokens = c.total_tokens;
  p.chunk_tokens = c.parallel.chunk_tokens;
  p.model = c.model;
  p.solver = c.parallel.solver;
  return p;
}

Plan skipped_plan(const Case& c, Strategy s, std::string reason) {
  Plan p = plan_header(c, s);
  p.skipped = true;
  p.skip_reason = std::move(reason);
  return p;
}

// a minus b; both sorted, merged.
std::vector<Range> subtract_ranges(const std::vector<Range>& a, const std::vector<Range>& b) {
  std::vector<Range> out;
  size_t j = 0;
  for (Range r : a) {
    int64_t cur = r.start;
    while (j < b.size() && b[j].end <= cur) ++j;
    for (size_t k = j; k < b.size() && b[k].start < r.end; ++k) {
      if (b[k].start > cur) out.push_back(Range{cur, b[k].start});
      cur = std::max(cur, b[k].end);
    }
    if (cur < r.end) out.push_back(Range{cur, r.end});
  }
  return out;
}

// Fills ranks[].units, q_ranges, tokens, area from a unit -> rank assignment.
void fill_ranks(Plan& p, const RowPieces& rp, const std::vector<int>& owner) {
  const size_t ucp = static_cast<size_t>(p.cp);
  p.ranks.assign(ucp, RankPlan{});
  for (size_t r = 0; r < ucp; ++r) {
    p.ranks[r].rank = static_cast<int>(r);
    p.ranks[r].head_begin = 0;
    p.ranks[r].head_end = p.model.heads_q;
  }
  for (size_t u = 0; u < owner.size(); ++u) {
    RankPlan& rk = p.ranks[static_cast<size_t>(owner[u])];
    rk.units.push_back(static_cast<int64_t>(u));
    rk.q_ranges.push_back(rp.units[u]);
    rk.area += rp.areas[u];
    p.max_unit_area = std::max(p.max_unit_area, rp.areas[u]);
  }
  for (RankPlan& rk : p.ranks) {
    rk.q_ranges = merge_ranges(std::move(rk.q_ranges));
    rk.tokens = total_size(rk.q_ranges);
  }
  p.num_units = static_cast<int64_t>(rp.units.size());
  p.short_last_unit = !rp.units.empty() && rp.units.back().size() < rp.units.front().size();
}

// The pieces of a rank's rows (global coordinates), in unit order.
std::vector<AttnSlice> rank_pieces(const RowPieces& rp, const RankPlan& rk) {
  std::vector<AttnSlice> out;
  for (int64_t u : rk.units) {
    const size_t uu = static_cast<size_t>(u);
    out.insert(out.end(), rp.pieces.begin() + static_cast<std::ptrdiff_t>(rp.offsets[uu]),
               rp.pieces.begin() + static_cast<std::ptrdiff_t>(rp.offsets[uu + 1]));
  }
  return out;
}

std::vector<Range> needed_keys(const std::vector<AttnSlice>& pieces) {
  std::vector<Range> k;
  k.reserve(pieces.size());
  for (const AttnSlice& s : pieces) k.push_back(s.k);
  return merge_ranges(std::move(k));
}

// Buffer offsets of a layout's ranges.
std::vector<int64_t> layout_offsets(const std::vector<Range>& layout) {
  std::vector<int64_t> off(layout.size());
  int64_t o = 0;
  for (size_t i = 0; i < layout.size(); ++i) {
    off[i] = o;
    o += layout[i].size();
  }
  return off;
}

// Host segments: q_ranges (merged, ascending) at their host buffer offsets, stage 0.
std::vector<Segment> host_segments(const RankPlan& rk) {
  std::vector<Segment> segs;
  const std::vector<int64_t> off = layout_offsets(rk.q_ranges);
  for (size_t i = 0; i < rk.q_ranges.size(); ++i) segs.push_back(Segment{rk.q_ranges[i], 0, off[i], 0});
  return segs;
}

// Adds a stage's segments (buffer order = kv_ranges order) to `segs`.
void add_stage_segments(std::vector<Segment>& segs, const std::vector<Range>& kv_ranges, int stage) {
  int64_t o = 0;
  int group = segs.empty() ? 0 : segs.back().group + 1;
  for (size_t i = 0; i < kv_ranges.size(); ++i) {
    if (i > 0 && kv_ranges[i].start < kv_ranges[i - 1].start) ++group;
    segs.push_back(Segment{kv_ranges[i], stage, o, group});
    o += kv_ranges[i].size();
  }
}

// Merges full slices that are adjacent in local coordinates: first those with the same rows and
// touching key ranges (keys from consecutive buffer ranges, e.g. two sources of a stage), then
// those with the same keys and touching rows (consecutive host chunks). Other types are kept.
void coalesce_full_slices(std::vector<AttnSlice>& slices) {
  auto mid = std::stable_partition(slices.begin(), slices.end(),
                                   [](const AttnSlice& s) { return s.type != SliceType::full; });
  const size_t first_full = static_cast<size_t>(mid - slices.begin());
  if (slices.size() - first_full < 2) return;
  std::vector<AttnSlice> full(mid, slices.end());
  auto merge_pass = [&](auto key_less, auto same_line, auto touches, auto extend) {
    std::sort(full.begin(), full.end(), key_less);
    size_t w = 0;
    for (size_t i = 0; i < full.size(); ++i) {
      if (w > 0 && same_line(full[w - 1], full[i]) && touches(full[w - 1], full[i])) {
        extend(full[w - 1], full[i]);
      } else {
        full[w++] = full[i];
      }
    }
    full.resize(w);
  };
  merge_pass([](const AttnSlice& a, const AttnSlice& b) {
               return std::tie(a.q.start, a.q.end, a.k.start) < std::tie(b.q.start, b.q.end, b.k.start);
             },
             [](const AttnSlice& a, const AttnSlice& b) { return a.q == b.q; },
             [](const AttnSlice& a, const AttnSlice& b) { return a.k.end == b.k.start; },
             [](AttnSlice& a, const AttnSlice& b) { a.k.end = b.k.end; });
  merge_pass([](const AttnSlice& a, const AttnSlice& b) {
               return std::tie(a.k.start, a.k.end, a.q.start) < std::tie(b.k.start, b.k.end, b.q.start);
             },
             [](const AttnSlice& a, const AttnSlice& b) { return a.k == b.k; },
             [](const AttnSlice& a, const AttnSlice& b) { return a.q.end == b.q.start; },
             [](AttnSlice& a, const AttnSlice& b) { a.q.end = b.q.end; });
  slices.resize(first_full);
  slices.insert(slices.end(), full.begin(), full.end());
}

// Clips every piece to the segments its keys touch and appends the local slices to the stages.
// `segs` must be disjoint; they are sorted here. Checks that every pair lands somewhere.
void fill_stage_slices(RankPlan& rk, const std::vector<AttnSlice>& pieces, std::vector<Segment> segs) {
  std::sort(segs.begin(), segs.end(),
            [](const Segment& a, const Segment& b) { return a.global.start < b.global.start; });
  const std::vector<int64_t> host_off = layout_offsets(rk.q_ranges);
  std::vector<AttnSlice> tmp;
  int64_t placed = 0;
  int num_groups = 0;
  for (const Segment& sg : segs) num_groups = std::max(num_groups, sg.group + 1);
  // Per group: the last full slice written for the current piece (index into its stage's list).
  std::vector<size_t> last_full(static_cast<size_t>(num_groups), 0);
  std::vector<size_t> last_piece(static_cast<size_t>(num_groups), SIZE_MAX);
  for (size_t pi = 0; pi < pieces.size(); ++pi) {
    const AttnSlice& p = pieces[pi];
    // The host range holding the piece's rows (a piece never straddles two units).
    auto h = std::upper_bound(rk.q_ranges.begin(), rk.q_ranges.end(), p.q.start,
                              [](int64_t t, const Range& r) { return t < r.end; });
    MAGI_CHECK(h != rk.q_ranges.end() && h->start <= p.q.start && p.q.end <= h->end,
               "piece {} outside rank {}'s rows", p, rk.rank);
    const int64_t dq = host_off[static_cast<size_t>(h - rk.q_ranges.begin())] - h->start;
    auto it = std::upper_bound(segs.begin(), segs.end(), p.k.start,
                               [](int64_t t, const Segment& s) { return t < s.global.end; });
    for (; it != segs.end() && it->global.start < p.k.end; ++it) {
      tmp.clear();
      clip_slice_into(p, p.q, it->global, tmp);
      Stage& st = rk.stages[static_cast<size_t>(it->stage)];
      const size_t g = static_cast<size_t>(it->group);
      for (const AttnSlice& s : tmp) {
        const int64_t a = slice_area(s);
        const AttnSlice local = shift_slice(s, dq, it->offset - it->global.start);
        st.area += a;
        placed += a;
        if (local.type == SliceType::full && last_piece[g] == pi) {
          AttnSlice& prev = st.slices[last_full[g]];
          if (prev.q == local.q && prev.k.end == local.k.start) {
            prev.k.end = local.k.end;  // the next range of the same run of the buffer
            continue;
          }
        }
        st.slices.push_back(local);
        if (local.type == SliceType::full) {
          last_piece[g] = pi;
          last_full[g] = st.slices.size() - 1;
        }
      }
    }
  }
  MAGI_CHECK(placed == rk.area, "rank {}: {} pairs placed in stages, {} in its rows", rk.rank, placed,
             rk.area);
  for (Stage& st : rk.stages) coalesce_full_slices(st.slices);
}

// Balance figures from ranks[].area and tokens.
void fill_balance(Plan& p) {
  p.total_area = 0;
  p.max_rank_area = 0;
  p.min_rank_tokens = std::numeric_limits<int64_t>::max();
  p.max_rank_tokens = 0;
  for (const RankPlan& rk : p.ranks) {
    p.total_area += rk.area;
    p.max_rank_area = std::max(p.max_rank_area, rk.area);
    p.min_rank_tokens = std::min(p.min_rank_tokens, rk.tokens);
    p.max_rank_tokens = std::max(p.max_rank_tokens, rk.tokens);
  }
  if (p.ranks.empty()) p.min_rank_tokens = 0;
  p.mean_rank_area = static_cast<double>(p.total_area) / p.cp;
  p.lower_bound_area = (p.total_area + p.cp - 1) / p.cp;
  p.imbalance = p.total_area > 0 ? static_cast<double>(p.max_rank_area) / p.mean_rank_area : 1.0;
}

// Per-rank send/recv bytes and the busiest sender, from the transfers (tokens x per_token bytes).
void fill_transfer_bytes(Plan& p, int64_t per_token_bytes) {
  for (RankPlan& rk : p.ranks) rk.send_bytes_fwd = rk.recv_bytes_fwd = 0;
  for (const Transfer& t : p.transfers) {
    p.ranks[static_cast<size_t>(t.src)].send_bytes_fwd += t.tokens * per_token_bytes;
    p.ranks[static_cast<size_t>(t.dst)].recv_bytes_fwd += t.tokens * per_token_bytes;
  }
  p.volume.max_rank_fwd_bytes = 0;
  for (const RankPlan& rk : p.ranks) p.volume.max_rank_fwd_bytes = std::max(p.volume.max_rank_fwd_bytes, rk.send_bytes_fwd);
}

void sort_transfers(Plan& p) {
  std::sort(p.transfers.begin(), p.transfers.end(), [](const Transfer& a, const Transfer& b) {
    if (a.stage != b.stage) return a.stage < b.stage;
    if (a.src != b.src) return a.src < b.src;
    return a.dst < b.dst;
  });
}

// remote_kv_ranges of every rank (needed keys minus host), and the zero-redundancy bound.
std::vector<std::vector<AttnSlice>> fill_remote(Plan& p, const RowPieces& rp) {
  std::vector<std::vector<AttnSlice>> pieces(p.ranks.size());
  int64_t remote = 0;
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    RankPlan& rk = p.ranks[r];
    pieces[r] = rank_pieces(rp, rk);
    rk.remote_kv_ranges = subtract_ranges(needed_keys(pieces[r]), rk.q_ranges);
    rk.remote_kv_tokens = total_size(rk.remote_kv_ranges);
    remote += rk.remote_kv_tokens;
  }
  const int64_t kv = kv_bytes_per_token(p.model);
  p.zero_redundancy_bound.fwd_bytes = remote * kv;
  p.zero_redundancy_bound.bwd_bytes = 2 * remote * kv;
  return pieces;
}

// Rank r hosts zigzag blocks r and 2cp - 1 - r.
std::vector<int> zigzag_owner(int cp) {
  std::vector<int> owner(2 * static_cast<size_t>(cp));
  for (int u = 0; u < 2 * cp; ++u) owner[static_cast<size_t>(u)] = u < cp ? u : 2 * cp - 1 - u;
  return owner;
}

}  // namespace

int64_t kv_bytes_per_token(const ModelShape& m) {
  return 2LL * m.heads_kv * m.head_dim * dtype_bytes(m.dtype);
}

std::string skip_reason(Strategy strategy, const Case& c) {
  const int cp = c.parallel.cp;
  const int64_t S = c.total_tokens;
  if (cp < 1) return fmt::format("cp = {} < 1", cp);
  switch (strategy) {
    case Strategy::magi: {
      const int64_t ct = c.parallel.chunk_tokens;
      if (ct < 1) return fmt::format("chunk_tokens = {} < 1", ct);
      const int64_t n = (S + ct - 1) / ct;
      if (n < cp) {
        return fmt::format("{} chunks of {} tokens for cp = {}: fewer chunks than ranks (lower chunk_tokens)",
                           n, ct, cp);
      }
      return "";
    }
    case Strategy::ring:
    case Strategy::allgather:
      if (S < 2LL * cp) return fmt::format("S = {} < 2 x cp = {}: zigzag needs two blocks per rank", S, 2 * cp);
      return "";
    case Strategy::ulysses:
      if (cp > c.model.heads_kv) return fmt::format("cp = {} > heads_kv = {}", cp, c.model.heads_kv);
      if (c.model.heads_kv % cp != 0) return fmt::format("heads_kv = {} not divisible by cp = {}", c.model.heads_kv, cp);
      if (c.model.heads_q % cp != 0) return fmt::format("heads_q = {} not divisible by cp = {}", c.model.heads_q, cp);
      if (S < cp) return fmt::format("S = {} < cp = {}", S, cp);
      return "";
  }
  return "";
}

CommVolume ring_volume(const Case& c) {
  const int64_t P = c.parallel.cp, S = c.total_tokens, kv = kv_bytes_per_token(c.model);
  // Backward: K/V rotate P - 1 steps again and the dK/dV accumulators travel P hops back to
  // their owners; on one rank nothing moves.
  return CommVolume{(P - 1) * S * kv, P > 1 ? (2 * P - 1) * S * kv : 0, 0};
}

CommVolume ulysses_volume(const Case& c) {
  const int64_t P = c.parallel.cp, S = c.total_tokens;
  const int64_t per_token = (2LL * c.model.heads_q + 2LL * c.model.heads_kv) / P * c.model.head_dim *
                            dtype_bytes(c.model.dtype);
  return CommVolume{(P - 1) * S * per_token, (P - 1) * S * per_token, 0};
}

CommVolume allgather_volume(const Case& c) {
  const int64_t P = c.parallel.cp, S = c.total_tokens, kv = kv_bytes_per_token(c.model);
  return CommVolume{(P - 1) * S * kv, 2 * (P - 1) * S * kv, 0};
}

// ---- Overlap degree ----
//
// Forward time of one rank with d remote stages, each holding 1/d of its remote area and tokens:
//   compute_s = flops_s / rate + overhead, flops = 4 x area x D x Hq, rate = compute_tflops 1e12
//   comm_s    = latency + bytes_s / (comm_gbps 1e9), bytes = tokens x 2 Hkv D dtype_bytes
//   comm of stage s starts when stage s - 1's comm ends (one link); stage s computes after both
//   its comm and stage s - 1's compute; the host stage computes at t = 0.
// Worked example (tested in test_planner.cpp, Overlap.WorkedExample): Hq 64, Hkv 8, D 128, bf16,
// 400 TFLOP/s, 100 GB/s; a rank with host area 2^23 pairs (4 x 2^23 x 128 x 64 = 2.75e11 flops:
// 0.687 ms), remote area 2^25 pairs (2.75 ms) and 65,536 remote tokens (4,096 B each: 268 MB,
// 2.68 ms), latency 20 us and compute overhead 5 us per stage:
//   d = 1: comm ends 2.70 ms; the remote stage computes 2.70 -> 5.46 ms.
//   d = 2: comms end 1.36, 2.72 ms; stage 1 computes 1.36 -> 2.74, stage 2 2.74 -> 4.12 ms.
//   d = 4: comms of 0.69 ms end at 0.69, 1.38, 2.07, 2.76 ms; stages of 0.69 ms compute
//          back to back from 0.69 ms: the last ends at 3.46 ms.  <- chosen
//   d = 8: comms of 0.36 ms; compute is the bottleneck from the first stage on and each extra
//          stage adds its overhead: 3.48 ms.
// (3: 3.68, 5: 3.47, 6: 3.47, 7: 3.48 ms.) With comm much cheaper than compute every d hides it,
// overheads make d = 1 the cheapest.
double estimate_rank_time_s(const RankStageCost& r, int degree, const ModelShape& m, const ParallelSpec& p) {
  const double flops_per_pair = 4.0 * m.head_dim * m.heads_q;
  const double rate = p.compute_tflops * 1e12;
  const double bw = p.comm_gbps * 1e9;
  const double d = degree;
  const double comp_host = static_cast<double>(r.host_area) * flops_per_pair / rate + kStageComputeOverheadS;
  const double comp_stage = static_cast<double>(r.remote_area) * flops_per_pair / rate / d + kStageComputeOverheadS;
  const double comm_stage =
      kStageCommLatencyS + static_cast<double>(r.remote_tokens) * static_cast<double>(kv_bytes_per_token(m)) / bw / d;
  double comm_end = 0, comp_end = comp_host;
  for (int s = 1; s <= degree; ++s) {
    comm_end += comm_stage;
    comp_end = std::max(comp_end, comm_end) + comp_stage;
  }
  return comp_end;
}

int choose_overlap_degree(const std::vector<RankStageCost>& ranks, const ModelShape& m, const ParallelSpec& p) {
  int best = 1;
  double best_t = std::numeric_limits<double>::infinity();
  for (int d = 1; d <= kMaxOverlapDegree; ++d) {
    double t = 0;
    for (const RankStageCost& r : ranks) t = std::max(t, estimate_rank_time_s(r, d, m, p));
    if (t < best_t * (1 - 1e-9)) {
      best_t = t;
      best = d;
    }
  }
  return best;
}

// ---- magi ----

Plan build_magi_plan(const std::vector<AttnSlice>& mask, const Case& c) {
  if (std::string why = skip_reason(Strategy::magi, c); !why.empty()) return skipped_plan(c, Strategy::magi, why);
  Plan p = plan_header(c, Strategy::magi);
  const int cp = p.cp;
  const int64_t chunk = c.parallel.chunk_tokens;
  const RowPieces rp = split_rows(mask, chunk_units(c.total_tokens, chunk));
  const int64_t short_unit = c.total_tokens % chunk != 0 ? static_cast<int64_t>(rp.units.size()) - 1 : -1;
  const std::vector<int> owner = assign_units(rp.areas, cp, c.parallel.solver, short_unit);
  fill_ranks(p, rp, owner);
  fill_balance(p);
  const std::vector<std::vector<AttnSlice>> pieces = fill_remote(p, rp);

  // Host-stage area of each rank (for the cost estimate): pairs whose keys the rank hosts.
  std::vector<RankStageCost> costs(p.ranks.size());
  std::vector<AttnSlice> tmp;
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    const RankPlan& rk = p.ranks[r];
    int64_t host_area = 0;
    for (const AttnSlice& s : pieces[r]) {
      auto it = std::upper_bound(rk.q_ranges.begin(), rk.q_ranges.end(), s.k.start,
                                 [](int64_t t, const Range& x) { return t < x.end; });
      for (; it != rk.q_ranges.end() && it->start < s.k.end; ++it) {
        tmp.clear();
        clip_slice_into(s, s.q, *it, tmp);
        for (const AttnSlice& x : tmp) host_area += slice_area(x);
      }
    }
    costs[r] = RankStageCost{host_area, rk.area - host_area, rk.remote_kv_tokens};
  }
  int degree = c.parallel.overlap_degree;
  if (p.zero_redundancy_bound.fwd_bytes == 0) {  // nothing remote anywhere: the host stage only
    degree = 0;
  } else if (degree <= 0) {
    degree = choose_overlap_degree(costs, p.model, c.parallel);
  }
  p.overlap_degree = degree;

  for (size_t r = 0; r < p.ranks.size(); ++r) {
    RankPlan& rk = p.ranks[r];
    rk.stages.assign(static_cast<size_t>(degree) + 1, Stage{});
    rk.stages[0].kv_ranges = rk.q_ranges;
    std::vector<Segment> segs = host_segments(rk);
    // Remote tokens, ascending, cut into `degree` runs of equal token count, each run split at
    // chunk boundaries by owner, then grouped by owner ascending.
    const int64_t R = rk.remote_kv_tokens;
    std::vector<std::vector<std::pair<int, Range>>> runs(static_cast<size_t>(degree) + 1);
    int64_t pos = 0;
    for (const Range& rr : rk.remote_kv_ranges) {
      int64_t t = rr.start;
      while (t < rr.end) {
        const size_t u = static_cast<size_t>(t / chunk);
        const int s = degree > 0 ? static_cast<int>(pos * degree / R) + 1 : 0;
        const int64_t stage_end_pos = (static_cast<int64_t>(s) * R + degree - 1) / degree;  // first pos of stage s + 1
        const int64_t e = std::min({rr.end, rp.units[u].end, t + (stage_end_pos - pos)});
        MAGI_CHECK(e > t, "empty remote piece at {}", t);
        auto& run = runs[static_cast<size_t>(s)];
        if (!run.empty() && run.back().first == owner[u] && run.back().second.end == t) {
          run.back().second.end = e;
        } else {
          run.emplace_back(owner[u], Range{t, e});
        }
        pos += e - t;
        t = e;
      }
    }
    for (int s = 1; s <= degree; ++s) {
      auto& run = runs[static_cast<size_t>(s)];
      std::stable_sort(run.begin(), run.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      Stage& st = rk.stages[static_cast<size_t>(s)];
      for (size_t i = 0; i < run.size(); ++i) {
        st.kv_ranges.push_back(run[i].second);
        if (i == 0 || run[i - 1].first != run[i].first) {
          p.transfers.push_back(Transfer{s, run[i].first, rk.rank, {}, 0});
        }
        p.transfers.back().ranges.push_back(run[i].second);
        p.transfers.back().tokens += run[i].second.size();
      }
      add_stage_segments(segs, st.kv_ranges, s);
    }
    fill_stage_slices(rk, pieces[r], std::move(segs));
  }
  sort_transfers(p);
  const int64_t kv = kv_bytes_per_token(p.model);
  fill_transfer_bytes(p, kv);
  p.volume.fwd_bytes = p.zero_redundancy_bound.fwd_bytes;
  p.volume.bwd_bytes = p.zero_redundancy_bound.bwd_bytes;
  p.zero_redundancy_bound.max_rank_fwd_bytes = p.volume.max_rank_fwd_bytes;
  return p;
}

// ---- ring and allgather: zigzag dispatch ----

namespace {

Plan zigzag_plan(const std::vector<AttnSlice>& mask, const Case& c, Strategy strategy,
                 RowPieces& rp_out, std::vector<std::vector<AttnSlice>>& pieces) {
  Plan p = plan_header(c, strategy);
  rp_out = split_rows(mask, zigzag_units(c.total_tokens, c.parallel.cp));
  fill_ranks(p, rp_out, zigzag_owner(p.cp));
  p.chunk_tokens = rp_out.units.front().size();
  p.short_last_unit = false;
  fill_balance(p);
  pieces = fill_remote(p, rp_out);
  return p;
}

// Sorts and sizes a baseline plan's transfers, then reports the strategy's closed-form volume
// (what its collectives move) with the busiest rank's measured send.
void finish_baseline_transfers(Plan& p, CommVolume volume) {
  sort_transfers(p);
  fill_transfer_bytes(p, kv_bytes_per_token(p.model));
  volume.max_rank_fwd_bytes = p.volume.max_rank_fwd_bytes;
  p.volume = volume;
}

}  // namespace

Plan build_ring_plan(const std::vector<AttnSlice>& mask, const Case& c) {
  if (std::string why = skip_reason(Strategy::ring, c); !why.empty()) return skipped_plan(c, Strategy::ring, why);
  RowPieces rp;
  std::vector<std::vector<AttnSlice>> pieces;
  Plan p = zigzag_plan(mask, c, Strategy::ring, rp, pieces);
  const int cp = p.cp;
  p.overlap_degree = cp - 1;
  for (int r = 0; r < cp; ++r) {
    RankPlan& rk = p.ranks[static_cast<size_t>(r)];
    rk.stages.assign(static_cast<size_t>(cp), Stage{});
    std::vector<Segment> segs;
    for (int s = 0; s < cp; ++s) {
      const int j = ((r - s) % cp + cp) % cp;
      Stage& st = rk.stages[static_cast<size_t>(s)];
      st.kv_ranges = p.ranks[static_cast<size_t>(j)].q_ranges;
      add_stage_segments(segs, st.kv_ranges, s);
      if (s > 0) {
        p.transfers.push_back(Transfer{s, ((r - 1) % cp + cp) % cp, r, st.kv_ranges, total_size(st.kv_ranges)});
      }
    }
    fill_stage_slices(rk, pieces[static_cast<size_t>(r)], std::move(segs));
  }
  finish_baseline_transfers(p, ring_volume(c));
  return p;
}

Plan build_allgather_plan(const std::vector<AttnSlice>& mask, const Case& c) {
  if (std::string why = skip_reason(Strategy::allgather, c); !why.empty()) {
    return skipped_plan(c, Strategy::allgather, why);
  }
  RowPieces rp;
  std::vector<std::vector<AttnSlice>> pieces;
  Plan p = zigzag_plan(mask, c, Strategy::allgather, rp, pieces);
  const int cp = p.cp;
  p.overlap_degree = cp > 1 ? 1 : 0;
  for (int r = 0; r < cp; ++r) {
    RankPlan& rk = p.ranks[static_cast<size_t>(r)];
    rk.stages.assign(static_cast<size_t>(p.overlap_degree) + 1, Stage{});
    rk.stages[0].kv_ranges = rk.q_ranges;
    std::vector<Segment> segs = host_segments(rk);
    if (cp > 1) {
      Stage& st = rk.stages[1];
      for (int j = 0; j < cp; ++j) {
        if (j == r) continue;
        const auto& src = p.ranks[static_cast<size_t>(j)].q_ranges;
        st.kv_ranges.insert(st.kv_ranges.end(), src.begin(), src.end());
        p.transfers.push_back(Transfer{1, j, r, src, total_size(src)});
      }
      add_stage_segments(segs, st.kv_ranges, 1);
    }
    fill_stage_slices(rk, pieces[static_cast<size_t>(r)], std::move(segs));
  }
  finish_baseline_transfers(p, allgather_volume(c));
  return p;
}

// ---- ulysses ----

Plan build_ulysses_plan(const std::vector<AttnSlice>& mask, const Case& c) {
  if (std::string why = skip_reason(Strategy::ulysses, c); !why.empty()) return skipped_plan(c, Strategy::ulysses, why);
  Plan p = plan_header(c, Strategy::ulysses);
  const int cp = p.cp;
  const int64_t S = c.total_tokens;
  p.chunk_tokens = S / cp;
  p.num_units = cp;
  p.short_last_unit = false;
  std::vector<AttnSlice> slices;
  slices.reserve(mask.size());
  int64_t area = 0;
  for (const AttnSlice& s : mask) {
    const int64_t a = slice_area(s);
    if (a == 0) continue;
    // Tighten to the keys and rows actually seen (no empty row or column).
    const size_t before = slices.size();
    clip_slice_into(s, s.q, s.k, slices);
    for (size_t i = before; i < slices.size(); ++i) area += slice_area(slices[i]);
  }
  const int hpr = c.model.heads_q / cp;
  p.ranks.assign(static_cast<size_t>(cp), RankPlan{});
  int64_t assigned = 0;
  for (int r = 0; r < cp; ++r) {
    RankPlan& rk = p.ranks[static_cast<size_t>(r)];
    rk.rank = r;
    rk.units = {r};
    rk.q_ranges = {Range{r * S / cp, (r + 1) * S / cp}};
    rk.tokens = rk.q_ranges[0].size();
    rk.head_begin = r * hpr;
    rk.head_end = (r + 1) * hpr;
    // Share of head-work: area x hpr / Hq = area / cp, remainder to the first ranks.
    rk.area = area / cp + (r < area % cp ? 1 : 0);
    assigned += rk.area;
    rk.remote_kv_ranges = subtract_ranges({Range{0, S}}, rk.q_ranges);
    rk.remote_kv_tokens = total_size(rk.remote_kv_ranges);
    Stage st;
    st.kv_ranges = {Range{0, S}};
    st.slices = slices;
    st.area = area;
    rk.stages.push_back(std::move(st));
  }
  MAGI_CHECK(assigned == area, "ulysses area split {} != {}", assigned, area);
  for (int src = 0; src < cp; ++src) {
    for (int dst = 0; dst < cp; ++dst) {
      if (src == dst) continue;
      const RankPlan& s = p.ranks[static_cast<size_t>(src)];
      p.transfers.push_back(Transfer{0, src, dst, s.q_ranges, s.tokens});
    }
  }
  fill_balance(p);
  // Bytes per token of one all-to-all direction pair: Q, K, V in and O out, on dst's heads.
  const int64_t per_token = (2LL * c.model.heads_q + 2LL * c.model.heads_kv) / cp * c.model.head_dim *
                            dtype_bytes(c.model.dtype);
  fill_transfer_bytes(p, per_token);
  const int64_t max_send = p.volume.max_rank_fwd_bytes;
  p.volume = ulysses_volume(c);
  p.volume.max_rank_fwd_bytes = max_send;
  // The zero-redundancy bound of its contiguous dispatch, for comparison.
  int64_t remote = 0;
  {
    const RowPieces rp = split_rows(mask, [&] {
      std::vector<Range> u;
      for (const RankPlan& rk : p.ranks) u.push_back(rk.q_ranges[0]);
      return u;
    }());
    for (size_t r = 0; r < p.ranks.size(); ++r) {
      std::vector<Range> k;
      for (size_t i = rp.offsets[r]; i < rp.offsets[r + 1]; ++i) k.push_back(rp.pieces[i].k);
      remote += total_size(subtract_ranges(merge_ranges(std::move(k)), p.ranks[r].q_ranges));
    }
  }
  p.zero_redundancy_bound.fwd_bytes = remote * kv_bytes_per_token(p.model);
  p.zero_redundancy_bound.bwd_bytes = 2 * p.zero_redundancy_bound.fwd_bytes;
  return p;
}

Plan build_plan(const std::vector<AttnSlice>& mask, const Case& c) {
  for (const AttnSlice& s : mask) {
    MAGI_CHECK(s.q.start >= 0 && s.q.end <= c.total_tokens && s.k.start >= 0 && s.k.end <= c.total_tokens,
               "slice {} outside [0, {})", s, c.total_tokens);
  }
  switch (c.parallel.strategy) {
    case Strategy::magi: return build_magi_plan(mask, c);
    case Strategy::ring: return build_ring_plan(mask, c);
    case Strategy::ulysses: return build_ulysses_plan(mask, c);
    case Strategy::allgather: return build_allgather_plan(mask, c);
  }
  return build_magi_plan(mask, c);
}

StrategySummary summarize(const Plan& plan) {
  StrategySummary s;
  s.strategy = plan.strategy;
  s.skipped = plan.skipped;
  s.skip_reason = plan.skip_reason;
  s.volume = plan.volume;
  s.own_bound = plan.zero_redundancy_bound;
  s.max_rank_area = plan.max_rank_area;
  s.imbalance = plan.imbalance;
  s.stages = plan.ranks.empty() ? 0 : static_cast<int>(plan.ranks[0].stages.size());
  return s;
}

std::vector<StrategySummary> compare_strategies(const std::vector<AttnSlice>& mask, const Case& c) {
  std::vector<StrategySummary> out;
  for (Strategy s : {Strategy::magi, Strategy::ring, Strategy::ulysses, Strategy::allgather}) {
    Case cs = c;
    cs.parallel.strategy = s;
    out.push_back(summarize(build_plan(mask, cs)));
  }
  return out;
}

}  // namespace magi
