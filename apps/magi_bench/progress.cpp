#include "progress.h"

#include "core/base/slice.h"
#include "core/model/vocabulary.h"
#include "core/workload/case_inputs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

namespace magi::app {

double case_weight(const Case& c, int64_t mask_area) {
  const double fwd = attention_fwd_flops(mask_area, c.model.head_dim, c.model.heads_q);
  const double pass = (c.run.fwd ? fwd : 0) + (c.run.bwd ? attention_bwd_flops(mask_area, c.model.head_dim, c.model.heads_q) : 0);
  const double timed = pass * (c.run.warmup + c.run.iters) / std::max(1, c.parallel.cp);
  // The check runs the whole case once more on one process (the reference), both passes.
  const double check = c.run.check ? fwd + attention_bwd_flops(mask_area, c.model.head_dim, c.model.heads_q) : 0;
  return timed + check;
}

std::vector<double> sweep_weights(const std::vector<Case>& cases, const RunOverrides& overrides) {
  std::vector<double> weights;
  weights.reserve(cases.size());
  for (Case c : cases) {
    overrides.apply(c);
    weights.push_back(case_weight(c, mask_area(build_case_inputs(c.documents, c.mask, c.total_tokens).mask)));
  }
  return weights;
}

double remaining_seconds(double elapsed_s, double done_weight, double total_weight) {
  if (!(done_weight > 0)) return std::numeric_limits<double>::quiet_NaN();
  return std::max(0.0, elapsed_s * (total_weight - done_weight) / done_weight);
}

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

double Progress::steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Progress::Progress(std::vector<double> weights, std::FILE* out, bool terminal, Clock clock)
    : weights_(std::move(weights)), out_(out), terminal_(terminal), clock_(std::move(clock)),
      start_(clock_()) {
  total_weight_ = std::accumulate(weights_.begin(), weights_.end(), 0.0);
}

Progress::~Progress() {
  if (out_ && line_open_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

std::string Progress::line(size_t done, const std::string& name) const {
  const double elapsed = clock_() - start_;
  const double left = remaining_seconds(elapsed, done_weight_, total_weight_);
  const std::string remaining =
      done >= weights_.size() ? std::string("done")
                              : std::isfinite(left) ? "~" + clock_text(left) + " remaining" : std::string("remaining unknown");
  return fmt::format("progress: case {}/{} ({}) finished, {} elapsed, {}", done, weights_.size(), name,
                     clock_text(elapsed), remaining);
}

void Progress::case_done(size_t index, const std::string& name) {
  if (index < weights_.size()) done_weight_ += weights_[index];
  ++done_;
  if (!out_) return;
  const std::string text = line(done_, name);
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
