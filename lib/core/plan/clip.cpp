#include "core/plan/clip.h"

#include "common/slice_band.h"

#include <algorithm>

namespace magi {

// Row q of s sees [max(lo(q), c), min(hi(q), d)) inside the rectangle, where (the band rule,
// kernels/common/slice_band.h)
//   lo(q) = q + off_lo (lower diagonal) or ks,
//   hi(q) = q + off_hi (upper diagonal) or ke,
// the offsets being the diagonal edges' values at q = 0.
// A clipped edge is the diagonal on one side of a row threshold and the constant c (or d) on the
// other: the lower edge is c for q < c - off_lo, the upper edge is d for q > d - off_hi. Cutting
// the rows at those two thresholds leaves at most 3 row blocks, each with both edges either
// diagonal or constant, i.e. a full, causal, inv_causal or bi_causal slice.
int clip_slice_into(const AttnSlice& s, Range rows, Range keys, std::vector<AttnSlice>& out) {
  const Range r = intersect(s.q, rows);
  const int64_t c = std::max(s.k.start, keys.start);
  const int64_t d = std::min(s.k.end, keys.end);
  if (r.empty() || c >= d) return 0;
  using kernels::KernelSliceType;
  const KernelSliceType type = to_kernel_slice(s).type;
  const bool lower = kernels::band_has_lower_diagonal(type);
  const bool upper = kernels::band_has_upper_diagonal(type);
  const int64_t off_lo = kernels::band_lo(KernelSliceType::bi_causal, s.q.start, s.k.start, int64_t{0});
  const int64_t off_hi = kernels::band_hi(KernelSliceType::bi_causal, s.q.end, s.k.end, int64_t{0});
  // Rows >= p_lo have the diagonal lower edge; rows < p_hi the diagonal upper edge.
  const int64_t p_lo = lower ? c - off_lo : r.start;
  const int64_t p_hi = upper ? d - off_hi + 1 : r.start;
  int64_t cuts[4] = {r.start, std::clamp(p_lo, r.start, r.end), std::clamp(p_hi, r.start, r.end), r.end};
  if (cuts[1] > cuts[2]) std::swap(cuts[1], cuts[2]);
  int n = 0;
  for (int i = 0; i < 3; ++i) {
    int64_t r0 = cuts[i], r1 = cuts[i + 1];
    if (r0 >= r1) continue;
    const bool lo_diag = lower && r0 >= p_lo;
    const bool hi_diag = upper && r0 < p_hi;
    if (!lo_diag && !hi_diag) {
      out.push_back(AttnSlice{Range{r0, r1}, Range{c, d}, SliceType::full});
    } else if (!lo_diag) {
      // Lower edge c, upper edge q + off_hi: drop rows that see nothing (q + off_hi <= c).
      r0 = std::max(r0, c - off_hi + 1);
      if (r0 >= r1) continue;
      out.push_back(AttnSlice{Range{r0, r1}, Range{c, r1 - 1 + off_hi}, SliceType::causal});
    } else if (!hi_diag) {
      // Lower edge q + off_lo, upper edge d: drop rows that see nothing (q + off_lo >= d).
      r1 = std::min(r1, d - off_lo);
      if (r0 >= r1) continue;
      out.push_back(AttnSlice{Range{r0, r1}, Range{r0 + off_lo, d}, SliceType::inv_causal});
    } else {
      if (off_hi - off_lo < 1) continue;  // a band of no width
      out.push_back(AttnSlice{Range{r0, r1}, Range{r0 + off_lo, r1 - 1 + off_hi}, SliceType::bi_causal});
    }
    ++n;
  }
  return n;
}

std::vector<AttnSlice> clip_slice(const AttnSlice& s, Range rows, Range keys) {
  std::vector<AttnSlice> out;
  clip_slice_into(s, rows, keys, out);
  return out;
}

std::vector<AttnSlice> tight_slices(const std::vector<AttnSlice>& mask) {
  std::vector<AttnSlice> out;
  for (const AttnSlice& s : mask) clip_slice_into(s, s.q, s.k, out);
  return out;
}

}  // namespace magi
