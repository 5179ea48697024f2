#include "core/sim/kernel_work.h"

#include "common/row_runs.h"
#include "common/slice_band.h"

#include <algorithm>

namespace magi {

KernelWork& KernelWork::operator+=(const KernelWork& o) {
  area += o.area;
  fwd_tiles += o.fwd_tiles;
  fwd_items += o.fwd_items;
  bwd_tiles += o.bwd_tiles;
  bwd_items += o.bwd_items;
  return *this;
}

namespace {

using kernels::KernelSliceType;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

KernelSliceType ktype(const AttnSlice& s) { return static_cast<KernelSliceType>(static_cast<int>(s.type)); }

// Tiles of slice s met by the query segment [r0, r1): its keys [band_lo(rr0), band_hi(rr1 - 1)).
int64_t fwd_segment_tiles(const AttnSlice& s, int64_t r0, int64_t r1, int bn) {
  const int64_t rr0 = std::max(r0, s.q.start), rr1 = std::min(r1, s.q.end);
  if (rr1 <= rr0) return 0;
  const KernelSliceType t = ktype(s);
  const int64_t lo = std::max(kernels::band_lo(t, s.q.start, s.k.start, rr0), s.k.start);
  const int64_t hi = std::min(kernels::band_hi(t, s.q.end, s.k.end, rr1 - 1), s.k.end);
  return hi > lo ? ceil_div(hi - lo, bn) : 0;
}

// Tiles of slice s met by the key segment [k0, k1): its rows [rows_lo(kk0), rows_hi(kk1 - 1)).
int64_t bwd_segment_tiles(const AttnSlice& s, int64_t k0, int64_t k1, int bm) {
  const int64_t kk0 = std::max(k0, s.k.start), kk1 = std::min(k1, s.k.end);
  if (kk1 <= kk0) return 0;
  const KernelSliceType t = ktype(s);
  const int64_t lo = kernels::rows_lo(t, s.q.start, s.q.end, s.k.end, kk0);
  const int64_t hi = kernels::rows_hi(t, s.q.start, s.q.end, s.k.start, kk1 - 1);
  return hi > lo ? ceil_div(hi - lo, bm) : 0;
}

bool disjoint(std::vector<Range> r) {
  std::sort(r.begin(), r.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
  for (size_t i = 1; i < r.size(); ++i)
    if (r[i].start < r[i - 1].end) return false;
  return true;
}

// One axis: items along `axis` of `tile` rows; tiles(s, a, b) counts slice s's tiles in [a, b).
template <class Axis, class Tiles>
void count_axis(const std::vector<AttnSlice>& sl, int tile, Axis axis, Tiles tiles, int64_t& n_tiles,
                int64_t& n_items) {
  std::vector<Range> spans;
  for (const AttnSlice& s : sl) spans.push_back(axis(s));
  if (disjoint(spans)) {
    for (const AttnSlice& s : sl) {
      const Range a = axis(s);
      for (int64_t r = a.start; r < a.end; r += tile) {
        const int64_t n = tiles(s, r, std::min(a.end, r + tile));
        n_tiles += n;
        n_items += n > 0;
      }
    }
    return;
  }
  // A fixed grid: a block's item walks every slice meeting it. Blocks in ascending order, each
  // with the slices that meet it (a sweep over slices sorted by start).
  std::vector<size_t> order(sl.size());
  for (size_t i = 0; i < sl.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return axis(sl[x]).start < axis(sl[y]).start; });
  std::vector<std::pair<int64_t, int64_t>> per_block;
  for (size_t i : order) {
    const Range a = axis(sl[i]);
    for (int64_t b = a.start / tile; b <= (a.end - 1) / tile; ++b) {
      per_block.emplace_back(b, tiles(sl[i], b * tile, (b + 1) * tile));
    }
  }
  std::sort(per_block.begin(), per_block.end());
  for (size_t i = 0; i < per_block.size();) {
    int64_t t = 0;
    size_t j = i;
    for (; j < per_block.size() && per_block[j].first == per_block[i].first; ++j) t += per_block[j].second;
    n_tiles += t;
    n_items += t > 0;
    i = j;
  }
}

// The slices as the forward walks them: runs down the query rows joined (common/row_runs.h).
std::vector<AttnSlice> joined_rows(const std::vector<AttnSlice>& sl) {
  struct Rect {
    int64_t qs, qe, ks, ke;
    int type;
  };
  std::vector<Rect> r;
  r.reserve(sl.size());
  for (const AttnSlice& s : sl) r.push_back(Rect{s.q.start, s.q.end, s.k.start, s.k.end, static_cast<int>(s.type)});
  std::vector<AttnSlice> out;
  for (const Rect& x : kernels::join_row_runs(r))
    out.push_back(AttnSlice{{x.qs, x.qe}, {x.ks, x.ke}, static_cast<SliceType>(x.type)});
  return out;
}

}  // namespace

KernelWork count_kernel_work(const std::vector<AttnSlice>& slices, const KernelTiles& tiles) {
  KernelWork w;
  std::vector<AttnSlice> sl;
  for (const AttnSlice& s : slices) {
    const int64_t a = slice_area(s);
    if (a == 0) continue;
    w.area += a;
    sl.push_back(s);
  }
  count_axis(
      joined_rows(sl), tiles.fwd_rows, [](const AttnSlice& s) { return s.q; },
      [&](const AttnSlice& s, int64_t a, int64_t b) { return fwd_segment_tiles(s, a, b, tiles.fwd_keys); },
      w.fwd_tiles, w.fwd_items);
  count_axis(
      sl, tiles.bwd_keys, [](const AttnSlice& s) { return s.k; },
      [&](const AttnSlice& s, int64_t a, int64_t b) { return bwd_segment_tiles(s, a, b, tiles.bwd_rows); },
      w.bwd_tiles, w.bwd_items);
  return w;
}

}  // namespace magi
