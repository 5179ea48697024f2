// The slice band rule of docs/DESIGN.md §1, written once for host and device code. For a query q
// of slice [qs, qe) x [ks, ke) the visible keys are [band_lo, band_hi):
//   band_lo = ks + (q - qs) for inv_causal and bi_causal, else ks;
//   band_hi = ke - (qe - 1 - q) for causal and bi_causal, else ke;
// an empty interval means the row sees nothing in that slice. Both edges are non-decreasing in q,
// band_lo >= ks and band_hi <= ke for every q in [qs, qe), so no clipping is needed.
//
// The KernelSliceType values are two flags: bit 0 marks the diagonal upper edge (causal,
// bi_causal), bit 1 the diagonal lower edge (inv_causal, bi_causal). The kernels test the bits,
// which keeps their generated code to one AND per test.
#pragma once

#include "common/kernel_args.h"

#if defined(__CUDACC__)
#define MAGI_HOST_DEVICE __host__ __device__
#else
#define MAGI_HOST_DEVICE
#endif

namespace magi::kernels {

MAGI_HOST_DEVICE constexpr bool band_has_lower_diagonal(KernelSliceType t) {
  return (static_cast<int>(t) & 2) != 0;
}
MAGI_HOST_DEVICE constexpr bool band_has_upper_diagonal(KernelSliceType t) {
  return (static_cast<int>(t) & 1) != 0;
}

// The first key query q sees: band_lo above.
template <typename I>
MAGI_HOST_DEVICE constexpr I band_lo(KernelSliceType t, I qs, I ks, I q) {
  return band_has_lower_diagonal(t) ? ks + (q - qs) : ks;
}
// One past the last key query q sees: band_hi above.
template <typename I>
MAGI_HOST_DEVICE constexpr I band_hi(KernelSliceType t, I qe, I ke, I q) {
  return band_has_upper_diagonal(t) ? ke - (qe - 1 - q) : ke;
}

// The transpose: key k (k in [ks, ke)) is seen by the queries [rows_lo, rows_hi), both
// non-decreasing in k. From the rule above, k < band_hi(q) <=> q >= k - ke + qe and
// band_lo(q) <= k <=> q <= k - ks + qs.
template <typename I>
MAGI_HOST_DEVICE constexpr I rows_lo(KernelSliceType t, I qs, I qe, I ke, I k) {
  return band_has_upper_diagonal(t) ? (qs > k - ke + qe ? qs : k - ke + qe) : qs;
}
template <typename I>
MAGI_HOST_DEVICE constexpr I rows_hi(KernelSliceType t, I qs, I qe, I ks, I k) {
  return band_has_lower_diagonal(t) ? (qe < k - ks + qs + 1 ? qe : k - ks + qs + 1) : qe;
}

// The queries of [qs, qe) whose band is not empty, [first, end): band_hi - band_lo is
// non-decreasing in q for causal, non-increasing for inv_causal and constant otherwise, so they
// are one run of rows (first >= end when there is none).
template <typename I>
struct RowRun {
  I first, end;
};
template <typename I>
MAGI_HOST_DEVICE constexpr RowRun<I> nonempty_rows(KernelSliceType t, I qs, I qe, I ks, I ke) {
  const I lk = ke - ks;
  if (lk <= 0) return {qs, qs};
  if (band_has_upper_diagonal(t) && band_has_lower_diagonal(t)) return lk >= qe - qs ? RowRun<I>{qs, qe} : RowRun<I>{qs, qs};
  if (band_has_upper_diagonal(t)) return {qe - lk > qs ? qe - lk : qs, qe};  // band_hi(q) > ks <=> q >= qe - lk
  if (band_has_lower_diagonal(t)) return {qs, qs + lk < qe ? qs + lk : qe};  // band_lo(q) < ke <=> q < qs + lk
  return {qs, qe};
}

// The number of visible (q, k) pairs of a slice of type t with lq queries and lk keys, in closed
// form: full lq * lk; causal and inv_causal (2 lk - lq + 1) lq / 2 when lk >= lq, else
// lk (lk + 1) / 2; bi_causal (lk - lq + 1) lq when lk >= lq, else 0.
template <typename I>
MAGI_HOST_DEVICE constexpr I band_area(KernelSliceType t, I lq, I lk) {
  if (lq <= 0 || lk <= 0) return 0;
  if (band_has_upper_diagonal(t) && band_has_lower_diagonal(t)) return lk >= lq ? (lk - lq + 1) * lq : 0;
  if (band_has_upper_diagonal(t) || band_has_lower_diagonal(t))
    return lk >= lq ? (2 * lk - lq + 1) * lq / 2 : lk * (lk + 1) / 2;
  return lq * lk;
}

}  // namespace magi::kernels
