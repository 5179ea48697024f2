// AttnSlice: the unit of a mask (DESIGN.md §1). A mask is a list of slices over one packed
// sequence; no (q, k) pair may be covered by two slices. The band rule (which keys a query of a
// slice sees) is kernels/common/slice_band.h, shared with the kernels.
#pragma once

#include "common/kernel_args.h"
#include "core/base/range.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

enum class SliceType : int { full = 0, causal = 1, inv_causal = 2, bi_causal = 3 };

std::string_view to_string(SliceType t);
// Parses "full", "causal", "inv_causal", "bi_causal"; nullopt otherwise.
std::optional<SliceType> parse_slice_type(std::string_view s);

struct AttnSlice {
  Range q;
  Range k;
  SliceType type = SliceType::full;
  friend bool operator==(const AttnSlice&, const AttnSlice&) = default;
};

// The visible keys [lo, hi) of query q (q inside s.q), clipped to s.k; lo >= hi means none.
Range visible_keys(const AttnSlice& s, int64_t q);

// The slice in the kernels' argument type (kernels never see core types).
kernels::KernelSlice to_kernel_slice(const AttnSlice& s);
std::vector<kernels::KernelSlice> to_kernel_slices(const std::vector<AttnSlice>& slices);

// Number of (q, k) pairs the slice covers, in closed form (no loop over tokens).
int64_t slice_area(const AttnSlice& s);
int64_t mask_area(const std::vector<AttnSlice>& slices);

// A pair of slices (indices into `slices`, the smaller first) that cover a common (q, k) pair, if
// any; nullopt exactly when no pair is covered twice. O(n log n): a sweep over query rows.
std::optional<std::pair<size_t, size_t>> find_double_cover(const std::vector<AttnSlice>& slices);

// Whether slices a and b cover at least one common (q, k) pair.
bool slices_overlap(const AttnSlice& a, const AttnSlice& b);

}  // namespace magi

template <>
struct fmt::formatter<magi::AttnSlice> : fmt::formatter<std::string_view> {
  auto format(const magi::AttnSlice& s, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{}x{} {}", s.q, s.k, magi::to_string(s.type));
  }
};
