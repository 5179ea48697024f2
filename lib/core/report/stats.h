// Summaries of repeated timings: what every printer reads.
#pragma once

#include <vector>

namespace magi {

struct TimingSummary {
  int count = 0;
  double median_ms = 0;
  double mean_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
};

// Summary of a list of times in milliseconds; count 0 for an empty list.
TimingSummary summarize(std::vector<double> samples_ms);

}  // namespace magi
