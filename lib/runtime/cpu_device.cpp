#include "runtime/cpu_device.h"

#include "core/base/error.h"

#include "common/shared_dq_pass.h"
#include "cpu/reference_attention.h"

#include <chrono>
#include <cstdint>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <thread>

namespace magi {

namespace {

namespace kcpu = magi::kernels::cpu;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void require_fp32(DType t, const char* what) {
  if (t != DType::fp32) {
    throw ConfigError(fmt::format("the cpu device stores fp32; {} was asked for {}", what, to_string(t)));
  }
}

class CpuAttention final : public AttentionOp {
 public:
  CpuAttention(const kernels::AttnShape& shape, std::vector<kernels::KernelSlice> slices, int threads,
               std::shared_ptr<CpuDevice::Memory> memory)
      : shape_(shape), slices_(std::move(slices)), threads_(threads), memory_(std::move(memory)),
        scale_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.d)))) {
    memory_->add(workspace_bytes());
  }
  ~CpuAttention() override { memory_->add(-workspace_bytes()); }

  // Accumulating calls compute into the op's own partial buffers, then merge (log-sum-exp) or
  // add them into the caller's, in float32.
  void forward(const void* q, const void* k, const void* v, void* out, float* lse, kernels::Into into) override {
    const bool acc = into != kernels::Into::write;
    if (acc) reserve_partials();
    kcpu::attention_forward(shape_, slices_.data(), slices_.size(), static_cast<const float*>(q),
                            static_cast<const float*>(k), static_cast<const float*>(v), scale_,
                            acc ? part_.data() : static_cast<float*>(out), acc ? part_lse_.data() : lse, threads_);
    if (into == kernels::Into::accumulate) {
      if (merged_) {  // rows outside the merged ones hold nothing (set_merged_rows): read as lse = -inf
        auto none = [&](int64_t a, int64_t b) {
          std::fill(lse + a * shape_.hq, lse + b * shape_.hq, -std::numeric_limits<float>::infinity());
        };
        int64_t row = 0;
        for (const kernels::RowSpan& r : *merged_) {
          none(row, r.start);
          row = r.end;
        }
        none(row, shape_.sq);
      }
      kcpu::merge_partial(shape_.sq, shape_.hq, shape_.d, static_cast<float*>(out), lse, part_.data(),
                          part_lse_.data());
    } else if (into == kernels::Into::write_keyed) {  // the rows given a key, and only those
      const int64_t d = shape_.d;
      for (size_t r = 0; r < part_lse_.size(); ++r) {
        if (part_lse_[r] == -std::numeric_limits<float>::infinity()) continue;
        lse[r] = part_lse_[r];
        std::copy_n(part_.begin() + static_cast<std::ptrdiff_t>(r) * d, d, static_cast<float*>(out) + r * d);
      }
    }
  }
  void backward(const void* q, const void* k, const void* v, const void* out, const void* dout,
                const float* lse, void* dq, void* dk, void* dv, kernels::Into dq_into) override {
    if (dq_into == kernels::Into::write_keyed) throw InternalError("CpuAttention: Into::write_keyed is for the forward only");
    if (dq_pass_) dq_pass_->enter(dq_member_, dq_into, dq);  // the order a GPU's shared dQ relies on
    const bool acc = dq_into == kernels::Into::accumulate;
    if (acc) reserve_partials();
    kcpu::attention_backward(shape_, slices_.data(), slices_.size(), static_cast<const float*>(q),
                             static_cast<const float*>(k), static_cast<const float*>(v),
                             static_cast<const float*>(out), static_cast<const float*>(dout), lse,
                             scale_, acc ? part_.data() : static_cast<float*>(dq), static_cast<float*>(dk),
                             static_cast<float*>(dv), threads_);
    if (acc) {
      auto* sum = static_cast<float*>(dq);
      for (size_t i = 0; i < part_.size(); ++i) sum[i] += part_[i];
    }
  }
  // Device::share_dq: the call order of the ops sharing dQ, and this op's place in it.
  void share(std::shared_ptr<kernels::SharedDqPass> pass, int member) {
    dq_pass_ = std::move(pass);
    dq_member_ = member;
  }
  bool shared() const { return dq_pass_ != nullptr; }
  const kernels::AttnShape& shape() const { return shape_; }

  void set_merged_rows(const std::vector<kernels::RowSpan>& rows) override {
    int64_t end = 0;
    for (const kernels::RowSpan& r : rows) {
      if (r.start < end || r.end <= r.start || r.end > shape_.sq)
        throw InternalError(fmt::format("CpuAttention: merged rows [{}, {}) out of order or outside {} rows", r.start,
                                        r.end, shape_.sq));
      end = r.end;
    }
    merged_ = rows;
  }
  // The slice list it holds and, once an accumulating call ran, its partial out/dq and lse.
  int64_t workspace_bytes() const override {
    return static_cast<int64_t>(slices_.size() * sizeof(kernels::KernelSlice) +
                                (part_.size() + part_lse_.size()) * sizeof(float));
  }

 private:
  void reserve_partials() {
    if (!part_.empty() || shape_.sq == 0) return;
    const int64_t before = workspace_bytes();
    part_.resize(static_cast<size_t>(shape_.sq * shape_.hq * shape_.d));
    part_lse_.resize(static_cast<size_t>(shape_.sq * shape_.hq));
    memory_->add(workspace_bytes() - before);
  }

  kernels::AttnShape shape_;
  std::vector<kernels::KernelSlice> slices_;
  int threads_;
  std::shared_ptr<CpuDevice::Memory> memory_;
  float scale_;
  std::vector<float> part_, part_lse_;
  std::optional<std::vector<kernels::RowSpan>> merged_;  // set_merged_rows; none: every row
  std::shared_ptr<kernels::SharedDqPass> dq_pass_;
  int dq_member_ = -1;
};

// Row r of `rows` as floats (fp32 checked by the caller).
float* row_ptr(const Rows& rows, int64_t r) { return static_cast<float*>(rows.base) + r * rows.stride; }

}  // namespace

void CpuDevice::Memory::add(int64_t bytes) {
  const int64_t held = now.fetch_add(bytes) + bytes;
  int64_t p = peak.load();
  while (held > p && !peak.compare_exchange_weak(p, held)) {
  }
}

CpuDevice::CpuDevice(int threads) : threads_(threads), memory_(std::make_shared<Memory>()) {
  if (threads < 1) throw ConfigError(fmt::format("cpu device: threads = {} (must be >= 1)", threads));
}

std::string CpuDevice::description() const {
  return fmt::format("cpu (float32, {} thread{})", threads_, threads_ == 1 ? "" : "s");
}

Buffer CpuDevice::alloc(int64_t elems, DType dtype) {
  require_fp32(dtype, "a buffer");
  MAGI_CHECK(elems >= 0, "cpu device: alloc of {} elements", elems);
  const int64_t bytes = elems * dtype_bytes(dtype);
  // At least one element, so that every buffer has an address (an empty rank's tensors).
  float* p = new float[static_cast<size_t>(std::max<int64_t>(elems, 1))]();
  memory_->add(bytes);
  std::shared_ptr<void> memory(p, [m = memory_, bytes](void* q) {
    delete[] static_cast<float*>(q);
    m->add(-bytes);
  });
  return Buffer(std::move(memory), elems, dtype);
}

int64_t CpuDevice::memory_bytes() const { return memory_->now.load(); }
int64_t CpuDevice::peak_memory_bytes() const { return memory_->peak.load(); }
void CpuDevice::reset_peak_memory() { memory_->peak.store(memory_->now.load()); }

RowMap CpuDevice::prepare(std::vector<RowCopy> segs) {
  // The contract a GPU relies on (its segments run at once), proven here where runs are serial.
  std::vector<RowCopy> by_dst = segs;
  std::sort(by_dst.begin(), by_dst.end(), [](const RowCopy& a, const RowCopy& b) { return a.dst_row < b.dst_row; });
  int64_t end = INT64_MIN;  // one past the last row written by the segments before
  for (const RowCopy& c : by_dst) {
    if (c.rows <= 0) continue;
    if (c.dst_row < end) {
      throw InternalError(fmt::format("row map writes destination row {} twice", c.dst_row));
    }
    end = c.dst_row + c.rows;
  }
  return RowMap(std::move(segs), nullptr);
}

std::unique_ptr<AttentionOp> CpuDevice::attention(const kernels::AttnShape& shape,
                                                  std::vector<kernels::KernelSlice> slices) {
  return std::make_unique<CpuAttention>(shape, std::move(slices), threads_, memory_);
}

void CpuDevice::share_dq(const std::vector<AttentionOp*>& ops) {
  if (ops.empty()) throw InternalError("share_dq: no ops");
  std::vector<CpuAttention*> members;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto* op = dynamic_cast<CpuAttention*>(ops[i]);
    if (!op) throw InternalError(fmt::format("share_dq: op {} is not a cpu device's", i));
    const kernels::AttnShape& a = op->shape();
    const kernels::AttnShape& b = members.empty() ? a : members.front()->shape();
    if (a.sq != b.sq || a.hq != b.hq || a.d != b.d) {
      throw InternalError(fmt::format("share_dq: op {} has {} query rows x {} heads x {} dims, op 0 {} x {} x {}", i,
                                      a.sq, a.hq, a.d, b.sq, b.hq, b.d));
    }
    if (op->shared() || std::find(members.begin(), members.end(), op) != members.end())
      throw InternalError(fmt::format("share_dq: op {} shares its dQ already", i));
    members.push_back(op);
  }
  auto pass = std::make_shared<kernels::SharedDqPass>(static_cast<int>(members.size()));
  for (size_t i = 0; i < members.size(); ++i) members[i]->share(pass, static_cast<int>(i));
}

void CpuDevice::upload(const float* host, const Buffer& dst, int64_t offset, int64_t n) {
  require_fp32(dst.dtype(), "an upload");
  MAGI_CHECK(offset >= 0 && n >= 0 && offset + n <= dst.elems(), "upload of [{}, {}) into {} elements",
             offset, offset + n, dst.elems());
  if (n > 0) std::memcpy(dst.f32(offset), host, static_cast<size_t>(n) * sizeof(float));
}

void CpuDevice::download(const Buffer& src, int64_t offset, int64_t n, float* host) {
  require_fp32(src.dtype(), "a download");
  MAGI_CHECK(offset >= 0 && n >= 0 && offset + n <= src.elems(), "download of [{}, {}) from {} elements",
             offset, offset + n, src.elems());
  if (n > 0) std::memcpy(host, src.f32(offset), static_cast<size_t>(n) * sizeof(float));
}

void CpuDevice::copy_rows(const RowMap& map, Rows src, Rows dst, int64_t width) {
  require_fp32(src.dtype, "copy_rows (source)");
  require_fp32(dst.dtype, "copy_rows (destination)");
  for (const RowCopy& s : map.segs()) {
    if (src.stride == width && dst.stride == width) {
      std::memcpy(row_ptr(dst, s.dst_row), row_ptr(src, s.src_row),
                  static_cast<size_t>(s.rows * width) * sizeof(float));
      continue;
    }
    for (int64_t i = 0; i < s.rows; ++i) {
      std::memcpy(row_ptr(dst, s.dst_row + i), row_ptr(src, s.src_row + i),
                  static_cast<size_t>(width) * sizeof(float));
    }
  }
}

void CpuDevice::add_rows(const RowMap& map, Rows src, Rows dst, int64_t width) {
  require_fp32(src.dtype, "add_rows (source)");
  require_fp32(dst.dtype, "add_rows (destination)");
  for (const RowCopy& s : map.segs()) {
    for (int64_t i = 0; i < s.rows; ++i) {
      const float* a = row_ptr(src, s.src_row + i);
      float* b = row_ptr(dst, s.dst_row + i);
      for (int64_t j = 0; j < width; ++j) b[j] += a[j];
    }
  }
}

void CpuDevice::copy(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
  require_fp32(src_dtype, "copy (source)");
  require_fp32(dst_dtype, "copy (destination)");
  if (n > 0 && src != dst) std::memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void CpuDevice::add(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
  require_fp32(src_dtype, "add (source)");
  require_fp32(dst_dtype, "add (destination)");
  const float* a = static_cast<const float*>(src);
  float* b = static_cast<float*>(dst);
  for (int64_t i = 0; i < n; ++i) b[i] += a[i];
}

void CpuDevice::fill(void* dst, DType dtype, int64_t n, float value) {
  require_fp32(dtype, "fill");
  std::fill_n(static_cast<float*>(dst), n, value);
}

void CpuDevice::compute(const std::function<void()>& work, const std::vector<Request*>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  bool pending = false;
  for (Request* r : progress) {
    if (r && !r->test()) pending = true;
  }
  if (!pending) {
    work();
    stats_.compute_ms.push_back(ms_since(t0));
    return;
  }
  std::atomic<bool> done{false};
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      work();
    } catch (...) {
      error = std::current_exception();
    }
    done.store(true, std::memory_order_release);
  });
  try {
    while (!done.load(std::memory_order_acquire)) {
      bool all_done = true;
      for (Request* r : progress) {
        if (r && !r->test()) all_done = false;
      }
      // Nothing left to progress: just wait for the worker.
      if (all_done) break;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  } catch (...) {
    // A failing test() (an MPI error) must reach main() with its message: a joinable thread
    // destroyed during unwinding would std::terminate instead.
    worker.join();
    throw;
  }
  worker.join();
  stats_.compute_ms.push_back(ms_since(t0));
  if (error) std::rethrow_exception(error);
}

void CpuDevice::wait(Request* req) {
  if (!req) return;
  const auto t0 = std::chrono::steady_clock::now();
  req->wait();
  stats_.comm_wait_ms += ms_since(t0);
}

}  // namespace magi
