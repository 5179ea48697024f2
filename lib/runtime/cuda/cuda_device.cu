// See cuda_device.h. Only std, CUDA and kernels/ headers besides device.h (fmt 9 does not compile
// under nvcc in C++20), so errors are std exceptions: MAGI_CUDA_CHECK quotes the call, the CUDA
// error and the device.
#include "runtime/cuda/cuda_device.h"

#include "cuda/cuda_check.h"
#include "cuda/flex_attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

namespace magi {

namespace {

// ---- element conversion (device) ----

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ inline T from_float(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(x);
  else return __float2half_rn(x);
}

// Calls f(T{}) with T the element type of `dt`.
template <typename F>
void with_type(DType dt, F&& f) {
  switch (dt) {
    case DType::fp32: f(float{}); return;
    case DType::bf16: f(__nv_bfloat16{}); return;
    case DType::fp16: f(__half{}); return;
  }
  throw std::invalid_argument("CudaDevice: unknown dtype " + std::to_string(static_cast<int>(dt)));
}

constexpr int kThreads = 256;

// A grid-stride launch over n items: enough blocks to fill the GPU, never more than needed.
unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(b, 1), 65536));
}

template <typename S, typename D, bool kAdd>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (kAdd) dst[i] = from_float<D>(to_float(dst[i]) + to_float(src[i]));
    else dst[i] = from_float<D>(to_float(src[i]));
  }
}

template <typename D>
__global__ void fill_kernel(D* dst, int64_t n, float value) {
  const D v = from_float<D>(value);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = v;
}

// A prepared RowMap on the device: per segment {src_row, dst_row, rows, first}, `first` being the
// segment's first row in the concatenation of all segments' rows (a prefix sum of `rows`).
constexpr int kSegFields = 4;

// All rows of all segments in one launch: threadIdx.y and the blocks walk the concatenated rows
// (a binary search over `first` finds a row's segment), threadIdx.x walks the row's elements.
template <typename S, typename D, bool kAdd>
__global__ void rows_kernel(const int64_t* segs, int nsegs, int64_t total_rows, const S* src,
                            int64_t src_stride, D* dst, int64_t dst_stride, int64_t width) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < total_rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    int lo = 0, hi = nsegs - 1;  // the last segment whose first row is <= r (it has rows > r - first)
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (segs[mid * kSegFields + 3] <= r) lo = mid;
      else hi = mid - 1;
    }
    const int64_t* s = segs + lo * kSegFields;
    const int64_t i = r - s[3];
    const S* in = src + (s[0] + i) * src_stride;
    D* out = dst + (s[1] + i) * dst_stride;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
      if constexpr (kAdd) out[c] = from_float<D>(to_float(out[c]) + to_float(in[c]));
      else out[c] = from_float<D>(to_float(in[c]));
    }
  }
}

// Bytes held now and at most, shared with the deleters of buffers and row maps and with attention
// ops, which may outlive the device object.
struct MemoryCount {
  std::atomic<int64_t> now{0}, peak{0};
  void add(int64_t bytes) {
    const int64_t v = now.fetch_add(bytes) + bytes;
    int64_t p = peak.load();
    while (v > p && !peak.compare_exchange_weak(p, v)) {
    }
  }
  void sub(int64_t bytes) { now.fetch_sub(bytes); }
};

class CudaAttentionOp final : public AttentionOp {
 public:
  CudaAttentionOp(const kernels::AttnShape& shape, const std::vector<kernels::KernelSlice>& slices,
                  DType dtype, int device, cudaStream_t stream, std::shared_ptr<MemoryCount> memory)
      : attn_(shape, slices.data(), slices.size(), dtype, device),
        scale_(1.f / std::sqrt(static_cast<float>(shape.d))),
        stream_(stream),
        memory_(std::move(memory)) {
    account();
  }
  ~CudaAttentionOp() override { memory_->sub(accounted_); }

  void forward(const void* q, const void* k, const void* v, void* out, float* lse, kernels::Into into) override {
    attn_.forward(q, k, v, out, lse, scale_, stream_, into);
  }
  void backward(const void* q, const void* k, const void* v, const void* out, const void* dout,
                const float* lse, void* dq, void* dk, void* dv, kernels::Into dq_into) override {
    attn_.backward(q, k, v, out, dout, lse, scale_, dq, dk, dv, stream_, dq_into);
    account();  // the first backward allocates the workspace
  }
  int64_t workspace_bytes() const override { return attn_.device_bytes(); }

 private:
  void account() {
    const int64_t now = attn_.device_bytes();
    if (now > accounted_) memory_->add(now - accounted_);
    accounted_ = now;
  }

  kernels::cuda::FlexAttention attn_;
  float scale_;
  cudaStream_t stream_;
  std::shared_ptr<MemoryCount> memory_;
  int64_t accounted_ = 0;
};

class CudaDevice final : public Device {
 public:
  CudaDevice(int index, DType dtype) : index_(index), dtype_(dtype) {
    int count = 0;
    MAGI_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (index < 0 || index >= count)
      throw std::invalid_argument("make_cuda_device: device index " + std::to_string(index) +
                                  " out of range (" + std::to_string(count) + " CUDA devices visible)");
    MAGI_CUDA_CHECK(cudaSetDevice(index_));
    MAGI_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    description_ = kernels::cuda::device_description() + ", " + std::string(to_string(dtype_));
  }

  ~CudaDevice() override {
    // Destructors do not throw: work still queued is waited for, errors are left to the context.
    cudaSetDevice(index_);
    cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    cudaStreamDestroy(stream_);
  }

  std::string description() const override { return description_; }
  DType dtype() const override { return dtype_; }

  Buffer alloc(int64_t elems, DType dtype) override {
    check_count("alloc", "elems", elems);
    set_device();
    const int64_t bytes = elems * dtype_bytes(dtype);
    void* p = nullptr;
    if (bytes > 0) {
      MAGI_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes)));
      // Ordered before everything later on the compute stream, as device.h promises.
      const cudaError_t e = cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), stream_);
      if (e != cudaSuccess) cudaFree(p);
      MAGI_CUDA_CHECK(e);
    }
    memory_->add(bytes);
    std::shared_ptr<void> memory(p, [memory = memory_, bytes](void* q) {
      if (q) cudaFree(q);
      memory->sub(bytes);
    });
    return Buffer(std::move(memory), elems, dtype);
  }
  int64_t memory_bytes() const override { return memory_->now.load(); }
  int64_t peak_memory_bytes() const override { return memory_->peak.load(); }
  void reset_peak_memory() override { memory_->peak.store(memory_->now.load()); }

  RowMap prepare(std::vector<RowCopy> segs) override {
    std::vector<int64_t> table;
    table.reserve(segs.size() * kSegFields);
    int64_t first = 0;
    for (size_t i = 0; i < segs.size(); ++i) {
      const RowCopy& s = segs[i];
      if (s.src_row < 0 || s.dst_row < 0 || s.rows < 0)
        throw std::invalid_argument("CudaDevice::prepare: segment " + std::to_string(i) + " has src_row " +
                                    std::to_string(s.src_row) + ", dst_row " + std::to_string(s.dst_row) +
                                    ", rows " + std::to_string(s.rows) + " (all must be >= 0)");
      table.insert(table.end(), {s.src_row, s.dst_row, s.rows, first});
      first += s.rows;
    }
    if (segs.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
      throw std::invalid_argument("CudaDevice::prepare: " + std::to_string(segs.size()) + " segments (at most 2^31 - 1)");
    if (first == 0) return RowMap(std::move(segs), nullptr);
    set_device();
    const int64_t bytes = static_cast<int64_t>(table.size() * sizeof(int64_t));
    void* p = nullptr;
    MAGI_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes)));
    std::shared_ptr<void> on_device(p, [memory = memory_, bytes](void* q) {
      cudaFree(q);
      memory->sub(bytes);
    });
    memory_->add(bytes);
    // Synchronous: the host table goes out of scope here; a map is built once, never per pass.
    MAGI_CUDA_CHECK(cudaMemcpy(p, table.data(), static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
    return RowMap(std::move(segs), std::move(on_device));
  }

  std::unique_ptr<AttentionOp> attention(const kernels::AttnShape& shape,
                                         std::vector<kernels::KernelSlice> slices) override {
    set_device();
    return std::make_unique<CudaAttentionOp>(shape, slices, dtype_, index_, stream_, memory_);
  }

  // Through a float staging buffer on the stream: the conversion runs on the device. The host array
  // must stay valid until the next synchronize() (device.h).
  void upload(const float* host, const Buffer& dst, int64_t offset, int64_t n) override {
    check_range("upload", dst, offset, n);
    if (n == 0) return;
    set_device();
    const size_t bytes = static_cast<size_t>(n) * sizeof(float);
    if (dst.dtype() == DType::fp32) {
      MAGI_CUDA_CHECK(cudaMemcpyAsync(dst.at(offset), host, bytes, cudaMemcpyHostToDevice, stream_));
      return;
    }
    float* staging = staging_alloc(bytes);
    MAGI_CUDA_CHECK(cudaMemcpyAsync(staging, host, bytes, cudaMemcpyHostToDevice, stream_));
    copy(staging, DType::fp32, dst.at(offset), dst.dtype(), n);
    MAGI_CUDA_CHECK(cudaFreeAsync(staging, stream_));
  }

  void download(const Buffer& src, int64_t offset, int64_t n, float* host) override {
    check_range("download", src, offset, n);
    if (n == 0) return;
    set_device();
    const size_t bytes = static_cast<size_t>(n) * sizeof(float);
    if (src.dtype() == DType::fp32) {
      MAGI_CUDA_CHECK(cudaMemcpyAsync(host, src.at(offset), bytes, cudaMemcpyDeviceToHost, stream_));
    } else {
      float* staging = staging_alloc(bytes);
      copy(src.at(offset), src.dtype(), staging, DType::fp32, n);
      MAGI_CUDA_CHECK(cudaMemcpyAsync(host, staging, bytes, cudaMemcpyDeviceToHost, stream_));
      MAGI_CUDA_CHECK(cudaFreeAsync(staging, stream_));
    }
    synchronize();
  }

  void copy_rows(const RowMap& map, Rows src, Rows dst, int64_t width) override {
    launch_rows<false>("copy_rows", map, src, dst, width);
  }
  void add_rows(const RowMap& map, Rows src, Rows dst, int64_t width) override {
    launch_rows<true>("add_rows", map, src, dst, width);
  }

  void copy(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) override {
    launch_convert<false>(src, src_dtype, dst, dst_dtype, n);
  }
  void add(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) override {
    launch_convert<true>(src, src_dtype, dst, dst_dtype, n);
  }
  void fill(void* dst, DType dtype, int64_t n, float value) override {
    check_count("fill", "n", n);
    if (n == 0) return;
    set_device();
    with_type(dtype, [&](auto d) {
      using D = decltype(d);
      fill_kernel<D><<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(static_cast<D*>(dst), n, value);
    });
    MAGI_CUDA_CHECK(cudaGetLastError());
  }

  void compute(const std::function<void()>& work, const std::vector<Request*>& progress) override {
    set_device();
    if (!in_pass_) {
      work();
    } else {
      const cudaEvent_t start = next_event();
      MAGI_CUDA_CHECK(cudaEventRecord(start, stream_));
      work();
      const cudaEvent_t end = next_event();
      MAGI_CUDA_CHECK(cudaEventRecord(end, stream_));
      compute_events_.push_back({start, end});
    }
    // Device communicators progress on their own; host-staged ones move inside test().
    for (Request* r : progress)
      if (r) r->test();
  }

  void wait(Request* req) override {
    if (!req) return;
    set_device();
    if (!in_pass_) {
      req->wait();
      return;
    }
    const cudaEvent_t before = next_event();
    MAGI_CUDA_CHECK(cudaEventRecord(before, stream_));
    req->wait();  // a device communicator makes the compute stream wait on its completion here
    const cudaEvent_t after = next_event();
    MAGI_CUDA_CHECK(cudaEventRecord(after, stream_));
    wait_events_.push_back({before, after});
  }

  void begin_pass() override {
    in_pass_ = true;
    used_events_ = 0;
    compute_events_.clear();
    wait_events_.clear();
    pass_start_ = next_event();
    MAGI_CUDA_CHECK(cudaEventRecord(pass_start_, stream_));
  }

  PassStats end_pass() override {
    const cudaEvent_t pass_end = next_event();
    MAGI_CUDA_CHECK(cudaEventRecord(pass_end, stream_));
    synchronize();
    PassStats stats;
    stats.device_ms = elapsed_ms(EventPair{pass_start_, pass_end});
    stats.compute_ms.reserve(compute_events_.size());
    for (const EventPair& e : compute_events_) stats.compute_ms.push_back(elapsed_ms(e));
    for (const EventPair& e : wait_events_) stats.comm_wait_ms += elapsed_ms(e);
    in_pass_ = false;
    compute_events_.clear();
    wait_events_.clear();
    return stats;
  }

  // Polls instead of blocking in cudaStreamSynchronize, inside a watchdog scope: a stuck kernel or a
  // collective that never completes is ended by the watchdog rather than hanging the rank.
  void synchronize() override {
    set_device();
    Watchdog::Wait scope(watchdog_, "a CUDA synchronize");
    for (int polls = 1;; ++polls) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) MAGI_CUDA_CHECK(e);
      if (async_check_ && polls % 50 == 0) async_check_();  // about every millisecond
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  void* stream() const override { return stream_; }

 private:
  struct EventPair {
    cudaEvent_t start, end;
  };

  void set_device() const { MAGI_CUDA_CHECK(cudaSetDevice(index_)); }

  // Events are created once and reused by every pass.
  cudaEvent_t next_event() {
    if (used_events_ == events_.size()) {
      cudaEvent_t e = nullptr;
      MAGI_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    return events_[used_events_++];
  }

  double elapsed_ms(const EventPair& e) const {
    float ms = 0.f;
    MAGI_CUDA_CHECK(cudaEventElapsedTime(&ms, e.start, e.end));
    return ms;
  }

  float* staging_alloc(size_t bytes) {
    void* p = nullptr;
    MAGI_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream_));
    return static_cast<float*>(p);
  }

  static void check_range(const char* what, const Buffer& b, int64_t offset, int64_t n) {
    if (offset < 0 || n < 0 || offset > b.elems() || n > b.elems() - offset)
      throw std::invalid_argument(std::string("CudaDevice::") + what + ": offset " + std::to_string(offset) +
                                  ", n " + std::to_string(n) + " outside the buffer's " +
                                  std::to_string(b.elems()) + " elements");
  }

  static void check_count(const char* what, const char* field, int64_t value) {
    if (value < 0)
      throw std::invalid_argument(std::string("CudaDevice::") + what + ": " + field + " " + std::to_string(value) +
                                  " < 0");
  }

  template <bool kAdd>
  void launch_convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
    check_count(kAdd ? "add" : "copy", "n", n);
    if (n == 0) return;
    set_device();
    with_type(src_dtype, [&](auto s) {
      with_type(dst_dtype, [&](auto d) {
        using S = decltype(s);
        using D = decltype(d);
        convert_kernel<S, D, kAdd><<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(
            static_cast<const S*>(src), static_cast<D*>(dst), n);
      });
    });
    MAGI_CUDA_CHECK(cudaGetLastError());
  }

  template <bool kAdd>
  void launch_rows(const char* what, const RowMap& map, Rows src, Rows dst, int64_t width) {
    check_count(what, "width", width);
    const int64_t total = map.rows();
    if (total == 0 || width == 0) return;
    if (!map.on_device())
      throw std::invalid_argument(std::string("CudaDevice::") + what + ": the RowMap was not prepared by a CUDA device");
    set_device();
    // Threads across a row's elements up to kThreads; the rest of the block takes further rows.
    const int tx = static_cast<int>(std::min<int64_t>(kThreads, (width + 31) / 32 * 32));
    const int ty = kThreads / tx;
    const dim3 block(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + ty - 1) / ty, 65536));
    const auto* segs = static_cast<const int64_t*>(map.on_device());
    const int nsegs = static_cast<int>(map.segs().size());
    with_type(src.dtype, [&](auto s) {
      with_type(dst.dtype, [&](auto d) {
        using S = decltype(s);
        using D = decltype(d);
        rows_kernel<S, D, kAdd><<<blocks, block, 0, stream_>>>(segs, nsegs, total, static_cast<const S*>(src.base),
                                                               src.stride, static_cast<D*>(dst.base), dst.stride,
                                                               width);
      });
    });
    MAGI_CUDA_CHECK(cudaGetLastError());
  }

  const int index_;
  const DType dtype_;
  cudaStream_t stream_ = nullptr;
  std::string description_;
  std::shared_ptr<MemoryCount> memory_ = std::make_shared<MemoryCount>();
  std::vector<cudaEvent_t> events_;  // the pool
  size_t used_events_ = 0;
  bool in_pass_ = false;
  std::vector<EventPair> compute_events_, wait_events_;
  cudaEvent_t pass_start_ = nullptr;  // recorded by begin_pass
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clears the error: "no driver" is an answer here, not a failure
    return 0;
  }
  return n;
}

std::string cuda_device_bus_id(int index) {
  char id[32] = {};
  if (cudaDeviceGetPCIBusId(id, static_cast<int>(sizeof id), index) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  return id;
}

std::unique_ptr<Device> make_cuda_device(int device_index, DType dtype) {
  if (dtype != DType::bf16 && dtype != DType::fp16)
    throw std::invalid_argument("make_cuda_device: dtype " + std::string(to_string(dtype)) +
                                " not supported (bf16 or fp16; lse and accumulators are fp32 anyway)");
  return std::make_unique<CudaDevice>(device_index, dtype);
}

}  // namespace magi
