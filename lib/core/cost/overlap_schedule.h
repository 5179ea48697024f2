// The runtime's overlap schedule of one rank (docs/execution.md, "magi"), as arithmetic on stage
// times: what the `auto` overlap degree and the simulator (core/sim) both replay.
//
// Forward: stage 1's K/V is posted at t = 0 and the host stage computes; stage s (s >= 1) computes
// once its K/V has arrived and stage s - 1 is computed, and stage s + 1's K/V is posted when stage
// s starts computing (so stage s's compute hides stage s + 1's transfer). Backward: the same, and
// each remote stage's dK/dV partials go back to their owners (GroupReduce) as soon as the stage is
// computed; the pass ends when the last partial has arrived. The rank's link carries one transfer
// at a time, in the order they were posted.
#pragma once

#include <vector>

namespace magi {

struct StageTime {
  double compute_s = 0;  // the stage's kernel time (0: nothing to compute, the stage is skipped)
  double comm_s = 0;     // its K/V transfer (remote stages)
  double reduce_s = 0;   // its dK/dV return (backward, remote stages)
};

struct ScheduleTime {
  double total_s = 0;    // the pass, from the first post to the last arrival
  double compute_s = 0;  // sum of the stages' compute
  double exposed_s = 0;  // total_s - compute_s: communication nothing hid
};

// stages[0] is the host stage (no transfer); stages[1..] the remote ones.
ScheduleTime forward_schedule(const std::vector<StageTime>& stages);
ScheduleTime backward_schedule(const std::vector<StageTime>& stages);

}  // namespace magi
