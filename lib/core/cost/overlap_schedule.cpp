#include "core/cost/overlap_schedule.h"

#include <algorithm>

namespace magi {

namespace {

// The rank's link: transfers in posting order, each starting when posted and the link is free.
struct Link {
  double free_at = 0;
  double post(double at, double seconds) {
    free_at = std::max(at, free_at) + seconds;
    return free_at;
  }
};

ScheduleTime run(const std::vector<StageTime>& stages, bool reduce) {
  ScheduleTime r;
  if (stages.empty()) return r;
  const size_t n = stages.size();
  Link link;
  std::vector<double> arrive(n, 0.0);
  if (n > 1) arrive[1] = link.post(0, stages[1].comm_s);
  double t = stages[0].compute_s;
  double last = t;
  for (size_t s = 1; s < n; ++s) {
    t = std::max(t, arrive[s]);
    if (s + 1 < n) arrive[s + 1] = link.post(t, stages[s + 1].comm_s);
    t += stages[s].compute_s;
    if (reduce) last = std::max(last, link.post(t, stages[s].reduce_s));
  }
  for (const StageTime& st : stages) r.compute_s += st.compute_s;
  r.total_s = std::max(t, last);
  r.exposed_s = std::max(0.0, r.total_s - r.compute_s);
  return r;
}

}  // namespace

ScheduleTime forward_schedule(const std::vector<StageTime>& stages) { return run(stages, false); }
ScheduleTime backward_schedule(const std::vector<StageTime>& stages) { return run(stages, true); }

}  // namespace magi
