#include "runtime/head_exchange.h"

#include "core/base/error.h"
#include "runtime/exec_detail.h"

#include <algorithm>

namespace magi::detail {

HeadExchange::HeadExchange(Device& dev, Communicator& comm, const std::vector<std::vector<Range>>& rows_of,
                           std::vector<HeadSplit> split)
    : dev_(dev), comm_(comm), split_(std::move(split)) {
  const int n = comm_.size();
  MAGI_CHECK(static_cast<int>(rows_of.size()) == n && static_cast<int>(split_.size()) == n,
             "head exchange: {} row lists and {} head splits for {} ranks", rows_of.size(), split_.size(), n);
  for (int p = 0; p < n; ++p) {
    std::vector<RowCopy> segs;  // rows of rank p's message -> whole-buffer rows
    int64_t row = 0;
    for (const Range& rg : rows_of[static_cast<size_t>(p)]) {
      segs.push_back({row, rg.start, rg.size()});
      row += rg.size();
    }
    tokens_of_.push_back(row);
    whole_rows_ += row;
    to_whole_.push_back(dev_.prepare(segs));
    from_whole_.push_back(dev_.prepare(inverse(segs)));
  }
  mine_ = dev_.prepare({{0, 0, tokens_of_[static_cast<size_t>(comm_.rank())]}});
}

int64_t HeadExchange::max_message_elems(int64_t row_heads, int64_t my_heads, int64_t width) const {
  return std::max(tokens_of_[static_cast<size_t>(comm_.rank())] * row_heads, whole_rows_ * my_heads) * width;
}

std::pair<int, int> HeadExchange::heads_of(const Field& f, int p) const {
  const HeadSplit& s = split_[static_cast<size_t>(p)];
  return f.kv ? std::pair{s.kv_begin, s.kv_end} : std::pair{s.q_begin, s.q_end};
}

// Elements per token row of the message for rank p's heads.
int64_t HeadExchange::row_elems(const std::vector<Field>& fs, int p) const {
  int64_t n = 0;
  for (const Field& f : fs) {
    auto [b, e] = heads_of(f, p);
    n += int64_t{e - b} * f.width;
  }
  return n;
}

// Message p holds, per token row, each field's heads of the head-sharded side.
void HeadExchange::exchange(const std::vector<Field>& fs, bool to_heads, const Buffer& send, const Buffer& recv) {
  const int n = comm_.size(), rank = comm_.rank();
  const int64_t tokens = tokens_of_[static_cast<size_t>(rank)];
  const DType dt = send.dtype();
  const int64_t esz = dtype_bytes(dt);
  std::vector<int64_t> sb(n), sd(n), rb(n), rd(n);
  std::vector<int64_t> send_width(n), recv_width(n);
  int64_t so = 0, ro = 0;
  for (int p = 0; p < n; ++p) {
    // Sequence-sharded side: this rank's tokens, peer p's heads; head side: p's tokens, mine.
    const int64_t seq_width = row_elems(fs, p), head_width = row_elems(fs, rank);
    const int64_t send_rows = to_heads ? tokens : tokens_of_[static_cast<size_t>(p)];
    const int64_t recv_rows = to_heads ? tokens_of_[static_cast<size_t>(p)] : tokens;
    send_width[p] = to_heads ? seq_width : head_width;
    recv_width[p] = to_heads ? head_width : seq_width;
    sd[p] = so;
    sb[p] = send_rows * send_width[p];
    so += sb[p];
    rd[p] = ro;
    rb[p] = recv_rows * recv_width[p];
    ro += rb[p];
  }
  MAGI_CHECK(so <= send.elems() && ro <= recv.elems(), "head exchange: a message of {}/{} elements for buffers of {}/{}",
             so, ro, send.elems(), recv.elems());
  for (int p = 0; p < n; ++p) {
    int64_t col = 0;
    for (const Field& f : fs) {
      auto [b, e] = heads_of(f, to_heads ? p : rank);
      const int64_t w = int64_t{e - b} * f.width;
      const Rows msg{send.at(sd[p] + col), dt, send_width[p]};
      if (to_heads) {
        dev_.copy_rows(mine_, rows_of(*f.host, int64_t{f.heads} * f.width, b * f.width), msg, w);
      } else {
        dev_.copy_rows(from_whole_[static_cast<size_t>(p)], rows_of(*f.whole, w), msg, w);
      }
      col += w;
    }
  }
  for (int p = 0; p < n; ++p) {
    sb[p] *= esz;
    sd[p] *= esz;
    rb[p] *= esz;
    rd[p] *= esz;
  }
  std::unique_ptr<Request> req = comm_.all_to_all_v_start(send.data(), sb, sd, recv.data(), rb, rd);
  dev_.wait(req.get());
  for (int p = 0; p < n; ++p) {
    int64_t col = 0;
    for (const Field& f : fs) {
      auto [b, e] = heads_of(f, to_heads ? rank : p);
      const int64_t w = int64_t{e - b} * f.width;
      const Rows msg{recv.at(rd[p] / esz + col), dt, recv_width[p]};
      if (to_heads) {
        dev_.copy_rows(to_whole_[static_cast<size_t>(p)], msg, rows_of(*f.whole, w), w);
      } else {
        dev_.copy_rows(mine_, msg, rows_of(*f.host, int64_t{f.heads} * f.width, b * f.width), w);
      }
      col += w;
    }
  }
}

}  // namespace magi::detail
