// Half-open token ranges [start, end) over the packed global sequence, and layouts made of them.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <vector>

namespace magi {

struct Range {
  int64_t start = 0;
  int64_t end = 0;

  int64_t size() const { return end > start ? end - start : 0; }
  bool empty() const { return end <= start; }
  bool contains(int64_t t) const { return t >= start && t < end; }
  friend bool operator==(const Range&, const Range&) = default;
};

inline Range intersect(Range a, Range b) {
  Range r{a.start > b.start ? a.start : b.start, a.end < b.end ? a.end : b.end};
  if (r.end < r.start) r.end = r.start;
  return r;
}

// Sorts and merges touching or overlapping ranges; drops empty ones.
std::vector<Range> merge_ranges(std::vector<Range> ranges);

// Total number of tokens in a list of ranges.
int64_t total_size(const std::vector<Range>& ranges);

// A buffer laid out as the concatenation of `layout` (global ranges, in buffer order).
// Returns the buffer offset of global token `t`, or -1 when no range of the layout holds it.
int64_t buffer_offset(const std::vector<Range>& layout, int64_t t);

}  // namespace magi

template <>
struct fmt::formatter<magi::Range> : fmt::formatter<std::string_view> {
  auto format(const magi::Range& r, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "[{}, {})", r.start, r.end);
  }
};
