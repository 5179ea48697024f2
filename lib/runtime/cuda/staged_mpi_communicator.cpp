#include "runtime/cuda/staged_mpi_communicator.h"

#include "core/base/error.h"
#include "runtime/cuda/device_comm_check.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstddef>
#include <vector>

namespace magi {

namespace {

#define STAGED_CUDA_CHECK(call) MAGI_COMM_CUDA_CHECK(rank_, host_name_, call)

// Pinned host memory from cudaMallocHost, grown (never shrunk) on demand.
class PinnedBytes {
 public:
  PinnedBytes() = default;
  ~PinnedBytes() {
    if (data_) cudaFreeHost(data_);
  }
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;

  char* data() const { return data_; }
  int64_t capacity() const { return capacity_; }
  // The caller has made sure no copy still reads or writes the old memory.
  void reserve(int64_t bytes, int rank, const std::string& host) {
    if (bytes <= capacity_) return;
    if (data_) {
      MAGI_COMM_CUDA_CHECK(rank, host, cudaFreeHost(data_));
      data_ = nullptr;
      capacity_ = 0;
    }
    void* p = nullptr;
    MAGI_COMM_CUDA_CHECK(rank, host, cudaMallocHost(&p, static_cast<size_t>(bytes)));
    data_ = static_cast<char*>(p);
    capacity_ = bytes;
  }

 private:
  char* data_ = nullptr;
  int64_t capacity_ = 0;
};

// The staging memory of one request in flight.
struct Staging {
  PinnedBytes send, recv;
  bool in_use = false;
};

// A received part: `bytes` at offset `staged` of the recv staging go to `dst` on the device.
struct Landing {
  void* dst;
  int64_t staged;
  int64_t bytes;
};

// A part to send: `bytes` at `src` on the device go to offset `staged` of the send staging.
struct Departure {
  const void* src;
  int64_t staged;
  int64_t bytes;
};

class StagedMpiCommunicator;

class StagedRequest final : public Request {
 public:
  StagedRequest(StagedMpiCommunicator* comm, Staging* staging, std::unique_ptr<Request> mpi,
                std::vector<Landing> landings)
      : comm_(comm), staging_(staging), mpi_(std::move(mpi)), landings_(std::move(landings)) {}
  ~StagedRequest() override;
  bool test() override {
    if (done_) return true;
    return mpi_->test();
  }
  void wait() override;

 private:
  StagedMpiCommunicator* comm_;
  Staging* staging_;  // null once given back
  std::unique_ptr<Request> mpi_;
  std::vector<Landing> landings_;
  bool done_ = false;
};

class StagedMpiCommunicator final : public Communicator {
 public:
  StagedMpiCommunicator(MpiCommunicator& host, void* compute_stream)
      : host_(host),
        compute_(static_cast<cudaStream_t>(compute_stream)),
        rank_(host.rank()),
        size_(host.size()),
        host_name_(host.host()) {
    set_watchdog(host.watchdog());
    STAGED_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    try {
      STAGED_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    } catch (...) {
      cudaStreamDestroy(copy_);
      throw;
    }
  }
  ~StagedMpiCommunicator() override {
    // Staging memory may still be read by a copy; cudaFreeHost would wait, this says why.
    cudaStreamSynchronize(copy_);
    cudaEventDestroy(event_);
    cudaStreamDestroy(copy_);
  }
  StagedMpiCommunicator(const StagedMpiCommunicator&) = delete;
  StagedMpiCommunicator& operator=(const StagedMpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host() const override { return host_name_; }

  void barrier() override { host_.barrier(); }

  void all_to_all_v(const void* send, const std::vector<int64_t>& send_bytes,
                    const std::vector<int64_t>& send_displs, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override {
    all_to_all_v_start(send, send_bytes, send_displs, recv, recv_bytes, recv_displs)->wait();
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
    // Packed staging layout: peers in rank order, self left out.
    std::vector<int64_t> sc(size_, 0), sd(size_, 0), rc(size_, 0), rd(size_, 0);
    std::vector<Landing> landings;
    std::vector<Departure> departures;
    int64_t send_total = 0, recv_total = 0;
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      sc[p] = send_bytes[p];
      sd[p] = send_total;
      if (send_bytes[p] > 0) {
        departures.push_back({static_cast<const char*>(send) + send_displs[p], send_total,
                              send_bytes[p]});
      }
      send_total += send_bytes[p];
      rc[p] = recv_bytes[p];
      rd[p] = recv_total;
      if (recv_bytes[p] > 0) {
        landings.push_back({static_cast<char*>(recv) + recv_displs[p], recv_total, recv_bytes[p]});
      }
      recv_total += recv_bytes[p];
    }
    self_copy(static_cast<char*>(recv) + recv_displs[rank_],
              static_cast<const char*>(send) + send_displs[rank_], send_bytes[rank_]);
    Staging* staging = stage(departures, send_total, recv_total, "all_to_all_v staging");
    auto mpi = host_.all_to_all_v_start(staging->send.data(), sc, sd, staging->recv.data(), rc, rd);
    for (int p = 0; p < size_; ++p) {
      if (p != rank_) count_sent(p, send_bytes[p]);
    }
    return std::make_unique<StagedRequest>(this, staging, std::move(mpi), std::move(landings));
  }

  std::unique_ptr<Request> group_start(const std::vector<P2POp>& sends,
                                       const std::vector<P2POp>& recvs) override {
    std::vector<Departure> departures;
    std::vector<Landing> landings;
    int64_t send_total = 0, recv_total = 0;
    for (const P2POp& op : sends) {
      check_op(op, "group send");
      if (op.bytes == 0) continue;
      departures.push_back({op.buf, send_total, op.bytes});
      send_total += op.bytes;
      if (op.peer != rank_) count_sent(op.peer, op.bytes);
    }
    for (const P2POp& op : recvs) {
      check_op(op, "group recv");
      if (op.bytes == 0) continue;
      landings.push_back({op.buf, recv_total, op.bytes});
      recv_total += op.bytes;
    }
    Staging* staging = stage(departures, send_total, recv_total, "send/recv staging");
    std::vector<P2POp> staged_sends, staged_recvs;
    for (size_t i = 0, k = 0; i < sends.size(); ++i) {
      if (sends[i].bytes == 0) continue;
      staged_sends.push_back({sends[i].peer, staging->send.data() + departures[k++].staged,
                              sends[i].bytes});
    }
    for (size_t i = 0, k = 0; i < recvs.size(); ++i) {
      if (recvs[i].bytes == 0) continue;
      staged_recvs.push_back({recvs[i].peer, staging->recv.data() + landings[k++].staged,
                              recvs[i].bytes});
    }
    auto mpi = host_.group_start(staged_sends, staged_recvs);
    return std::make_unique<StagedRequest>(this, staging, std::move(mpi), std::move(landings));
  }

  void all_gather_v(const void* send, int64_t send_bytes, void* recv,
                    const std::vector<int64_t>& recv_bytes,
                    const std::vector<int64_t>& recv_displs) override {
    all_gather_v_start(send, send_bytes, recv, recv_bytes, recv_displs)->wait();
  }

  std::unique_ptr<Request> all_gather_v_start(const void* send, int64_t send_bytes, void* recv,
                                              const std::vector<int64_t>& recv_bytes,
                                              const std::vector<int64_t>& recv_displs) override {
    check_sizes(recv_bytes, "all_gather_v recv");
    check_sizes(recv_displs, "all_gather_v displacement");
    MAGI_CHECK(recv_bytes[rank_] == send_bytes, "all_gather_v: own part {} vs {} bytes",
               recv_bytes[rank_], send_bytes);
    // The own part is staged once and sent to every peer from the same pinned bytes.
    std::vector<int64_t> sc(size_, send_bytes), sd(size_, 0), rc(size_, 0), rd(size_, 0);
    sc[rank_] = 0;
    std::vector<Landing> landings;
    int64_t recv_total = 0;
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      rc[p] = recv_bytes[p];
      rd[p] = recv_total;
      if (recv_bytes[p] > 0) {
        landings.push_back({static_cast<char*>(recv) + recv_displs[p], recv_total, recv_bytes[p]});
      }
      recv_total += recv_bytes[p];
    }
    self_copy(static_cast<char*>(recv) + recv_displs[rank_], send, send_bytes);
    std::vector<Departure> departures;
    const int64_t staged_send = size_ > 1 ? send_bytes : 0;
    if (staged_send > 0) departures.push_back({send, 0, send_bytes});
    Staging* staging = stage(departures, staged_send, recv_total, "all_gather_v staging");
    auto mpi = host_.all_to_all_v_start(staging->send.data(), sc, sd, staging->recv.data(), rc, rd);
    for (int p = 0; p < size_; ++p) {
      if (p != rank_) count_sent(p, send_bytes);
    }
    return std::make_unique<StagedRequest>(this, staging, std::move(mpi), std::move(landings));
  }

  void all_reduce_sum(double* values, int n) override { host_.all_reduce_sum(values, n); }
  void all_reduce_max(double* values, int n) override { host_.all_reduce_max(values, n); }
  void all_reduce_sum(int64_t* values, int n) override { host_.all_reduce_sum(values, n); }
  void all_reduce_max(int64_t* values, int n) override { host_.all_reduce_max(values, n); }
  void broadcast(void* data, int64_t bytes, int root) override {
    host_.broadcast(data, bytes, root);
  }

  // Completes a request whose messages have arrived: received bytes to the device on the copy
  // stream, and the compute stream's later work after them.
  void land(const Staging& staging, const std::vector<Landing>& landings) {
    if (landings.empty()) return;
    for (const Landing& l : landings) {
      STAGED_CUDA_CHECK(cudaMemcpyAsync(l.dst, staging.recv.data() + l.staged,
                                        static_cast<size_t>(l.bytes), cudaMemcpyHostToDevice,
                                        copy_));
    }
    STAGED_CUDA_CHECK(cudaEventRecord(event_, copy_));
    STAGED_CUDA_CHECK(cudaStreamWaitEvent(compute_, event_, 0));
  }

  // Staging memory goes back to the pool once its MPI messages are done. Every device access
  // to staging memory is on the copy stream, and the next request that takes it synchronizes
  // that stream before MPI touches it, so pending host-to-device copies are no hazard.
  void release(Staging* staging) { staging->in_use = false; }

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

  void self_copy(void* dst, const void* src, int64_t bytes) {
    if (bytes == 0 || dst == src) return;
    STAGED_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes),
                                      cudaMemcpyDeviceToDevice, compute_));
  }

  // Takes staging memory of the sizes needed and fills its send part: the copy stream waits for
  // the compute stream's work so far, copies each departure to its offset, and the host waits
  // for that, so MPI reads finished bytes.
  Staging* stage(const std::vector<Departure>& departures, int64_t send_total, int64_t recv_total,
                 const char* what) {
    Staging* staging = nullptr;
    for (auto& s : pool_) {
      if (!s->in_use) {
        staging = s.get();
        break;
      }
    }
    if (!staging) {
      pool_.push_back(std::make_unique<Staging>());
      staging = pool_.back().get();
    }
    if (staging->send.capacity() < send_total || staging->recv.capacity() < recv_total) {
      // Earlier host-to-device copies may still read this memory.
      Watchdog::Wait wait(watchdog_, what);
      STAGED_CUDA_CHECK(cudaStreamSynchronize(copy_));
      staging->send.reserve(send_total, rank_, host_name_);
      staging->recv.reserve(recv_total, rank_, host_name_);
    }
    STAGED_CUDA_CHECK(cudaEventRecord(event_, compute_));
    STAGED_CUDA_CHECK(cudaStreamWaitEvent(copy_, event_, 0));
    for (const Departure& d : departures) {
      STAGED_CUDA_CHECK(cudaMemcpyAsync(staging->send.data() + d.staged, d.src,
                                        static_cast<size_t>(d.bytes), cudaMemcpyDeviceToHost,
                                        copy_));
    }
    STAGED_CUDA_CHECK(cudaEventRecord(event_, copy_));
    {
      Watchdog::Wait wait(watchdog_, what);
      STAGED_CUDA_CHECK(cudaEventSynchronize(event_));
    }
    staging->in_use = true;
    return staging;
  }

  MpiCommunicator& host_;
  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  // Reused for each ordering point: a wait on it is enqueued (or completed) before it is
  // recorded again.
  cudaEvent_t event_ = nullptr;
  int rank_;
  int size_;
  std::string host_name_;
  std::vector<std::unique_ptr<Staging>> pool_;
};

StagedRequest::~StagedRequest() {
  // A pending request must not outlive its buffers: complete it (errors are lost here).
  if (!done_) {
    try {
      wait();
    } catch (...) {
    }
  }
  if (staging_) comm_->release(staging_);
}

void StagedRequest::wait() {
  if (done_) return;
  mpi_->wait();
  done_ = true;
  comm_->land(*staging_, landings_);
  comm_->release(staging_);
  staging_ = nullptr;
}

}  // namespace

std::unique_ptr<Communicator> make_staged_mpi_communicator(MpiCommunicator& host,
                                                           void* compute_stream) {
  return std::make_unique<StagedMpiCommunicator>(host, compute_stream);
}

}  // namespace magi
