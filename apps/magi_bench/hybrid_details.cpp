#include "hybrid_details.h"

#include "core/plan/comm_volume.h"
#include "core/plan/hybrid_plan.h"

#include <fmt/format.h>

#include <algorithm>

namespace magi::app {

namespace {

struct Sums {
  int64_t fwd = 0, bwd = 0, max_fwd = 0;
};

Sums sums(const PlannedBytes& b) {
  Sums s;
  for (size_t w = 0; w < b.fwd.size(); ++w) {
    s.fwd += b.fwd[w].sent;
    s.bwd += b.bwd[w].sent;
    s.max_fwd = std::max(s.max_fwd, b.fwd[w].sent);
  }
  return s;
}

std::string line(const char* what, const Sums& ranks, int64_t closed_fwd, int64_t closed_bwd, const std::string& form) {
  const bool same = ranks.fwd == closed_fwd && ranks.bwd == closed_bwd;
  return fmt::format("#   {}: fwd {} B, bwd {} B (sum over ranks), busiest sender {} B; closed form {}: {} / {} B {}\n",
                     what, ranks.fwd, ranks.bwd, ranks.max_fwd, form, closed_fwd, closed_bwd,
                     same ? "(equal)" : "(DIFFERENT)");
}

}  // namespace

std::string explain_hybrid(const Plan& p) {
  if (p.heads <= 1 || p.skipped) return "";
  const int h = p.heads, c = p.cp;
  const ModelShape& m = p.model;
  const int eb = dtype_bytes(m.dtype);
  const HybridBytes b = hybrid_planned_bytes(p, eb);
  std::string out = fmt::format(
      "#   hybrid: heads {} x cp {} = {} ranks; world rank g*{}+i is head index i of group g (query heads "
      "[i*{}, (i+1)*{}), K/V heads [i*{}, (i+1)*{})); the rank rows below are the {} groups on all heads\n",
      h, c, world_size(p), h, m.heads_q / h, m.heads_q / h, m.heads_kv / h, m.heads_kv / h, c);
  out += line("head dimension (Ulysses all-to-all in each group)", sums(b.head), p.head_volume.fwd_bytes,
              p.head_volume.bwd_bytes, fmt::format("(h-1) S (2Hq+2Hkv)/h D b = {}*{}*{}/{}*{}*{}", h - 1, p.total_tokens,
                                                   2 * m.heads_q + 2 * m.heads_kv, h, m.head_dim, eb));
  const std::string ctx_form =
      p.strategy == Strategy::ring
          ? fmt::format("ring (c-1) S kv / (2c-1) S kv, kv = 2 Hkv D b = {}", kv_bytes_per_token(m, eb))
          : fmt::format("magi sum_g R_g kv = the zero-redundancy bound, kv = 2 Hkv D b = {}", kv_bytes_per_token(m, eb));
  out += line(fmt::format("context dimension ({} between groups, Hkv/h K/V heads per rank)", to_string(p.strategy)).c_str(),
              sums(b.context), p.context_volume.fwd_bytes, p.context_volume.bwd_bytes, ctx_form);
  return out;
}

}  // namespace magi::app
