// See kernel_benchmark.h for the method.
#include "runtime/cuda/kernel_benchmark.h"

#include "core/base/stats.h"
#include "core/plan/clip.h"
#include "runtime/cuda/kernel_bench_device.h"

#include "cpu/reference_attention.h"

#include <algorithm>
#include <cmath>

namespace magi {

namespace {

// bf16 and fp16 alike: out and dq within 1% relative L2, lse within 0.02 (natural log units).
constexpr double kRelL2Tolerance = 1e-2;
constexpr double kLseMaxAbsTolerance = 2e-2;

}  // namespace

KernelBenchResult time_kernel(const kernels::AttnShape& sh, const std::vector<AttnSlice>& mask,
                              const KernelBenchOptions& o) {
  KernelBenchResult r;
  KernelBenchDevice device(sh, to_kernel_slices(mask), o.dtype, o.seed);
  r.stats = device.stats();
  if (o.fwd) r.fwd_ms = device.time_forward(o.warmup, o.iters);
  if (o.bwd) r.bwd_ms = device.time_backward(o.warmup, o.iters);
  return r;
}

std::vector<TensorError> check_kernel(const kernels::AttnShape& sh, const std::vector<AttnSlice>& mask,
                                      const KernelBenchOptions& o) {
  KernelBenchDevice device(sh, to_kernel_slices(mask), o.dtype, o.seed);
  // Sampled row windows against the float64 reference.
  const int64_t w = std::min(o.check_rows, sh.sq);
  std::vector<int64_t> starts{0, (sh.sq - w) / 2, sh.sq - w};
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  std::vector<RowWindow> windows;
  for (const int64_t a : starts) windows.push_back({a, a + w});
  const HostTensors h = device.outputs(o.bwd, windows);
  const float scale = 1.f / std::sqrt(static_cast<float>(sh.d));
  std::vector<float> ref_out, ref_lse, ref_dq;
  const size_t row = static_cast<size_t>(sh.hq) * sh.d;
  for (size_t i = 0; i < windows.size(); ++i) {
    const int64_t a = windows[i].first, b = windows[i].end;
    std::vector<AttnSlice> clipped;
    for (const AttnSlice& s : mask) clip_slice_into(s, Range{a, b}, Range{0, sh.sk}, clipped);
    for (AttnSlice& s : clipped) s = shift_slice(s, -a, 0);  // the window's rows start at 0
    const std::vector<kernels::KernelSlice> cs = to_kernel_slices(clipped);
    kernels::AttnShape window = sh;
    window.sq = w;
    std::vector<float> ro(static_cast<size_t>(w) * row), rl(static_cast<size_t>(w) * sh.hq);
    const size_t at = i * static_cast<size_t>(w) * row;  // the window's first row in h's row tensors
    kernels::cpu::attention_forward(window, cs.data(), cs.size(), h.q.data() + at, h.k.data(), h.v.data(),
                                    scale, ro.data(), rl.data());
    ref_out.insert(ref_out.end(), ro.begin(), ro.end());
    ref_lse.insert(ref_lse.end(), rl.begin(), rl.end());
    if (o.bwd) {
      // dq alone: a window's rows give only part of each key's dK / dV.
      std::vector<float> rdq(static_cast<size_t>(w) * row);
      kernels::cpu::attention_backward(window, cs.data(), cs.size(), h.q.data() + at, h.k.data(), h.v.data(),
                                       ro.data(), h.dout.data() + at, rl.data(), scale, rdq.data(), nullptr,
                                       nullptr);
      ref_dq.insert(ref_dq.end(), rdq.begin(), rdq.end());
    }
  }
  std::vector<TensorError> errors;
  errors.push_back(judge("out", tensor_diff(h.out, ref_out), ErrorBound::rel_l2, kRelL2Tolerance));
  errors.push_back(judge("lse", tensor_diff(h.lse, ref_lse), ErrorBound::max_abs, kLseMaxAbsTolerance));
  if (o.bwd) errors.push_back(judge("dq", tensor_diff(h.dq, ref_dq), ErrorBound::rel_l2, kRelL2Tolerance));
  return errors;
}

}  // namespace magi
