// The time-left model of the progress lines (progress.h): a case takes a floor of seconds
// whatever its work (on a GPU each pass of a timed case warms for at least 1 s and is timed for
// at least 2 s: Device::min_warmup_seconds, min_timed_seconds) plus a time proportional to its
// work at the rate the cases done so far ran at. Without the floor, a sweep of short GPU cases
// read its first case's 6 s as work and announced minutes for seconds of work.
#pragma once

#include <algorithm>
#include <limits>

namespace magi::app {

// A case's, or a sum of cases', expected cost: `work` in arbitrary units proportional to the time
// beyond the floor (only ratios matter), `floor_s` the seconds taken whatever the work.
struct CaseCost {
  double work = 0;
  double floor_s = 0;

  CaseCost& operator+=(const CaseCost& o) {
    work += o.work;
    floor_s += o.floor_s;
    return *this;
  }
};

// The time left after `elapsed_s` seconds that ran the cases of `done`, of a sweep of `total`:
// the floors left, plus the time so far beyond the floors done scaled by the work left over the
// work done; NaN before any work is done.
inline double remaining_seconds(double elapsed_s, const CaseCost& done, const CaseCost& total) {
  if (!(done.work > 0)) return std::numeric_limits<double>::quiet_NaN();
  const double rate = std::max(0.0, elapsed_s - done.floor_s) / done.work;
  return std::max(0.0, total.floor_s - done.floor_s) + std::max(0.0, total.work - done.work) * rate;
}

}  // namespace magi::app
