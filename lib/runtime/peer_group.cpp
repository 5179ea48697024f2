#include "runtime/peer_group.h"

#include "core/base/error.h"

#include <algorithm>

namespace magi {

PeerGroup::PeerGroup(Communicator& parent, std::vector<int> members)
    : parent_(parent), members_(std::move(members)) {
  for (size_t i = 0; i < members_.size(); ++i) {
    MAGI_CHECK(members_[i] >= 0 && members_[i] < parent_.size(), "peer group member {} of {} ranks", members_[i],
               parent_.size());
    if (members_[i] == parent_.rank()) rank_ = static_cast<int>(i);
  }
  MAGI_CHECK(rank_ >= 0, "rank {} is not in its peer group", parent_.rank());
  watchdog_ = parent_.watchdog();
}

std::vector<int64_t> PeerGroup::spread(const std::vector<int64_t>& v) const {
  MAGI_CHECK(v.size() == members_.size(), "peer group: {} entries for {} members", v.size(), members_.size());
  std::vector<int64_t> out(static_cast<size_t>(parent_.size()), 0);
  for (size_t i = 0; i < members_.size(); ++i) out[static_cast<size_t>(members_[i])] = v[i];
  return out;
}

void PeerGroup::refuse(const char* what) const {
  throw InternalError(fmt::format("{} on a peer group: a peer group moves data buffers only; host values go "
                                  "through the host communicator", what));
}

void PeerGroup::barrier() { refuse("barrier"); }
void PeerGroup::all_reduce_sum(double*, int) { refuse("all_reduce_sum"); }
void PeerGroup::all_reduce_max(double*, int) { refuse("all_reduce_max"); }
void PeerGroup::all_reduce_sum(int64_t*, int) { refuse("all_reduce_sum"); }
void PeerGroup::all_reduce_max(int64_t*, int) { refuse("all_reduce_max"); }
void PeerGroup::broadcast(void*, int64_t, int) { refuse("broadcast"); }

std::unique_ptr<Request> PeerGroup::all_to_all_v_start(const void* send, const std::vector<int64_t>& send_bytes,
                                                       const std::vector<int64_t>& send_displs, void* recv,
                                                       const std::vector<int64_t>& recv_bytes,
                                                       const std::vector<int64_t>& recv_displs) {
  for (int p = 0; p < size(); ++p) {
    if (p != rank_) count_sent(p, send_bytes.at(static_cast<size_t>(p)));
  }
  return parent_.all_to_all_v_start(send, spread(send_bytes), spread(send_displs), recv, spread(recv_bytes),
                                    spread(recv_displs));
}

void PeerGroup::all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                             const std::vector<int64_t>& send_displs, void* recv,
                             const std::vector<int64_t>& recv_bytes, const std::vector<int64_t>& recv_displs) {
  all_to_all_v_start(send, send_bytes, send_displs, recv, recv_bytes, recv_displs)->wait();
}

std::unique_ptr<Request> PeerGroup::group_start(const std::vector<P2POp>& sends, const std::vector<P2POp>& recvs) {
  auto translate = [&](std::vector<P2POp> ops, bool sending) {
    for (P2POp& op : ops) {
      MAGI_CHECK(op.peer >= 0 && op.peer < size(), "peer {} of a group of {}", op.peer, size());
      if (sending && op.peer != rank_) count_sent(op.peer, op.bytes);
      op.peer = members_[static_cast<size_t>(op.peer)];
    }
    return ops;
  };
  return parent_.group_start(translate(sends, true), translate(recvs, false));
}

std::unique_ptr<Request> PeerGroup::all_gather_v_start(const void* send, int64_t send_bytes, void* recv,
                                                       const std::vector<int64_t>& recv_bytes,
                                                       const std::vector<int64_t>& recv_displs) {
  MAGI_CHECK(recv_bytes.at(static_cast<size_t>(rank_)) == send_bytes, "all_gather_v: own part {} vs {} bytes",
             recv_bytes[static_cast<size_t>(rank_)], send_bytes);
  return all_to_all_v_start(send, std::vector<int64_t>(members_.size(), send_bytes),
                            std::vector<int64_t>(members_.size(), 0), recv, recv_bytes, recv_displs);
}

void PeerGroup::all_gather_v(const void* send, int64_t send_bytes, void* recv, const std::vector<int64_t>& recv_bytes,
                             const std::vector<int64_t>& recv_displs) {
  all_gather_v_start(send, send_bytes, recv, recv_bytes, recv_displs)->wait();
}

}  // namespace magi
