// The communicators for CUDA device buffers under mpirun: the MPI one staged through pinned host
// memory (np 3, ranks sharing GPUs) and the NCCL one (np 1: self copies only; np 2 where there is
// a GPU per rank). Every operation against bytes each rank can predict, read back through the
// compute stream after wait(); sends ordered after the compute stream's earlier work; bytes
// counted as MpiCommunicator counts them. Every test skips where no CUDA device is visible.
#include "core/base/error.h"
#include "runtime/cuda/nccl_communicator.h"
#include "runtime/cuda/staged_mpi_communicator.h"
#include "runtime/mpi_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace magi {
namespace {

constexpr unsigned char kUntouched = 0xEE;  // receive buffers start as this; gaps must keep it

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

int cuda_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// The byte rank `src` sends with `tag` (the destination, or a group op's index) at position i.
unsigned char pattern(int src, int tag, int64_t i) {
  return static_cast<unsigned char>(src * 37 + tag * 11 + i % 251);
}

// Device memory, freed with the handle.
struct DeviceBytes {
  explicit DeviceBytes(int64_t n) : bytes(n) {
    if (cudaMalloc(&ptr, static_cast<size_t>(n > 0 ? n : 1)) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceBytes() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  char* data() const { return static_cast<char*>(ptr); }
  void* ptr = nullptr;
  int64_t bytes;
};

class DeviceCommTest : public ::testing::Test {
 protected:
  virtual std::string skip_reason(int ranks) = 0;
  virtual std::unique_ptr<Communicator> make(MpiCommunicator& host, int device) = 0;

  void SetUp() override {
    host_ = MpiCommunicator::world();
    const int devices = cuda_device_count();
    if (devices == 0) GTEST_SKIP() << "no CUDA device visible";
    const std::string reason = skip_reason(host_->size());
    if (!reason.empty()) GTEST_SKIP() << reason;
    device_ = host_->rank() % devices;
    CUDA_OK(cudaSetDevice(device_));
    // Non-blocking: nothing orders it with the legacy default stream behind the test's back.
    CUDA_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    comm_ = make(*host_, device_);
  }
  void TearDown() override {
    comm_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  // Host bytes to the device, on the compute stream (the host vector outlives the copy).
  void upload(const std::vector<unsigned char>& host, const DeviceBytes& dst) {
    ASSERT_NE(dst.ptr, nullptr);
    CUDA_OK(cudaMemcpyAsync(dst.ptr, host.data(), host.size(), cudaMemcpyHostToDevice, stream_));
    CUDA_OK(cudaStreamSynchronize(stream_));
  }
  void fill(const DeviceBytes& dst, unsigned char value) {
    ASSERT_NE(dst.ptr, nullptr);
    CUDA_OK(cudaMemsetAsync(dst.ptr, value, static_cast<size_t>(dst.bytes), stream_));
    CUDA_OK(cudaStreamSynchronize(stream_));
  }
  // Reads the device bytes through the compute stream, after whatever wait() ordered there.
  void download(const DeviceBytes& src, std::vector<unsigned char>& host) {
    host.assign(static_cast<size_t>(src.bytes), 0);
    CUDA_OK(cudaMemcpyAsync(host.data(), src.ptr, host.size(), cudaMemcpyDeviceToHost, stream_));
    CUDA_OK(cudaStreamSynchronize(stream_));
  }

  void all_to_all_case(bool nonblocking);
  void group_case();
  void all_gather_case(bool nonblocking);
  void equal_all_gather_case();
  void ordering_case();
  void host_calls_case();

  std::unique_ptr<MpiCommunicator> host_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Communicator> comm_;
};

// Bytes rank s sends rank d in all_to_all_v: ragged, with zeros to peers and to self (np 3).
int64_t a2a_size(int s, int d) {
  if ((s + d) % 4 == 1) return 0;
  return 1 + ((s + 2 * d + 1) % 3) * 100003 + (s * d % 2) * 3;
}

void DeviceCommTest::all_to_all_case(bool nonblocking) {
  const int P = comm_->size(), r = comm_->rank();
  std::vector<int64_t> sb(P), sd(P), rb(P), rd(P);
  int64_t so = 0, ro = 0;
  for (int p = 0; p < P; ++p) {
    sb[p] = a2a_size(r, p);
    sd[p] = so + 16;
    so += sb[p] + 16;
    rb[p] = a2a_size(p, r);
    rd[p] = ro + 8;
    ro += rb[p] + 8;
  }
  std::vector<unsigned char> send_host(static_cast<size_t>(so), 0);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < sb[p]; ++i) send_host[sd[p] + i] = pattern(r, p, i);
  }
  DeviceBytes send(so), recv(ro);
  upload(send_host, send);
  fill(recv, kUntouched);
  const int64_t before = comm_->sent_bytes();
  if (nonblocking) {
    auto req = comm_->all_to_all_v_start(send.ptr, sb, sd, recv.ptr, rb, rd);
    while (!req->test()) std::this_thread::yield();
    req->wait();
  } else {
    comm_->all_to_all_v(send.ptr, sb, sd, recv.ptr, rb, rd);
  }
  std::vector<unsigned char> got;
  download(recv, got);
  std::vector<unsigned char> want(static_cast<size_t>(ro), kUntouched);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < rb[p]; ++i) want[rd[p] + i] = pattern(p, r, i);
  }
  for (int64_t i = 0; i < ro; ++i) ASSERT_EQ(got[i], want[i]) << "received byte " << i;
  int64_t expected = 0;
  for (int p = 0; p < P; ++p) {
    if (p != r) expected += sb[p];
  }
  EXPECT_EQ(comm_->sent_bytes() - before, expected);
}

// Rank r sends three ops to r+1 and three to r+2 (mod P), the middle one of each empty; the
// receiver posts the same list in the same order. At np 1 and 2 some peers are the rank itself.
int64_t group_size(int src, int k, int j) { return j == 1 ? 0 : 4000 + 977 * j + 131 * k + src; }

void DeviceCommTest::group_case() {
  const int P = comm_->size(), r = comm_->rank();
  struct Op {
    int peer, tag;
    int64_t bytes, offset;
  };
  std::vector<Op> sends, recvs;
  int64_t so = 0, ro = 0;
  for (int k = 1; k <= 2; ++k) {
    for (int j = 0; j < 3; ++j) {
      const int to = (r + k) % P, from = (r - k % P + P) % P;
      sends.push_back({to, 3 * k + j, group_size(r, k, j), so});
      so += group_size(r, k, j) + 4;
      recvs.push_back({from, 3 * k + j, group_size(from, k, j), ro});
      ro += group_size(from, k, j) + 4;
    }
  }
  std::vector<unsigned char> send_host(static_cast<size_t>(so), 0);
  for (const Op& op : sends) {
    for (int64_t i = 0; i < op.bytes; ++i) send_host[op.offset + i] = pattern(r, op.tag, i);
  }
  DeviceBytes send(so), recv(ro);
  upload(send_host, send);
  fill(recv, kUntouched);
  std::vector<P2POp> s, v;
  for (const Op& op : sends) s.push_back({op.peer, send.data() + op.offset, op.bytes});
  for (const Op& op : recvs) v.push_back({op.peer, recv.data() + op.offset, op.bytes});
  const int64_t before = comm_->sent_bytes();
  std::vector<int64_t> before_to(P);
  for (int p = 0; p < P; ++p) before_to[p] = comm_->sent_bytes_to(p);
  comm_->group(s, v);
  std::vector<unsigned char> got;
  download(recv, got);
  std::vector<unsigned char> want(static_cast<size_t>(ro), kUntouched);
  for (const Op& op : recvs) {
    for (int64_t i = 0; i < op.bytes; ++i) want[op.offset + i] = pattern(op.peer, op.tag, i);
  }
  for (int64_t i = 0; i < ro; ++i) ASSERT_EQ(got[i], want[i]) << "received byte " << i;
  int64_t expected = 0;
  for (const Op& op : sends) {
    if (op.peer != r) expected += op.bytes;
  }
  EXPECT_EQ(comm_->sent_bytes() - before, expected);
  for (int p = 0; p < P; ++p) {
    int64_t to_p = 0;
    for (const Op& op : sends) {
      if (op.peer == p && p != r) to_p += op.bytes;
    }
    EXPECT_EQ(comm_->sent_bytes_to(p) - before_to[p], to_p) << "to " << p;
  }
}

// Rank p contributes gather_size(p) bytes (rank 1's part is empty), laid out with gaps.
int64_t gather_size(int p) { return p == 1 ? 0 : 50000 * (p + 1) + p; }

void DeviceCommTest::all_gather_case(bool nonblocking) {
  const int P = comm_->size(), r = comm_->rank();
  std::vector<int64_t> rb(P), rd(P);
  int64_t ro = 0;
  for (int p = 0; p < P; ++p) {
    rb[p] = gather_size(p);
    rd[p] = ro + 24;
    ro += rb[p] + 24;
  }
  std::vector<unsigned char> send_host(static_cast<size_t>(rb[r]));
  for (int64_t i = 0; i < rb[r]; ++i) send_host[i] = pattern(r, 0, i);
  DeviceBytes send(rb[r]), recv(ro);
  if (rb[r] > 0) upload(send_host, send);
  fill(recv, kUntouched);
  const int64_t before = comm_->sent_bytes();
  if (nonblocking) {
    auto req = comm_->all_gather_v_start(send.ptr, rb[r], recv.ptr, rb, rd);
    while (!req->test()) std::this_thread::yield();
    req->wait();
  } else {
    comm_->all_gather_v(send.ptr, rb[r], recv.ptr, rb, rd);
  }
  std::vector<unsigned char> got;
  download(recv, got);
  std::vector<unsigned char> want(static_cast<size_t>(ro), kUntouched);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < rb[p]; ++i) want[rd[p] + i] = pattern(p, 0, i);
  }
  for (int64_t i = 0; i < ro; ++i) ASSERT_EQ(got[i], want[i]) << "received byte " << i;
  EXPECT_EQ(comm_->sent_bytes() - before, rb[r] * (P - 1));
}

// Equal parts back to back (NCCL: one ncclAllGather).
void DeviceCommTest::equal_all_gather_case() {
  const int P = comm_->size(), r = comm_->rank();
  const int64_t n = 65537;
  std::vector<unsigned char> send_host(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) send_host[i] = pattern(r, 1, i);
  DeviceBytes send(n), recv(n * P);
  upload(send_host, send);
  fill(recv, kUntouched);
  const int64_t before = comm_->sent_bytes();
  comm_->all_gather(send.ptr, n, recv.ptr);
  std::vector<unsigned char> got;
  download(recv, got);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[p * n + i], pattern(p, 1, i)) << "from rank " << p << ", byte " << i;
    }
  }
  EXPECT_EQ(comm_->sent_bytes() - before, n * (P - 1));
}

// The compute stream is held for 200 ms by a host function, then a memset writes the send
// buffer; the call right after must send the memset's bytes, not the stale ones, and a read of
// the receive buffer on the compute stream after wait() must see what arrived.
void DeviceCommTest::ordering_case() {
  const int P = comm_->size(), r = comm_->rank();
  const int64_t n = 1 << 20;
  std::vector<int64_t> counts(P, n), displs(P);
  for (int p = 0; p < P; ++p) displs[p] = p * n;
  DeviceBytes send(n * P), recv(n * P);
  fill(send, 0x11);
  fill(recv, kUntouched);
  CUDA_OK(cudaLaunchHostFunc(
      stream_, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(200)); },
      nullptr));
  CUDA_OK(cudaMemsetAsync(send.ptr, 0x40 + r, static_cast<size_t>(n * P), stream_));
  auto req = comm_->all_to_all_v_start(send.ptr, counts, displs, recv.ptr, counts, displs);
  req->wait();
  std::vector<unsigned char> got;
  download(recv, got);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[p * n + i], 0x40 + p) << "from rank " << p << ", byte " << i;
    }
  }
}

// Host-memory calls go to the host communicator; a healthy communicator has no async error.
void DeviceCommTest::host_calls_case() {
  const int P = comm_->size(), r = comm_->rank();
  EXPECT_EQ(comm_->rank(), host_->rank());
  EXPECT_EQ(comm_->size(), host_->size());
  EXPECT_EQ(comm_->host(), host_->host());
  comm_->barrier();
  int64_t sum = r + 1;
  comm_->all_reduce_sum(&sum, 1);
  EXPECT_EQ(sum, int64_t{P} * (P + 1) / 2);
  double mx = r;
  comm_->all_reduce_max(&mx, 1);
  EXPECT_EQ(mx, P - 1);
  int64_t value = r == 0 ? 4242 : 0;
  comm_->broadcast(&value, sizeof value, 0);
  EXPECT_EQ(value, 4242);
  EXPECT_NO_THROW(comm_->check_async_errors());
  EXPECT_EQ(comm_->sent_bytes(), 0);
}

class StagedMpi : public DeviceCommTest {
 protected:
  std::string skip_reason(int) override { return {}; }
  std::unique_ptr<Communicator> make(MpiCommunicator& host, int) override {
    return make_staged_mpi_communicator(host, stream_);
  }
};

class Nccl : public DeviceCommTest {
 protected:
  std::string skip_reason(int ranks) override {
    if (!nccl_built()) return "this build has no NCCL";
    const int devices = cuda_device_count();
    if (devices < ranks) {
      return "NCCL needs a GPU per rank: " + std::to_string(devices) + " visible for " +
             std::to_string(ranks) + " ranks";
    }
    return {};
  }
  std::unique_ptr<Communicator> make(MpiCommunicator& host, int device) override {
    return make_nccl_communicator(host, stream_, device);
  }
};

TEST_F(StagedMpi, HostCallsAndHealth) { host_calls_case(); }
TEST_F(StagedMpi, AllToAllV) { all_to_all_case(false); }
TEST_F(StagedMpi, AllToAllVStart) { all_to_all_case(true); }
TEST_F(StagedMpi, Group) { group_case(); }
TEST_F(StagedMpi, AllGatherV) { all_gather_case(false); }
TEST_F(StagedMpi, AllGatherVStart) { all_gather_case(true); }
TEST_F(StagedMpi, AllGatherEqual) { equal_all_gather_case(); }
TEST_F(StagedMpi, SendsFollowComputeAndWaitOrdersReads) { ordering_case(); }
// Warm staging is reused: the same calls again, after smaller and larger ones, stay exact.
TEST_F(StagedMpi, RepeatedCallsReuseStaging) {
  for (int round = 0; round < 3; ++round) {
    all_to_all_case(round % 2 == 1);
    group_case();
    all_gather_case(round % 2 == 0);
    equal_all_gather_case();
  }
}

TEST_F(Nccl, HostCallsAndHealth) { host_calls_case(); }
TEST_F(Nccl, AllToAllV) { all_to_all_case(false); }
TEST_F(Nccl, AllToAllVStart) { all_to_all_case(true); }
TEST_F(Nccl, Group) { group_case(); }
TEST_F(Nccl, AllGatherV) { all_gather_case(false); }
TEST_F(Nccl, AllGatherVStart) { all_gather_case(true); }
TEST_F(Nccl, AllGatherEqual) { equal_all_gather_case(); }
TEST_F(Nccl, SendsFollowComputeAndWaitOrdersReads) { ordering_case(); }
TEST_F(Nccl, NoAsyncErrorAfterTraffic) {
  all_to_all_case(true);
  EXPECT_NO_THROW(comm_->check_async_errors());
}

// A build without NCCL says how to run instead.
TEST(NcclBuild, WithoutNcclTheErrorNamesTheAlternative) {
  if (nccl_built()) GTEST_SKIP() << "this build has NCCL";
  auto host = MpiCommunicator::world();
  try {
    make_nccl_communicator(*host, nullptr, 0);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--comm mpi"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace magi
