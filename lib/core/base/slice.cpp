#include "core/base/slice.h"

#include "common/slice_band.h"

#include <algorithm>
#include <array>
#include <numeric>

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

std::optional<std::pair<size_t, size_t>> find_double_cover(const std::vector<AttnSlice>& slices) {
  std::vector<size_t> order(slices.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::erase_if(order, [&](size_t i) { return slice_area(slices[i]) == 0; });
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return slices[a].q.start < slices[b].q.start; });
  for (size_t x = 0; x < order.size(); ++x) {
    const AttnSlice& a = slices[order[x]];
    for (size_t y = x + 1; y < order.size() && slices[order[y]].q.start < a.q.end; ++y) {
      if (slices_overlap(a, slices[order[y]])) {
        return std::pair{std::min(order[x], order[y]), std::max(order[x], order[y])};
      }
    }
  }
  return std::nullopt;
}

}  // namespace magi
