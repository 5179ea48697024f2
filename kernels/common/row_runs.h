// The same mask in fewer slices: slices that continue one another down the query rows are joined
// into one, which covers exactly the pairs of both. Slices a and b join when b's rows start where
// a's end, they share the type and b's band edges (common/slice_band.h) extend a's: the same first
// key, or on a lower diagonal the first key moving on one per row; the same end, or on an upper
// diagonal the end moving on one per row. A stage-wise caller's slice lists are the mask cut at
// its chunk boundaries (a causal document in 512-row pieces, each keeping the document's first
// key); joined, the forward's items follow the documents again instead of restarting at every
// piece (flex_work_list.h), and the simulator counts what the kernel then runs (core/sim).
// Plain C++ over any slice record with integer members qs, qe, ks, ke and a type holding
// KernelSliceType's values. Cost: O(n log n) in the slices.
#pragma once

#include "common/slice_band.h"

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <vector>

namespace magi::kernels {

// The slices joined, each run in the input's place of its top slice, the one with its first rows
// (none joins: the same list).
template <typename S>
std::vector<S> join_row_runs(const std::vector<S>& slices) {
  // Two invariants of a slice's band, equal along a run: its lower edge's (the first key, or first
  // key - first row on a lower diagonal) and its upper edge's (the end, or end - end row on an
  // upper diagonal). Sorted by type, both and the first row, the slices of a run are neighbours.
  auto lower = [](const S& s) {
    return band_has_lower_diagonal(static_cast<KernelSliceType>(s.type)) ? s.ks - s.qs : s.ks;
  };
  auto upper = [](const S& s) {
    return band_has_upper_diagonal(static_cast<KernelSliceType>(s.type)) ? s.ke - s.qe : s.ke;
  };
  const size_t n = slices.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    const S &a = slices[x], &b = slices[y];
    return std::make_tuple(static_cast<int>(a.type), lower(a), upper(a), a.qs, x) <
           std::make_tuple(static_cast<int>(b.type), lower(b), upper(b), b.qs, y);
  });
  // head[i]: the first slice of i's run, which takes the run's rows and keys.
  std::vector<S> run(slices);
  std::vector<size_t> head(n);
  for (size_t j = 0; j < n; ++j) {
    const size_t i = order[j];
    head[i] = i;
    if (j == 0) continue;
    S& r = run[head[order[j - 1]]];
    const S& s = slices[i];
    if (r.type == s.type && lower(r) == lower(s) && upper(r) == upper(s) && r.qe == s.qs) {
      r.qe = s.qe;
      r.ke = s.ke;
      head[i] = head[order[j - 1]];
    }
  }
  std::vector<S> out;
  for (size_t i = 0; i < n; ++i)
    if (head[i] == i) out.push_back(run[i]);
  return out;
}

}  // namespace magi::kernels
