// Progress of a long sweep, printed by rank 0 on stderr so that it never mixes into the results
// table on stdout: on a terminal one line rewritten in place after each case; otherwise (a log
// file, CI) one plain line per case. Each line has the case count, the elapsed time and an
// estimate of the time remaining.
#pragma once

#include "commands.h"

#include "core/workload/workload.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace magi::app {

// A case's expected cost, in arbitrary units proportional to its time: the FLOPs of its timed
// and warm-up passes per rank (area from its mask), plus the single-process reference of the
// check. Only ratios between cases matter.
double case_weight(const Case& c, int64_t mask_area);

// case_weight of every case of a sweep, with the command line's overrides applied (masks built
// once more here: a small cost beside running them).
std::vector<double> sweep_weights(const std::vector<Case>& cases, const RunOverrides& overrides);

// The time left: the time so far scaled by the weight left over the weight done (the rate
// measured on the cases run so far); NaN before any weight is done.
double remaining_seconds(double elapsed_s, double done_weight, double total_weight);

// "1:02:03", "4:05": hours only when needed.
std::string clock_text(double seconds);

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds from any fixed origin

  // `weights`: one per case (case_weight). `out` null: prints nothing (ranks other than 0).
  // `terminal`: rewrite one line in place rather than printing one per case.
  Progress(std::vector<double> weights, std::FILE* out, bool terminal, Clock clock = steady_seconds);
  ~Progress();  // ends the terminal line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Case `index` (named `name`) has finished.
  void case_done(size_t index, const std::string& name);
  // The line printed for it (no "\r" or newline).
  std::string line(size_t done, const std::string& name) const;

  static double steady_seconds();

 private:
  std::vector<double> weights_;
  std::FILE* out_;
  bool terminal_;
  Clock clock_;
  double start_;
  double done_weight_ = 0, total_weight_ = 0;
  size_t done_ = 0;
  bool line_open_ = false;
};

}  // namespace magi::app
