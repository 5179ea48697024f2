// Timing and checking of the flexible CUDA attention alone on one GPU: the one place where the
// kernel benchmark's method lives (used by `magi-bench kernel` and the quick developer tool).
//
// Method: inputs are random bf16 or fp16 values drawn on the device (never zeros); forward and
// backward are each warmed up (`warmup` calls and at least 1 s of them, so that each case runs
// at the clocks its own work sets), then timed `iters` times with CUDA events around single calls
// (and, after a warm-up, for at least 2 s: at the power cap the clock swings by up to 25% over
// about 1 s, and a shorter window times one phase of it);
// the per-call times come back, and the results rows summarise them (median, min, max; the
// FLOPs and TFLOP/s of core/results). Backward time includes its pre-pass (D = rowsum(dO * O),
// dQ workspace reset) and its post-pass (dQ conversion).
//
// Check (a separate call, on a fresh device with the same inputs): out, lse and dq of a sample of
// query rows (three windows of `check_rows` rows: first, middle, last) against the float64 CPU
// reference run on those rows only (the mask clipped to them, with the whole K/V); dq of a row
// depends only on that row, so this is exact for those rows. dK/dV are checked in full by the gpu
// unit tests on smaller problems. Timing and check are apart so that a caller can time every case
// before checking any: the check's seconds of CPU work leave the card idle, and a case timed after
// such a pause ran up to 6% faster than one timed right after another, even after the 1 s warm-up
// (results/kernel/NOTES.md, session 33).
#pragma once

#include "common/dtype.h"
#include "common/kernel_args.h"
#include "core/base/slice.h"
#include "core/results/tensor_error.h"
#include "cuda/flex_attention.h"

#include <cstdint>
#include <vector>

namespace magi {

struct KernelBenchOptions {
  bool fwd = true;
  bool bwd = true;
  int warmup = 5;
  int iters = 20;
  int64_t check_rows = 128;  // rows per checked window
  uint64_t seed = 1234;
  DType dtype = DType::bf16;
};

struct KernelBenchResult {
  kernels::cuda::FlexAttentionStats stats;  // mask area, work items and tiles
  std::vector<double> fwd_ms, bwd_ms;       // per timed call (empty for a pass not timed)
};

// `mask` in global coordinates over the shape's sq x sk. Both throw std::invalid_argument for a
// mask or shape the kernel refuses, std::runtime_error on a CUDA error.
// Times the passes `options` asks for.
KernelBenchResult time_kernel(const kernels::AttnShape& shape, const std::vector<AttnSlice>& mask,
                              const KernelBenchOptions& options);
// Runs the forward (and the backward when options.bwd) once on the same inputs as time_kernel
// (options.seed) and checks the sampled rows: out, lse, and dq when options.bwd.
std::vector<TensorError> check_kernel(const kernels::AttnShape& shape, const std::vector<AttnSlice>& mask,
                                      const KernelBenchOptions& options);

}  // namespace magi
