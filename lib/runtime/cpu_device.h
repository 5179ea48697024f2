// The CPU device (device.h): float32 host buffers, the float64-accumulating reference kernel of
// kernels/cpu on `threads` threads, and compute on a worker thread while the calling thread keeps
// MPI requests moving. Other dtypes are refused (ConfigError naming the dtype).
#pragma once

#include "runtime/device.h"

#include <atomic>
#include <memory>

namespace magi {

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int threads);

  std::string description() const override;
  DType dtype() const override { return DType::fp32; }
  double min_warmup_seconds() const override { return 0; }  // no clock that load moves
  double min_timed_seconds() const override { return 0; }

  Buffer alloc(int64_t elems, DType dtype) override;
  int64_t memory_bytes() const override;
  int64_t peak_memory_bytes() const override;
  void reset_peak_memory() override;

  RowMap prepare(std::vector<RowCopy> segs) override;
  std::unique_ptr<AttentionOp> attention(const kernels::AttnShape& shape,
                                         std::vector<kernels::KernelSlice> slices) override;
  void share_dq(const std::vector<AttentionOp*>& ops) override;

  void upload(const float* host, const Buffer& dst, int64_t offset, int64_t n) override;
  void download(const Buffer& src, int64_t offset, int64_t n, float* host) override;

  void copy_rows(const RowMap& map, Rows src, Rows dst, int64_t width) override;
  void add_rows(const RowMap& map, Rows src, Rows dst, int64_t width) override;
  void copy(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) override;
  void add(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) override;
  void fill(void* dst, DType dtype, int64_t n, float value) override;

  void compute(const std::function<void()>& work, const std::vector<Request*>& progress) override;
  void wait(Request* req) override;

  void begin_pass() override { stats_ = {}; }
  PassStats end_pass() override { return stats_; }
  void synchronize() override {}

  int threads() const { return threads_; }

  // Bytes held and the most held at once; shared with the buffers and ops so that one freed
  // after the device still balances its count.
  struct Memory {
    std::atomic<int64_t> now{0}, peak{0};
    void add(int64_t bytes);
  };

 private:
  int threads_;
  std::shared_ptr<Memory> memory_;
  PassStats stats_;
};

}  // namespace magi
