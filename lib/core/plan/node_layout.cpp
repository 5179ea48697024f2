#include "core/plan/node_layout.h"

#include "core/base/error.h"

namespace magi {

namespace {

// The first rank of a block of `rpn` whose ranks are on different hosts, or -1.
int straddling_block(int rpn, int cp, const std::vector<int>& host_of) {
  for (int r = 0; r < cp; ++r) {
    if (host_of[static_cast<size_t>(r)] != host_of[static_cast<size_t>(r - r % rpn)]) return r - r % rpn;
  }
  return -1;
}

}  // namespace

int ranks_per_node_for_hosts(int requested, int cp, const std::vector<int>& host_of) {
  MAGI_CHECK(cp >= 1 && static_cast<int>(host_of.size()) >= cp, "{} host ids for cp {}", host_of.size(), cp);
  if (requested > 0) {
    if (cp % requested != 0) {
      throw ConfigError(fmt::format("parallel.ranks_per_node = {} does not divide parallel.cp = {}", requested, cp));
    }
    if (const int b = straddling_block(requested, cp, host_of); b >= 0) {
      int on_first = 0;
      for (int r = b; r < b + requested && host_of[static_cast<size_t>(r)] == host_of[static_cast<size_t>(b)]; ++r) {
        ++on_first;
      }
      throw ConfigError(fmt::format(
          "parallel.ranks_per_node = {}: ranks {}..{} would form one node, but only {} of them share rank "
          "{}'s host (the job has fewer ranks per node); use a divisor of the ranks per host, or \"auto\"",
          requested, b, b + requested - 1, on_first, b));
    }
    return requested;
  }
  for (int rpn = cp; rpn > 1; --rpn) {
    if (cp % rpn == 0 && straddling_block(rpn, cp, host_of) < 0) return rpn;
  }
  return 1;
}

}  // namespace magi
