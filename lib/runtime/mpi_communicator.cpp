#include "runtime/mpi_communicator.h"

#include "core/base/error.h"

#include <fmt/format.h>

#include <climits>
#include <cstring>

namespace magi {

namespace detail {

[[noreturn]] void mpi_fail(const char* call, int rc, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) std::snprintf(msg, sizeof msg, "code %d", rc);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int hlen = 0;
  MPI_Get_processor_name(host, &hlen);
  throw RuntimeError(fmt::format("MPI call `{}` failed on rank {} ({}) at {}:{}: {}", call, rank,
                                 host, file, line, msg));
}

}  // namespace detail

namespace {

constexpr int kA2aTag = 7101;
constexpr int kGroupTag = 7102;

int to_count(int64_t bytes, const char* what) {
  if (bytes < 0 || bytes > INT_MAX) {
    throw RuntimeError(fmt::format("{}: {} bytes is outside what one MPI call moves (0..{})", what,
                                   bytes, INT_MAX));
  }
  return static_cast<int>(bytes);
}

std::vector<int> to_counts(const std::vector<int64_t>& v, int n, const char* what) {
  MAGI_CHECK(static_cast<int>(v.size()) == n, "{}: {} entries for {} ranks", what, v.size(), n);
  std::vector<int> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_count(v[i], what);
  return out;
}

class MpiRequest final : public Request {
 public:
  // `what` names the operation for the watchdog ("all_to_all_v", "group send/recv").
  MpiRequest(std::vector<MPI_Request> reqs, Watchdog* watchdog, const char* what)
      : reqs_(std::move(reqs)), watchdog_(watchdog), what_(what) {}
  ~MpiRequest() override {
    // A pending request must not outlive its buffers: complete it (errors are lost here).
    if (!done_ && !reqs_.empty()) {
      Watchdog::Wait wait(watchdog_, what_);
      MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE);
    }
  }
  bool test() override {
    if (done_) return true;
    int flag = 0;
    MAGI_MPI_CHECK(MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag,
                               MPI_STATUSES_IGNORE));
    done_ = flag != 0;
    return done_;
  }
  void wait() override {
    if (done_) return;
    Watchdog::Wait wait(watchdog_, what_);
    MAGI_MPI_CHECK(MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
    done_ = true;
  }

 private:
  std::vector<MPI_Request> reqs_;
  Watchdog* watchdog_;
  const char* what_;
  bool done_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  MAGI_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  MAGI_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MAGI_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MAGI_MPI_CHECK(MPI_Get_processor_name(host, &len));
  host_.assign(host, static_cast<size_t>(len));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::world() {
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm dup = MPI_COMM_NULL;
  MAGI_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(dup, true));
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split_first(MPI_Comm parent, int n) {
  int rank = 0, size = 0;
  MAGI_MPI_CHECK(MPI_Comm_rank(parent, &rank));
  MAGI_MPI_CHECK(MPI_Comm_size(parent, &size));
  if (n < 1 || n > size) {
    throw RuntimeError(fmt::format("cannot make a communicator of {} ranks out of {} ranks", n,
                                   size));
  }
  MPI_Comm sub = MPI_COMM_NULL;
  MAGI_MPI_CHECK(MPI_Comm_split(parent, rank < n ? 0 : MPI_UNDEFINED, rank, &sub));
  if (rank >= n) return nullptr;
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(sub, true));
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split_first(int n) {
  // MPI_Comm_split has no non-blocking form; a bounded barrier first means every rank is there.
  barrier();
  std::unique_ptr<MpiCommunicator> sub = split_first(comm_, n);
  if (sub) sub->set_watchdog(watchdog_);
  return sub;
}

void MpiCommunicator::barrier() {
  Watchdog::Wait wait(watchdog_, "barrier");
  MAGI_MPI_CHECK(MPI_Barrier(comm_));
}

void MpiCommunicator::all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                                   const std::vector<int64_t>& send_displs, void* recv,
                                   const std::vector<int64_t>& recv_bytes,
                                   const std::vector<int64_t>& recv_displs) {
  auto sc = to_counts(send_bytes, size_, "all_to_all_v send");
  auto sd = to_counts(send_displs, size_, "all_to_all_v send displacement");
  auto rc = to_counts(recv_bytes, size_, "all_to_all_v recv");
  auto rd = to_counts(recv_displs, size_, "all_to_all_v recv displacement");
  Watchdog::Wait wait(watchdog_, "all_to_all_v");
  MAGI_MPI_CHECK(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(), rd.data(),
                               MPI_BYTE, comm_));
  for (int p = 0; p < size_; ++p) {
    if (p != rank_) count_sent(p, send_bytes[p]);
  }
}

std::unique_ptr<Request> MpiCommunicator::all_to_all_v_start(
    const void* send, const std::vector<int64_t>& send_bytes,
    const std::vector<int64_t>& send_displs, void* recv, const std::vector<int64_t>& recv_bytes,
    const std::vector<int64_t>& recv_displs) {
  MAGI_CHECK(static_cast<int>(send_bytes.size()) == size_ &&
                 static_cast<int>(recv_bytes.size()) == size_ &&
                 static_cast<int>(send_displs.size()) == size_ &&
                 static_cast<int>(recv_displs.size()) == size_,
             "all_to_all_v_start: vectors must have {} entries", size_);
  // Point-to-point underneath (posted as one group), so that MPI_Testall progresses it while
  // compute runs; the self part is a plain copy.
  std::vector<MPI_Request> reqs;
  reqs.reserve(2 * static_cast<size_t>(size_));
  auto* rbase = static_cast<char*>(recv);
  const auto* sbase = static_cast<const char*>(send);
  for (int p = 0; p < size_; ++p) {
    if (p == rank_ || recv_bytes[p] == 0) continue;
    MPI_Request r;
    MAGI_MPI_CHECK(MPI_Irecv(rbase + recv_displs[p], to_count(recv_bytes[p], "all_to_all_v recv"),
                             MPI_BYTE, p, kA2aTag, comm_, &r));
    reqs.push_back(r);
  }
  for (int p = 0; p < size_; ++p) {
    if (p == rank_ || send_bytes[p] == 0) continue;
    MPI_Request r;
    MAGI_MPI_CHECK(MPI_Isend(sbase + send_displs[p], to_count(send_bytes[p], "all_to_all_v send"),
                             MPI_BYTE, p, kA2aTag, comm_, &r));
    reqs.push_back(r);
    count_sent(p, send_bytes[p]);
  }
  MAGI_CHECK(send_bytes[rank_] == recv_bytes[rank_], "all_to_all_v: self part {} vs {} bytes",
             send_bytes[rank_], recv_bytes[rank_]);
  if (send_bytes[rank_] > 0) {
    std::memmove(rbase + recv_displs[rank_], sbase + send_displs[rank_],
                 static_cast<size_t>(send_bytes[rank_]));
  }
  return std::make_unique<MpiRequest>(std::move(reqs), watchdog_, "all_to_all_v");
}

std::unique_ptr<Request> MpiCommunicator::group_start(const std::vector<P2POp>& sends,
                                                      const std::vector<P2POp>& recvs) {
  std::vector<MPI_Request> reqs;
  reqs.reserve(sends.size() + recvs.size());
  for (const auto& op : recvs) {
    if (op.bytes == 0) continue;
    MAGI_CHECK(op.peer >= 0 && op.peer < size_, "recv from rank {} of {}", op.peer, size_);
    MPI_Request r;
    MAGI_MPI_CHECK(MPI_Irecv(op.buf, to_count(op.bytes, "group recv"), MPI_BYTE, op.peer,
                             kGroupTag, comm_, &r));
    reqs.push_back(r);
  }
  for (const auto& op : sends) {
    if (op.bytes == 0) continue;
    MAGI_CHECK(op.peer >= 0 && op.peer < size_, "send to rank {} of {}", op.peer, size_);
    MPI_Request r;
    MAGI_MPI_CHECK(MPI_Isend(op.buf, to_count(op.bytes, "group send"), MPI_BYTE, op.peer,
                             kGroupTag, comm_, &r));
    reqs.push_back(r);
    if (op.peer != rank_) count_sent(op.peer, op.bytes);
  }
  return std::make_unique<MpiRequest>(std::move(reqs), watchdog_, "point-to-point send/recv");
}

void MpiCommunicator::all_gather_v(const void* send, int64_t send_bytes, void* recv,
                                   const std::vector<int64_t>& recv_bytes,
                                   const std::vector<int64_t>& recv_displs) {
  auto rc = to_counts(recv_bytes, size_, "all_gather_v recv");
  auto rd = to_counts(recv_displs, size_, "all_gather_v displacement");
  MAGI_CHECK(recv_bytes[rank_] == send_bytes, "all_gather_v: own part {} vs {} bytes",
             recv_bytes[rank_], send_bytes);
  Watchdog::Wait wait(watchdog_, "all_gather_v");
  MAGI_MPI_CHECK(MPI_Allgatherv(send, to_count(send_bytes, "all_gather_v send"), MPI_BYTE, recv,
                                rc.data(), rd.data(), MPI_BYTE, comm_));
  for (int p = 0; p < size_; ++p) {
    if (p != rank_) count_sent(p, send_bytes);
  }
}

std::unique_ptr<Request> MpiCommunicator::all_gather_v_start(const void* send, int64_t send_bytes,
                                                             void* recv,
                                                             const std::vector<int64_t>& recv_bytes,
                                                             const std::vector<int64_t>& recv_displs) {
  MAGI_CHECK(static_cast<int>(recv_bytes.size()) == size_ &&
                 static_cast<int>(recv_displs.size()) == size_,
             "all_gather_v_start: vectors must have {} entries", size_);
  MAGI_CHECK(recv_bytes[rank_] == send_bytes, "all_gather_v: own part {} vs {} bytes",
             recv_bytes[rank_], send_bytes);
  // Point-to-point underneath, as all_to_all_v_start: MPI_Testall progresses it while compute runs.
  std::vector<int64_t> send_counts(size_, send_bytes), send_displs(size_, 0);
  return all_to_all_v_start(send, send_counts, send_displs, recv, recv_bytes, recv_displs);
}

void MpiCommunicator::all_reduce_sum(double* values, int n) {
  Watchdog::Wait wait(watchdog_, "all_reduce_sum");
  MAGI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, comm_));
}
void MpiCommunicator::all_reduce_max(double* values, int n) {
  Watchdog::Wait wait(watchdog_, "all_reduce_max");
  MAGI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_MAX, comm_));
}
void MpiCommunicator::all_reduce_sum(int64_t* values, int n) {
  Watchdog::Wait wait(watchdog_, "all_reduce_sum");
  MAGI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_INT64_T, MPI_SUM, comm_));
}
void MpiCommunicator::all_reduce_max(int64_t* values, int n) {
  Watchdog::Wait wait(watchdog_, "all_reduce_max");
  MAGI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_INT64_T, MPI_MAX, comm_));
}

void MpiCommunicator::broadcast(void* data, int64_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  Watchdog::Wait wait(watchdog_, "broadcast");
  for (int64_t off = 0; off < bytes; off += INT_MAX) {
    int64_t n = bytes - off < INT_MAX ? bytes - off : INT_MAX;
    MAGI_MPI_CHECK(MPI_Bcast(p + off, static_cast<int>(n), MPI_BYTE, root, comm_));
  }
}

}  // namespace magi
