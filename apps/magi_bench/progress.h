// Progress of a long sweep, printed by rank 0 on stderr so that it never mixes into the results
// table on stdout: on a terminal one line rewritten in place after each case; otherwise (a log
// file, CI) one plain line per case. Each line has the case count, the elapsed time and an
// estimate of the time remaining.
#pragma once

#include "commands.h"
#include "eta.h"

#include "core/workload/workload.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace magi::app {

// A case's expected cost (eta.h): work = the FLOPs of its timed and warm-up passes per rank
// (area from its mask) plus the single-process reference of the check; floor = each pass's
// minimum warm-up and timed seconds on the device, when the case has a warm-up and timed
// iterations (what the executor then extends; lib/runtime/min_duration.h).
CaseCost case_cost(const Case& c, int64_t mask_area, double min_warmup_s, double min_timed_s);

// case_cost of every case of a sweep, with the command line's overrides applied (masks built
// once more here: a small cost beside running them).
std::vector<CaseCost> sweep_costs(const std::vector<Case>& cases, const RunOverrides& overrides,
                                  double min_warmup_s, double min_timed_s);

// "1:02:03", "4:05": hours only when needed.
std::string clock_text(double seconds);

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds from any fixed origin

  // `costs`: one per case (case_cost). `out` null: prints nothing (ranks other than 0).
  // `terminal`: rewrite one line in place rather than printing one per case.
  Progress(std::vector<CaseCost> costs, std::FILE* out, bool terminal, Clock clock = steady_seconds);
  ~Progress();  // ends the terminal line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Case `index` (named `name`) has finished.
  void case_done(size_t index, const std::string& name);
  // The line printed for it (no "\r" or newline).
  std::string line(size_t done, const std::string& name) const;

  static double steady_seconds();

 private:
  std::vector<CaseCost> costs_;
  std::FILE* out_;
  bool terminal_;
  Clock clock_;
  double start_;
  CaseCost done_, total_;
  size_t cases_done_ = 0;
  bool line_open_ = false;
};

}  // namespace magi::app
