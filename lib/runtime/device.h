// The device interface the four strategies are written against (DESIGN.md §4, docs/execution.md):
// buffers in the model's dtype, attention forward/backward of one stage over local slices (each
// stage merging into the results of the earlier ones), row copies with dtype conversion (pack,
// unpack, add-into) and a compute stream that communication is ordered against. Two
// implementations:
//   CpuDevice  (cpu_device.h): float32 storage, the float64-accumulating reference kernel of
//              kernels/cpu, compute on a worker thread while the host keeps requests moving.
//   CudaDevice (cuda/cuda_device.h): bf16 or fp16 storage with fp32 LSE and dK/dV sums, the
//              flexible kernel of kernels/cuda, compute on a CUDA stream timed by events.
// No strategy file names either; the communicator that moves a device's buffers is chosen with it
// (host buffers: MPI; CUDA buffers: NCCL or MPI staged through pinned host memory).
//
// This header has no CUDA and no fmt types: nvcc compiles the CUDA device against it.
//
// Ordering. Every operation below is ordered on the device's compute stream, in call order, and
// may return before it has run (CUDA) or after (CPU). Data written by an operation is ready for
// later operations at once; for the host only after synchronize() (download() synchronizes).
// Communicators built for a device order their sends after the compute stream's work enqueued so
// far, and Device::wait(request) orders later compute after the request's receives.
#pragma once

#include "runtime/communicator.h"

#include "common/dtype.h"
#include "common/kernel_args.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace magi {

// A run of rows copied from one buffer to another.
struct RowCopy {
  int64_t src_row = 0, dst_row = 0, rows = 0;
};

// A block of device memory holding `elems` elements of `dtype`, zero-filled when allocated,
// freed when the last handle to it goes. A cheap handle: copies share the memory.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<void> memory, int64_t elems, DType dtype)
      : memory_(std::move(memory)), elems_(elems), dtype_(dtype) {}

  void* data() const { return memory_.get(); }
  int64_t elems() const { return elems_; }
  DType dtype() const { return dtype_; }
  int64_t bytes() const { return elems_ * dtype_bytes(dtype_); }
  // Address of element `elem` (elem <= elems()).
  void* at(int64_t elem) const { return static_cast<char*>(memory_.get()) + elem * dtype_bytes(dtype_); }
  float* f32(int64_t elem = 0) const { return static_cast<float*>(at(elem)); }  // dtype() == fp32

 private:
  std::shared_ptr<void> memory_;
  int64_t elems_ = 0;
  DType dtype_ = DType::fp32;
};

// Rows inside a buffer: row i's first used element is base + i * stride elements.
struct Rows {
  void* base = nullptr;
  DType dtype = DType::fp32;
  int64_t stride = 0;  // elements
};
inline Rows rows_of(const Buffer& b, int64_t stride, int64_t col = 0) {
  return {b.at(col), b.dtype(), stride};
}

// A row copy's segments, prepared once for a device (a CUDA device uploads them): the runners
// build these when they are constructed, never per pass.
class RowMap {
 public:
  RowMap() = default;
  RowMap(std::vector<RowCopy> segs, std::shared_ptr<void> on_device)
      : segs_(std::move(segs)), on_device_(std::move(on_device)) {
    for (const RowCopy& s : segs_) rows_ += s.rows;
  }
  const std::vector<RowCopy>& segs() const { return segs_; }
  int64_t rows() const { return rows_; }
  const void* on_device() const { return on_device_.get(); }  // null on a CPU device

 private:
  std::vector<RowCopy> segs_;
  std::shared_ptr<void> on_device_;
  int64_t rows_ = 0;
};

// Attention over one slice list, prepared once (the CUDA device builds the kernel's work lists
// here). Pointers are into this device's buffers: q, k, v, out, dout, dq, dk, dv of the device's
// dtype, lse fp32, in the layouts of kernels/common/kernel_args.h; the softmax scale is
// 1/sqrt(head_dim). With Into::write, rows that see no key get out = 0, lse = -inf and dq, dk, dv
// are written entirely; with Into::accumulate, out/lse and dq take this op's share on top of
// what they hold (kernel_args.h), which is how several stages' results combine; Into::write_keyed
// (forward only) writes the rows that see a key and leaves the others (kernel_args.h).
class AttentionOp {
 public:
  virtual ~AttentionOp() = default;
  virtual void forward(const void* q, const void* k, const void* v, void* out, float* lse,
                       kernels::Into into) = 0;
  virtual void backward(const void* q, const void* k, const void* v, const void* out,
                        const void* dout, const float* lse, void* dq, void* dk, void* dv,
                        kernels::Into dq_into) = 0;
  // Device memory this op holds besides the caller's buffers (work lists, workspaces).
  virtual int64_t workspace_bytes() const = 0;
  // The query rows that hold earlier results whenever forward runs with Into::accumulate (sorted,
  // disjoint; default: every row). The caller promises the others hold lse = -inf: the op may
  // write them as Into::write does, reading nothing there (a CUDA work item whose rows are all
  // such skips the earlier lse and out). Before the first forward.
  virtual void set_merged_rows(const std::vector<kernels::RowSpan>& rows) = 0;
};

// What one timed pass measured on its device.
struct PassStats {
  // Time compute stood still waiting for communication (Device::wait). Strategies use only the
  // communicator's non-blocking calls and Device::wait, so that this holds on every device.
  double comm_wait_ms = 0;
  // Per Device::compute call, in call order. A CUDA device runs the stage-wise attention calls of
  // a pass back to back, each kernel starting under the previous one's tail: such steps are one
  // entry, their time together (cuda_device.cu, StreamState).
  std::vector<double> compute_ms;
  // The pass on the device's own clock, from begin_pass() to the end of the work it enqueued
  // (CUDA events: no host launch or polling latency in it); < 0 where the device has none and
  // the host's clock times the pass.
  double device_ms = -1;
};

class Device {
 public:
  virtual ~Device() = default;

  // "cpu (float32, 2 threads)", "NVIDIA H200 (sm_90, 132 SMs), bf16".
  virtual std::string description() const = 0;
  // What q, k, v, out, dout, dq, dk, dv are stored in (and sent as); lse and accumulators are fp32.
  virtual DType dtype() const = 0;
  // How long a timed run's warm-up must last at least (when it has any iterations) for the
  // device to be timed in the state sustained work leaves it in; 0: the warm-up count alone.
  // A GPU reaches its power cap 0.5-1 s into sustained work and its clocks fall, so a pass timed
  // sooner runs faster than the same pass later (results/runtime/NOTES.md, 2026-12-04).
  virtual double min_warmup_seconds() const = 0;
  // How long a timed run's timed iterations must last at least (when it has a warm-up), so that
  // their median does not hang on one moment of the device's state; 0: the iteration count
  // alone. At its power cap a Hopper card's clock swings by up to 25% over a period of about
  // 1 s (results/runtime/NOTES.md, 2026-12-06), and 10 iterations of a 7 ms pass see one phase.
  virtual double min_timed_seconds() const = 0;

  // Memory: zero-filled buffers; bytes held now and the most held at once (buffers and the
  // attention ops' workspaces).
  virtual Buffer alloc(int64_t elems, DType dtype) = 0;
  virtual int64_t memory_bytes() const = 0;
  virtual int64_t peak_memory_bytes() const = 0;
  // Starts the peak over from what is held now (a sweep reuses a device: each case its own peak).
  virtual void reset_peak_memory() = 0;

  virtual RowMap prepare(std::vector<RowCopy> segs) = 0;
  virtual std::unique_ptr<AttentionOp> attention(const kernels::AttnShape& shape,
                                                 std::vector<kernels::KernelSlice> slices) = 0;
  // Ops of this device over the same query rows whose backward calls make one dQ in every pass:
  // each op's backward once, the first with Into::write, the others with Into::accumulate, into
  // the same dq (kernels/common/shared_dq_pass.h), as a strategy's stages do. A call out of that
  // order throws before it runs, on every device. What a device gains: CUDA sums the ops' dQ in
  // one fp32 workspace and converts each unit once, when its last tile lands, so that no stage
  // reads dq and none waits for the stage before it (cuda/flex_attention.h, share_backward_dq);
  // the CPU computes as before. Called once, before any backward; ops of another device, over
  // other query rows, or sharing already are a caller's mistake and throw.
  virtual void share_dq(const std::vector<AttentionOp*>& ops) = 0;

  // Host transfers, converting between float and the buffer's dtype: n elements from element
  // `offset` of the buffer. upload() may return before the copy ran (the host array must stay
  // valid until the next synchronize()); download() returns with the data on the host.
  virtual void upload(const float* host, const Buffer& dst, int64_t offset, int64_t n) = 0;
  virtual void download(const Buffer& src, int64_t offset, int64_t n, float* host) = 0;

  // Row copies: for each segment, dst row (dst_row + i) = (copy) or += (add) src row
  // (src_row + i), `width` elements per row, converting between the two dtypes (adds in fp32).
  // The segments of one map must not write the same dst row twice: a device runs them at once
  // (a sum into one row from several sources takes one map per source, one call each).
  virtual void copy_rows(const RowMap& map, Rows src, Rows dst, int64_t width) = 0;
  virtual void add_rows(const RowMap& map, Rows src, Rows dst, int64_t width) = 0;
  // n contiguous elements: dst = src or dst += src, converting dtypes; and dst = value.
  virtual void copy(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) = 0;
  virtual void add(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) = 0;
  virtual void fill(void* dst, DType dtype, int64_t n, float value) = 0;

  // Runs `work` (calls to this device) as one compute step, timed into the pass's compute_ms.
  // CPU: on a worker thread while this thread keeps the `progress` requests moving (MPI advances
  // only inside calls), returning when the work is done. CUDA: `work` enqueues on the compute
  // stream and this returns at once.
  virtual void compute(const std::function<void()>& work, const std::vector<Request*>& progress) = 0;
  // Orders later compute after `req` (null: nothing) and its received data; the time compute
  // stood still for it is added to the pass's comm_wait_ms.
  virtual void wait(Request* req) = 0;

  // A timed pass: begin_pass() starts a fresh PassStats; end_pass() waits for everything enqueued
  // and returns it.
  virtual void begin_pass() = 0;
  virtual PassStats end_pass() = 0;
  // Waits for everything enqueued; a stuck device is reported through the watchdog.
  virtual void synchronize() = 0;

  // The CUDA stream (cudaStream_t as void*) communicators order against; null on the CPU.
  virtual void* stream() const { return nullptr; }
  // Bounds synchronize() (not owned; null: unbounded).
  void set_watchdog(Watchdog* watchdog) { watchdog_ = watchdog; }
  // Called now and then while synchronize() waits (empty: nothing): the data communicator's
  // check_async_errors, so that a failed collective ends the wait with its own message instead
  // of running into the watchdog.
  void set_async_check(std::function<void()> check) { async_check_ = std::move(check); }

 protected:
  Watchdog* watchdog_ = nullptr;
  std::function<void()> async_check_;
};

}  // namespace magi
