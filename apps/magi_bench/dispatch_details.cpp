#include "dispatch_details.h"

namespace magi::app {

nlohmann::json dispatch_details(const Plan& plan, const std::vector<AttnSlice>& mask) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankPlan& r : plan.ranks) {
    nlohmann::json ranges = nlohmann::json::array();
    for (const Range& q : r.q_ranges) ranges.push_back({q.start, q.end});
    ranks.push_back(ranges);
  }
  nlohmann::json slices = nullptr;
  if (mask.size() <= kMaxPictureSlices) {
    slices = nlohmann::json::array();
    for (const AttnSlice& s : mask) {
      slices.push_back({s.q.start, s.q.end, s.k.start, s.k.end, std::string(to_string(s.type))});
    }
  }
  return {{"rank_q_ranges", ranks}, {"mask_slices", slices}, {"mask_slice_count", mask.size()}};
}

}  // namespace magi::app
