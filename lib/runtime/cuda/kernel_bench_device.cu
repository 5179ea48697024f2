// See kernel_bench_device.h.
#include "runtime/cuda/kernel_bench_device.h"

#include "runtime/cuda/cuda_device.h"
#include "runtime/min_duration.h"

#include "cuda/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace magi {

namespace {

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t bytes) {
    if (bytes) MAGI_CUDA_CHECK(cudaMalloc(&p, bytes));
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
  MAGI_CUDA_CHECK(cudaGetLastError());
}

std::vector<float> download(const void* p, int64_t n, DType dt) {
  std::vector<float> h(static_cast<size_t>(n));
  if (n == 0) return h;
  Buf tmp(static_cast<size_t>(n) * 4);
  if (dt == DType::bf16) to_float_kernel<<<1024, 256>>>(static_cast<const __nv_bfloat16*>(p), static_cast<float*>(tmp.p), n);
  else to_float_kernel<<<1024, 256>>>(static_cast<const __half*>(p), static_cast<float*>(tmp.p), n);
  MAGI_CUDA_CHECK(cudaGetLastError());
  MAGI_CUDA_CHECK(cudaMemcpy(h.data(), tmp.p, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToHost));
  return h;
}

// Calls of f timed one by one: `iters` of them after a warm-up of `warmup` calls, and where the
// minimums apply (minimums_apply) the warm-up made to last at least kCudaMinWarmupSeconds and the
// timed calls at least kCudaMinTimedSeconds (cuda_device.h), as `run` times a pass on a GPU.
template <class F>
std::vector<double> time_calls(F&& f, int warmup, int iters) {
  const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  const auto start = std::chrono::steady_clock::now();
  const bool extend = minimums_apply(warmup, iters);
  for (int i = 0; i < warmup; ++i) f();
  MAGI_CUDA_CHECK(cudaDeviceSynchronize());
  if (extend) {
    const int64_t more = extra_iterations_to_last(kCudaMinWarmupSeconds, warmup, seconds_since(start));
    for (int64_t i = 0; i < more; ++i) f();
    MAGI_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<cudaEvent_t> ev;
  const auto timed = [&](int64_t n) {
    const size_t first = ev.size();
    ev.resize(first + 2 * static_cast<size_t>(n));
    for (size_t e = first; e < ev.size(); ++e) MAGI_CUDA_CHECK(cudaEventCreate(&ev[e]));
    for (size_t e = first; e < ev.size(); e += 2) {
      MAGI_CUDA_CHECK(cudaEventRecord(ev[e]));
      f();
      MAGI_CUDA_CHECK(cudaEventRecord(ev[e + 1]));
    }
    MAGI_CUDA_CHECK(cudaDeviceSynchronize());
  };
  const auto timed_start = std::chrono::steady_clock::now();
  timed(iters);
  if (extend) timed(extra_iterations_to_last(kCudaMinTimedSeconds, iters, seconds_since(timed_start)));
  std::vector<double> ms(ev.size() / 2);
  for (size_t i = 0; i < ms.size(); ++i) {
    float t = 0;
    MAGI_CUDA_CHECK(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[i] = t;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  return ms;
}

}  // namespace

struct KernelBenchDevice::Impl {
  kernels::AttnShape sh;
  DType dtype;
  kernels::cuda::FlexAttention attn;
  int64_t nq, nk, nl;  // elements of q (and out, dout, dq), of k (and v, dk, dv), of lse
  float scale;
  Buf q, k, v, out, dout, lse, dq, dk, dv;

  Impl(const kernels::AttnShape& shape, const std::vector<kernels::KernelSlice>& slices, DType dt)
      : sh(shape),
        dtype(dt),
        attn(shape, slices.data(), slices.size(), dt),
        nq(shape.sq * shape.hq * shape.d),
        nk(shape.sk * shape.hkv * shape.d),
        nl(shape.sq * shape.hq),
        scale(1.f / std::sqrt(static_cast<float>(shape.d))),
        q(nq * 2), k(nk * 2), v(nk * 2), out(nq * 2), dout(nq * 2), lse(nl * 4), dq(nq * 2),
        dk(nk * 2), dv(nk * 2) {}

  void forward() { attn.forward(q.p, k.p, v.p, out.p, static_cast<float*>(lse.p), scale); }
  void backward() {
    attn.backward(q.p, k.p, v.p, out.p, dout.p, static_cast<const float*>(lse.p), scale, dq.p, dk.p, dv.p);
  }
};

KernelBenchDevice::KernelBenchDevice(const kernels::AttnShape& shape,
                                     const std::vector<kernels::KernelSlice>& slices, DType dtype,
                                     uint64_t seed)
    : impl_(std::make_unique<Impl>(shape, slices, dtype)) {
  Impl& m = *impl_;
  fill(m.q.p, m.nq, seed * 8 + 1, dtype);
  fill(m.k.p, m.nk, seed * 8 + 2, dtype);
  fill(m.v.p, m.nk, seed * 8 + 3, dtype);
  fill(m.dout.p, m.nq, seed * 8 + 4, dtype);
  m.forward();  // out and lse for the backward, also when the forward is not timed
  MAGI_CUDA_CHECK(cudaDeviceSynchronize());
}

KernelBenchDevice::~KernelBenchDevice() = default;

const kernels::cuda::FlexAttentionStats& KernelBenchDevice::stats() const { return impl_->attn.stats(); }

std::vector<double> KernelBenchDevice::time_forward(int warmup, int iters) {
  return time_calls([this] { impl_->forward(); }, warmup, iters);
}

std::vector<double> KernelBenchDevice::time_backward(int warmup, int iters) {
  return time_calls([this] { impl_->backward(); }, warmup, iters);
}

HostTensors KernelBenchDevice::outputs(bool backward, const std::vector<RowWindow>& windows) {
  Impl& m = *impl_;
  for (const RowWindow& w : windows) {
    if (w.first < 0 || w.first > w.end || w.end > m.sh.sq)
      throw std::invalid_argument("outputs: row window [" + std::to_string(w.first) + ", " +
                                  std::to_string(w.end) + ") outside the " + std::to_string(m.sh.sq) + " query rows");
  }
  m.forward();
  if (backward) m.backward();
  MAGI_CUDA_CHECK(cudaDeviceSynchronize());
  const int64_t row = static_cast<int64_t>(m.sh.hq) * m.sh.d;  // elements of a query row
  const auto rows_of = [&](const void* p, std::vector<float>& to) {  // p: 2-byte elements
    for (const RowWindow& w : windows) {
      const std::vector<float> part =
          download(static_cast<const char*>(p) + w.first * row * 2, (w.end - w.first) * row, m.dtype);
      to.insert(to.end(), part.begin(), part.end());
    }
  };
  HostTensors h;
  h.k = download(m.k.p, m.nk, m.dtype);
  h.v = download(m.v.p, m.nk, m.dtype);
  rows_of(m.q.p, h.q);
  rows_of(m.dout.p, h.dout);
  rows_of(m.out.p, h.out);
  if (backward) rows_of(m.dq.p, h.dq);
  for (const RowWindow& w : windows) {
    const size_t n = static_cast<size_t>((w.end - w.first) * m.sh.hq);
    h.lse.resize(h.lse.size() + n);
    if (n) {
      MAGI_CUDA_CHECK(cudaMemcpy(h.lse.data() + h.lse.size() - n, static_cast<const float*>(m.lse.p) + w.first * m.sh.hq,
                                 n * 4, cudaMemcpyDeviceToHost));
    }
  }
  return h;
}

}  // namespace magi
