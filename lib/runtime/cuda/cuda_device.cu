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
#include <optional>
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

struct EventPair {
  cudaEvent_t start, end;
};

// What the compute stream holds: its events, the compute steps being timed, the attention call
// enqueued last and the Delta its backward calls share. Shared by the device and its attention
// ops (which may outlive it).
//
// Why: a stage-wise pass runs one kernel per stage, and each launch idles the GPU at its tail
// while its last blocks finish. An attention call that accumulates into what the call just
// before it on the stream wrote is launched to overlap it (kernels::cuda::Launch::overlap), and
// that needs the two kernels adjacent on the stream: an event recorded between them, like any
// other operation, makes the second wait for the first. So the events that time compute steps are
// recorded lazily, by the first operation that is not such an overlapping call: steps whose
// kernels overlap are timed together.
class StreamState {
 public:
  explicit StreamState(cudaStream_t stream) : stream_(stream) {}
  ~StreamState() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (delta_) cudaFree(delta_);
  }
  cudaStream_t stream() const { return stream_; }

  // The attention call enqueued last, when nothing was enqueued after it.
  struct Call {
    const void* op = nullptr;
    bool backward = false;
    const void* out = nullptr;  // forward: out and lse written; backward: dq written
    const void* lse = nullptr;
    const char* dk = nullptr;   // backward: dk and dv rows written
    const char* dv = nullptr;
    int64_t kv_bytes = 0;
  };

  // Before any operation is enqueued other than an attention call that overlaps the last one.
  void plain() {
    last_.reset();
    if (end_pending_) {
      const cudaEvent_t end = next_event();
      MAGI_CUDA_CHECK(cudaEventRecord(end, stream_));
      compute_events_[pending_].end = end;
      end_pending_ = false;
    }
    if (step_unstarted_) {
      const cudaEvent_t start = next_event();
      MAGI_CUDA_CHECK(cudaEventRecord(start, stream_));
      pending_ = compute_events_.size();
      compute_events_.push_back({start, nullptr});
      step_unstarted_ = false;
    }
  }
  // Whether `c` (Into::accumulate) may overlap the call enqueued just before it: that call is
  // another op's of the same pass, writing the results `c` merges into and none of the dk/dv
  // rows `c` writes. If so, a step `c` opens is timed together with the previous one.
  bool overlaps(const Call& c) {
    if (!last_ || last_->op == c.op || last_->backward != c.backward || last_->out != c.out || last_->lse != c.lse)
      return false;
    auto apart = [&](const char* a, const char* b) { return a + c.kv_bytes <= b || b + last_->kv_bytes <= a; };
    if (c.backward && !(apart(c.dk, last_->dk) && apart(c.dv, last_->dv) && apart(c.dk, last_->dv) &&
                        apart(c.dv, last_->dk)))
      return false;
    if (step_unstarted_ && !end_pending_) return false;  // a step's first operation, after a timed gap
    step_unstarted_ = false;  // joins the open step (its end is still to be recorded)
    return true;
  }
  // Enqueues attention call `c` by launcher(how), which returns whether it enqueued work: as a
  // programmatic dependent launch of the call before it when `may_overlap` (Into::accumulate,
  // with what the overlap needs) and overlaps(c) allow, else after everything before it.
  template <typename Launcher>
  void launch(const Call& c, bool may_overlap, Launcher&& launcher) {
    const bool overlap = may_overlap && overlaps(c);
    if (!overlap) plain();
    if (launcher(overlap ? kernels::cuda::Launch::overlap : kernels::cuda::Launch::after)) last_ = c;
  }

  // Compute steps of a pass (Device::compute), timed by events recorded as above.
  void begin_pass() {
    forget_delta();
    in_pass_ = true;
    used_events_ = 0;
    compute_events_.clear();
  }
  bool in_pass() const { return in_pass_; }
  void begin_step() { step_unstarted_ = in_pass_; }
  void end_step() {
    if (!in_pass_) return;
    if (step_unstarted_) {  // enqueued nothing: 0 ms, no event between its neighbours
      compute_events_.push_back({nullptr, nullptr});
      step_unstarted_ = false;
    } else {
      end_pending_ = true;
    }
  }
  // Records what is pending; the steps' event pairs, in order.
  std::vector<EventPair> end_pass() {
    forget_delta();
    plain();
    in_pass_ = false;
    return std::move(compute_events_);
  }
  cudaEvent_t next_event() {
    if (used_events_ == events_.size()) {
      cudaEvent_t e = nullptr;
      MAGI_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    return events_[used_events_++];
  }

  // D = rowsum(dout * out) of every row, for the backward calls that follow a writing one over
  // the same out and dout (one backward pass over this rank's rows): computed by that call, and
  // forgotten at every pass boundary, forward call and upload (what could change out or dout).
  // Its buffer lives while attention ops do (a runner's ops: one case), counted in `memory`.
  void op_created() { ++ops_; }
  void op_destroyed(MemoryCount& memory) {
    if (--ops_ > 0 || !delta_) return;
    cudaFree(delta_);  // synchronizes; a destructor path, so no throw
    memory.sub(delta_capacity_ * static_cast<int64_t>(sizeof(float)));
    delta_ = nullptr;
    delta_capacity_ = 0;
    forget_delta();
  }
  void forget_delta() { delta_out_ = delta_dout_ = nullptr; }
  const float* delta_for(const void* out, const void* dout, int64_t rows, int d, DType dtype, kernels::Into into,
                         MemoryCount& memory);

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;  // the pool, reused by every pass
  size_t used_events_ = 0;
  bool in_pass_ = false;
  bool step_unstarted_ = false;  // in a step that has enqueued nothing yet
  bool end_pending_ = false;     // the last timed step's end is not recorded yet
  size_t pending_ = 0;           // that step's entry
  std::vector<EventPair> compute_events_;
  std::optional<Call> last_;
  int ops_ = 0;  // attention ops alive
  float* delta_ = nullptr;
  int64_t delta_capacity_ = 0;
  const void* delta_out_ = nullptr;
  const void* delta_dout_ = nullptr;
  int64_t delta_rows_ = 0;
};

const float* StreamState::delta_for(const void* out, const void* dout, int64_t rows, int d, DType dtype,
                                    kernels::Into into, MemoryCount& memory) {
  if (into == kernels::Into::accumulate)
    return out == delta_out_ && dout == delta_dout_ && rows == delta_rows_ ? delta_ : nullptr;
  forget_delta();
  if (rows > delta_capacity_) {
    if (delta_) {
      MAGI_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be read
      MAGI_CUDA_CHECK(cudaFree(delta_));
      memory.sub(delta_capacity_ * static_cast<int64_t>(sizeof(float)));
      delta_ = nullptr;
      delta_capacity_ = 0;
    }
    MAGI_CUDA_CHECK(cudaMalloc(&delta_, static_cast<size_t>(rows) * sizeof(float)));
    delta_capacity_ = rows;
    memory.add(rows * static_cast<int64_t>(sizeof(float)));
  }
  plain();
  kernels::cuda::compute_delta(out, dout, delta_, rows, d, dtype, stream_);
  delta_out_ = out;
  delta_dout_ = dout;
  delta_rows_ = rows;
  return delta_;
}

class CudaAttentionOp final : public AttentionOp {
 public:
  CudaAttentionOp(const kernels::AttnShape& shape, const std::vector<kernels::KernelSlice>& slices,
                  DType dtype, int device, std::shared_ptr<StreamState> state, std::shared_ptr<MemoryCount> memory)
      : attn_(shape, slices.data(), slices.size(), dtype, device),
        shape_(shape),
        dtype_(dtype),
        scale_(1.f / std::sqrt(static_cast<float>(shape.d))),
        state_(std::move(state)),
        memory_(std::move(memory)) {
    state_->op_created();
    account();
  }
  ~CudaAttentionOp() override {
    memory_->sub(accounted_);
    state_->op_destroyed(*memory_);
  }

  void set_merged_rows(const std::vector<kernels::RowSpan>& rows) override { attn_.set_merged_rows(rows); }
  void forward(const void* q, const void* k, const void* v, void* out, float* lse, kernels::Into into) override {
    StreamState::Call c;
    c.op = this;
    c.out = out;
    c.lse = lse;
    state_->forget_delta();
    state_->launch(c, into == kernels::Into::accumulate, [&](kernels::cuda::Launch how) {
      return attn_.forward(q, k, v, out, lse, scale_, state_->stream(), into, how);
    });
  }
  void backward(const void* q, const void* k, const void* v, const void* out, const void* dout,
                const float* lse, void* dq, void* dk, void* dv, kernels::Into dq_into) override {
    if (dq_into == kernels::Into::write_keyed)
      throw std::invalid_argument("CudaAttentionOp: Into::write_keyed is for the forward only");
    const float* delta = state_->delta_for(out, dout, shape_.sq * shape_.hq, shape_.d, dtype_, dq_into, *memory_);
    StreamState::Call c;
    c.op = this;
    c.backward = true;
    c.out = dq;
    c.dk = static_cast<const char*>(dk);
    c.dv = static_cast<const char*>(dv);
    c.kv_bytes = shape_.sk * shape_.hkv * shape_.d * dtype_bytes(dtype_);
    state_->launch(c, dq_into == kernels::Into::accumulate && delta, [&](kernels::cuda::Launch how) {
      return attn_.backward(q, k, v, out, dout, lse, scale_, dq, dk, dv, state_->stream(), dq_into, delta, how);
    });
    account();  // the first backward allocates the workspace
  }
  int64_t workspace_bytes() const override { return attn_.device_bytes(); }
  kernels::cuda::FlexAttention& plan() { return attn_; }

 private:
  void account() {
    const int64_t now = attn_.device_bytes();
    if (now > accounted_) memory_->add(now - accounted_);
    accounted_ = now;
  }

  kernels::cuda::FlexAttention attn_;
  kernels::AttnShape shape_;
  DType dtype_;
  float scale_;
  std::shared_ptr<StreamState> state_;
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
    state_ = std::make_shared<StreamState>(stream_);
    description_ = kernels::cuda::device_description() + ", " + std::string(to_string(dtype_));
  }

  ~CudaDevice() override {
    // Destructors do not throw: work still queued is waited for, errors are left to the context.
    cudaSetDevice(index_);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  std::string description() const override { return description_; }
  DType dtype() const override { return dtype_; }
  double min_warmup_seconds() const override { return kCudaMinWarmupSeconds; }
  double min_timed_seconds() const override { return kCudaMinTimedSeconds; }

  Buffer alloc(int64_t elems, DType dtype) override {
    check_count("alloc", "elems", elems);
    set_device();
    const int64_t bytes = elems * dtype_bytes(dtype);
    void* p = nullptr;
    if (bytes > 0) {
      MAGI_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes)));
      // Ordered before everything later on the compute stream, as device.h promises.
      state_->plain();
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
    return std::make_unique<CudaAttentionOp>(shape, slices, dtype_, index_, state_, memory_);
  }
  void share_dq(const std::vector<AttentionOp*>& ops) override {
    std::vector<kernels::cuda::FlexAttention*> plans;
    for (size_t i = 0; i < ops.size(); ++i) {
      auto* op = dynamic_cast<CudaAttentionOp*>(ops[i]);
      if (!op) throw std::invalid_argument("CudaDevice::share_dq: op " + std::to_string(i) + " is not a CUDA device's");
      plans.push_back(&op->plan());
    }
    set_device();
    kernels::cuda::FlexAttention::share_backward_dq(plans);
  }

  // Through a float staging buffer on the stream: the conversion runs on the device. The host array
  // must stay valid until the next synchronize() (device.h).
  void upload(const float* host, const Buffer& dst, int64_t offset, int64_t n) override {
    check_range("upload", dst, offset, n);
    if (n == 0) return;
    set_device();
    state_->plain();
    state_->forget_delta();
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
    state_->plain();
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
    state_->plain();
    with_type(dtype, [&](auto d) {
      using D = decltype(d);
      fill_kernel<D><<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(static_cast<D*>(dst), n, value);
    });
    MAGI_CUDA_CHECK(cudaGetLastError());
  }

  // A step's events are recorded by its first and after its last operation (StreamState): steps
  // whose attention kernels overlap are one timed interval, steps that enqueue nothing none.
  void compute(const std::function<void()>& work, const std::vector<Request*>& progress) override {
    set_device();
    state_->begin_step();
    work();
    state_->end_step();
    // Device communicators progress on their own; host-staged ones move inside test().
    for (Request* r : progress)
      if (r) r->test();
  }

  void wait(Request* req) override {
    if (!req) return;
    set_device();
    state_->plain();
    if (!state_->in_pass()) {
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
    state_->plain();
    state_->begin_pass();
    wait_events_.clear();
    pass_start_ = next_event();
    MAGI_CUDA_CHECK(cudaEventRecord(pass_start_, stream_));
  }

  PassStats end_pass() override {
    const std::vector<EventPair> compute_events = state_->end_pass();
    const cudaEvent_t pass_end = next_event();
    MAGI_CUDA_CHECK(cudaEventRecord(pass_end, stream_));
    synchronize();
    PassStats stats;
    stats.device_ms = elapsed_ms(EventPair{pass_start_, pass_end});
    stats.compute_ms.reserve(compute_events.size());
    for (const EventPair& e : compute_events) stats.compute_ms.push_back(elapsed_ms(e));
    for (const EventPair& e : wait_events_) stats.comm_wait_ms += elapsed_ms(e);
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
  void set_device() const { MAGI_CUDA_CHECK(cudaSetDevice(index_)); }

  // Events are created once and reused by every pass.
  cudaEvent_t next_event() { return state_->next_event(); }

  double elapsed_ms(const EventPair& e) const {
    if (!e.start) return 0;  // a step that enqueued nothing
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
    state_->plain();
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
    state_->plain();
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
  std::shared_ptr<StreamState> state_;  // events, step timing, the last attention call, Delta
  std::vector<EventPair> wait_events_;
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
