#include "core/plan/rank_layout.h"

#include "core/base/error.h"
#include "core/plan/clip.h"
#include "core/plan/comm_volume.h"
#include "core/plan/node_routing.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>

namespace magi::detail {

namespace {

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

// Rank r hosts zigzag blocks r and 2cp - 1 - r.
std::vector<int> zigzag_owner(int cp) {
  std::vector<int> owner(2 * static_cast<size_t>(cp));
  for (int u = 0; u < 2 * cp; ++u) owner[static_cast<size_t>(u)] = u < cp ? u : 2 * cp - 1 - u;
  return owner;
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

}  // namespace

Plan plan_header(const Case& c, Strategy s) {
  Plan p;
  p.strategy = s;
  p.cp = c.parallel.cp;
  p.total_tokens = c.total_tokens;
  p.chunk_tokens = c.parallel.chunk_tokens;
  p.model = c.model;
  p.solver = c.parallel.solver;
  p.ranks_per_node = planned_ranks_per_node(c);
  return p;
}

Plan skipped_plan(const Case& c, Strategy s, std::string reason) {
  Plan p = plan_header(c, s);
  p.skipped = true;
  p.skip_reason = std::move(reason);
  return p;
}

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
  p.zero_redundancy_bound = magi_volume(remote, p.model, dtype_bytes(p.model.dtype));
  return pieces;
}

void fill_rank_bytes(Plan& p) {
  const PlannedBytes b = planned_bytes(p, dtype_bytes(p.model.dtype));
  p.volume.max_rank_fwd_bytes = 0;
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    p.ranks[r].send_bytes_fwd = b.fwd[r].sent;
    p.ranks[r].recv_bytes_fwd = b.fwd[r].received;
    p.volume.max_rank_fwd_bytes = std::max(p.volume.max_rank_fwd_bytes, b.fwd[r].sent);
  }
}

void sort_transfers(Plan& p) {
  // A stable counting sort by (stage, src), then each bucket by (dst, from_stage) unless it is so
  // already (the builders list a stage's messages by dst): linear in the messages, which at cp 4096
  // number hundreds of thousands.
  auto less = [](const Transfer& a, const Transfer& b) {
    return a.dst != b.dst ? a.dst < b.dst : a.from_stage < b.from_stage;
  };
  int stages = 0;
  for (const Transfer& t : p.transfers) {
    MAGI_CHECK(t.stage >= 0 && t.src >= 0 && t.src < p.cp, "transfer stage {} src {} of cp {}", t.stage, t.src, p.cp);
    stages = std::max(stages, t.stage + 1);
  }
  const size_t ucp = static_cast<size_t>(p.cp);
  auto key = [&](const Transfer& t) { return static_cast<size_t>(t.stage) * ucp + static_cast<size_t>(t.src); };
  std::vector<size_t> first(static_cast<size_t>(stages) * ucp + 1, 0);
  for (const Transfer& t : p.transfers) ++first[key(t) + 1];
  for (size_t k = 1; k < first.size(); ++k) first[k] += first[k - 1];
  std::vector<Transfer> sorted(p.transfers.size());
  std::vector<size_t> next(first.begin(), first.end() - 1);
  for (Transfer& t : p.transfers) sorted[next[key(t)]++] = std::move(t);
  for (size_t k = 0; k + 1 < first.size(); ++k) {
    const auto b = sorted.begin() + static_cast<std::ptrdiff_t>(first[k]);
    const auto e = sorted.begin() + static_cast<std::ptrdiff_t>(first[k + 1]);
    if (!std::is_sorted(b, e, less)) std::sort(b, e, less);
  }
  p.transfers = std::move(sorted);
}

std::vector<StageKeyRange> host_key_ranges(const RankPlan& rk) {
  std::vector<StageKeyRange> keys;
  const std::vector<int64_t> off = layout_offsets(rk.q_ranges);
  for (size_t i = 0; i < rk.q_ranges.size(); ++i) keys.push_back(StageKeyRange{rk.q_ranges[i], 0, off[i], 0});
  return keys;
}

void add_stage_key_ranges(std::vector<StageKeyRange>& keys, const std::vector<Range>& kv_ranges, int stage) {
  int64_t o = 0;
  int group = keys.empty() ? 0 : keys.back().group + 1;
  for (size_t i = 0; i < kv_ranges.size(); ++i) {
    if (i > 0 && kv_ranges[i].start < kv_ranges[i - 1].start) ++group;
    keys.push_back(StageKeyRange{kv_ranges[i], stage, o, group});
    o += kv_ranges[i].size();
  }
}

void fill_stage_slices(RankPlan& rk, const std::vector<AttnSlice>& pieces, std::vector<StageKeyRange> keys) {
  std::sort(keys.begin(), keys.end(),
            [](const StageKeyRange& a, const StageKeyRange& b) { return a.global.start < b.global.start; });
  const std::vector<int64_t> host_off = layout_offsets(rk.q_ranges);
  std::vector<AttnSlice> tmp;
  int64_t placed = 0;
  int num_groups = 0;
  for (const StageKeyRange& sg : keys) num_groups = std::max(num_groups, sg.group + 1);
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
    auto it = std::upper_bound(keys.begin(), keys.end(), p.k.start,
                               [](int64_t t, const StageKeyRange& s) { return t < s.global.end; });
    for (; it != keys.end() && it->global.start < p.k.end; ++it) {
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

Plan zigzag_dispatch(const std::vector<AttnSlice>& mask, const Case& c, Strategy strategy,
                     std::vector<std::vector<AttnSlice>>& pieces) {
  Plan p = plan_header(c, strategy);
  const RowPieces rp = split_rows(mask, zigzag_units(c.total_tokens, c.parallel.cp));
  fill_ranks(p, rp, zigzag_owner(p.cp));
  p.chunk_tokens = rp.units.front().size();
  p.short_last_unit = false;
  fill_balance(p);
  pieces = fill_remote(p, rp);
  return p;
}

}  // namespace magi::detail
