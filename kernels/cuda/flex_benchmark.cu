// See flex_benchmark.h for the method.
#include "cuda/flex_benchmark.h"

#include "cpu/reference_attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace magi::kernels::cuda {

namespace {

void check(cudaError_t e, const char* call, int line) {
  if (e != cudaSuccess) {
    std::ostringstream os;
    os << "CUDA error '" << cudaGetErrorString(e) << "' in " << call << " at flex_benchmark.cu:" << line;
    throw std::runtime_error(os.str());
  }
}
#define BENCH_CHECK(call) check((call), #call, __LINE__)

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t bytes) {
    if (bytes) BENCH_CHECK(cudaMalloc(&p, bytes));
  }
  ~Buf() {
    if (p) cudaFree(p);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

__device__ inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

// Roughly normal values (sum of four uniforms, variance 1), never all zeros.
template <typename T>
__global__ void fill_random(T* x, int64_t n, uint64_t seed) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = mix(seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(i));
    float s = 0.f;
    for (int j = 0; j < 4; ++j) s += static_cast<float>((h >> (16 * j)) & 0xffff) * (1.f / 65536.f);
    const float v = (s - 2.f) * 1.7320508f;
    if constexpr (sizeof(T) == 2 && std::is_same_v<T, __nv_bfloat16>) x[i] = __float2bfloat16_rn(v);
    else x[i] = __float2half_rn(v);
  }
}

template <typename T>
__global__ void to_float_kernel(const T* x, float* y, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) y[i] = __bfloat162float(x[i]);
    else y[i] = __half2float(x[i]);
  }
}

void fill(void* p, int64_t n, uint64_t seed, DType dt) {
  if (n == 0) return;
  if (dt == DType::bf16) fill_random<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed);
  else fill_random<<<1024, 256>>>(static_cast<__half*>(p), n, seed);
  BENCH_CHECK(cudaGetLastError());
}

std::vector<float> download(const void* p, int64_t n, DType dt) {
  std::vector<float> h(static_cast<size_t>(n));
  if (n == 0) return h;
  Buf tmp(static_cast<size_t>(n) * 4);
  if (dt == DType::bf16) to_float_kernel<<<1024, 256>>>(static_cast<const __nv_bfloat16*>(p), static_cast<float*>(tmp.p), n);
  else to_float_kernel<<<1024, 256>>>(static_cast<const __half*>(p), static_cast<float*>(tmp.p), n);
  BENCH_CHECK(cudaGetLastError());
  BENCH_CHECK(cudaMemcpy(h.data(), tmp.p, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToHost));
  return h;
}

template <class F>
TimeStats time_it(F&& f, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) f();
  BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(iters));
  for (auto& e : ev) BENCH_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    BENCH_CHECK(cudaEventRecord(ev[2 * i]));
    f();
    BENCH_CHECK(cudaEventRecord(ev[2 * i + 1]));
  }
  BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<double> ms(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    float t = 0;
    BENCH_CHECK(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[i] = t;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  TimeStats s;
  if (iters > 0) {
    s.min_ms = ms.front();
    s.max_ms = ms.back();
    s.median_ms = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
  }
  return s;
}

double rel_l2(const float* got, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

std::vector<KernelSlice> clip_slices_to_rows(const std::vector<KernelSlice>& slices, int64_t a,
                                             int64_t b) {
  std::vector<KernelSlice> out;
  for (const KernelSlice& s : slices) {
    const int64_t qa = std::max(a, s.q_start), qb = std::min(b, s.q_end);
    if (qa >= qb) continue;
    const int t = static_cast<int>(s.type);
    KernelSlice c = s;
    c.q_start = qa;
    c.q_end = qb;
    if (t & 2) c.k_start = s.k_start + (qa - s.q_start);  // inv_causal, bi_causal: lo moves with q
    if (t & 1) c.k_end = s.k_end - (s.q_end - qb);        // causal, bi_causal: hi moves with q
    if (c.k_end <= c.k_start) continue;                   // no row of the window sees a key
    out.push_back(c);
  }
  return out;
}

FlexBenchResult run_flex_benchmark(const AttnShape& sh, const std::vector<KernelSlice>& slices,
                                   const FlexBenchOptions& o) {
  FlexBenchResult r;
  FlexAttention attn(sh, slices.data(), slices.size(), o.dtype);
  r.stats = attn.stats();
  r.fwd_flops = 4.0 * static_cast<double>(r.stats.area) * sh.d * sh.hq;
  r.bwd_flops = 2.5 * r.fwd_flops;
  const int64_t nq = sh.sq * sh.hq * sh.d, nk = sh.sk * sh.hkv * sh.d, nl = sh.sq * sh.hq;
  const float scale = 1.f / std::sqrt(static_cast<float>(sh.d));
  Buf q(nq * 2), k(nk * 2), v(nk * 2), out(nq * 2), dout(nq * 2), lse(nl * 4), dq(nq * 2),
      dk(nk * 2), dv(nk * 2);
  fill(q.p, nq, o.seed * 8 + 1, o.dtype);
  fill(k.p, nk, o.seed * 8 + 2, o.dtype);
  fill(v.p, nk, o.seed * 8 + 3, o.dtype);
  fill(dout.p, nq, o.seed * 8 + 4, o.dtype);
  auto fwd = [&] { attn.forward(q.p, k.p, v.p, out.p, static_cast<float*>(lse.p), scale); };
  auto bwd = [&] {
    attn.backward(q.p, k.p, v.p, out.p, dout.p, static_cast<const float*>(lse.p), scale, dq.p, dk.p, dv.p);
  };
  fwd();  // out and lse for the backward, also when the forward is not timed
  BENCH_CHECK(cudaDeviceSynchronize());
  if (o.fwd) {
    r.fwd = time_it(fwd, o.warmup, o.iters);
    r.fwd_tflops = r.fwd.median_ms > 0 ? r.fwd_flops / (r.fwd.median_ms * 1e-3) / 1e12 : 0;
  }
  if (o.bwd) {
    r.bwd = time_it(bwd, o.warmup, o.iters);
    r.bwd_tflops = r.bwd.median_ms > 0 ? r.bwd_flops / (r.bwd.median_ms * 1e-3) / 1e12 : 0;
  }
  if (!o.check) return r;

  // Check sampled row windows against the float64 reference.
  r.checked = true;
  r.tol = 1e-2;  // bf16 and fp16 alike: relative L2
  fwd();
  if (o.bwd) bwd();
  BENCH_CHECK(cudaDeviceSynchronize());
  const std::vector<float> hq = download(q.p, nq, o.dtype), hk = download(k.p, nk, o.dtype),
                           hv = download(v.p, nk, o.dtype), hout = download(out.p, nq, o.dtype),
                           hdo = download(dout.p, nq, o.dtype);
  std::vector<float> hlse(static_cast<size_t>(nl));
  if (nl) BENCH_CHECK(cudaMemcpy(hlse.data(), lse.p, static_cast<size_t>(nl) * 4, cudaMemcpyDeviceToHost));
  std::vector<float> hdq;
  if (o.bwd) hdq = download(dq.p, nq, o.dtype);

  const int64_t w = std::min(o.check_rows, sh.sq);
  std::vector<int64_t> starts{0, (sh.sq - w) / 2, sh.sq - w};
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  std::vector<float> got_o, ref_o, got_dq, ref_dq;
  double lse_err = 0;
  const size_t row = static_cast<size_t>(sh.hq) * sh.d;
  for (int64_t a : starts) {
    const int64_t b = a + w;
    std::vector<KernelSlice> cs = clip_slices_to_rows(slices, a, b);
    for (auto& s : cs) { s.q_start -= a; s.q_end -= a; }
    AttnShape s2 = sh;
    s2.sq = w;
    std::vector<float> ro(static_cast<size_t>(w) * row), rl(static_cast<size_t>(w) * sh.hq);
    const float* qa = hq.data() + static_cast<size_t>(a) * row;
    cpu::attention_forward(s2, cs.data(), cs.size(), qa, hk.data(), hv.data(), scale, ro.data(), rl.data());
    got_o.insert(got_o.end(), hout.begin() + a * row, hout.begin() + b * row);
    ref_o.insert(ref_o.end(), ro.begin(), ro.end());
    for (size_t i = 0; i < rl.size(); ++i) {
      const float g = hlse[static_cast<size_t>(a) * sh.hq + i];
      if (std::isinf(rl[i])) { if (!(std::isinf(g) && g < 0)) lse_err = std::numeric_limits<double>::infinity(); }
      else lse_err = std::max(lse_err, std::isfinite(g) ? std::fabs(static_cast<double>(g) - rl[i]) : std::numeric_limits<double>::infinity());
    }
    if (o.bwd) {
      std::vector<float> rdq(static_cast<size_t>(w) * row), rdk(static_cast<size_t>(nk)), rdv(static_cast<size_t>(nk));
      cpu::attention_backward(s2, cs.data(), cs.size(), qa, hk.data(), hv.data(), ro.data(),
                              hdo.data() + static_cast<size_t>(a) * row, rl.data(), scale, rdq.data(),
                              rdk.data(), rdv.data());
      got_dq.insert(got_dq.end(), hdq.begin() + a * row, hdq.begin() + b * row);
      ref_dq.insert(ref_dq.end(), rdq.begin(), rdq.end());
    }
  }
  r.err_out = rel_l2(got_o.data(), ref_o.data(), got_o.size());
  r.err_lse = lse_err;
  if (o.bwd) r.err_dq = rel_l2(got_dq.data(), ref_dq.data(), got_dq.size());
  std::ostringstream msg;
  if (!(r.err_out <= r.tol)) msg << "out rel L2 " << r.err_out << " > " << r.tol << "; ";
  if (!(r.err_lse <= 2e-2)) msg << "lse max abs " << r.err_lse << " > 0.02; ";
  if (o.bwd && !(r.err_dq <= r.tol)) msg << "dq rel L2 " << r.err_dq << " > " << r.tol << "; ";
  r.check_message = msg.str();
  r.check_passed = r.check_message.empty();
  return r;
}

}  // namespace magi::kernels::cuda
