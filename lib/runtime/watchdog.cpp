#include "runtime/watchdog.h"

#include <fmt/format.h>

#include <algorithm>

namespace magi {

Watchdog::Watchdog(double timeout_s, OnExpiry on_expiry)
    : timeout_s_(timeout_s), on_expiry_(std::move(on_expiry)) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::arm(std::string step) {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = std::move(step);
  step_start_ = Clock::now();
}

void Watchdog::disarm() {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  step_.clear();
}

Watchdog::Wait::Wait(Watchdog* watchdog, const char* what)
    : watchdog_(watchdog && watchdog->timeout_s_ > 0 ? watchdog : nullptr) {
  if (!watchdog_) return;
  std::lock_guard<std::mutex> lock(watchdog_->mutex_);
  watchdog_->waiting_for_ = what;
  watchdog_->wait_start_ = Clock::now();
}

Watchdog::Wait::~Wait() {
  if (!watchdog_) return;
  std::lock_guard<std::mutex> lock(watchdog_->mutex_);
  watchdog_->waiting_for_ = nullptr;
}

std::string Watchdog::expiry_message(Clock::time_point now) const {
  const double since_wait = std::chrono::duration<double>(now - wait_start_).count();
  if (step_.empty()) {
    return fmt::format("still waiting for {} after {:.1f} s; a peer rank may be stopped, stuck "
                       "or lost", waiting_for_, since_wait);
  }
  const double since_step = std::chrono::duration<double>(now - step_start_).count();
  if (waiting_for_) {
    return fmt::format("{}: not done after {:.1f} s, waiting for {} (for {:.1f} s); a peer rank "
                       "may be stopped, stuck or lost", step_, since_step, waiting_for_, since_wait);
  }
  return fmt::format("{}: not done after {:.1f} s, in this rank's own compute (not waiting on "
                     "other ranks)", step_, since_step);
}

void Watchdog::watch() {
  // Every 100 ms, or every tenth of a timeout under a second: late by at most that.
  const auto poll = std::chrono::duration<double>(std::min(0.1, timeout_s_ / 10));
  const auto timeout = std::chrono::duration<double>(timeout_s_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, poll);
    if (stopping_) return;
    const Clock::time_point now = Clock::now();
    const bool step_expired = !step_.empty() && now - step_start_ > timeout;
    const bool wait_expired = step_.empty() && waiting_for_ && now - wait_start_ > timeout;
    if (step_expired || wait_expired) {
      const std::string message = expiry_message(now);
      lock.unlock();
      on_expiry_(message);
      return;  // fires once
    }
  }
}

}  // namespace magi
