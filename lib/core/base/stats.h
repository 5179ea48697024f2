// The statistics every measurement and check shares, defined once: the median of repeated
// timings (and their summary) and the error of a computed tensor against its reference.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace magi {

// Middle value; the mean of the two middle values for an even count; 0 for an empty list.
double median(std::vector<double> values);

struct TimingSummary {
  int count = 0;
  double median_ms = 0;
  double mean_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  std::vector<double> samples_ms;  // every timed iteration in order: `compare` tests the spread
};

// Summary of a list of times in milliseconds; count 0 for an empty list.
TimingSummary summarize(std::vector<double> samples_ms);

// A computed tensor against its reference, element by element (same length).
struct TensorDiff {
  double rel_l2 = 0;            // ||got - ref||_2 / ||ref||_2 over finite pairs (||got - ref||_2
                                // when the reference is all zeros)
  double max_abs = 0;           // max |got - ref| over finite pairs
  int64_t inf_mismatches = 0;   // pairs not both finite and not the same infinity (an lse of
                                // -inf on both sides, a row that sees no key, matches)
};
TensorDiff tensor_diff(std::span<const float> got, std::span<const float> ref);

}  // namespace magi
