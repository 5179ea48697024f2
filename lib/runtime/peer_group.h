// A communicator over some ranks of another one: the ranks of one head group or of one head index
// in hybrid parallelism (exec_hybrid.cpp). Peers are translated to the parent's ranks and every
// message goes through the parent, so the parent's sent_bytes_to() counts it by its real peer
// (and this view's own counters by its index in the group).
//
// Data movement only. The all-to-all-v, all-gather-v and point-to-point groups run on the
// parent's non-blocking all-to-all-v and point-to-point groups, which are point-to-point for
// every communicator here (MPI, NCCL, staged MPI): the ranks outside the group take no part.
// Barriers, all-reduces and broadcasts of host values are collective over their communicator
// and belong to the host communicator: this view refuses them (InternalError).
#pragma once

#include "runtime/communicator.h"

#include <vector>

namespace magi {

class PeerGroup final : public Communicator {
 public:
  // `members`: the parent's ranks of the group in group-rank order; must hold parent.rank().
  PeerGroup(Communicator& parent, std::vector<int> members);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  std::string host() const override { return parent_.host(); }
  const std::vector<int>& members() const { return members_; }

  void barrier() override;
  void all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                    const std::vector<int64_t>& send_displs, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override;
  std::unique_ptr<Request> all_to_all_v_start(const void* send, const std::vector<int64_t>& send_bytes,
                                              const std::vector<int64_t>& send_displs, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override;
  std::unique_ptr<Request> group_start(const std::vector<P2POp>& sends,
                                       const std::vector<P2POp>& recvs) override;
  void all_gather_v(const void* send, int64_t send_bytes, void* recv, const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override;
  std::unique_ptr<Request> all_gather_v_start(const void* send, int64_t send_bytes, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override;
  void all_reduce_sum(double* values, int n) override;
  void all_reduce_max(double* values, int n) override;
  void all_reduce_sum(int64_t* values, int n) override;
  void all_reduce_max(int64_t* values, int n) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  void check_async_errors() override { parent_.check_async_errors(); }
  void abort() override { parent_.abort(); }

 private:
  // Group vectors (size() entries) spread over the parent's ranks (zeros elsewhere).
  std::vector<int64_t> spread(const std::vector<int64_t>& v) const;
  [[noreturn]] void refuse(const char* what) const;

  Communicator& parent_;
  std::vector<int> members_;
  int rank_ = -1;
};

}  // namespace magi
