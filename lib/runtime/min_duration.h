// How many iterations a timed run adds so that a phase lasts a device's minimum: the warm-up
// (Device::min_warmup_seconds: a GPU's clocks settle at its power cap 0.5-1 s into sustained
// work) and the timed iterations (Device::min_timed_seconds: at the cap a Hopper card's clock
// swings by up to 25% over a period of about 1 s, so a shorter window times one phase of that
// swing). Shared by `run` (executor.cpp, every rank adding the most any rank asks for: they run
// their iterations together) and `kernel` (cuda/kernel_bench_device.cu). Plain C++: nvcc
// compiles the latter against it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace magi {

// Whether a timed run's phases are held to the device's minimums: only a run with a warm-up (a
// check-only run stays one pass) and timed iterations to follow it. `run`'s progress estimate
// (apps/magi_bench/progress.cpp) counts the minimums under the same rule.
inline bool minimums_apply(int64_t warmup, int64_t iters) { return warmup > 0 && iters > 0; }

// After `done` iterations of a phase that took `spent_s` seconds: the iterations to add so that
// the phase lasts `min_s` at least, at the mean pace of those done (an iteration counted as at
// least 1 us). 0 when the phase has no iteration (done <= 0: a check-only run stays one pass)
// or it already lasted that long.
inline int64_t extra_iterations_to_last(double min_s, int64_t done, double spent_s) {
  if (done <= 0 || !(spent_s < min_s)) return 0;
  const double per_iteration = std::max(spent_s / static_cast<double>(done), 1e-6);
  return static_cast<int64_t>(std::ceil((min_s - spent_s) / per_iteration));
}

}  // namespace magi
