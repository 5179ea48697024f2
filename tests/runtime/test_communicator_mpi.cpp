// MpiCommunicator under mpirun -np 3: every operation against values each rank can predict,
// byte counting (peers only, never self), splitting, and errors quoting the failing call.
#include "core/base/error.h"
#include "runtime/mpi_communicator.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

namespace magi {
namespace {

// The byte rank `src` sends rank `dst` at position i.
char pattern(int src, int dst, int64_t i) { return static_cast<char>(src * 31 + dst * 7 + i % 13); }

TEST(MpiCommunicator, RankSizeHostBarrier) {
  auto c = MpiCommunicator::world();
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ(c->size(), world);
  EXPECT_GE(c->rank(), 0);
  EXPECT_LT(c->rank(), c->size());
  EXPECT_FALSE(c->host().empty());
  c->barrier();
}

// Rank s sends (s + d + 1) * 5 bytes to rank d (self included), with gaps in both buffers.
void all_to_all_case(bool nonblocking) {
  auto c = MpiCommunicator::world();
  const int P = c->size(), r = c->rank();
  std::vector<int64_t> sb(P), sd(P), rb(P), rd(P);
  int64_t so = 0, ro = 0;
  for (int p = 0; p < P; ++p) {
    sb[p] = (r + p + 1) * 5;
    sd[p] = so + 3;
    so += sb[p] + 3;
    rb[p] = (p + r + 1) * 5;
    rd[p] = ro + 2;
    ro += rb[p] + 2;
  }
  std::vector<char> send(so), recv(ro, 0);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < sb[p]; ++i) send[sd[p] + i] = pattern(r, p, i);
  }
  const int64_t before = c->sent_bytes();
  std::vector<int64_t> before_to(P);
  for (int p = 0; p < P; ++p) before_to[p] = c->sent_bytes_to(p);
  if (nonblocking) {
    auto req = c->all_to_all_v_start(send.data(), sb, sd, recv.data(), rb, rd);
    while (!req->test()) {
    }
    req->wait();
  } else {
    c->all_to_all_v(send.data(), sb, sd, recv.data(), rb, rd);
  }
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < rb[p]; ++i) ASSERT_EQ(recv[rd[p] + i], pattern(p, r, i)) << "from " << p;
  }
  int64_t expected = 0;
  for (int p = 0; p < P; ++p) {
    if (p != r) expected += sb[p];
    EXPECT_EQ(c->sent_bytes_to(p) - before_to[p], p != r ? sb[p] : 0) << "to " << p;
  }
  EXPECT_EQ(c->sent_bytes() - before, expected);
}

TEST(MpiCommunicator, AllToAllV) { all_to_all_case(false); }
TEST(MpiCommunicator, AllToAllVNonBlocking) { all_to_all_case(true); }

TEST(MpiCommunicator, GroupedSendRecvRing) {
  auto c = MpiCommunicator::world();
  const int P = c->size(), r = c->rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  // Two messages to each neighbour in one group; order between a pair is preserved.
  std::vector<char> a(100, static_cast<char>(r)), b(7, static_cast<char>(r + 50));
  std::vector<char> ra(100, -1), rbuf(7, -1);
  const int64_t before = c->sent_bytes(), before_next = c->sent_bytes_to(next);
  auto req = c->group_start({{next, a.data(), 100}, {next, b.data(), 7}},
                            {{prev, ra.data(), 100}, {prev, rbuf.data(), 7}});
  req->wait();
  EXPECT_TRUE(req->test());
  for (char x : ra) EXPECT_EQ(x, static_cast<char>(prev));
  for (char x : rbuf) EXPECT_EQ(x, static_cast<char>(prev + 50));
  EXPECT_EQ(c->sent_bytes() - before, P > 1 ? 107 : 0);
  EXPECT_EQ(c->sent_bytes_to(next) - before_next, P > 1 ? 107 : 0);
  // Zero-byte ops are skipped.
  c->group({{next, nullptr, 0}}, {{prev, nullptr, 0}});
}

TEST(MpiCommunicator, AllGatherAndAllGatherV) {
  auto c = MpiCommunicator::world();
  const int P = c->size(), r = c->rank();
  int64_t mine = r * 10 + 1;
  std::vector<int64_t> all(P);
  c->all_gather(&mine, sizeof mine, all.data());
  for (int p = 0; p < P; ++p) EXPECT_EQ(all[p], p * 10 + 1);
  std::vector<int64_t> counts(P), displs(P);
  int64_t off = 0;
  for (int p = 0; p < P; ++p) {
    counts[p] = p + 1;
    displs[p] = off;
    off += counts[p];
  }
  std::vector<char> send(r + 1, static_cast<char>('a' + r)), recv(off, 0);
  const int64_t before = c->sent_bytes();
  c->all_gather_v(send.data(), r + 1, recv.data(), counts, displs);
  for (int p = 0; p < P; ++p) {
    for (int64_t i = 0; i < counts[p]; ++i) EXPECT_EQ(recv[displs[p] + i], 'a' + p);
  }
  EXPECT_EQ(c->sent_bytes() - before, (r + 1) * (P - 1));
}

TEST(MpiCommunicator, AllReducesAndBroadcast) {
  auto c = MpiCommunicator::world();
  const int P = c->size(), r = c->rank();
  double d[2] = {1.5 * r, -1.0 * r};
  c->all_reduce_sum(d, 2);
  EXPECT_DOUBLE_EQ(d[0], 1.5 * P * (P - 1) / 2);
  double m[1] = {static_cast<double>(r)};
  c->all_reduce_max(m, 1);
  EXPECT_DOUBLE_EQ(m[0], P - 1);
  int64_t i[2] = {r, int64_t{1} << 40};
  c->all_reduce_sum(i, 2);
  EXPECT_EQ(i[0], int64_t{P} * (P - 1) / 2);
  EXPECT_EQ(i[1], (int64_t{1} << 40) * P);
  int64_t im[1] = {-r};
  c->all_reduce_max(im, 1);
  EXPECT_EQ(im[0], 0);
  std::vector<char> buf(1000, r == P - 1 ? 'z' : 0);
  c->broadcast(buf.data(), 1000, P - 1);
  for (char x : buf) EXPECT_EQ(x, 'z');
}

TEST(MpiCommunicator, SplitFirst) {
  auto world = MpiCommunicator::world();
  const int P = world->size();
  for (int n = 1; n <= P; ++n) {
    auto sub = world->split_first(n);
    if (world->rank() < n) {
      ASSERT_NE(sub, nullptr);
      EXPECT_EQ(sub->size(), n);
      EXPECT_EQ(sub->rank(), world->rank());
      int64_t x = 1;
      sub->all_reduce_sum(&x, 1);
      EXPECT_EQ(x, n);
    } else {
      EXPECT_EQ(sub, nullptr);
    }
    world->barrier();
  }
  EXPECT_THROW(world->split_first(P + 1), RuntimeError);
}

TEST(MpiCommunicator, FailingCallThrowsRuntimeErrorQuotingIt) {
  auto c = MpiCommunicator::world();
  // A receive from a rank that does not exist: MPI returns an error (MPI_ERRORS_RETURN).
  try {
    char x = 0;
    c->group({}, {{c->size() + 5, &x, 1}});
    FAIL() << "no throw";
  } catch (const InternalError& e) {
    // the peer is checked before MPI sees it
    EXPECT_NE(std::string(e.what()).find("recv from rank"), std::string::npos);
  }
  try {
    MAGI_MPI_CHECK(MPI_Barrier(MPI_COMM_NULL));
    FAIL() << "no throw";
  } catch (const RuntimeError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("MPI_Barrier(MPI_COMM_NULL)"), std::string::npos) << w;
    EXPECT_NE(w.find("rank " + std::to_string(c->rank())), std::string::npos) << w;
    EXPECT_NE(w.find(c->host()), std::string::npos) << w;
  }
}

}  // namespace
}  // namespace magi
