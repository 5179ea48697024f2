// Ends a job whose rank makes no progress (a stopped or lost peer, a stuck device) instead of
// leaving every other rank spinning in a collective forever.
//
// A thread polls what the rank is doing: a step (arm(step) .. disarm(): one timed iteration, the
// check's reference) and, inside or outside a step, a wait on other ranks (a Wait scope around
// every blocking communicator call). A step is bounded as a whole from arm(); a wait outside any
// step from its own start. Past the timeout the thread calls on_expiry with a message naming the
// step and what the rank was waiting for. The thread, not the waiting code, decides: a rank
// blocked inside MPI (or later inside NCCL, a CUDA synchronize or a destructor completing a
// request) never returns to check a clock. docs/execution.md, "Timeouts".
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace magi {

class Watchdog {
 public:
  // Called once, on the watchdog's thread; the job's version calls MPI_Abort and does not
  // return. timeout_s <= 0: no thread, nothing is ever bounded.
  using OnExpiry = std::function<void(const std::string& message)>;
  Watchdog(double timeout_s, OnExpiry on_expiry);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  double timeout_s() const { return timeout_s_; }

  // Starts the clock of a step ("case q/3: forward iteration 2 of 5"); disarm() ends it.
  void arm(std::string step);
  void disarm();

  // A wait on other ranks, for the duration of the scope ("barrier", "all_to_all_v"). A null
  // watchdog bounds nothing, so communicators without one need no special case.
  class Wait {
   public:
    Wait(Watchdog* watchdog, const char* what);
    ~Wait();
    Wait(const Wait&) = delete;
    Wait& operator=(const Wait&) = delete;

   private:
    Watchdog* watchdog_;
  };

 private:
  using Clock = std::chrono::steady_clock;
  void watch();
  std::string expiry_message(Clock::time_point now) const;  // called with mutex_ held

  const double timeout_s_;
  const OnExpiry on_expiry_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::string step_;  // empty: no step armed
  Clock::time_point step_start_;
  const char* waiting_for_ = nullptr;  // null: not waiting on other ranks
  Clock::time_point wait_start_;
  std::thread thread_;
};

}  // namespace magi
