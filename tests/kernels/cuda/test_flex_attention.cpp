// The flexible CUDA attention kernels against the float64 CPU reference (kernels/cpu): random
// slice lists of all four types with overlapping query ranges, every catalogue mask, ragged sizes,
// empty slices, rows that see nothing, GQA, head dims 64 and 128, forward and backward, written
// at once or accumulated over several plans (Into), their dQ shared or not.
// Inputs are fresh random bf16 values each run (seed printed, MAGI_TEST_SEED overrides); outputs
// are poisoned with NaN before each launch so an unwritten element fails the check.
#include "cpu/reference_attention.h"
#include "cuda/flex_attention.h"

#include "common/row_pieces.h"
#include "common/test_seed.h"

#ifdef MAGI_TEST_HAVE_CATALOGUE
#include "kernels/catalogue_slices.h"
#endif

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using magi::kernels::AttnShape;
using magi::kernels::KernelSlice;
using magi::kernels::KernelSliceType;
namespace kc = magi::kernels::cuda;
namespace cpu = magi::kernels::cpu;

#define ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call

// bf16 <-> float on the host (round to nearest even).
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// fp16 through the compiler's _Float16 (round to nearest even).
uint16_t to_f16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
float from_f16(uint16_t u) {
  _Float16 h;
  std::memcpy(&h, &u, 2);
  return static_cast<float>(h);
}

struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t b) : bytes(b) {
    if (b) { EXPECT_EQ(cudaMalloc(&p, b), cudaSuccess); }
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  void poison() {
    if (bytes) { EXPECT_EQ(cudaMemset(p, 0xff, bytes), cudaSuccess); }  // NaN in bf16 and fp32
  }
};

// Rounds x to the 16-bit type; returns its bits, leaves the rounded floats in x.
std::vector<uint16_t> round16(std::vector<float>& x, magi::DType dt) {
  std::vector<uint16_t> b(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    b[i] = dt == magi::DType::bf16 ? to_bf16(x[i]) : to_f16(x[i]);
    x[i] = dt == magi::DType::bf16 ? from_bf16(b[i]) : from_f16(b[i]);
  }
  return b;
}

std::vector<float> random_vec(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

DevBuf upload(const std::vector<uint16_t>& h) {
  DevBuf d(h.size() * 2);
  if (!h.empty()) { EXPECT_EQ(cudaMemcpy(d.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice), cudaSuccess); }
  return d;
}
std::vector<float> download16(const DevBuf& d, size_t n, magi::DType dt) {
  std::vector<uint16_t> h(n);
  if (n) { EXPECT_EQ(cudaMemcpy(h.data(), d.p, n * 2, cudaMemcpyDeviceToHost), cudaSuccess); }
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = dt == magi::DType::bf16 ? from_bf16(h[i]) : from_f16(h[i]);
  return f;
}
std::vector<float> download_f32(const DevBuf& d, size_t n) {
  std::vector<float> f(n);
  if (n) { EXPECT_EQ(cudaMemcpy(f.data(), d.p, n * 4, cudaMemcpyDeviceToHost), cudaSuccess); }
  return f;
}

// Relative L2 error ||got - ref|| / ||ref|| (absolute when ref is all zeros); NaN if got has any
// non-finite value.
double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::quiet_NaN();
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Relative L2 tolerances per input dtype: bf16 (8-bit mantissa) lands near 2e-3, fp16 (11-bit)
// near 3e-4, both against the float64 reference on the unrounded inputs.
double tol_out(magi::DType dt) { return dt == magi::DType::bf16 ? 1e-2 : 2.5e-3; }
double tol_grad(magi::DType dt) { return dt == magi::DType::bf16 ? 1e-2 : 2.5e-3; }
constexpr double kTolLse = 2e-2;    // absolute, natural log units

// Checks a forward's out (relative L2) and lse (absolute, -inf exactly where the reference has
// it, and out exactly 0 there); returns out's error.
double expect_forward(const std::vector<float>& got_out, const std::vector<float>& got_lse,
                      const std::vector<float>& ref_out, const std::vector<float>& ref_lse, int d,
                      magi::DType dt) {
  const double e_out = rel_l2(got_out, ref_out);
  EXPECT_LE(e_out, tol_out(dt)) << "forward out relative L2";
  int bad_lse = 0;
  for (size_t i = 0; i < ref_lse.size(); ++i) {
    const bool ref_inf = std::isinf(ref_lse[i]);
    const bool ok = ref_inf ? (std::isinf(got_lse[i]) && got_lse[i] < 0)
                            : (std::isfinite(got_lse[i]) && std::fabs(got_lse[i] - ref_lse[i]) <= kTolLse);
    if (!ok && bad_lse++ < 3)
      ADD_FAILURE() << "lse[" << i << "] got " << got_lse[i] << " ref " << ref_lse[i];
    if (ref_inf) {  // rows that see nothing: out exactly 0
      for (int c = 0; c < d; ++c) {
        if (got_out[i * d + c] != 0.f) {
          ADD_FAILURE() << "row/head " << i << " sees nothing but out != 0";
          break;
        }
      }
    }
  }
  EXPECT_EQ(bad_lse, 0);
  return e_out;
}

// Fresh random q, k, v, dout of a shape, rounded to the dtype: the floats (the reference's
// inputs) and their bits (the kernel's).
struct Inputs {
  std::vector<float> q, k, v, dout;
  std::vector<uint16_t> qb, kb, vb, dob;
  Inputs(const AttnShape& sh, std::mt19937_64& rng, magi::DType dt)
      : q(random_vec(static_cast<size_t>(sh.sq) * sh.hq * sh.d, rng)),
        k(random_vec(static_cast<size_t>(sh.sk) * sh.hkv * sh.d, rng)),
        v(random_vec(k.size(), rng)),
        dout(random_vec(q.size(), rng)),
        qb(round16(q, dt)), kb(round16(k, dt)), vb(round16(v, dt)), dob(round16(dout, dt)) {}
};

// Runs forward and backward on the GPU and the CPU reference; checks every output.
void check_case(const AttnShape& sh, const std::vector<KernelSlice>& slices, uint64_t seed,
                const std::string& what, magi::DType dt = magi::DType::bf16) {
  SCOPED_TRACE(what + " sq=" + std::to_string(sh.sq) + " sk=" + std::to_string(sh.sk) +
               " hq=" + std::to_string(sh.hq) + " hkv=" + std::to_string(sh.hkv) +
               " d=" + std::to_string(sh.d) + " slices=" + std::to_string(slices.size()) +
               " seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const size_t nq = static_cast<size_t>(sh.sq) * sh.hq * sh.d;
  const size_t nk = static_cast<size_t>(sh.sk) * sh.hkv * sh.d;
  const size_t nl = static_cast<size_t>(sh.sq) * sh.hq;
  const Inputs in(sh, rng, dt);
  const auto& [q, k, v, dout, qb, kb, vb, dob] = in;
  const float scale = 1.f / std::sqrt(static_cast<float>(sh.d));

  std::vector<float> ref_out(nq), ref_lse(nl);
  cpu::attention_forward(sh, slices.data(), slices.size(), q.data(), k.data(), v.data(), scale,
                         ref_out.data(), ref_lse.data());

  kc::FlexAttention attn(sh, slices.data(), slices.size(), dt);
  DevBuf dq_(upload(qb)), dk_(upload(kb)), dv_(upload(vb)), ddo(upload(dob));
  DevBuf out(nq * 2), lse(nl * 4);
  out.poison();
  lse.poison();
  attn.forward(dq_.p, dk_.p, dv_.p, out.p, static_cast<float*>(lse.p), scale);
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> got_out = download16(out, nq, dt);
  const std::vector<float> got_lse = download_f32(lse, nl);

  const double e_out = expect_forward(got_out, got_lse, ref_out, ref_lse, sh.d, dt);

  // Deterministic forward: later runs give the same bits, whichever block runs an item. Nine
  // more runs: every slot of the plan's ticket counters (eight) serves a second launch.
  for (int rep = 0; rep < 9; ++rep) {
    DevBuf out2(nq * 2);
    out2.poison();
    attn.forward(dq_.p, dk_.p, dv_.p, out2.p, static_cast<float*>(lse.p), scale);
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<uint16_t> a(nq), b(nq);
    if (nq) {
      ASSERT_CUDA(cudaMemcpy(a.data(), out.p, nq * 2, cudaMemcpyDeviceToHost));
      ASSERT_CUDA(cudaMemcpy(b.data(), out2.p, nq * 2, cudaMemcpyDeviceToHost));
    }
    ASSERT_TRUE(a == b) << "forward run " << rep + 2 << " differs (a race?)";
  }

  // Backward from the kernel's own forward results (as training would).
  std::vector<float> ref_dq(nq), ref_dk(nk), ref_dv(nk);
  cpu::attention_backward(sh, slices.data(), slices.size(), q.data(), k.data(), v.data(),
                          ref_out.data(), dout.data(), ref_lse.data(), scale, ref_dq.data(),
                          ref_dk.data(), ref_dv.data());
  DevBuf gdq(nq * 2), gdk(nk * 2), gdv(nk * 2);
  for (int rep = 0; rep < 2; ++rep) {  // twice: the workspace must be reset between runs
    gdq.poison();
    gdk.poison();
    gdv.poison();
    attn.backward(dq_.p, dk_.p, dv_.p, out.p, ddo.p, static_cast<const float*>(lse.p), scale,
                  gdq.p, gdk.p, gdv.p);
    ASSERT_CUDA(cudaDeviceSynchronize());
    const double e_dq = rel_l2(download16(gdq, nq, dt), ref_dq);
    const double e_dk = rel_l2(download16(gdk, nk, dt), ref_dk);
    const double e_dv = rel_l2(download16(gdv, nk, dt), ref_dv);
    EXPECT_LE(e_dq, tol_grad(dt)) << "dq relative L2, run " << rep;
    EXPECT_LE(e_dk, tol_grad(dt)) << "dk relative L2, run " << rep;
    EXPECT_LE(e_dv, tol_grad(dt)) << "dv relative L2, run " << rep;
    if (rep == 0)
      std::printf("  %-28s out %.2e  dq %.2e  dk %.2e  dv %.2e\n", what.c_str(), e_out, e_dq, e_dk, e_dv);
  }
}

// The stage-wise use (Into): the slices dealt at random to `parts` plans (some may get none),
// the first writing out/lse and dq, the others accumulating into them; each plan writes its own
// dk/dv, summed here. Everything against the float64 reference over the whole list.
// Parts::overlapped: the parts as a runtime's stages on one stream, back to back without a
// synchronize: every accumulating part launched to overlap the one before it (Launch::overlap),
// the backward parts sharing one Delta (compute_delta) and writing dK/dV into buffers of their
// own, two backward passes. Parts::shared_dq: the same with the plans' dQ shared
// (share_backward_dq), the second pass calling them in reverse order (its first call writes).
// Parts::from_nothing: as overlapped, the forward starting from lse = -inf (Into::write_keyed), each
// accumulating plan told that only the rows of the parts before it hold results (set_merged_rows),
// as a runtime's stages are. Parts::in_row_order: as from_nothing, the slices dealt in runs by
// their first row, as a runtime's stages cut documents at their ends: where no two parts share a
// row (documents), the accumulating parts merge nothing and write after the part before them
// (FwdEpilogue::write_after).
enum class Parts { serial, overlapped, shared_dq, from_nothing, in_row_order };
void check_parts(const AttnShape& sh, const std::vector<KernelSlice>& slices, int parts, uint64_t seed,
                 const std::string& what, magi::DType dt = magi::DType::bf16, Parts mode = Parts::serial) {
  const bool overlapped = mode != Parts::serial;
  const bool from_nothing = mode == Parts::from_nothing || mode == Parts::in_row_order;
  SCOPED_TRACE(std::string(mode == Parts::shared_dq      ? "shared dQ "
                           : mode == Parts::in_row_order ? "in row order "
                           : from_nothing                ? "from nothing "
                           : overlapped                  ? "overlapped "
                                                         : "") + what + " sq=" + std::to_string(sh.sq) + " sk=" + std::to_string(sh.sk) + " d=" +
               std::to_string(sh.d) + " slices=" + std::to_string(slices.size()) + " parts=" +
               std::to_string(parts) + " seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const size_t nq = static_cast<size_t>(sh.sq) * sh.hq * sh.d;
  const size_t nk = static_cast<size_t>(sh.sk) * sh.hkv * sh.d;
  const size_t nl = static_cast<size_t>(sh.sq) * sh.hq;
  const Inputs in(sh, rng, dt);
  const auto& [q, k, v, dout, qb, kb, vb, dob] = in;
  const float scale = 1.f / std::sqrt(static_cast<float>(sh.d));
  std::vector<float> ref_out(nq), ref_lse(nl), ref_dq(nq), ref_dk(nk), ref_dv(nk);
  cpu::attention_forward(sh, slices.data(), slices.size(), q.data(), k.data(), v.data(), scale,
                         ref_out.data(), ref_lse.data());
  cpu::attention_backward(sh, slices.data(), slices.size(), q.data(), k.data(), v.data(),
                          ref_out.data(), dout.data(), ref_lse.data(), scale, ref_dq.data(),
                          ref_dk.data(), ref_dv.data());

  std::vector<std::vector<KernelSlice>> dealt(parts);
  if (mode == Parts::in_row_order) {
    std::vector<KernelSlice> by_row = slices;
    std::stable_sort(by_row.begin(), by_row.end(), [](const KernelSlice& a, const KernelSlice& b) { return a.q_start < b.q_start; });
    for (size_t j = 0; j < by_row.size(); ++j) dealt[j * static_cast<size_t>(parts) / by_row.size()].push_back(by_row[j]);
  } else {
    for (const KernelSlice& s : slices) dealt[std::uniform_int_distribution<int>(0, parts - 1)(rng)].push_back(s);
  }
  std::vector<std::unique_ptr<kc::FlexAttention>> plans;
  for (const auto& d : dealt) plans.push_back(std::make_unique<kc::FlexAttention>(sh, d.data(), d.size(), dt));
  if (mode == Parts::shared_dq) {
    std::vector<kc::FlexAttention*> members;
    for (const auto& p : plans) members.push_back(p.get());
    kc::FlexAttention::share_backward_dq(members);
  }
  DevBuf gq(upload(qb)), gk(upload(kb)), gv(upload(vb)), gdo(upload(dob));
  DevBuf out(nq * 2), lse(nl * 4), dq(nq * 2), dk(nk * 2), dv(nk * 2);
  out.poison();
  lse.poison();
  dq.poison();
  if (from_nothing) {
    // A stage-wise caller whose first part leaves rows to later ones: lse = -inf, out = 0 only
    // where no part gives a key and NaN elsewhere (never read); the first part writes its keyed
    // rows (Into::write_keyed), the others accumulate.
    const std::vector<float> none(nl, -INFINITY);
    ASSERT_CUDA(cudaMemcpy(lse.p, none.data(), nl * 4, cudaMemcpyHostToDevice));
    std::vector<uint16_t> start(nq, 0xffff);
    for (size_t i = 0; i < nl; ++i) {
      if (std::isinf(ref_lse[i])) std::fill_n(start.begin() + static_cast<std::ptrdiff_t>(i * sh.d), sh.d, uint16_t{0});
    }
    ASSERT_CUDA(cudaMemcpy(out.p, start.data(), nq * 2, cudaMemcpyHostToDevice));
    std::vector<std::pair<int64_t, int64_t>> before;
    for (int i = 0; i < parts; ++i) {
      std::sort(before.begin(), before.end());
      std::vector<magi::kernels::RowSpan> merged;
      for (const auto& [a, b] : before) {
        if (!merged.empty() && a <= merged.back().end) merged.back().end = std::max(merged.back().end, b);
        else merged.push_back({a, b});
      }
      if (i > 0) plans[i]->set_merged_rows(merged);
      for (const KernelSlice& s : dealt[i]) {
        if (s.q_end > s.q_start) before.emplace_back(s.q_start, s.q_end);
      }
    }
  }
  auto into = [](int i) { return i == 0 ? magi::kernels::Into::write : magi::kernels::Into::accumulate; };
  auto launch = [&](int i) { return overlapped && i > 0 ? kc::Launch::overlap : kc::Launch::after; };
  for (int i = 0; i < parts; ++i) {
    const magi::kernels::Into fwd_into = !from_nothing ? into(i)
                                         : i == 0     ? magi::kernels::Into::write_keyed
                                                      : magi::kernels::Into::accumulate;
    plans[i]->forward(gq.p, gk.p, gv.p, out.p, static_cast<float*>(lse.p), scale, nullptr, fwd_into, launch(i));
  }
  ASSERT_CUDA(cudaDeviceSynchronize());
  const double e_out = expect_forward(download16(out, nq, dt), download_f32(lse, nl), ref_out, ref_lse, sh.d, dt);
  std::vector<float> sum_dk(nk, 0.f), sum_dv(nk, 0.f);
  if (overlapped) {
    DevBuf delta(nl * 4);
    delta.poison();  // rows no part covers are never read
    kc::compute_delta(out.p, gdo.p, static_cast<float*>(delta.p), static_cast<int64_t>(nl), sh.d, dt);
    std::vector<std::unique_ptr<DevBuf>> pdk, pdv;
    for (int i = 0; i < parts; ++i) {
      pdk.push_back(std::make_unique<DevBuf>(nk * 2));
      pdv.push_back(std::make_unique<DevBuf>(nk * 2));
    }
    // Two rounds: a plan's first call zeroes its workspace and is not overlapped; the second is.
    for (int round = 0; round < 2; ++round) {
      dq.poison();
      for (int i = 0; i < parts; ++i) {
        pdk[i]->poison();
        pdv[i]->poison();
      }
      for (int c = 0; c < parts; ++c) {
        const int i = mode == Parts::shared_dq && round == 1 ? parts - 1 - c : c;
        plans[i]->backward(gq.p, gk.p, gv.p, out.p, gdo.p, static_cast<const float*>(lse.p), scale, dq.p, pdk[i]->p,
                           pdv[i]->p, nullptr, into(c), static_cast<const float*>(delta.p), launch(c));
      }
    }
    ASSERT_CUDA(cudaDeviceSynchronize());
    for (int i = 0; i < parts; ++i) {
      const std::vector<float> pk = download16(*pdk[i], nk, dt), pv = download16(*pdv[i], nk, dt);
      for (size_t j = 0; j < nk; ++j) {
        sum_dk[j] += pk[j];
        sum_dv[j] += pv[j];
      }
    }
  } else {
    for (int i = 0; i < parts; ++i) {
      dk.poison();
      dv.poison();
      plans[i]->backward(gq.p, gk.p, gv.p, out.p, gdo.p, static_cast<const float*>(lse.p), scale, dq.p, dk.p,
                         dv.p, nullptr, into(i));
      ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<float> pk = download16(dk, nk, dt), pv = download16(dv, nk, dt);
      for (size_t j = 0; j < nk; ++j) {
        sum_dk[j] += pk[j];
        sum_dv[j] += pv[j];
      }
    }
  }
  const double e_dq = rel_l2(download16(dq, nq, dt), ref_dq);
  const double e_dk = rel_l2(sum_dk, ref_dk), e_dv = rel_l2(sum_dv, ref_dv);
  EXPECT_LE(e_dq, tol_grad(dt)) << "dq relative L2";
  EXPECT_LE(e_dk, tol_grad(dt)) << "dk relative L2";
  EXPECT_LE(e_dv, tol_grad(dt)) << "dv relative L2";
  const std::string label = (mode == Parts::shared_dq ? "shared " : from_nothing ? "nothing " : overlapped ? "overlap " : "") + what;
  std::printf("  %-34s out %.2e  dq %.2e  dk %.2e  dv %.2e\n", label.c_str(), e_out, e_dq, e_dk, e_dv);
}

// A random slice list over [0, sq) x [0, sk): the key axis is cut into disjoint ranges, and each
// range (most of them) gets one slice with a random query range and type. So query ranges
// overlap freely while no (q, k) pair is covered twice; rows in no query range see nothing; some
// slices are empty in q or k.
std::vector<KernelSlice> random_slices(int64_t sq, int64_t sk, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> ncuts(1, 6);
  std::vector<int64_t> cuts{0, sk};
  const int n = ncuts(rng);
  for (int i = 0; i < n; ++i) cuts.push_back(std::uniform_int_distribution<int64_t>(0, sk)(rng));
  std::sort(cuts.begin(), cuts.end());
  std::vector<KernelSlice> out;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.15) continue;
    int64_t a = std::uniform_int_distribution<int64_t>(0, sq)(rng);
    int64_t b = std::uniform_int_distribution<int64_t>(0, sq)(rng);
    if (a > b) std::swap(a, b);
    if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.1) b = a;  // empty in q
    KernelSlice s;
    s.q_start = a;
    s.q_end = b;
    s.k_start = cuts[i];
    s.k_end = cuts[i + 1];
    s.type = static_cast<KernelSliceType>(std::uniform_int_distribution<int>(0, 3)(rng));
    out.push_back(s);
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

class FlexAttentionGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kc::device_available()) GTEST_SKIP() << "no CUDA device visible";
    std::printf("  device: %s\n", kc::device_description().c_str());
  }
};

KernelSlice sl(int64_t qs, int64_t qe, int64_t ks, int64_t ke, KernelSliceType t) {
  KernelSlice s;
  s.q_start = qs;
  s.q_end = qe;
  s.k_start = ks;
  s.k_end = ke;
  s.type = t;
  return s;
}

// Causal documents of 1 to max_len tokens in [0, tokens), after a quarter of them a gap of 1 to
// max_gap rows no slice covers (rows that see nothing; items without key tiles where it is long).
std::vector<KernelSlice> short_documents(int64_t tokens, int64_t max_len, int64_t max_gap, std::mt19937_64& rng) {
  std::vector<KernelSlice> docs;
  for (int64_t a = 0; a < tokens;) {
    const int64_t e = std::min(tokens, a + std::uniform_int_distribution<int64_t>(1, max_len)(rng));
    docs.push_back(sl(a, e, a, e, KernelSliceType::causal));
    a = e;
    if (max_gap > 0 && std::uniform_int_distribution<int>(0, 3)(rng) == 0)
      a += std::uniform_int_distribution<int64_t>(1, max_gap)(rng);
  }
  return docs;
}

TEST_F(FlexAttentionGpu, RandomSliceLists) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexAttentionGpu.RandomSliceLists");
  std::mt19937_64 rng(seed);
  const int shapes[][4] = {{4, 4, 128, 0}, {4, 2, 64, 0}, {6, 2, 128, 0}, {4, 1, 64, 0},
                           {2, 2, 128, 0}, {2, 2, 64, 0}, {8, 2, 128, 0}, {3, 3, 64, 0}};
  int i = 0;
  for (const auto& s : shapes) {
    AttnShape sh;
    sh.sq = std::uniform_int_distribution<int64_t>(1, 700)(rng);
    sh.sk = std::uniform_int_distribution<int64_t>(1, 700)(rng);
    sh.hq = s[0];
    sh.hkv = s[1];
    sh.d = s[2];
    check_case(sh, random_slices(sh.sq, sh.sk, rng), rng(), "random #" + std::to_string(i++));
  }
}

TEST_F(FlexAttentionGpu, Fp16) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexAttentionGpu.Fp16");
  std::mt19937_64 rng(seed);
  for (int d : {64, 128}) {
    AttnShape sh{std::uniform_int_distribution<int64_t>(100, 700)(rng), std::uniform_int_distribution<int64_t>(100, 700)(rng), 4, 2, d};
    check_case(sh, random_slices(sh.sq, sh.sk, rng), rng(), "fp16 random", magi::DType::fp16);
    check_case(AttnShape{900, 900, 2, 1, d}, {sl(0, 900, 0, 900, KernelSliceType::causal)}, rng(), "fp16 causal 900", magi::DType::fp16);
  }
}

TEST_F(FlexAttentionGpu, EdgeCases) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexAttentionGpu.EdgeCases");
  std::mt19937_64 rng(seed);
  using T = KernelSliceType;
  for (int d : {64, 128}) {
    AttnShape sh{300, 200, 2, 1, d};
    // No slice at all: out 0, lse -inf, gradients 0.
    check_case(sh, {}, rng(), "no slices");
    // Empty slices only.
    check_case(sh, {sl(5, 5, 0, 100, T::full), sl(0, 300, 50, 50, T::causal)}, rng(), "empty slices");
    // An empty-q slice whose keys overlap another slice's keys must not touch their dK/dV.
    check_case(sh, {sl(0, 64, 0, 200, T::full), sl(64, 64, 100, 180, T::full)}, rng(),
               "empty q over shared keys");
    // More queries than keys: causal's first rows and inv_causal's last rows see nothing;
    // a bi_causal with lk < lq is empty.
    check_case(sh, {sl(0, 300, 0, 90, T::causal), sl(0, 300, 90, 180, T::inv_causal),
                    sl(0, 250, 180, 200, T::bi_causal)}, rng(), "lq > lk");
    // Rows shared by three slices, one a single key wide.
    check_case(sh, {sl(10, 290, 0, 129, T::full), sl(0, 300, 129, 130, T::full),
                    sl(100, 160, 130, 200, T::bi_causal)}, rng(), "shared rows");
    // Single row and single key.
    check_case(AttnShape{1, 1, 2, 2, d}, {sl(0, 1, 0, 1, T::causal)}, rng(), "1x1");
    // Larger causal, several tiles in both directions, ragged.
    check_case(AttnShape{1000, 1000, 2, 2, d}, {sl(0, 1000, 0, 1000, T::causal)}, rng(), "causal 1000");
    check_case(AttnShape{517, 1283, 4, 2, d}, {sl(0, 517, 0, 1283, T::full)}, rng(), "full 517x1283");
    check_case(AttnShape{700, 700, 2, 1, d}, {sl(0, 700, 0, 700, T::inv_causal)}, rng(), "inv_causal 700");
    check_case(AttnShape{600, 900, 2, 2, d}, {sl(0, 600, 0, 900, T::bi_causal)}, rng(), "bi_causal 600x900");
  }
}

// Shapes that stress the kernels' load pipelines (two-stage rings, one tile ahead): items of one,
// two, three and five key tiles, or query tiles for the backward (the ring wraps, a stage is
// reused while the other is in flight), items with none beside items with many, and items whose key walk switches slice while loads of
// the next slice's tiles are in flight, from unaligned key starts, with rows no key is visible to.
TEST_F(FlexAttentionGpu, PipelineShapes) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexAttentionGpu.PipelineShapes");
  std::mt19937_64 rng(seed);
  using T = KernelSliceType;
  for (int d : {64, 128}) {
    for (int64_t sk : {100, 200, 300, 600})
      check_case(AttnShape{128, sk, 2, 1, d}, {sl(0, 128, 0, sk, T::full)}, rng(), "tiles of sk " + std::to_string(sk));
    // The backward's query-tile ring: one item walking one, two and three query tiles.
    for (int64_t sq : {50, 64, 130})
      check_case(AttnShape{sq, 128, 1, 1, d}, {sl(0, sq, 0, 128, T::full)}, rng(), "query tiles of sq " + std::to_string(sq));
    check_case(AttnShape{384, 700, 2, 2, d}, {sl(0, 128, 0, 700, T::full), sl(256, 384, 0, 50, T::causal)}, rng(),
               "items without tiles between");
    check_case(AttnShape{256, 1000, 4, 2, d},
               {sl(0, 256, 3, 133, T::full), sl(0, 256, 501, 770, T::causal), sl(0, 256, 900, 1000, T::inv_causal),
                sl(40, 200, 133, 134, T::full)},
               rng(), "slice switches mid-walk");
    check_case(AttnShape{500, 300, 2, 1, d}, {sl(0, 500, 0, 300, T::causal), sl(0, 100, 10, 20, T::bi_causal)}, rng(),
               "masked rows, ragged end");
    // More items than SMs: the persistent forward's blocks run several items each, the next
    // item's loads overlapping the last one's end, items of every length in between.
    check_case(AttnShape{900, 900, 32, 8, d}, {sl(0, 900, 0, 900, T::causal)}, rng(), "causal, 256 items");
    // More backward items (key block, head) than SMs: 144, the last wave's converting at most a
    // few of the dQ units it completes and leaving the rest to the finish pass.
    check_case(AttnShape{1500, 1500, 12, 12, d}, {sl(0, 1500, 0, 1500, T::causal)}, rng(), "causal, 144 backward items");
    // GQA groups split by their long walks (flex::kBwdMaxWalkRows): 16 query heads over one kv
    // head; the first key blocks walk about 2500 query rows per head and split into two items of 8
    // heads that meet in the dK/dV workspace, the later ones stay whole; ragged end.
    check_case(AttnShape{2543, 2543, 16, 1, d}, {sl(0, 2543, 0, 2543, T::causal)}, rng(), "split GQA groups");
    // Slices in row pieces, as a stage's plan cuts documents at its chunk boundaries, which the
    // forward joins again (common/row_runs.h) and the backward walks as given: two causal
    // documents cut every 256 rows, and a bi_causal band cut into three.
    std::vector<KernelSlice> docs = magi::testing::causal_row_pieces(0, 700, 256);
    for (const KernelSlice& s : magi::testing::causal_row_pieces(700, 1500, 256)) docs.push_back(s);
    check_case(AttnShape{1500, 1500, 4, 2, d}, docs, rng(), "causal documents in row pieces");
    check_case(AttnShape{300, 600, 2, 1, d},
               {sl(0, 100, 0, 400, T::bi_causal), sl(100, 200, 100, 500, T::bi_causal), sl(200, 300, 200, 600, T::bi_causal)},
               rng(), "bi_causal in row pieces");
    // Runs of short items, several per block, across which the forward's products go on (an item's
    // last P V issued with the next one's first S, its epilogue under the next softmax): causal
    // documents of 1 to 150 rows, items whose rows end inside the first consumer's 64, and gaps
    // whose items have no key tile and end a run.
    check_case(AttnShape{2500, 2500, 16, 8, d}, short_documents(2500, 150, 300, rng), rng(), "short documents");
  }
}

// Into::write_keyed writes the rows of the items that have a key tile and nothing else: with
// documents (no shared rows) the rows between them and after them keep what out and lse held.
TEST_F(FlexAttentionGpu, WriteKeyedLeavesRowsWithoutKeys) {
  using T = KernelSliceType;
  const AttnShape sh{500, 500, 2, 2, 128};
  const std::vector<KernelSlice> docs{sl(0, 100, 0, 100, T::causal), sl(300, 400, 300, 400, T::full)};
  std::mt19937_64 rng(magi::testing::fresh_test_seed("FlexAttentionGpu.WriteKeyedLeavesRowsWithoutKeys"));
  const Inputs in(sh, rng, magi::DType::bf16);
  const size_t nq = static_cast<size_t>(sh.sq) * sh.hq * sh.d, nl = static_cast<size_t>(sh.sq) * sh.hq;
  std::vector<float> ref_out(nq), ref_lse(nl);
  cpu::attention_forward(sh, docs.data(), docs.size(), in.q.data(), in.k.data(), in.v.data(), 1.f / std::sqrt(128.f),
                         ref_out.data(), ref_lse.data());
  kc::FlexAttention plan(sh, docs.data(), docs.size());
  DevBuf gq(upload(in.qb)), gk(upload(in.kb)), gv(upload(in.vb)), out(nq * 2), lse(nl * 4);
  out.poison();
  lse.poison();
  ASSERT_TRUE(plan.forward(gq.p, gk.p, gv.p, out.p, static_cast<float*>(lse.p), 1.f / std::sqrt(128.f), nullptr,
                           magi::kernels::Into::write_keyed));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> got = download16(out, nq, magi::DType::bf16), got_lse = download_f32(lse, nl);
  std::vector<float> keyed_got, keyed_ref;
  int touched = 0, bad_lse = 0;
  for (size_t i = 0; i < nl; ++i) {
    const int64_t row = static_cast<int64_t>(i) / sh.hq;
    const bool keyed = row < 100 || (row >= 300 && row < 400);
    for (int c = 0; c < sh.d; ++c) {
      const size_t e = i * sh.d + static_cast<size_t>(c);
      if (keyed) {
        keyed_got.push_back(got[e]);
        keyed_ref.push_back(ref_out[e]);
      } else if (!std::isnan(got[e])) {
        ++touched;
      }
    }
    if (keyed ? !(std::fabs(got_lse[i] - ref_lse[i]) <= kTolLse) : !std::isnan(got_lse[i])) ++bad_lse;
  }
  EXPECT_LE(rel_l2(keyed_got, keyed_ref), tol_out(magi::DType::bf16)) << "out of the keyed rows";
  EXPECT_EQ(touched, 0) << "out elements written in rows without keys";
  EXPECT_EQ(bad_lse, 0) << "lse wrong in keyed rows or written in the others";
  EXPECT_THROW(plan.backward(gq.p, gk.p, gv.p, out.p, gq.p, static_cast<float*>(lse.p), 1.f, out.p, gk.p, gv.p, nullptr,
                             magi::kernels::Into::write_keyed),
               std::invalid_argument);
}

TEST_F(FlexAttentionGpu, AccumulateIntoEarlierResults) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexAttentionGpu.AccumulateIntoEarlierResults");
  std::mt19937_64 rng(seed);
  using T = KernelSliceType;
  for (Parts mode : {Parts::serial, Parts::overlapped, Parts::shared_dq, Parts::from_nothing, Parts::in_row_order}) {
    for (int d : {64, 128}) {
      for (int i = 0; i < 3; ++i) {
        AttnShape sh{std::uniform_int_distribution<int64_t>(1, 700)(rng), std::uniform_int_distribution<int64_t>(1, 700)(rng),
                     4, 2, d};
        check_parts(sh, random_slices(sh.sq, sh.sk, rng), 2 + i, rng(), "accumulate random", magi::DType::bf16, mode);
      }
      // Documents cut at key ranges, as the runtime's stages cut them: rows merged across parts.
      check_parts(AttnShape{900, 900, 2, 2, d},
                  {sl(0, 300, 0, 150, T::full), sl(150, 300, 150, 300, T::causal), sl(300, 900, 300, 640, T::full),
                   sl(300, 900, 640, 900, T::causal), sl(0, 300, 150, 150, T::full)},
                  3, rng(), "accumulate documents", magi::DType::bf16, mode);
      check_parts(AttnShape{400, 400, 2, 1, d}, {sl(0, 400, 0, 400, T::causal)}, 2, rng(), "accumulate one part empty",
                  magi::DType::bf16, mode);
      check_parts(AttnShape{333, 517, 2, 2, d}, random_slices(333, 517, rng), 3, rng(), "accumulate fp16",
                  magi::DType::fp16, mode);
      // Many parts of one long causal mask, more items than SMs: each kernel's tail overlapped by
      // the next (overlapped modes), blocks running several merging items (every mode) and, from
      // nothing, items of rows no part before holds writing beside them.
      std::vector<KernelSlice> cuts;
      for (int64_t a = 0; a < 4000; a += 500) {
        cuts.push_back(sl(a, a + 500, a, a + 500, T::causal));
        if (a + 500 < 4000) cuts.push_back(sl(a + 500, 4000, a, a + 500, T::full));
      }
      check_parts(AttnShape{4000, 4000, 8, 2, d}, cuts, 8, rng(), "accumulate 8 parts", magi::DType::bf16, mode);
      // Short documents merged across parts: merging items one after another in a block's run,
      // items whose rows end inside the first consumer's 64, gaps without key tiles.
      check_parts(AttnShape{2500, 2500, 16, 8, d}, short_documents(2500, 150, 300, rng), 3, rng(),
                  "accumulate short documents", magi::DType::bf16, mode);
    }
  }
}

#ifdef MAGI_TEST_HAVE_CATALOGUE
TEST_F(FlexAttentionGpu, CatalogueMasks) {
  const uint64_t seed = magi::testing::fresh_test_seed("FlexAttentionGpu.CatalogueMasks");
  std::mt19937_64 rng(seed);
  const int64_t S = 1100;
  for (const auto& c : magi::kernels::testing::catalogue_cases(S, {130, 7, 300, 1, 262, 400})) {
    for (int d : {64, 128}) {
      check_case(AttnShape{S, S, 4, 2, d}, c.slices, rng(), c.type);
    }
  }
}
#endif

TEST_F(FlexAttentionGpu, RejectsBadInput) {
  EXPECT_THROW(kc::FlexAttention(AttnShape{10, 10, 3, 2, 128}, nullptr, 0), std::invalid_argument);
  EXPECT_THROW(kc::FlexAttention(AttnShape{10, 10, 2, 2, 96}, nullptr, 0), std::invalid_argument);
  const KernelSlice bad = sl(0, 11, 0, 10, KernelSliceType::full);
  EXPECT_THROW(kc::FlexAttention(AttnShape{10, 10, 2, 2, 128}, &bad, 1), std::invalid_argument);
  // Misaligned buffers are refused before any launch (the pointers are never dereferenced).
  const KernelSlice ok = sl(0, 10, 0, 10, KernelSliceType::causal);
  kc::FlexAttention attn(AttnShape{10, 10, 2, 2, 128}, &ok, 1);
  auto* good = reinterpret_cast<void*>(uintptr_t{1} << 20);
  auto* odd = reinterpret_cast<void*>((uintptr_t{1} << 20) + 2);
  auto* lse = static_cast<float*>(good);
  EXPECT_THROW(attn.forward(odd, good, good, good, lse, 0.1f), std::invalid_argument);
  EXPECT_THROW(attn.forward(good, good, good, odd, lse, 0.1f), std::invalid_argument);
  EXPECT_THROW(attn.backward(good, good, good, good, good, lse, 0.1f, good, good, odd), std::invalid_argument);
  EXPECT_THROW(attn.forward(good, good, good, good, static_cast<float*>(odd), 0.1f), std::invalid_argument);
  EXPECT_THROW(attn.backward(good, good, good, good, good, lse, 0.1f, good, good, good, nullptr, magi::kernels::Into::write,
                             static_cast<const float*>(odd)), std::invalid_argument);
  // Overlapping the previous kernel is for merging into its results only.
  EXPECT_THROW(attn.forward(good, good, good, good, lse, 0.1f, nullptr, magi::kernels::Into::write, kc::Launch::overlap),
               std::invalid_argument);
  EXPECT_THROW(attn.backward(good, good, good, good, good, lse, 0.1f, good, good, good, nullptr, magi::kernels::Into::write,
                             nullptr, kc::Launch::overlap), std::invalid_argument);
}

// share_backward_dq refuses mismatched plans, and calls out of the pass order before they enqueue
// anything (the pointers below are never dereferenced).
TEST_F(FlexAttentionGpu, SharedDqRefusals) {
  const KernelSlice a = sl(0, 10, 0, 10, KernelSliceType::causal), b = sl(0, 10, 0, 6, KernelSliceType::full);
  kc::FlexAttention p0(AttnShape{10, 10, 2, 2, 128}, &a, 1), p1(AttnShape{10, 6, 2, 2, 128}, &b, 1);
  kc::FlexAttention other_rows(AttnShape{12, 10, 2, 2, 128}, &a, 1), other_dim(AttnShape{10, 10, 2, 2, 64}, &a, 1);
  EXPECT_THROW(kc::FlexAttention::share_backward_dq({}), std::invalid_argument);
  EXPECT_THROW(kc::FlexAttention::share_backward_dq({&p0, &other_rows}), std::invalid_argument);
  EXPECT_THROW(kc::FlexAttention::share_backward_dq({&p0, &other_dim}), std::invalid_argument);
  EXPECT_THROW(kc::FlexAttention::share_backward_dq({&p0, &p0}), std::invalid_argument);
  EXPECT_THROW(kc::FlexAttention::share_backward_dq({&p0, nullptr}), std::invalid_argument);
  kc::FlexAttention::share_backward_dq({&p0, &p1});
  EXPECT_THROW(kc::FlexAttention::share_backward_dq({&p1, &other_rows}), std::logic_error);
  auto* g = reinterpret_cast<void*>(uintptr_t{1} << 20);
  auto* lse = static_cast<const float*>(g);
  using magi::kernels::Into;
  EXPECT_THROW(p1.backward(g, g, g, g, g, lse, 0.1f, g, g, g, nullptr, Into::accumulate), std::logic_error);
  EXPECT_THROW(p0.backward(g, g, g, g, g, lse, 0.1f, g, g, g, nullptr, Into::accumulate, lse, kc::Launch::overlap),
               std::logic_error);
  EXPECT_THROW(p0.backward(g, g, g, g, g, lse, 0.1f, g, g, g, nullptr, Into::write_keyed), std::invalid_argument);
}

}  // namespace
