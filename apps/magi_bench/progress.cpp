#include "progress.h"

#include "core/base/slice.h"
#include "core/model/vocabulary.h"
#include "core/workload/case_inputs.h"
#include "runtime/min_duration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace magi::app {

CaseCost case_cost(const Case& c, int64_t mask_area, double min_warmup_s, double min_timed_s) {
  const double fwd = attention_fwd_flops(mask_area, c.model.head_dim, c.model.heads_q);
  const double pass = (c.run.fwd ? fwd : 0) + (c.run.bwd ? attention_bwd_flops(mask_area, c.model.head_dim, c.model.heads_q) : 0);
  const double timed = pass * (c.run.warmup + c.run.iters) / std::max(1, c.parallel.cp);
  // The check runs the whole case once more on one process (the reference), both passes.
  const double check = c.run.check ? fwd + attention_bwd_flops(mask_area, c.model.head_dim, c.model.heads_q) : 0;
  const int passes = (c.run.fwd ? 1 : 0) + (c.run.bwd ? 1 : 0);
  return {timed + check, minimums_apply(c.run.warmup, c.run.iters) ? passes * (min_warmup_s + min_timed_s) : 0.0};
}

std::vector<CaseCost> sweep_costs(const std::vector<Case>& cases, const RunOverrides& overrides,
                                  double min_warmup_s, double min_timed_s) {
  std::vector<CaseCost> costs;
  costs.reserve(cases.size());
  for (Case c : cases) {
    overrides.apply(c);
    costs.push_back(case_cost(c, mask_area(build_case_inputs(c.documents, c.mask, c.total_tokens).mask),
                              min_warmup_s, min_timed_s));
  }
  return costs;
}

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

double Progress::steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Progress::Progress(std::vector<CaseCost> costs, std::FILE* out, bool terminal, Clock clock)
    : costs_(std::move(costs)), out_(out), terminal_(terminal), clock_(std::move(clock)), start_(clock_()) {
  for (const CaseCost& c : costs_) total_ += c;
}

Progress::~Progress() {
  if (out_ && line_open_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

std::string Progress::line(size_t done, const std::string& name) const {
  const double elapsed = clock_() - start_;
  const double left = remaining_seconds(elapsed, done_, total_);
  const std::string remaining =
      done >= costs_.size() ? std::string("done")
                              : std::isfinite(left) ? "~" + clock_text(left) + " remaining" : std::string("remaining unknown");
  return fmt::format("progress: case {}/{} ({}) finished, {} elapsed, {}", done, costs_.size(), name,
                     clock_text(elapsed), remaining);
}

void Progress::case_done(size_t index, const std::string& name) {
  if (index < costs_.size()) done_ += costs_[index];
  ++cases_done_;
  if (!out_) return;
  const std::string text = line(cases_done_, name);
  if (terminal_) {
    // Back to the line's start, the new text, then clear what a longer line left behind.
    std::fprintf(out_, "\r%s\x1b[K", text.c_str());
    line_open_ = true;
  } else {
    std::fprintf(out_, "# %s\n", text.c_str());
  }
  std::fflush(out_);
}

}  // namespace magi::app
