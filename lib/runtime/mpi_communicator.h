// Communicator over MPI (CPU ranks; also the bootstrap of the NCCL communicator later).
// Every MPI call goes through MAGI_MPI_CHECK, which throws RuntimeError quoting the call, the
// MPI error string, the world rank, the host and file:line. Communicators made here use
// MPI_ERRORS_RETURN so that a failure reaches that check instead of aborting silently.
// Requires MPI_Init (or MPI_Init_thread) before, and destruction before MPI_Finalize. Only the
// thread that called MPI_Init calls into MPI (MPI_THREAD_FUNNELED is enough).
#pragma once

#include "runtime/communicator.h"

#include <mpi.h>

#include <memory>
#include <string>

namespace magi {

namespace detail {
[[noreturn]] void mpi_fail(const char* call, int rc, const char* file, int line);
}

#define MAGI_MPI_CHECK(call)                                                   \
  do {                                                                         \
    int magi_mpi_rc_ = (call);                                                 \
    if (magi_mpi_rc_ != MPI_SUCCESS) [[unlikely]] {                            \
      ::magi::detail::mpi_fail(#call, magi_mpi_rc_, __FILE__, __LINE__);       \
    }                                                                          \
  } while (0)

class MpiCommunicator final : public Communicator {
 public:
  // Wraps `comm` (e.g. MPI_COMM_WORLD) without owning it; sets MPI_ERRORS_RETURN on it.
  explicit MpiCommunicator(MPI_Comm comm) : MpiCommunicator(comm, false) {}
  // A communicator over all of MPI_COMM_WORLD (an owned duplicate; freed on destruction).
  static std::unique_ptr<MpiCommunicator> world();
  // Collective over `parent`: the first n ranks of it get a communicator of size n (same
  // order), the others get nullptr. Throws RuntimeError when parent has fewer than n ranks.
  static std::unique_ptr<MpiCommunicator> split_first(MPI_Comm parent, int n);
  // The same, sharing this communicator's watchdog.
  std::unique_ptr<MpiCommunicator> split_first(int n);

  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host() const override { return host_; }
  MPI_Comm comm() const { return comm_; }

  void barrier() override;
  void all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                    const std::vector<int64_t>& send_displs, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override;
  std::unique_ptr<Request> all_to_all_v_start(const void* send,
                                              const std::vector<int64_t>& send_bytes,
                                              const std::vector<int64_t>& send_displs, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override;
  std::unique_ptr<Request> group_start(const std::vector<P2POp>& sends,
                                       const std::vector<P2POp>& recvs) override;
  void all_gather_v(const void* send, int64_t send_bytes, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override;
  std::unique_ptr<Request> all_gather_v_start(const void* send, int64_t send_bytes, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override;
  void all_reduce_sum(double* values, int n) override;
  void all_reduce_max(double* values, int n) override;
  void all_reduce_sum(int64_t* values, int n) override;
  void all_reduce_max(int64_t* values, int n) override;
  void broadcast(void* data, int64_t bytes, int root) override;

 private:
  MpiCommunicator(MPI_Comm comm, bool owned);
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;  // freed on destruction
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
};

}  // namespace magi
