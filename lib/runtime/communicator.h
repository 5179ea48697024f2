// The narrow communicator interface every executor talks to (DESIGN.md §4). Implementations:
// MPI over host memory (mpi_communicator.h); for CUDA device memory, NCCL and MPI staged through
// pinned host memory (cuda/). A communicator moves one kind of memory: the data buffers of the
// Device it was built for (device.h). Host-only values (timings, verdicts, the check's gathers)
// go through a host communicator.
//
// Device communicators order each send after the work the device's compute stream had enqueued
// when the call was made, and a request's wait() orders the device's later work after its
// receives (it need not block the host). For host memory, wait() returns with the data there.
//
// Buffers are raw bytes; counts and displacements are in bytes. Every call that moves data
// between ranks adds the bytes this rank sends to OTHER ranks (never to itself) to sent_bytes()
// and to that peer's sent_bytes_to(peer), so executors measure communication volume, and its
// split over the links (same node or not), from the real messages.
//
// Every call that waits on other ranks (blocking collectives, Request::wait and a pending
// request's destructor) does so inside a Watchdog::Wait scope of the communicator's watchdog,
// when it has one, so that a stopped peer ends the job instead of hanging it (watchdog.h).
#pragma once

#include "runtime/watchdog.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace magi {

// A pending non-blocking operation. test() advances it (MPI progresses only inside calls) and
// says whether it has completed; wait() blocks until it has. Destroying a pending request waits.
class Request {
 public:
  virtual ~Request() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};

// One point-to-point message of a group: `bytes` at `buf` to (send) or from (recv) `peer`.
struct P2POp {
  int peer = 0;
  void* buf = nullptr;
  int64_t bytes = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string host() const = 0;

  virtual void barrier() = 0;

  // All-to-all-v: rank p receives send[send_displs[p] .. + send_bytes[p]) of every rank into
  // recv[recv_displs[src] .. + recv_bytes[src]). Vectors have size() entries.
  virtual void all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                            const std::vector<int64_t>& send_displs, void* recv,
                            const std::vector<int64_t>& recv_bytes,
                            const std::vector<int64_t>& recv_displs) = 0;
  // Non-blocking all-to-all-v; buffers must stay valid until the request completes.
  virtual std::unique_ptr<Request> all_to_all_v_start(const void* send,
                                                      const std::vector<int64_t>& send_bytes,
                                                      const std::vector<int64_t>& send_displs,
                                                      void* recv,
                                                      const std::vector<int64_t>& recv_bytes,
                                                      const std::vector<int64_t>& recv_displs) = 0;

  // Grouped point-to-point: all sends and receives posted at once, completed together.
  // A zero-byte op is skipped. Buffers must stay valid until the request completes.
  virtual std::unique_ptr<Request> group_start(const std::vector<P2POp>& sends,
                                               const std::vector<P2POp>& recvs) = 0;
  void group(const std::vector<P2POp>& sends, const std::vector<P2POp>& recvs) {
    group_start(sends, recvs)->wait();
  }

  // All-gather of possibly different sizes: rank p's `send_bytes` bytes land at
  // recv + recv_displs[p]; recv_bytes[p] must equal rank p's send_bytes.
  virtual void all_gather_v(const void* send, int64_t send_bytes, void* recv,
                            const std::vector<int64_t>& recv_bytes,
                            const std::vector<int64_t>& recv_displs) = 0;
  // Non-blocking all-gather-v; buffers must stay valid until the request completes.
  virtual std::unique_ptr<Request> all_gather_v_start(const void* send, int64_t send_bytes,
                                                      void* recv,
                                                      const std::vector<int64_t>& recv_bytes,
                                                      const std::vector<int64_t>& recv_displs) = 0;
  // Equal-size all-gather: rank p's bytes land at recv + p * bytes.
  void all_gather(const void* send, int64_t bytes, void* recv);

  // Small host all-reduces, in place, over `n` values.
  virtual void all_reduce_sum(double* values, int n) = 0;
  virtual void all_reduce_max(double* values, int n) = 0;
  virtual void all_reduce_sum(int64_t* values, int n) = 0;
  virtual void all_reduce_max(int64_t* values, int n) = 0;

  // Broadcast `bytes` bytes at `data` from `root` to every rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;

  // Throws RuntimeError when the transport has failed asynchronously (NCCL's async errors); the
  // device's synchronize() and long waits call it. Host transports fail synchronously: no-op.
  virtual void check_async_errors() {}
  // Called on the watchdog's expiry before the job is taken down: ends in-flight operations
  // that would otherwise keep the process (NCCL: ncclCommAbort). Must not block; may be called
  // from another thread.
  virtual void abort() {}

  // Bytes this rank has sent to other ranks through this communicator so far: in all, and to
  // one peer.
  int64_t sent_bytes() const { return sent_bytes_; }
  int64_t sent_bytes_to(int peer) const {
    return peer >= 0 && peer < static_cast<int>(sent_to_.size()) ? sent_to_[peer] : 0;
  }

  // The watchdog bounding this communicator's waits (not owned; null: unbounded). Communicators
  // split from this one share it.
  void set_watchdog(Watchdog* watchdog) { watchdog_ = watchdog; }
  Watchdog* watchdog() const { return watchdog_; }

 protected:
  // Implementations call this for every message to another rank (peer != rank()).
  void count_sent(int peer, int64_t bytes) {
    if (peer >= static_cast<int>(sent_to_.size())) sent_to_.resize(peer + 1, 0);
    sent_to_[peer] += bytes;
    sent_bytes_ += bytes;
  }

 private:
  int64_t sent_bytes_ = 0;
  std::vector<int64_t> sent_to_;

 protected:
  Watchdog* watchdog_ = nullptr;
};

inline void Communicator::all_gather(const void* send, int64_t bytes, void* recv) {
  std::vector<int64_t> counts(size(), bytes), displs(size());
  for (int p = 0; p < size(); ++p) displs[p] = p * bytes;
  all_gather_v(send, bytes, recv, counts, displs);
}

}  // namespace magi
