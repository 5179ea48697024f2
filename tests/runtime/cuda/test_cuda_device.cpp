// The CUDA device (lib/runtime/cuda/cuda_device.h) against float64 host loops and the float64 CPU
// reference kernel, for bf16 and fp16 devices: row copies and adds over ragged segments with
// strides, column offsets and every dtype pair; contiguous copy/add/fill; the LSE merge with -inf
// on either or both sides; upload/download; attention forward and backward (ragged sizes, an empty
// slice list, rows that see nothing); compute/wait timing; memory accounting.
// Inputs are random each run (seed printed, MAGI_TEST_SEED replays it); every mismatch names the
// op, the dtypes, the element and both values. Skips where no CUDA device is visible.
#include "runtime/cuda/cuda_device.h"

#include "cpu/reference_attention.h"

#include "common/test_seed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using magi::Buffer;
using magi::Device;
using magi::DType;
using magi::RowCopy;
using magi::kernels::AttnShape;
using magi::kernels::KernelSlice;
using magi::kernels::KernelSliceType;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Rounds to the dtype on the host, nearest even (bf16 by bits, fp16 through _Float16).
float round_to(DType dt, float f) {
  if (dt == DType::fp32) return f;
  if (dt == DType::fp16) return static_cast<float>(static_cast<_Float16>(f));
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}
// Relative spacing of the dtype (one unit in the last place at 1.0, halved: the rounding error).
double half_ulp(DType dt) { return dt == DType::bf16 ? 1.0 / 256 : dt == DType::fp16 ? 1.0 / 2048 : 1.0 / (1 << 24); }
// Absolute rounding error below the dtype's normal range: half the subnormal step (fp16's 2^-24;
// bf16 and fp32 share fp32's exponent range, where it is below anything these tests produce).
double half_subnormal(DType dt) { return dt == DType::fp16 ? std::ldexp(1.0, -25) : std::ldexp(1.0, -150); }

std::string name(DType dt) { return std::string(magi::to_string(dt)); }

std::vector<float> random_values(std::mt19937_64& rng, size_t n, DType dt, float scale = 2.f) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = round_to(dt, dist(rng));
  return v;
}

class CudaDeviceTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (magi::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
    dev_ = magi::make_cuda_device(0, GetParam());
  }
  Buffer upload(const std::vector<float>& host, DType dt) {
    Buffer b = dev_->alloc(static_cast<int64_t>(host.size()), dt);
    dev_->upload(host.data(), b, 0, static_cast<int64_t>(host.size()));
    dev_->synchronize();  // the host vector may go away after this
    return b;
  }
  std::vector<float> download(const Buffer& b) {
    std::vector<float> h(static_cast<size_t>(b.elems()));
    dev_->download(b, 0, b.elems(), h.data());
    return h;
  }
  std::unique_ptr<Device> dev_;
};

const DType kAll[] = {DType::fp32, DType::bf16, DType::fp16};

// Compares element by element: |got - want| <= tol(i); reports the first 5 mismatches and a count.
template <typename Tol>
void expect_close(const std::vector<float>& got, const std::vector<double>& want, Tol tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same_inf = std::isinf(want[i]) && static_cast<double>(got[i]) == want[i];
    if (same_inf) continue;
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol(i))) {
      if (bad < 5)
        first << "\n  [" << i << "] got " << got[i] << ", want " << want[i] << " (tol " << tol(i) << ")";
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ" << first.str();
}

TEST(CudaDeviceConfig, Fp32StorageRefusedNamingIt) {
  try {
    magi::make_cuda_device(0, DType::fp32);
    FAIL() << "fp32 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("fp32"), std::string::npos) << e.what();
  }
}

TEST(CudaDeviceConfig, CountNeverThrows) { EXPECT_GE(magi::cuda_device_count(), 0); }

TEST_P(CudaDeviceTest, DescriptionNamesTheDtype) {
  EXPECT_EQ(dev_->dtype(), GetParam());
  EXPECT_NE(dev_->description().find(name(GetParam())), std::string::npos) << dev_->description();
  EXPECT_NE(dev_->stream(), nullptr);
  EXPECT_THROW(magi::make_cuda_device(magi::cuda_device_count(), GetParam()), std::invalid_argument);
}

TEST_P(CudaDeviceTest, UploadDownloadRoundTripIsExact) {
  const uint64_t seed = magi::testing::fresh_test_seed("CudaDeviceTest.UploadDownloadRoundTripIsExact");
  std::mt19937_64 rng(seed);
  for (DType dt : kAll) {
    SCOPED_TRACE("buffer " + name(dt) + ", MAGI_TEST_SEED=" + std::to_string(seed));
    const std::vector<float> h = random_values(rng, 1000, dt);
    Buffer b = dev_->alloc(1010, dt);
    dev_->upload(h.data(), b, 7, 1000);
    std::vector<float> got(1010, 123.f);
    dev_->download(b, 0, 1010, got.data());
    std::vector<double> want(1010, 0.0);
    for (size_t i = 0; i < h.size(); ++i) want[i + 7] = h[i];
    expect_close(got, want, [](size_t) { return 0.0; }, "upload at 7 / download");
    // Rounding happens on the device, nearest even, as on the host.
    const std::vector<float> raw = {1.00390625f + 1e-4f, -3.14159265f, 65504.f, 1e-3f};
    Buffer r = dev_->alloc(4, dt);
    dev_->upload(raw.data(), r, 0, 4);
    dev_->synchronize();
    std::vector<double> want_r;
    for (float x : raw) want_r.push_back(round_to(dt, x));
    expect_close(download(r), want_r, [](size_t) { return 0.0; }, "upload rounding");
  }
  Buffer b = dev_->alloc(4, GetParam());
  float x[5] = {};
  EXPECT_THROW(dev_->upload(x, b, 1, 4), std::invalid_argument);
  EXPECT_THROW(dev_->download(b, -1, 2, x), std::invalid_argument);
}

TEST_P(CudaDeviceTest, AllocIsZeroedAndAccounted) {
  const int64_t m0 = dev_->memory_bytes();
  const int64_t p0 = dev_->peak_memory_bytes();
  {
    Buffer b = dev_->alloc(1 << 20, GetParam());
    EXPECT_EQ(dev_->memory_bytes(), m0 + (2 << 20));
    EXPECT_GE(dev_->peak_memory_bytes(), std::max(p0, m0 + (2 << 20)));
    Buffer empty = dev_->alloc(0, DType::fp32);
    EXPECT_EQ(empty.elems(), 0);
    EXPECT_EQ(dev_->memory_bytes(), m0 + (2 << 20));
    const std::vector<float> h = download(b);
    int64_t nonzero = 0;
    for (float v : h) nonzero += v != 0.f;
    EXPECT_EQ(nonzero, 0) << "alloc not zero-filled";
  }
  EXPECT_EQ(dev_->memory_bytes(), m0) << "freed buffer still counted";
  EXPECT_GE(dev_->peak_memory_bytes(), m0 + (2 << 20)) << "peak fell";
  dev_->reset_peak_memory();
  EXPECT_EQ(dev_->peak_memory_bytes(), m0) << "reset_peak_memory: the peak restarts from what is held";

  // Row maps' device copies and attention ops' workspaces count too.
  {
    magi::RowMap map = dev_->prepare({{0, 0, 3}, {5, 9, 2}});
    EXPECT_GT(dev_->memory_bytes(), m0);
    EXPECT_EQ(dev_->prepare({}).on_device(), nullptr);
  }
  EXPECT_EQ(dev_->memory_bytes(), m0);
  {
    const AttnShape sh{256, 256, 2, 1, 64};
    auto op = dev_->attention(sh, {{0, 256, 0, 256, KernelSliceType::causal}});
    EXPECT_GT(op->workspace_bytes(), 0);
    EXPECT_EQ(dev_->memory_bytes(), m0 + op->workspace_bytes());
    const DType dt = GetParam();
    Buffer q = dev_->alloc(256 * 2 * 64, dt), k = dev_->alloc(256 * 64, dt), v = dev_->alloc(256 * 64, dt);
    Buffer o = dev_->alloc(256 * 2 * 64, dt), lse = dev_->alloc(256 * 2, DType::fp32);
    Buffer dq = dev_->alloc(256 * 2 * 64, dt), dk = dev_->alloc(256 * 64, dt), dv = dev_->alloc(256 * 64, dt);
    const int64_t buffers = dev_->memory_bytes() - m0 - op->workspace_bytes();
    const int64_t before = op->workspace_bytes();
    op->forward(q.data(), k.data(), v.data(), o.data(), lse.f32(), magi::kernels::Into::write);
    op->backward(q.data(), k.data(), v.data(), o.data(), o.data(), lse.f32(), dq.data(), dk.data(), dv.data(),
                 magi::kernels::Into::write);
    dev_->synchronize();
    EXPECT_GT(op->workspace_bytes(), before) << "the backward's workspace is not in workspace_bytes()";
    const int64_t delta = 256 * 2 * 4;  // Delta of every row, which the device's ops of a pass share
    EXPECT_EQ(dev_->memory_bytes(), m0 + buffers + op->workspace_bytes() + delta);
  }
  EXPECT_EQ(dev_->memory_bytes(), m0) << "the shared Delta outlived the last attention op";
}

TEST_P(CudaDeviceTest, CopyAddFillContiguous) {
  const uint64_t seed = magi::testing::fresh_test_seed("CudaDeviceTest.CopyAddFillContiguous");
  std::mt19937_64 rng(seed);
  for (DType s : kAll) {
    for (DType d : kAll) {
      SCOPED_TRACE(name(s) + " -> " + name(d) + ", MAGI_TEST_SEED=" + std::to_string(seed));
      const size_t n = 1 + rng() % 5000;
      const std::vector<float> hs = random_values(rng, n, s), hd = random_values(rng, n, d);
      Buffer bs = upload(hs, s), bd = upload(hd, d);
      dev_->copy(bs.data(), s, bd.data(), d, static_cast<int64_t>(n));
      std::vector<double> want(n);
      for (size_t i = 0; i < n; ++i) want[i] = round_to(d, hs[i]);
      expect_close(download(bd), want, [](size_t) { return 0.0; }, "copy");

      Buffer acc = upload(hd, d);
      dev_->add(bs.data(), s, acc.data(), d, static_cast<int64_t>(n));
      for (size_t i = 0; i < n; ++i) want[i] = static_cast<double>(hd[i]) + hs[i];
      // One rounding to d of an fp32 sum: within half an ulp of d plus fp32's.
      expect_close(download(acc), want,
                   [&](size_t i) { return (half_ulp(d) + 1.0 / (1 << 23)) * std::fabs(want[i]) + half_subnormal(d); }, "add");
    }
    SCOPED_TRACE("fill " + name(s));
    Buffer b = dev_->alloc(777, s);
    dev_->fill(b.at(10), s, 700, -2.5f);
    std::vector<double> want(777, 0.0);
    for (size_t i = 10; i < 710; ++i) want[i] = -2.5;
    expect_close(download(b), want, [](size_t) { return 0.0; }, "fill");
    EXPECT_THROW(dev_->fill(b.data(), s, -1, 0.f), std::invalid_argument);
    EXPECT_THROW(dev_->copy(b.data(), s, b.data(), s, -1), std::invalid_argument);
  }
}

// Ragged segments (including empty ones) copied or added between strided, column-offset rows.
TEST_P(CudaDeviceTest, CopyAndAddRows) {
  const uint64_t seed = magi::testing::fresh_test_seed("CudaDeviceTest.CopyAndAddRows");
  std::mt19937_64 rng(seed);
  for (DType s : kAll) {
    for (DType d : kAll) {
      for (int trial = 0; trial < 3; ++trial) {
        const int64_t width = trial == 0 ? 1 : trial == 1 ? 64 + rng() % 300 : 1024 + rng() % 2000;
        const int64_t src_col = rng() % 5, dst_col = rng() % 7;
        const int64_t src_stride = width + src_col + rng() % 9, dst_stride = width + dst_col + rng() % 9;
        // Disjoint destination rows (a permutation of blocks), sources anywhere.
        std::vector<RowCopy> segs;
        int64_t dst_row = 0, src_rows = 40;
        const int nseg = 1 + static_cast<int>(rng() % 12);
        for (int i = 0; i < nseg; ++i) {
          const int64_t rows = (i % 4 == 2) ? 0 : 1 + static_cast<int64_t>(rng() % 70);
          segs.push_back({static_cast<int64_t>(rng() % src_rows), dst_row + static_cast<int64_t>(rng() % 3), rows});
          dst_row = segs.back().dst_row + rows;
        }
        for (auto& sg : segs) src_rows = std::max(src_rows, sg.src_row + sg.rows);
        const int64_t dst_rows = dst_row + 2;
        const std::vector<float> hs = random_values(rng, static_cast<size_t>(src_rows * src_stride), s);
        const std::vector<float> hd = random_values(rng, static_cast<size_t>(dst_rows * dst_stride), d);
        std::ostringstream os;
        os << name(s) << " -> " << name(d) << ", width " << width << ", src stride/col " << src_stride << "/"
           << src_col << ", dst stride/col " << dst_stride << "/" << dst_col << ", " << segs.size()
           << " segments, MAGI_TEST_SEED=" << seed;
        SCOPED_TRACE(os.str());
        const magi::RowMap map = dev_->prepare(segs);
        for (int add = 0; add < 2; ++add) {
          Buffer bs = upload(hs, s), bd = upload(hd, d);
          std::vector<double> want(hd.begin(), hd.end());
          for (const RowCopy& sg : segs)
            for (int64_t r = 0; r < sg.rows; ++r)
              for (int64_t c = 0; c < width; ++c) {
                const size_t o = static_cast<size_t>((sg.dst_row + r) * dst_stride + dst_col + c);
                const double x = hs[static_cast<size_t>((sg.src_row + r) * src_stride + src_col + c)];
                want[o] = add ? want[o] + x : static_cast<double>(round_to(d, static_cast<float>(x)));
              }
          if (add) dev_->add_rows(map, magi::rows_of(bs, src_stride, src_col), magi::rows_of(bd, dst_stride, dst_col), width);
          else dev_->copy_rows(map, magi::rows_of(bs, src_stride, src_col), magi::rows_of(bd, dst_stride, dst_col), width);
          expect_close(download(bd), want,
                       [&](size_t i) { return add ? (half_ulp(d) + 1.0 / (1 << 23)) * std::fabs(want[i]) + half_subnormal(d) : 0.0; },
                       add ? "add_rows" : "copy_rows");
        }
      }
    }
  }
  // An empty map touches nothing (and needs no device copy).
  Buffer b = dev_->alloc(16, GetParam());
  dev_->copy_rows(dev_->prepare({}), magi::rows_of(b, 4), magi::rows_of(b, 4), 4);
  dev_->copy_rows(dev_->prepare({{0, 1, 0}}), magi::rows_of(b, 4), magi::rows_of(b, 4), 4);
  dev_->synchronize();
  EXPECT_THROW(dev_->prepare({{0, -1, 2}}), std::invalid_argument);
}

// Relative L2 error of got against want; 0 when both are all zeros.
double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = static_cast<double>(got[i]) - want[i];
    num += e * e;
    den += static_cast<double>(want[i]) * want[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return std::sqrt(num / den);
}

struct AttnCase {
  const char* what;
  AttnShape shape;
  std::vector<KernelSlice> slices;
};

// Forward and backward through the device's AttentionOp against the float64 CPU reference on the
// same (dtype-rounded) inputs. Tolerances as tests/kernels/cuda (relative L2 of the whole tensor).
TEST_P(CudaDeviceTest, AttentionMatchesReference) {
  const DType dt = GetParam();
  const double tol = dt == DType::bf16 ? 1e-2 : 2.5e-3;
  const uint64_t seed = magi::testing::fresh_test_seed("CudaDeviceTest.AttentionMatchesReference");
  std::mt19937_64 rng(seed);
  const std::vector<AttnCase> cases = {
      {"ragged causal + full, rows 250.. see nothing, GQA",
       {300, 213, 4, 2, 64},
       {{0, 150, 0, 150, KernelSliceType::causal}, {150, 250, 0, 213, KernelSliceType::full}}},
      {"two documents and an inv_causal band, d 128",
       {517, 517, 2, 2, 128},
       {{0, 200, 0, 200, KernelSliceType::causal},
        {200, 517, 200, 517, KernelSliceType::bi_causal},
        {300, 517, 0, 100, KernelSliceType::inv_causal}}},
      {"empty slice list", {130, 70, 2, 1, 64}, {}},
  };
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(std::string(c.what) + ", MAGI_TEST_SEED=" + std::to_string(seed));
    const AttnShape& sh = c.shape;
    const size_t nq = static_cast<size_t>(sh.sq * sh.hq * sh.d), nk = static_cast<size_t>(sh.sk * sh.hkv * sh.d);
    const size_t nl = static_cast<size_t>(sh.sq * sh.hq);
    const std::vector<float> q = random_values(rng, nq, dt, 1.f), k = random_values(rng, nk, dt, 1.f),
                             v = random_values(rng, nk, dt, 1.f), dout = random_values(rng, nq, dt, 1.f);
    const float scale = 1.f / std::sqrt(static_cast<float>(sh.d));
    std::vector<float> ref_out(nq), ref_lse(nl);
    magi::kernels::cpu::attention_forward(sh, c.slices.data(), c.slices.size(), q.data(), k.data(), v.data(), scale,
                                          ref_out.data(), ref_lse.data());

    auto op = dev_->attention(sh, c.slices);
    Buffer bq = upload(q, dt), bk = upload(k, dt), bv = upload(v, dt), bdo = upload(dout, dt);
    Buffer bo = dev_->alloc(static_cast<int64_t>(nq), dt), bl = dev_->alloc(static_cast<int64_t>(nl), DType::fp32);
    dev_->fill(bo.data(), dt, bo.elems(), NAN);  // unwritten elements fail the check
    dev_->fill(bl.data(), DType::fp32, bl.elems(), NAN);
    op->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), magi::kernels::Into::write);
    const std::vector<float> out = download(bo), lse = download(bl);
    EXPECT_LE(rel_l2(out, ref_out), tol) << "forward out relative L2";
    int64_t bad_lse = 0;
    std::ostringstream first;
    for (size_t i = 0; i < nl; ++i) {
      const bool ok = std::isinf(ref_lse[i]) ? lse[i] == ref_lse[i]
                                             : std::fabs(lse[i] - ref_lse[i]) <= 1e-3 * (1 + std::fabs(ref_lse[i]));
      if (!ok && bad_lse++ < 5) first << "\n  [row " << i / sh.hq << ", head " << i % sh.hq << "] got " << lse[i] << ", want " << ref_lse[i];
    }
    EXPECT_EQ(bad_lse, 0) << "lse: " << bad_lse << " of " << nl << " differ" << first.str();
    int64_t masked_nonzero = 0;
    for (size_t i = 0; i < nl; ++i)
      if (std::isinf(ref_lse[i]))
        for (int e = 0; e < sh.d; ++e) masked_nonzero += out[i * sh.d + e] != 0.f;
    EXPECT_EQ(masked_nonzero, 0) << "rows that see no key must get out = 0";

    std::vector<float> ref_dq(nq), ref_dk(nk), ref_dv(nk);
    magi::kernels::cpu::attention_backward(sh, c.slices.data(), c.slices.size(), q.data(), k.data(), v.data(),
                                           out.data(), dout.data(), lse.data(), scale, ref_dq.data(), ref_dk.data(),
                                           ref_dv.data());
    Buffer bdq = dev_->alloc(static_cast<int64_t>(nq), dt), bdk = dev_->alloc(static_cast<int64_t>(nk), dt),
           bdv = dev_->alloc(static_cast<int64_t>(nk), dt);
    for (Buffer* b : {&bdq, &bdk, &bdv}) dev_->fill(b->data(), dt, b->elems(), NAN);
    op->backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), bdq.data(), bdk.data(), bdv.data(),
                 magi::kernels::Into::write);
    EXPECT_LE(rel_l2(download(bdq), ref_dq), tol) << "dq relative L2";
    EXPECT_LE(rel_l2(download(bdk), ref_dk), tol) << "dk relative L2";
    EXPECT_LE(rel_l2(download(bdv), ref_dv), tol) << "dv relative L2";

    // The same mask as two ops, the second accumulating into the first's results (a runner's
    // stages): out/lse merged, dQ added; each op's dK/dV of its own keys, summed here.
    if (c.slices.size() < 2) continue;
    const std::vector<KernelSlice> head(c.slices.begin(), c.slices.begin() + 1), rest(c.slices.begin() + 1, c.slices.end());
    auto op_a = dev_->attention(sh, head), op_b = dev_->attention(sh, rest);
    for (Buffer* b : {&bo, &bdq, &bdk, &bdv}) dev_->fill(b->data(), dt, b->elems(), NAN);
    dev_->fill(bl.data(), DType::fp32, bl.elems(), NAN);
    op_a->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), magi::kernels::Into::write);
    op_b->forward(bq.data(), bk.data(), bv.data(), bo.data(), bl.f32(), magi::kernels::Into::accumulate);
    EXPECT_LE(rel_l2(download(bo), ref_out), tol) << "accumulated forward out relative L2";
    const std::vector<float> lse2 = download(bl);
    for (size_t i = 0; i < nl; ++i) {
      EXPECT_TRUE(std::isinf(ref_lse[i]) ? lse2[i] == ref_lse[i] : std::fabs(lse2[i] - ref_lse[i]) <= 1e-3 * (1 + std::fabs(ref_lse[i])))
          << "accumulated lse [row " << i / sh.hq << ", head " << i % sh.hq << "] got " << lse2[i] << ", want " << ref_lse[i];
    }
    op_a->backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), bdq.data(), bdk.data(), bdv.data(),
                   magi::kernels::Into::write);
    std::vector<float> dk = download(bdk), dv = download(bdv);
    op_b->backward(bq.data(), bk.data(), bv.data(), bo.data(), bdo.data(), bl.f32(), bdq.data(), bdk.data(), bdv.data(),
                   magi::kernels::Into::accumulate);
    const std::vector<float> dk_b = download(bdk), dv_b = download(bdv);
    for (size_t i = 0; i < nk; ++i) {
      dk[i] += dk_b[i];
      dv[i] += dv_b[i];
    }
    EXPECT_LE(rel_l2(download(bdq), ref_dq), tol) << "accumulated dq relative L2";
    EXPECT_LE(rel_l2(dk, ref_dk), tol) << "summed dk relative L2";
    EXPECT_LE(rel_l2(dv, ref_dv), tol) << "summed dv relative L2";
  }
}

// A cp 1 plan's local stages: one op per run of keys (ragged runs, slices in the run's own key
// coordinates, K/V and dK/dV pointers into the run's rows), the first writing and the others
// accumulating, each its own compute step of a pass, nothing enqueued between them: the device
// launches each kernel to overlap the previous one and times the steps as one. The results match
// the float64 reference over the whole mask, rows that see no key included; a copy between two
// steps keeps them apart; and so with the ops' dQ shared.
TEST_P(CudaDeviceTest, StageWiseCallsOverlapAndMatchTheReference) {
  const DType dt = GetParam();
  const double tol = dt == DType::bf16 ? 1e-2 : 2.5e-3;
  const uint64_t seed = magi::testing::fresh_test_seed("CudaDeviceTest.StageWiseCallsOverlapAndMatchTheReference");
  SCOPED_TRACE("MAGI_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const AttnShape sh{760, 700, 4, 2, 64};  // rows 700.. see no key
  const std::vector<int64_t> runs = {0, 256, 448, 700};
  std::vector<KernelSlice> whole;
  std::vector<std::vector<KernelSlice>> stage(runs.size() - 1);
  for (size_t s = 0; s + 1 < runs.size(); ++s) {
    const int64_t a = runs[s], b = runs[s + 1];
    whole.push_back({a, b, a, b, KernelSliceType::causal});
    whole.push_back({b, 700, a, b, KernelSliceType::full});
    stage[s] = {{a, b, 0, b - a, KernelSliceType::causal}, {b, 700, 0, b - a, KernelSliceType::full}};
  }
  const size_t nq = static_cast<size_t>(sh.sq * sh.hq * sh.d), nk = static_cast<size_t>(sh.sk * sh.hkv * sh.d);
  const size_t nl = static_cast<size_t>(sh.sq * sh.hq);
  const int64_t kv_row = sh.hkv * sh.d;
  const std::vector<float> q = random_values(rng, nq, dt, 1.f), k = random_values(rng, nk, dt, 1.f),
                           v = random_values(rng, nk, dt, 1.f), dout = random_values(rng, nq, dt, 1.f);
  const float scale = 1.f / std::sqrt(static_cast<float>(sh.d));
  std::vector<float> ref_out(nq), ref_lse(nl), ref_dq(nq), ref_dk(nk), ref_dv(nk);
  magi::kernels::cpu::attention_forward(sh, whole.data(), whole.size(), q.data(), k.data(), v.data(), scale,
                                        ref_out.data(), ref_lse.data());
  magi::kernels::cpu::attention_backward(sh, whole.data(), whole.size(), q.data(), k.data(), v.data(), ref_out.data(),
                                         dout.data(), ref_lse.data(), scale, ref_dq.data(), ref_dk.data(), ref_dv.data());
  Buffer bq = upload(q, dt), bk = upload(k, dt), bv = upload(v, dt), bdo = upload(dout, dt);
  Buffer bo = dev_->alloc(static_cast<int64_t>(nq), dt), bl = dev_->alloc(static_cast<int64_t>(nl), DType::fp32);
  Buffer bdq = dev_->alloc(static_cast<int64_t>(nq), dt), bdk = dev_->alloc(static_cast<int64_t>(nk), dt),
         bdv = dev_->alloc(static_cast<int64_t>(nk), dt), scratch = dev_->alloc(1024, dt);
  auto into = [](size_t s) { return s == 0 ? magi::kernels::Into::write : magi::kernels::Into::accumulate; };
  for (int trial = 0; trial < 4; ++trial) {
    const bool apart = trial % 2 == 1, shared = trial >= 2;
    SCOPED_TRACE(std::string(apart ? "a copy between the steps" : "steps back to back") +
                 (shared ? ", dQ shared (Device::share_dq)" : ""));
    std::vector<std::unique_ptr<magi::AttentionOp>> ops;
    for (size_t s = 0; s < stage.size(); ++s) {
      AttnShape part = sh;
      part.sk = runs[s + 1] - runs[s];
      ops.push_back(dev_->attention(part, stage[s]));
    }
    if (shared) dev_->share_dq({ops[0].get(), ops[1].get(), ops[2].get()});
    for (Buffer* b : {&bo, &bdq, &bdk, &bdv}) dev_->fill(b->data(), dt, b->elems(), NAN);
    dev_->fill(bl.data(), DType::fp32, bl.elems(), NAN);
    for (int pass = 0; pass < 2; ++pass) {  // the first allocates the backward workspaces
      dev_->begin_pass();
      for (size_t s = 0; s < ops.size(); ++s) {
        if (apart && s > 0) dev_->copy(scratch.data(), dt, scratch.data(), dt, scratch.elems());
        dev_->compute([&] {
          ops[s]->forward(bq.data(), bk.at(runs[s] * kv_row), bv.at(runs[s] * kv_row), bo.data(), bl.f32(), into(s));
        }, {});
      }
      const magi::PassStats fwd = dev_->end_pass();
      EXPECT_EQ(fwd.compute_ms.size(), apart ? ops.size() : 1u) << "forward steps timed";
      dev_->begin_pass();
      for (size_t s = 0; s < ops.size(); ++s) {
        if (apart && s > 0) dev_->copy(scratch.data(), dt, scratch.data(), dt, scratch.elems());
        dev_->compute([&] {
          ops[s]->backward(bq.data(), bk.at(runs[s] * kv_row), bv.at(runs[s] * kv_row), bo.data(), bdo.data(), bl.f32(),
                           bdq.data(), bdk.at(runs[s] * kv_row), bdv.at(runs[s] * kv_row), into(s));
        }, {});
      }
      const magi::PassStats bwd = dev_->end_pass();
      EXPECT_EQ(bwd.compute_ms.size(), apart ? ops.size() : 1u) << "backward steps timed";
    }
    EXPECT_LE(rel_l2(download(bo), ref_out), tol) << "out relative L2";
    const std::vector<float> lse = download(bl);
    int64_t bad = 0;
    for (size_t i = 0; i < nl; ++i) {
      const bool ok = std::isinf(ref_lse[i]) ? lse[i] == ref_lse[i]
                                             : std::fabs(lse[i] - ref_lse[i]) <= 1e-3 * (1 + std::fabs(ref_lse[i]));
      bad += !ok;
    }
    EXPECT_EQ(bad, 0) << "lse values off";
    EXPECT_LE(rel_l2(download(bdq), ref_dq), tol) << "dq relative L2";
    EXPECT_LE(rel_l2(download(bdk), ref_dk), tol) << "dk relative L2";
    EXPECT_LE(rel_l2(download(bdv), ref_dv), tol) << "dv relative L2";
  }
}

// A request that records what the device did with it.
class FakeRequest : public magi::Request {
 public:
  bool test() override {
    ++tests;
    return true;
  }
  void wait() override { ++waits; }
  int tests = 0, waits = 0;
};

TEST_P(CudaDeviceTest, PassTimesEachComputeCall) {
  const DType dt = GetParam();
  Buffer b = dev_->alloc(1 << 22, dt);
  FakeRequest progress, comm;
  for (int pass = 0; pass < 3; ++pass) {
    SCOPED_TRACE("pass " + std::to_string(pass));
    dev_->begin_pass();
    dev_->compute([&] { dev_->fill(b.data(), dt, b.elems(), 1.f); }, {&progress});
    dev_->wait(nullptr);
    dev_->compute([&] { dev_->add(b.data(), dt, b.data(), dt, b.elems()); }, {});
    dev_->wait(&comm);
    dev_->compute([] {}, {&progress, nullptr});
    const magi::PassStats st = dev_->end_pass();
    ASSERT_EQ(st.compute_ms.size(), 3u) << "one compute_ms entry per compute call (no attention to overlap)";
    EXPECT_EQ(st.compute_ms[2], 0.0) << "a step that enqueued nothing";
    EXPECT_GT(st.compute_ms[0], 0.0) << "a 4M-element fill took no time";
    EXPECT_GT(st.compute_ms[1], 0.0);
    for (double ms : st.compute_ms) EXPECT_GE(ms, 0.0);
    EXPECT_GE(st.comm_wait_ms, 0.0);
    EXPECT_EQ(progress.tests, 2 * (pass + 1)) << "each progress request is tested once per compute call";
    EXPECT_EQ(comm.waits, pass + 1);
  }
  std::vector<float> h(4);
  dev_->download(b, 0, 4, h.data());
  for (float x : h) EXPECT_EQ(x, 2.f) << "fill then add in stream order";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDeviceTest, ::testing::Values(DType::bf16, DType::fp16),
                         [](const ::testing::TestParamInfo<DType>& p) { return name(p.param); });

}  // namespace
