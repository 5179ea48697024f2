#include "core/base/range.h"

#include <algorithm>

namespace magi {

std::vector<Range> merge_ranges(std::vector<Range> ranges) {
  std::erase_if(ranges, [](const Range& r) { return r.empty(); });
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.start < b.start; });
  std::vector<Range> out;
  for (const Range& r : ranges) {
    if (!out.empty() && r.start <= out.back().end) {
      out.back().end = std::max(out.back().end, r.end);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

int64_t total_size(const std::vector<Range>& ranges) {
  int64_t n = 0;
  for (const Range& r : ranges) n += r.size();
  return n;
}

int64_t buffer_offset(const std::vector<Range>& layout, int64_t t) {
  int64_t offset = 0;
  for (const Range& r : layout) {
    if (r.contains(t)) return offset + (t - r.start);
    offset += r.size();
  }
  return -1;
}

}  // namespace magi
