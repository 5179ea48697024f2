#include "runtime/cuda/nccl_communicator.h"

#include "core/base/error.h"

#if MAGI_HAVE_NCCL

#include "runtime/cuda/device_comm_check.h"

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace magi {

namespace {

#define NCCL_COMM_CUDA_CHECK(call) MAGI_COMM_CUDA_CHECK(rank_, host_name_, call)
#define NCCL_COMM_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)

using namespace std::chrono_literals;

// Host polls back off from 10 us to 1 ms: short operations are seen at once, long ones cost
// the host little.
constexpr std::chrono::microseconds kFirstPause = 10us;
constexpr std::chrono::microseconds kLongestPause = 1000us;

class NcclCommunicator;

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclCommunicator* comm, cudaEvent_t done) : comm_(comm), done_(done) {}
  ~NcclRequest() override;
  bool test() override;
  void wait() override;
  cudaEvent_t done() const { return done_; }

 private:
  NcclCommunicator* comm_;
  cudaEvent_t done_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MpiCommunicator& host, void* compute_stream, int device)
      : host_(host),
        compute_(static_cast<cudaStream_t>(compute_stream)),
        rank_(host.rank()),
        size_(host.size()),
        host_name_(host.host()) {
    set_watchdog(host.watchdog());
    NCCL_COMM_CUDA_CHECK(cudaSetDevice(device));
    // Rank 0's id and whether it could make one travel together, so that a failure there
    // fails every rank instead of leaving them waiting for an id.
    struct Bootstrap {
      ncclUniqueId id;
      int ok;
    } boot{};
    std::string id_error;
    if (rank_ == 0) {
      ncclResult_t r = ncclGetUniqueId(&boot.id);
      boot.ok = r == ncclSuccess;
      if (!boot.ok) id_error = ncclGetErrorString(r);
    }
    host_.broadcast(&boot, static_cast<int64_t>(sizeof boot), 0);
    if (!boot.ok && rank_ == 0) {
      throw RuntimeError(fmt::format("NCCL call `ncclGetUniqueId` failed on rank 0 ({}): {}",
                                     host_name_, id_error));
    }
    if (!boot.ok) {
      throw RuntimeError(fmt::format("rank {} ({}): no NCCL communicator, as rank 0 could not "
                                     "make its unique id (ncclGetUniqueId failed there)",
                                     rank_, host_name_));
    }
    NCCL_COMM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      NCCL_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
      ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
      config.blocking = 0;
      std::lock_guard<std::mutex> lock(mutex_);
      NCCL_COMM_CHECK(ncclCommInitRankConfig(&comm_, size_, boot.id, rank_, &config));
    } catch (...) {
      if (comm_) ncclCommAbort(comm_);  // a failed init may still have made one
      comm_ = nullptr;
      release_cuda();
      throw;
    }
    try {
      settle("NCCL communicator set-up");
    } catch (...) {
      abort();
      release_cuda();
      throw;
    }
  }

  ~NcclCommunicator() override {
    close();
    release_cuda();
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host() const override { return host_name_; }

  void barrier() override { host_.barrier(); }

  void all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                    const std::vector<int64_t>& send_displs, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override {
    auto req = all_to_all_v_start(send, send_bytes, send_displs, recv, recv_bytes, recv_displs);
    finish(*req, "all_to_all_v");
  }

  std::unique_ptr<Request> all_to_all_v_start(const void* send,
                                              const std::vector<int64_t>& send_bytes,
                                              const std::vector<int64_t>& send_displs, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override {
    check_sizes(send_bytes, "all_to_all_v send");
    check_sizes(send_displs, "all_to_all_v send displacement");
    check_sizes(recv_bytes, "all_to_all_v recv");
    check_sizes(recv_displs, "all_to_all_v recv displacement");
    MAGI_CHECK(send_bytes[rank_] == recv_bytes[rank_], "all_to_all_v: self part {} vs {} bytes",
               send_bytes[rank_], recv_bytes[rank_]);
    const auto* sbase = static_cast<const char*>(send);
    auto* rbase = static_cast<char*>(recv);
    auto req = run("all_to_all_v", [&] {
      self_copy(rbase + recv_displs[rank_], sbase + send_displs[rank_], send_bytes[rank_]);
    }, [&] {
      for (int p = 0; p < size_; ++p) {
        if (p == rank_) continue;
        if (recv_bytes[p] > 0) {
          NCCL_COMM_CHECK(ncclRecv(rbase + recv_displs[p], static_cast<size_t>(recv_bytes[p]),
                                   ncclUint8, p, comm_, stream_));
        }
        if (send_bytes[p] > 0) {
          NCCL_COMM_CHECK(ncclSend(sbase + send_displs[p], static_cast<size_t>(send_bytes[p]),
                                   ncclUint8, p, comm_, stream_));
        }
      }
    });
    for (int p = 0; p < size_; ++p) {
      if (p != rank_) count_sent(p, send_bytes[p]);
    }
    return req;
  }

  std::unique_ptr<Request> group_start(const std::vector<P2POp>& sends,
                                       const std::vector<P2POp>& recvs) override {
    for (const P2POp& op : sends) check_op(op, "group send");
    for (const P2POp& op : recvs) check_op(op, "group recv");
    auto req = run("point-to-point send/recv", [] {}, [&] {
      for (const P2POp& op : recvs) {
        if (op.bytes == 0) continue;
        NCCL_COMM_CHECK(ncclRecv(op.buf, static_cast<size_t>(op.bytes), ncclUint8, op.peer, comm_,
                                 stream_));
      }
      for (const P2POp& op : sends) {
        if (op.bytes == 0) continue;
        NCCL_COMM_CHECK(ncclSend(op.buf, static_cast<size_t>(op.bytes), ncclUint8, op.peer, comm_,
                                 stream_));
      }
    });
    for (const P2POp& op : sends) {
      if (op.peer != rank_) count_sent(op.peer, op.bytes);
    }
    return req;
  }

  void all_gather_v(const void* send, int64_t send_bytes, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override {
    auto req = all_gather_v_start(send, send_bytes, recv, recv_bytes, recv_displs);
    finish(*req, "all_gather_v");
  }

  std::unique_ptr<Request> all_gather_v_start(const void* send, int64_t send_bytes, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override {
    check_sizes(recv_bytes, "all_gather_v recv");
    check_sizes(recv_displs, "all_gather_v displacement");
    MAGI_CHECK(recv_bytes[rank_] == send_bytes, "all_gather_v: own part {} vs {} bytes",
               recv_bytes[rank_], send_bytes);
    auto* rbase = static_cast<char*>(recv);
    // Equal parts laid out back to back are one ncclAllGather; anything else is grouped
    // point-to-point.
    bool packed = send_bytes > 0;
    for (int p = 0; p < size_ && packed; ++p) {
      packed = recv_bytes[p] == send_bytes && recv_displs[p] == recv_displs[0] + p * send_bytes;
    }
    if (!packed) {  // the same bytes to every peer: an all-to-all-v, which counts them too
      return all_to_all_v_start(send, std::vector<int64_t>(size_, send_bytes),
                                std::vector<int64_t>(size_, 0), recv, recv_bytes, recv_displs);
    }
    auto req = run("all_gather_v", [] {}, [&] {
      NCCL_COMM_CHECK(ncclAllGather(send, rbase + recv_displs[0], static_cast<size_t>(send_bytes),
                                    ncclUint8, comm_, stream_));
    });
    for (int p = 0; p < size_; ++p) {
      if (p != rank_) count_sent(p, send_bytes);
    }
    return req;
  }

  void all_reduce_sum(double* values, int n) override { host_.all_reduce_sum(values, n); }
  void all_reduce_max(double* values, int n) override { host_.all_reduce_max(values, n); }
  void all_reduce_sum(int64_t* values, int n) override { host_.all_reduce_sum(values, n); }
  void all_reduce_max(int64_t* values, int n) override { host_.all_reduce_max(values, n); }
  void broadcast(void* data, int64_t bytes, int root) override {
    host_.broadcast(data, bytes, root);
  }

  void check_async_errors() override {
    std::lock_guard<std::mutex> lock(mutex_);
    check_async_locked();
  }

  void abort() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted_ || !comm_) return;
    aborted_ = true;
    ncclCommAbort(comm_);
  }

  // NcclRequest's side.
  void order_compute_after(cudaEvent_t done) {
    NCCL_COMM_CUDA_CHECK(cudaStreamWaitEvent(compute_, done, 0));
  }
  bool completed(cudaEvent_t done) {
    check_async_errors();
    cudaError_t e = cudaEventQuery(done);
    if (e == cudaErrorNotReady) return false;
    NCCL_COMM_CUDA_CHECK(e);
    return true;
  }
  void give_back(cudaEvent_t done) { free_events_.push_back(done); }

 private:
  void check_sizes(const std::vector<int64_t>& v, const char* what) const {
    MAGI_CHECK(static_cast<int>(v.size()) == size_, "{}: {} entries for {} ranks", what, v.size(),
               size_);
    for (int64_t x : v) MAGI_CHECK(x >= 0, "{}: negative value {}", what, x);
  }
  void check_op(const P2POp& op, const char* what) const {
    MAGI_CHECK(op.peer >= 0 && op.peer < size_, "{}: rank {} of {}", what, op.peer, size_);
    MAGI_CHECK(op.bytes >= 0, "{}: negative size {}", what, op.bytes);
  }

  // A call that returned neither success nor "in progress" (this communicator is non-blocking).
  void nccl_check(ncclResult_t r, const char* call, const char* file, int line) {
    if (r == ncclSuccess || r == ncclInProgress) [[likely]] return;
    nccl_fail(r, call, file, line);
  }
  [[noreturn]] void nccl_fail(ncclResult_t r, const char* call, const char* file, int line) {
    std::string error = ncclGetErrorString(r);
    const char* last = ncclGetLastError(comm_);
    if (last && *last) error += fmt::format(" ({})", last);
    detail::device_comm_fail("NCCL", call, error, rank_, host_name_, file, line);
  }

  // With mutex_ held.
  void check_async_locked() {
    if (aborted_) {
      throw RuntimeError(fmt::format("NCCL communicator of rank {} ({}) was aborted", rank_,
                                     host_name_));
    }
    ncclResult_t state = ncclSuccess;
    NCCL_COMM_CHECK(ncclCommGetAsyncError(comm_, &state));
    if (state != ncclSuccess && state != ncclInProgress) {
      nccl_fail(state, "ncclCommGetAsyncError", __FILE__, __LINE__);
    }
  }

  // Waits until the last non-blocking NCCL call has finished its host side (set-up, or a
  // group's enqueue, which may wait for peers to connect).
  void settle(const char* what) {
    Watchdog::Wait wait(watchdog_, what);
    for (auto pause = kFirstPause;; pause = std::min(pause * 2, kLongestPause)) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (aborted_) check_async_locked();
        ncclResult_t state = ncclSuccess;
        NCCL_COMM_CHECK(ncclCommGetAsyncError(comm_, &state));
        if (state == ncclSuccess) return;
        if (state != ncclInProgress) nccl_fail(state, "ncclCommGetAsyncError", __FILE__, __LINE__);
      }
      std::this_thread::sleep_for(pause);
    }
  }

  void self_copy(void* dst, const void* src, int64_t bytes) {
    if (bytes == 0 || dst == src) return;
    NCCL_COMM_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes),
                                         cudaMemcpyDeviceToDevice, stream_));
  }

  // One operation on the communicator's stream: after the compute stream's work so far, the
  // self copies, then `messages` (ncclSend/ncclRecv/...) as one group, then the done event.
  template <class Local, class Messages>
  std::unique_ptr<Request> run(const char* what, Local local, Messages messages) {
    NCCL_COMM_CUDA_CHECK(cudaEventRecord(ready_, compute_));
    NCCL_COMM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    local();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      check_async_locked();
      NCCL_COMM_CHECK(ncclGroupStart());
      try {
        messages();
      } catch (...) {
        ncclGroupEnd();
        throw;
      }
      NCCL_COMM_CHECK(ncclGroupEnd());
    }
    settle(what);
    cudaEvent_t done = take_event();
    auto req = std::make_unique<NcclRequest>(this, done);
    NCCL_COMM_CUDA_CHECK(cudaEventRecord(done, stream_));
    return req;
  }

  // A blocking call's end: later compute after it, and the host after its completion, polled so
  // that a stopped peer is seen by the watchdog and an async error ends the wait.
  void finish(Request& req, const char* what) {
    req.wait();
    cudaEvent_t done = static_cast<NcclRequest&>(req).done();
    Watchdog::Wait wait(watchdog_, what);
    for (auto pause = kFirstPause; !completed(done); pause = std::min(pause * 2, kLongestPause)) {
      std::this_thread::sleep_for(pause);
    }
  }

  cudaEvent_t take_event() {
    if (!free_events_.empty()) {
      cudaEvent_t e = free_events_.back();
      free_events_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    NCCL_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  }

  // Finalize (flushes what is in flight, polled under the watchdog) and destroy when healthy;
  // abort otherwise, so that a failed communicator never hangs its destructor.
  void close() {
    bool healthy = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (aborted_ || !comm_) return;
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclSuccess) {
        ncclResult_t r = ncclCommFinalize(comm_);
        healthy = r == ncclSuccess || r == ncclInProgress;
      }
    }
    if (healthy) {
      try {
        settle("NCCL communicator finalize");
      } catch (...) {
        healthy = false;
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted_) return;
    if (healthy) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    aborted_ = true;
  }

  void release_cuda() {
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
    free_events_.clear();
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
    ready_ = nullptr;
    stream_ = nullptr;
  }

  MpiCommunicator& host_;
  cudaStream_t compute_;
  int rank_;
  int size_;
  std::string host_name_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // re-recorded per operation once the stream has waited on it
  std::vector<cudaEvent_t> free_events_;
  // Guards comm_ against abort() from the watchdog's thread: every NCCL call on comm_ is made
  // under it, none of them blocks (non-blocking communicator), and none follows an abort.
  std::mutex mutex_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;  // comm_ aborted or destroyed
};

NcclRequest::~NcclRequest() {
  // A pending request's buffers may be freed on the compute stream next: order it after them.
  if (!waited_) {
    try {
      comm_->order_compute_after(done_);
    } catch (...) {
    }
  }
  comm_->give_back(done_);
}

bool NcclRequest::test() { return comm_->completed(done_); }

void NcclRequest::wait() {
  if (waited_) return;
  comm_->check_async_errors();
  comm_->order_compute_after(done_);
  waited_ = true;
}

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& host, void* compute_stream,
                                                     int device) {
  return std::make_unique<NcclCommunicator>(host, compute_stream, device);
}

}  // namespace magi

#else  // !MAGI_HAVE_NCCL

namespace magi {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator&, void*, int) {
  throw ConfigError("this magi-bench was built without NCCL; use --comm mpi");
}

}  // namespace magi

#endif
