// The Ulysses all-to-all (docs/execution.md): between a sequence-sharded layout, where rank p of
// a communicator holds some rows of a "whole" buffer on every head, and a head-sharded one, where
// rank p holds every row of the whole buffer on its heads. Ulysses' whole buffer is the sequence
// (exec_ulysses.cpp); hybrid parallelism's is a group's host buffer (exec_hybrid.cpp). Internal to
// the strategy executors.
#pragma once

#include "core/base/range.h"
#include "core/plan/comm_volume.h"
#include "runtime/communicator.h"
#include "runtime/device.h"

#include <cstdint>
#include <vector>

namespace magi::detail {

class HeadExchange {
 public:
  // One tensor taking part: per token, heads [b, e) of `heads` heads of `width` elements each,
  // for the rank whose split says which heads.
  struct Field {
    const Buffer* host;   // sequence-sharded: [its rows, heads, width]
    const Buffer* whole;  // head-sharded: [whole rows, my heads, width]
    int heads = 0;
    int width = 0;
    bool kv = false;      // the K/V head split instead of the query head split
  };

  // rows_of[p]: the whole buffer's rows rank p holds, in its own buffer's order; split[p]: its
  // heads. Both have comm.size() entries.
  HeadExchange(Device& dev, Communicator& comm, const std::vector<std::vector<Range>>& rows_of,
               std::vector<HeadSplit> split);

  // to_heads: sequence-sharded `host` tensors -> head-sharded `whole` ones; otherwise the
  // reverse. `send` and `recv` must hold max_message_elems(...) elements of their dtype.
  void exchange(const std::vector<Field>& fs, bool to_heads, const Buffer& send, const Buffer& recv);
  // The largest exchange of rows `row_heads` heads wide on the sequence-sharded side (all of a
  // rank's fields) and `my_heads` on the head-sharded side, `width` elements per head.
  int64_t max_message_elems(int64_t row_heads, int64_t my_heads, int64_t width) const;
  const HeadSplit& mine() const { return split_[static_cast<size_t>(comm_.rank())]; }

 private:
  std::pair<int, int> heads_of(const Field& f, int p) const;
  int64_t row_elems(const std::vector<Field>& fs, int p) const;

  Device& dev_;
  Communicator& comm_;
  std::vector<HeadSplit> split_;
  std::vector<int64_t> tokens_of_;
  int64_t whole_rows_ = 0;
  std::vector<RowMap> to_whole_, from_whole_;
  RowMap mine_;
};

}  // namespace magi::detail
