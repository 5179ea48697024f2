// Timing and checking of the flexible CUDA attention on one GPU: the one place where the kernel
// benchmark's method lives (used by `magi-bench kernel` and the quick developer tool).
//
// Method: inputs are random bf16 values drawn on the device (never zeros); forward and backward
// are each warmed up, then timed `iters` times with CUDA events around single calls; the median
// is reported with min and max. TFLOP/s = FLOPs / median time, with FLOPs from the mask area
// (DESIGN.md §1): forward 4 * area * d * hq, backward 2.5 x forward. Backward time includes its
// pre-pass (D = rowsum(dO * O), dQ workspace reset) and its post-pass (dQ conversion).
//
// Check (optional): out, lse and dq of a sample of query rows (three windows of `check_rows`
// rows: first, middle, last) against the float64 CPU reference run on those rows only (slices
// clipped to them, with the whole K/V); dq of a row depends only on that row, so this is exact
// for those rows. dK/dV are checked in full by the gpu unit tests on smaller problems.
#pragma once

#include "common/kernel_args.h"
#include "cuda/flex_attention.h"

#include <cstdint>
#include <string>
#include <vector>

namespace magi::kernels::cuda {

struct FlexBenchOptions {
  bool fwd = true;
  bool bwd = true;
  int warmup = 5;
  int iters = 20;
  bool check = false;
  int64_t check_rows = 128;  // rows per checked window
  uint64_t seed = 1234;
  DType dtype = DType::bf16;
};

struct TimeStats {
  double median_ms = 0, min_ms = 0, max_ms = 0;
};

struct FlexBenchResult {
  FlexAttentionStats stats;
  double fwd_flops = 0, bwd_flops = 0;
  TimeStats fwd, bwd;
  double fwd_tflops = 0, bwd_tflops = 0;
  bool checked = false;
  bool check_passed = true;
  double err_out = 0, err_lse = 0, err_dq = 0;  // relative L2 (lse: max abs)
  double tol = 0;
  std::string check_message;  // empty when passed or not checked
};

FlexBenchResult run_flex_benchmark(const AttnShape& shape, const std::vector<KernelSlice>& slices,
                                   const FlexBenchOptions& options);

// Clips slices to query rows [a, b), keeping every row's visible keys (DESIGN.md §1 band).
std::vector<KernelSlice> clip_slices_to_rows(const std::vector<KernelSlice>& slices, int64_t a,
                                             int64_t b);

}  // namespace magi::kernels::cuda
