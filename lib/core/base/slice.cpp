#include "core/base/slice.h"

#include "common/slice_band.h"

#include <algorithm>
#include <array>
#include <set>

namespace magi {

std::string_view to_string(SliceType t) {
  switch (t) {
    case SliceType::full: return "full";
    case SliceType::causal: return "causal";
    case SliceType::inv_causal: return "inv_causal";
    case SliceType::bi_causal: return "bi_causal";
  }
  return "?";
}

std::optional<SliceType> parse_slice_type(std::string_view s) {
  for (SliceType t : {SliceType::full, SliceType::causal, SliceType::inv_causal, SliceType::bi_causal}) {
    if (to_string(t) == s) return t;
  }
  return std::nullopt;
}

namespace {

static_assert(static_cast<int>(SliceType::full) == static_cast<int>(kernels::KernelSliceType::full) &&
              static_cast<int>(SliceType::causal) == static_cast<int>(kernels::KernelSliceType::causal) &&
              static_cast<int>(SliceType::inv_causal) == static_cast<int>(kernels::KernelSliceType::inv_causal) &&
              static_cast<int>(SliceType::bi_causal) == static_cast<int>(kernels::KernelSliceType::bi_causal));
kernels::KernelSliceType kernel_type(SliceType t) { return static_cast<kernels::KernelSliceType>(t); }

// The band's edges (kernels/common/slice_band.h) as exact linear functions of q, defined for
// every q, inside the slice's query range or not.
int64_t band_lo(const AttnSlice& s, int64_t q) {
  return kernels::band_lo(kernel_type(s.type), s.q.start, s.k.start, q);
}
int64_t band_hi(const AttnSlice& s, int64_t q) {
  return kernels::band_hi(kernel_type(s.type), s.q.end, s.k.end, q);
}

}  // namespace

kernels::KernelSlice to_kernel_slice(const AttnSlice& s) {
  return {s.q.start, s.q.end, s.k.start, s.k.end, kernel_type(s.type)};
}

std::vector<kernels::KernelSlice> to_kernel_slices(const std::vector<AttnSlice>& slices) {
  std::vector<kernels::KernelSlice> out;
  out.reserve(slices.size());
  for (const AttnSlice& s : slices) out.push_back(to_kernel_slice(s));
  return out;
}

Range visible_keys(const AttnSlice& s, int64_t q) {
  const int64_t lo = band_lo(s, q);
  const int64_t hi = band_hi(s, q);
  return Range{lo, std::max(lo, hi)};
}

int64_t slice_area(const AttnSlice& s) { return kernels::band_area(kernel_type(s.type), s.q.size(), s.k.size()); }

int64_t mask_area(const std::vector<AttnSlice>& slices) {
  int64_t a = 0;
  for (const AttnSlice& s : slices) a += slice_area(s);
  return a;
}

bool slices_overlap(const AttnSlice& a, const AttnSlice& b) {
  const Range qi = intersect(a.q, b.q);
  if (qi.empty() || intersect(a.k, b.k).empty()) return false;
  // g(q) = min(hi_a, hi_b) - max(lo_a, lo_b) is concave and piecewise linear in q with slopes in
  // {-1, 0, 1}; its maximum over the integers of qi lies at an end of qi or where two edges cross.
  auto g = [&](int64_t q) {
    return std::min(band_hi(a, q), band_hi(b, q)) - std::max(band_lo(a, q), band_lo(b, q));
  };
  std::array<int64_t, 6> candidates{qi.start, qi.end - 1, qi.start, qi.start, qi.start, qi.start};
  // lo_a(q) - lo_b(q) and hi_a(q) - hi_b(q) are affine with slope -1, 0 or 1: find their zeros.
  auto zero_of = [&](auto fa, auto fb) -> int64_t {
    const int64_t d0 = fa(qi.start) - fb(qi.start);
    const int64_t slope = (fa(qi.start + 1) - fb(qi.start + 1)) - d0;
    if (slope == 0) return qi.start;
    return std::clamp(qi.start - d0 / slope, qi.start, qi.end - 1);
  };
  candidates[2] = zero_of([&](int64_t q) { return band_lo(a, q); }, [&](int64_t q) { return band_lo(b, q); });
  candidates[3] = zero_of([&](int64_t q) { return band_hi(a, q); }, [&](int64_t q) { return band_hi(b, q); });
  // Where a lower edge of one meets the upper edge of the other the band width changes slope too.
  candidates[4] = zero_of([&](int64_t q) { return band_lo(a, q); }, [&](int64_t q) { return band_hi(b, q); });
  candidates[5] = zero_of([&](int64_t q) { return band_hi(a, q); }, [&](int64_t q) { return band_lo(b, q); });
  for (int64_t q : candidates) {
    for (int64_t dq : {-1, 0, 1}) {
      const int64_t x = q + dq;
      if (qi.contains(x) && g(x) > 0) return true;
    }
  }
  return false;
}

// A sweep over query rows (Shamos-Hoey). Each slice is active on the rows where its band is not
// empty; on any row the bands of the active slices are disjoint until the first double cover, and
// two disjoint non-empty bands keep their order from one row to the next (each edge moves by at
// most one key per row, so passing would take a row where they share a key). The active slices
// are therefore kept ordered by band_lo at the current row, and the first double cover is between
// two that are neighbours in that order on the row before it, or on its row when one of them starts
// there. Every pair that becomes neighbours (by an insertion or a removal) is tested exactly with
// slices_overlap over all their rows, so the sweep finds a double cover whenever there is one, with
// O(n log n) work.
std::optional<std::pair<size_t, size_t>> find_double_cover(const std::vector<AttnSlice>& slices) {
  // What the ordered set keeps of a slice, so that comparing and testing neighbours reads no other
  // memory: its lower edge, lo(row) = lo_at_0 + row for a diagonal edge, lo_at_0 otherwise, and its
  // key range (slices with disjoint key ranges share no pair).
  struct LowerEdge {
    int64_t lo_at_0;
    bool diagonal;
    Range keys;
    size_t slice;
    int64_t at(int64_t row) const { return diagonal ? lo_at_0 + row : lo_at_0; }
  };
  struct Event {
    int64_t row;
    bool insert;  // removals of a row come before its insertions: rows are half-open
    int64_t lo;   // band_lo at the row
    size_t slice;
  };
  std::vector<LowerEdge> edges;
  std::vector<Event> events;
  edges.reserve(slices.size());
  events.reserve(2 * slices.size());
  for (size_t i = 0; i < slices.size(); ++i) {
    const AttnSlice& s = slices[i];
    const kernels::KernelSliceType t = kernel_type(s.type);
    edges.push_back(LowerEdge{band_lo(s, 0), kernels::band_has_lower_diagonal(t), s.k, i});
    const auto rows = kernels::nonempty_rows(t, s.q.start, s.q.end, s.k.start, s.k.end);
    if (rows.first >= rows.end) continue;
    events.push_back(Event{rows.first, true, band_lo(s, rows.first), i});
    events.push_back(Event{rows.end, false, 0, i});
  }
  // Insertions of one row in band_lo order: each usually lands right after the previous one.
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.row != b.row) return a.row < b.row;
    if (a.insert != b.insert) return !a.insert;
    if (a.lo != b.lo) return a.lo < b.lo;
    return a.slice < b.slice;
  });
  int64_t row = 0;
  auto by_band_lo = [&row](const LowerEdge& a, const LowerEdge& b) { return a.at(row) < b.at(row); };
  using Active = std::set<LowerEdge, decltype(by_band_lo)>;
  Active active(by_band_lo);
  std::vector<Active::iterator> where(slices.size(), active.end());
  auto covered_twice = [&](const LowerEdge& a, const LowerEdge& b) -> std::optional<std::pair<size_t, size_t>> {
    if (intersect(a.keys, b.keys).empty() || !slices_overlap(slices[a.slice], slices[b.slice])) return std::nullopt;
    return std::pair{std::min(a.slice, b.slice), std::max(a.slice, b.slice)};
  };
  Active::iterator last_inserted = active.end();  // on this row
  for (const Event& e : events) {
    if (e.row != row || !e.insert) last_inserted = active.end();
    row = e.row;
    if (!e.insert) {
      const auto it = where[e.slice];
      const auto next = std::next(it);
      if (it != active.begin() && next != active.end()) {
        if (auto pair = covered_twice(*std::prev(it), *next)) return pair;
      }
      active.erase(it);
      continue;
    }
    // The first active band with band_lo >= this one's, and the one before it: if any active band
    // shares a key with this one on this row, one of those two does.
    auto next = active.end();
    if (last_inserted != active.end() && (std::next(last_inserted) == active.end() ||
                                          std::next(last_inserted)->at(row) >= e.lo)) {
      next = std::next(last_inserted);
    } else {
      next = active.lower_bound(edges[e.slice]);
    }
    if (next != active.end()) {
      if (auto pair = covered_twice(edges[e.slice], *next)) return pair;
    }
    if (next != active.begin()) {
      if (auto pair = covered_twice(*std::prev(next), edges[e.slice])) return pair;
    }
    last_inserted = where[e.slice] = active.insert(next, edges[e.slice]);
  }
  return std::nullopt;
}

}  // namespace magi
