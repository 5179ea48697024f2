// The part of the kernel benchmark (kernel_benchmark.h) that needs the CUDA runtime: random
// inputs on the device, the timed forward and backward, the tensors brought back as float.
// Compiled by nvcc, so it sees only the kernels' headers (no lib/core: its fmt does not build
// under nvcc).
#pragma once

#include "common/dtype.h"
#include "common/kernel_args.h"
#include "cuda/flex_attention.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace magi {

// Query rows [first, end) of the shape.
struct RowWindow {
  int64_t first = 0, end = 0;
};

// Inputs and outputs of one attention call on the host, as float, in the kernel's layouts. The
// per-query-row tensors (q, dout, out, lse, dq) hold only the rows of the windows asked for, the
// windows one after another; k and v are whole.
struct HostTensors {
  std::vector<float> q, k, v, dout;  // inputs
  std::vector<float> out, lse;       // forward
  std::vector<float> dq;             // backward (empty when it did not run)
};

class KernelBenchDevice {
 public:
  // Allocates the tensors, draws q, k, v and dout (roughly normal values, never all zeros; from
  // `seed`) and runs one untimed forward: out and lse for the backward.
  KernelBenchDevice(const kernels::AttnShape& shape, const std::vector<kernels::KernelSlice>& slices,
                    DType dtype, uint64_t seed);
  ~KernelBenchDevice();
  KernelBenchDevice(const KernelBenchDevice&) = delete;
  KernelBenchDevice& operator=(const KernelBenchDevice&) = delete;

  const kernels::cuda::FlexAttentionStats& stats() const;
  // `warmup` calls, then `iters` calls each timed alone with CUDA events: ms per timed call. With
  // warmup > 0, as many more calls as make the warm-up last 1 s and the timed calls 2 s
  // (kCudaMinWarmupSeconds, kCudaMinTimedSeconds): then there are `iters` samples or more.
  // The backward's time includes its pre-pass (D = rowsum(dO * O), dQ workspace reset) and its
  // post-pass (dQ conversion).
  std::vector<double> time_forward(int warmup, int iters);
  std::vector<double> time_backward(int warmup, int iters);
  // Runs the forward (and the backward when `backward`) once more, then brings back k and v and
  // the windows' rows of the rest (a check needs a few hundred rows: 64 query heads at 32k tokens
  // are 1 GB a tensor as float).
  HostTensors outputs(bool backward, const std::vector<RowWindow>& windows);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace magi
