// The order of the backward calls of attention plans that share one dQ (cuda/flex_attention.h,
// share_backward_dq; the runtime's Device::share_dq): in every pass each member's backward runs
// once, the first call with Into::write and the others with Into::accumulate, all into the same dq.
// That is how a stage-wise caller computes dQ (one plan per stage of keys over the same query
// rows), and what lets a device sum the members' dQ in one workspace and convert it once, when
// every member's share has landed: a member left out would leave dq unconverted. Plain C++, so
// that the CPU device checks the same order and its tests catch a caller that breaks it.
#pragma once

#include "common/kernel_args.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace magi::kernels {

class SharedDqPass {
 public:
  explicit SharedDqPass(int members) : called_(static_cast<size_t>(members > 0 ? members : 0), false) {
    if (members < 1) throw std::invalid_argument("shared dQ: " + std::to_string(members) + " members (need >= 1)");
  }

  int members() const { return static_cast<int>(called_.size()); }
  // Whether no pass is under way (every member called, or none yet).
  bool between_passes() const { return calls_ == 0; }

  // Member m's backward call, into dq: checked against the order above (std::logic_error saying
  // what is wrong, nothing recorded) and recorded. Returns true for the pass's first call; the
  // pass ends with the last member's call.
  bool enter(int m, Into into, const void* dq) {
    if (m < 0 || m >= members())
      throw std::logic_error("shared dQ: member " + std::to_string(m) + " of " + std::to_string(members()));
    const bool first = calls_ == 0;
    if (first && into != Into::write)
      throw std::logic_error("shared dQ: the first backward call of a pass must write dq (Into::write); member " +
                             std::to_string(m) + " accumulates");
    if (!first && into != Into::accumulate)
      throw std::logic_error("shared dQ: member " + std::to_string(m) + " writes dq after " + std::to_string(calls_) +
                             " of " + std::to_string(members()) + " calls of the pass (only the first writes)");
    if (called_[static_cast<size_t>(m)])
      throw std::logic_error("shared dQ: member " + std::to_string(m) + " called twice in one pass (" +
                             std::to_string(calls_) + " of " + std::to_string(members()) + " members called)");
    if (!first && dq != dq_) throw std::logic_error("shared dQ: member " + std::to_string(m) + " adds into another dq");
    called_[static_cast<size_t>(m)] = true;
    dq_ = dq;
    if (++calls_ == members()) {
      calls_ = 0;
      called_.assign(called_.size(), false);
    }
    return first;
  }

 private:
  std::vector<bool> called_;
  int calls_ = 0;
  const void* dq_ = nullptr;
};

}  // namespace magi::kernels
