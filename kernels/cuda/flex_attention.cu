// Host side of the flexible attention kernels: shape checks, device buffers, launches. The work
// lists: common/flex_work_list.h; the tiles: flex_tiles.h; the contract: flex_attention.h; the
// kernels: flex_fwd.cuh and flex_bwd.cuh.
#include "cuda/flex_attention.h"

#include "common/shared_dq_pass.h"

#include "cuda/cuda_check.h"
#include "cuda/flex_tiles.h"
#include "flex_bwd.cuh"
#include "flex_fwd.cuh"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace magi::kernels::cuda {

namespace {

using detail::BwdEntry;
using detail::BwdItem;
using detail::DevSlice;
using detail::FwdEntry;
using detail::FwdItem;

// The backward kernel's query tile at head dim d: the dQ units and the TMA boxes follow it.
constexpr int bwd_tile_rows(int d) { return flex_tiles(FlexPass::backward, d).rows; }

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  // Leaves the array empty (retry possible) when the allocation fails.
  void allocate(size_t count) {
    T* p = nullptr;
    if (count > 0) MAGI_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
    ptr = p;
    n = count;
  }
  void upload(const std::vector<T>& host) {
    allocate(host.size());
    if (n > 0) MAGI_CUDA_CHECK(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  size_t bytes() const { return n * sizeof(T); }
  void reset() {
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    n = 0;
  }
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The kernels move the dtype buffers 16 bytes at a time (cp.async, vector loads and stores) and
// lse one float at a time.
struct Aligned {
  const void* ptr;
  const char* name;
  uintptr_t bytes;
};
void check_aligned(std::initializer_list<Aligned> buffers) {
  for (const Aligned& b : buffers) {
    if (reinterpret_cast<uintptr_t>(b.ptr) % b.bytes != 0)
      throw std::invalid_argument(std::string("FlexAttention: ") + b.name + " is not " + std::to_string(b.bytes) +
                                  "-byte aligned");
  }
}

// kernel<<<grid, block, smem, stream>>>(args), or with Launch::overlap as a programmatic dependent
// launch of the kernel before it on the stream.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), unsigned grid, unsigned block, int smem, cudaStream_t stream,
                   Launch how, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = how == Launch::overlap ? 1 : 0;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  MAGI_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

void check_launch(Launch how, Into into) {
  if (how == Launch::overlap && into != Into::accumulate)
    throw std::invalid_argument("FlexAttention: Launch::overlap merges into an earlier stage's results: it needs Into::accumulate");
}

}  // namespace

bool device_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

std::string device_description() {
  int dev = 0;
  MAGI_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  MAGI_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::ostringstream os;
  os << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount
     << " SMs)";
  return os.str();
}

bool head_dim_supported(int d) { return d == 64 || d == 128; }

// The backward's dQ workspace: fp32 sums and per-unit counts, allocated and zeroed by the first
// call that uses them; the kernel leaves both at zero (see flex_bwd.cuh). A plan has its own, or
// shares one with the plans of share_backward_dq, whose unit_tiles are then summed over them.
struct DqWorkspace {
  DeviceArray<int> unit_tiles;  // per dQ unit (a backward query tile's rows): the tiles that cover it
  // Whether some unit has no tile: its dq rows are zeroed before a writing call (the backward's
  // prepare kernel), which with the caller's Delta has nothing else to do.
  bool some_unit_uncovered = false;
  DeviceArray<float> dq_acc;
  DeviceArray<int> dq_count;
  CUtensorMap dq_map{};  // over dq_acc, for the backward's TMA reduce-add
  bool zeroed = false;
  explicit DqWorkspace(const std::vector<int>& tiles) {
    unit_tiles.upload(tiles);
    some_unit_uncovered = std::find(tiles.begin(), tiles.end(), 0) != tiles.end();
  }
  DqWorkspace(const DqWorkspace&) = delete;
  DqWorkspace& operator=(const DqWorkspace&) = delete;
  ~DqWorkspace() {
    unit_tiles.reset();
    dq_acc.reset();
    dq_count.reset();
  }
};

struct FlexAttention::Impl {
  AttnShape shape;
  DType dtype;
  int device = 0;
  FlexAttentionStats stats;
  DeviceArray<DevSlice> slices;
  DeviceArray<FwdEntry> fwd_entries;
  DeviceArray<FwdItem> fwd_items;
  DeviceArray<FwdItem> fwd_keyed_items;  // the items with key tiles (Into::accumulate, Into::write_keyed)
  std::vector<FwdItem> keyed_host;       // the same on the host (set_merged_rows)
  bool keyed_merge = true;               // some keyed item merges (FwdItem::merge)
  DeviceArray<BwdEntry> bwd_entries;
  DeviceArray<BwdItem> bwd_items;
  std::vector<int> unit_tiles;  // per dQ unit: the tiles of this plan that cover it (host copy)
  std::shared_ptr<DqWorkspace> dq;
  // Sharing dQ with other plans (share_backward_dq): the call order of their passes and this
  // plan's place in it.
  std::shared_ptr<SharedDqPass> dq_pass;
  int dq_member = -1;
  // Whether device_bytes counts the dQ workspace: its own, or the shared one's first plan.
  bool counts_dq() const { return !dq_pass || dq_member == 0; }
  // When some item walks part of its GQA group, also fp32 dK and dV sums and per-key-block counts
  // (flex_bwd.cuh), left at zero too.
  DeviceArray<float> dkv_acc;
  DeviceArray<int> dkv_count;
  int bwd_kv_units = 0;
  bool bwd_split_groups = false;
  // Some backward item walks back (BwdItem::walk_back): the kernel's instance that reads the flag.
  // Without such items the other instance runs, whose cursor is the plain walk: any change to
  // it cost the d 128 backward 2-4% on full (results/kernel/NOTES.md, v35).
  bool bwd_walk_back = false;
  bool dkv_zeroed = false;
  DeviceArray<float> delta;
  // The persistent forward's ticket counters (flex_fwd.cuh), zeroed once and never reset: launch
  // n draws from slot n % kTicketSlots, whose count the host follows in ticket_base. A slot is
  // used again kTicketSlots launches later, long after its last ticket was drawn: launches of one
  // plan are stream-ordered and only neighbours overlap (Launch::overlap).
  static constexpr int kTicketSlots = 8;
  DeviceArray<unsigned long long> tickets;
  unsigned long long ticket_base[kTicketSlots] = {};
  unsigned launches = 0;
  int sm_count = 0;

  ~Impl() {
    slices.reset();
    fwd_entries.reset();
    fwd_items.reset();
    fwd_keyed_items.reset();
    bwd_entries.reset();
    bwd_items.reset();
    dkv_acc.reset();
    dkv_count.reset();
    delta.reset();
    tickets.reset();
  }
};

namespace {

// Raises kernel K's dynamic shared-memory limit to `smem` bytes, once per kernel.
template <auto K>
void allow_smem(int smem) {
  static bool configured = false;
  if (!configured) {
    MAGI_CUDA_CHECK(cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
}

// A tensor map over a [rows][heads][cols] buffer of `type` (elements of `elem_bytes`), boxes of
// box_cols columns x 1 head x box_rows rows, 128-byte swizzle: the shared-memory layout the
// kernels' wgmma operands and staging tiles use. Elements outside the buffer load as zeros.
CUtensorMap make_map(const void* buffer, CUtensorMapDataType type, int elem_bytes, int64_t rows, int heads, int cols,
                     int box_cols, int box_rows) {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    MAGI_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || fn == nullptr)
      throw std::runtime_error("FlexAttention: the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(cols) * elem_bytes,
                                 static_cast<cuuint64_t>(heads) * cols * elem_bytes};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_cols), 1, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  CUtensorMap map{};
  const CUresult r = encode(&map, type, 3, const_cast<void*>(buffer), dims, strides, box, elem_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("FlexAttention: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(r) + ")");
  return map;
}

// The tensor map through which the backward adds dQ tiles into the fp32 workspace [sq][hq][d]:
// boxes of 32 columns x 1 head x a backward tile's rows (the kernel's staging layout).
CUtensorMap make_dq_map(float* dq_acc, const AttnShape& sh) {
  return make_map(dq_acc, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sizeof(float), sh.sq, sh.hq, sh.d, detail::kDqBoxCols,
                  bwd_tile_rows(sh.d));
}

// keyed: run only the items that have a key tile (every merging item has one).
template <typename T, int D, detail::FwdEpilogue EPI>
bool launch_forward(FlexAttention::Impl& im, const void* q, const void* k, const void* v,
                    void* out, float* lse, float scale, cudaStream_t stream, Launch how, bool keyed) {
  constexpr FlexTiles kTiles = flex_tiles(FlexPass::forward, D);
  static_assert(kTiles.rows == detail::kFwdRows, "the forward kernel's item height");
  constexpr int kStages = 2;
  constexpr int smem = detail::fwd_smem_bytes<D, kTiles.keys, kStages>();
  constexpr auto kernel = detail::flex_fwd_kernel<T, D, kTiles.keys, kStages, EPI>;
  allow_smem<kernel>(smem);
  const DeviceArray<FwdItem>& items = keyed ? im.fwd_keyed_items : im.fwd_items;
  if (items.n == 0) return false;
  const unsigned grid = static_cast<unsigned>(std::min<size_t>(items.n, static_cast<size_t>(im.sm_count)));
  const AttnShape& sh = im.shape;
  constexpr CUtensorMapDataType kType =
      std::is_same_v<T, __nv_bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  detail::FwdParams<T> p{};
  p.q_map = make_map(q, kType, sizeof(T), sh.sq, sh.hq, D, 64, kTiles.rows);
  if (sh.sk > 0) {  // else no item has a key tile: the maps are only prefetched, never loaded from
    p.k_map = make_map(k, kType, sizeof(T), sh.sk, sh.hkv, D, 64, kTiles.keys);
    p.v_map = make_map(v, kType, sizeof(T), sh.sk, sh.hkv, D, 64, kTiles.keys);
  }
  p.out = static_cast<T*>(out);
  p.lse = lse;
  p.slices = im.slices.ptr;
  p.entries = im.fwd_entries.ptr;
  p.items = items.ptr;
  const int slot = static_cast<int>(im.launches % FlexAttention::Impl::kTicketSlots);
  p.ticket = im.tickets.ptr + slot;
  p.ticket_base = im.ticket_base[slot];
  p.nitems = static_cast<int>(items.n);
  p.hq = sh.hq;
  p.hkv = sh.hkv;
  p.scale_log2 = scale * detail::kLog2e;
  launch_kernel(kernel, grid, detail::kFwdThreads, smem, stream, how, p);
  im.ticket_base[slot] += items.n;
  ++im.launches;
  return true;
}

template <typename T, int D>
bool launch_forward(FlexAttention::Impl& im, const void* q, const void* k, const void* v,
                    void* out, float* lse, float scale, cudaStream_t stream, Into into, Launch how) {
  using E = detail::FwdEpilogue;
  const bool keyed = into != Into::write;
  const bool accumulate = into == Into::accumulate;
  if (accumulate && im.keyed_merge) return launch_forward<T, D, E::merge>(im, q, k, v, out, lse, scale, stream, how, keyed);
  if (accumulate && how == Launch::overlap)
    return launch_forward<T, D, E::write_after>(im, q, k, v, out, lse, scale, stream, how, keyed);
  return launch_forward<T, D, E::write>(im, q, k, v, out, lse, scale, stream, how, keyed);
}

// The backward's pre-pass over `rows` (row, head) pairs (flex_bwd_prepare_kernel).
template <typename T, int D>
void launch_prepare(const void* out, const void* dout, float* delta, const int* unit_tiles, void* dq, int hq,
                    int64_t rows, bool dq_accumulate, cudaStream_t stream) {
  detail::flex_bwd_prepare_kernel<T, D><<<static_cast<unsigned>(ceil_div(rows, 8)), 256, 0, stream>>>(
      static_cast<const T*>(out), static_cast<const T*>(dout), delta, unit_tiles, static_cast<T*>(dq), hq,
      bwd_tile_rows(D), rows, dq_accumulate);
  MAGI_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int D>
bool launch_backward(FlexAttention::Impl& im, const void* q, const void* k, const void* v,
                     const void* out, const void* dout, const float* lse, float scale, void* dq,
                     void* dk, void* dv, cudaStream_t stream, Into dq_into, const float* delta, Launch how) {
  const AttnShape& sh = im.shape;
  const bool accumulate = dq_into == Into::accumulate;
  // Sharing dQ (share_backward_dq): the call's place in its pass is checked first; the members'
  // tiles meet in one workspace and each unit is written once, when the pass's last tile of it
  // has landed, so no call adds into dq (and none waits for the call before it).
  if (im.dq_pass) im.dq_pass->enter(im.dq_member, dq_into, dq);
  const bool dq_add = accumulate && !im.dq_pass;
  // A call that ends its shared pass, or writes dq alone, leaves its last wave's many unit
  // conversions to flex_dq_finish_kernel; one adding into dq, or followed by more of its pass,
  // converts every unit it completes itself.
  const bool defer = im.dq_pass ? im.dq_pass->between_passes() : !dq_add;
  DqWorkspace& ws = *im.dq;
  bool enqueued = false;
  const int64_t qrows = sh.sq * sh.hq;
  const int64_t qelems = qrows * sh.d;
  const int64_t kv_elems = im.bwd_split_groups ? 2 * sh.sk * sh.hkv * sh.d : 0;
  // Workspaces are zeroed once, between this kernel and the previous one.
  if (qelems > 0 && !ws.zeroed) {
    if (!ws.dq_acc.ptr) ws.dq_acc.allocate(static_cast<size_t>(qelems));
    if (!ws.dq_count.ptr) ws.dq_count.allocate(ws.unit_tiles.n * static_cast<size_t>(sh.hq));
    MAGI_CUDA_CHECK(cudaMemsetAsync(ws.dq_acc.ptr, 0, ws.dq_acc.n * sizeof(float), stream));
    MAGI_CUDA_CHECK(cudaMemsetAsync(ws.dq_count.ptr, 0, ws.dq_count.n * sizeof(int), stream));
    ws.dq_map = make_dq_map(ws.dq_acc.ptr, sh);
    ws.zeroed = true;
    enqueued = true;
  }
  if (kv_elems > 0 && !im.dkv_zeroed) {
    if (!im.dkv_acc.ptr) im.dkv_acc.allocate(static_cast<size_t>(kv_elems));
    if (!im.dkv_count.ptr) im.dkv_count.allocate(static_cast<size_t>(im.bwd_kv_units) * static_cast<size_t>(sh.hkv));
    MAGI_CUDA_CHECK(cudaMemsetAsync(im.dkv_acc.ptr, 0, im.dkv_acc.n * sizeof(float), stream));
    MAGI_CUDA_CHECK(cudaMemsetAsync(im.dkv_count.ptr, 0, im.dkv_count.n * sizeof(int), stream));
    im.dkv_zeroed = true;
    enqueued = true;
  }
  if (qelems > 0) {
    // With the caller's Delta, only a writing call has something to prepare, and only when some
    // unit has no tile (of any member, when shared): dq zeroed there. (Launched for nothing, one
    // warp per row and head, it took 55 us at 32k x 16 heads on an H200, 1.5% of a varlen causal
    // backward.)
    if (!delta && !im.delta.ptr) im.delta.allocate(static_cast<size_t>(qrows));
    if (!delta || (!accumulate && ws.some_unit_uncovered)) {
      launch_prepare<T, D>(out, dout, delta ? nullptr : im.delta.ptr, ws.unit_tiles.ptr, dq, sh.hq, qrows, accumulate,
                           stream);
      enqueued = true;
    }
  }
  constexpr FlexTiles kTiles = flex_tiles(FlexPass::backward, D);
  constexpr int smem = detail::bwd_wgmma_smem_bytes<D, kTiles.rows, kTiles.keys>();
  constexpr auto kPlainWalk = detail::flex_bwd_wgmma_kernel<T, D, false>;
  constexpr auto kWalkBack = detail::flex_bwd_wgmma_kernel<T, D, true>;
  allow_smem<kPlainWalk>(smem);
  allow_smem<kWalkBack>(smem);
  const auto kernel = im.bwd_walk_back ? kWalkBack : kPlainWalk;
  const unsigned grid = static_cast<unsigned>(im.bwd_items.n);
  if (grid == 0) return enqueued;
  constexpr CUtensorMapDataType kType =
      std::is_same_v<T, __nv_bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  detail::BwdParams<T> p{};
  if (sh.sq > 0) {  // else no item has a query tile and the maps are never read
    p.q_map = make_map(q, kType, sizeof(T), sh.sq, sh.hq, D, 64, kTiles.rows);
    p.do_map = make_map(dout, kType, sizeof(T), sh.sq, sh.hq, D, 64, kTiles.rows);
  }
  p.k_map = make_map(k, kType, sizeof(T), sh.sk, sh.hkv, D, 64, kTiles.keys);
  p.v_map = make_map(v, kType, sizeof(T), sh.sk, sh.hkv, D, 64, kTiles.keys);
  p.dq_map = ws.dq_map;
  p.lse = lse;
  p.delta = delta ? delta : im.delta.ptr;
  p.dq_acc = ws.dq_acc.ptr;
  p.dq_count = ws.dq_count.ptr;
  p.unit_tiles = ws.unit_tiles.ptr;
  p.dkv_acc = im.dkv_acc.ptr;
  p.dkv_count = im.dkv_count.ptr;
  p.dq = static_cast<T*>(dq);
  p.dk = static_cast<T*>(dk);
  p.dv = static_cast<T*>(dv);
  p.dq_accumulate = dq_add ? 1 : 0;
  p.slices = im.slices.ptr;
  p.entries = im.bwd_entries.ptr;
  p.items = im.bwd_items.ptr;
  p.sq = static_cast<int>(sh.sq);
  p.sk = static_cast<int>(sh.sk);
  p.hq = sh.hq;
  p.hkv = sh.hkv;
  p.scale = scale;
  p.scale_log2 = scale * detail::kLog2e;
  const int units = static_cast<int>(ws.dq_count.n);
  p.defer_from = defer && units > 0 ? std::max(0, static_cast<int>(grid) - im.sm_count) : static_cast<int>(grid);
  // Overlapping only the previous call's kernel: after anything this call enqueued first (the
  // zeroed workspaces, or the Delta its loader reads from the first tile on, before any wait).
  launch_kernel(kernel, grid, detail::kBwdThreads, smem, stream, enqueued ? Launch::after : how, p);
  if (p.defer_from < static_cast<int>(grid)) {
    // Two blocks per SM: the few units each holds are converted by the whole GPU at once.
    launch_kernel(detail::flex_dq_finish_kernel<T, D>, static_cast<unsigned>(std::min<int64_t>(2 * im.sm_count, units)),
                  detail::kDqFinishThreads, 0, stream, Launch::overlap, p, units);
  }
  return true;
}

template <typename T, int D>
void launch_delta(const void* out, const void* dout, float* delta, int64_t rows, cudaStream_t stream) {
  if (rows > 0) launch_prepare<T, D>(out, dout, delta, nullptr, nullptr, 1, rows, true, stream);
}

}  // namespace

FlexAttention::FlexAttention(const AttnShape& shape, const KernelSlice* slices, size_t num_slices,
                             DType dtype, int device)
    : impl_(std::make_unique<Impl>()) {
  if (shape.sq < 0 || shape.sk < 0 || shape.hq <= 0 || shape.hkv <= 0 || shape.hq % shape.hkv != 0)
    throw std::invalid_argument("FlexAttention: bad shape (need sq, sk >= 0, hq, hkv > 0, hq % hkv == 0)");
  if (!head_dim_supported(shape.d))
    throw std::invalid_argument("FlexAttention: head dim " + std::to_string(shape.d) + " not supported (64 or 128)");
  const int64_t kMaxTokens = std::numeric_limits<int>::max() / 2;
  if (shape.sq > kMaxTokens || shape.sk > kMaxTokens)
    throw std::invalid_argument("FlexAttention: more than 2^30 tokens");
  if (dtype == DType::fp32)
    throw std::invalid_argument("FlexAttention: dtype fp32 not supported (bf16 or fp16)");
  impl_->shape = shape;
  impl_->dtype = dtype;
  if (device >= 0) MAGI_CUDA_CHECK(cudaSetDevice(device));
  MAGI_CUDA_CHECK(cudaGetDevice(&impl_->device));

  MAGI_CUDA_CHECK(cudaDeviceGetAttribute(&impl_->sm_count, cudaDevAttrMultiProcessorCount, impl_->device));
  const flex::WorkLists wl =
      flex::build_work_lists(shape, slices, num_slices, flex_work_list_tiles(shape.d), impl_->sm_count);
  impl_->stats = wl.stats;
  impl_->slices.upload(wl.slices);
  impl_->fwd_entries.upload(wl.fwd_entries);
  impl_->fwd_items.upload(wl.fwd_items);
  for (const FwdItem& it : wl.fwd_items) {
    if (it.ntiles > 0) impl_->keyed_host.push_back(it);
  }
  impl_->fwd_keyed_items.upload(impl_->keyed_host);
  impl_->bwd_entries.upload(wl.bwd_entries);
  impl_->bwd_items.upload(wl.bwd_items);
  impl_->unit_tiles = wl.bwd_unit_tiles;
  impl_->dq = std::make_shared<DqWorkspace>(wl.bwd_unit_tiles);
  impl_->bwd_kv_units = wl.bwd_kv_units;
  impl_->bwd_split_groups = wl.bwd_split_groups;
  impl_->bwd_walk_back = std::any_of(wl.bwd_items.begin(), wl.bwd_items.end(),
                                     [](const flex::BwdItem& it) { return it.walk_back != 0; });
  impl_->tickets.allocate(FlexAttention::Impl::kTicketSlots);
  MAGI_CUDA_CHECK(cudaMemset(impl_->tickets.ptr, 0, impl_->tickets.bytes()));
}

FlexAttention::~FlexAttention() = default;

const FlexAttentionStats& FlexAttention::stats() const { return impl_->stats; }

void FlexAttention::set_merged_rows(const std::vector<RowSpan>& rows) {
  Impl& im = *impl_;
  flex::mark_merged_items(im.keyed_host, rows);
  im.keyed_merge = std::any_of(im.keyed_host.begin(), im.keyed_host.end(), [](const FwdItem& it) { return it.merge != 0; });
  if (!im.keyed_host.empty()) {
    MAGI_CUDA_CHECK(cudaMemcpy(im.fwd_keyed_items.ptr, im.keyed_host.data(), im.keyed_host.size() * sizeof(FwdItem),
                               cudaMemcpyHostToDevice));
  }
}
const AttnShape& FlexAttention::shape() const { return impl_->shape; }

int64_t FlexAttention::device_bytes() const {
  const Impl& im = *impl_;
  const size_t dq_bytes = im.counts_dq() ? im.dq->unit_tiles.bytes() + im.dq->dq_acc.bytes() + im.dq->dq_count.bytes() : 0;
  return static_cast<int64_t>(im.slices.bytes() + im.fwd_entries.bytes() + im.fwd_items.bytes() +
                              im.fwd_keyed_items.bytes() + im.tickets.bytes() + im.bwd_entries.bytes() +
                              im.bwd_items.bytes() + dq_bytes + im.dkv_acc.bytes() + im.dkv_count.bytes() +
                              im.delta.bytes());
}

void FlexAttention::share_backward_dq(const std::vector<FlexAttention*>& plans) {
  if (plans.empty()) throw std::invalid_argument("share_backward_dq: no plans");
  const Impl* first = plans.front() ? plans.front()->impl_.get() : nullptr;
  for (size_t i = 0; i < plans.size(); ++i) {
    const std::string which = "share_backward_dq: plan " + std::to_string(i);
    if (!plans[i]) throw std::invalid_argument(which + " is null");
    const Impl& im = *plans[i]->impl_;
    if (std::find(plans.begin(), plans.begin() + static_cast<std::ptrdiff_t>(i), plans[i]) !=
        plans.begin() + static_cast<std::ptrdiff_t>(i))
      throw std::invalid_argument(which + " is listed twice");
    if (im.shape.sq != first->shape.sq || im.shape.hq != first->shape.hq || im.shape.d != first->shape.d ||
        im.dtype != first->dtype || im.device != first->device)
      throw std::invalid_argument(which + " has other query rows, heads, head dim, dtype or device than plan 0");
    if (im.dq_pass) throw std::logic_error(which + " shares its dQ already");
    if (im.dq->zeroed) throw std::logic_error(which + " has run backward already (its own workspace is allocated)");
  }
  std::vector<int> totals(first->unit_tiles.size(), 0);
  for (const FlexAttention* plan : plans)
    for (size_t u = 0; u < totals.size(); ++u) totals[u] += plan->impl_->unit_tiles[u];
  MAGI_CUDA_CHECK(cudaSetDevice(first->device));
  auto ws = std::make_shared<DqWorkspace>(totals);
  auto pass = std::make_shared<SharedDqPass>(static_cast<int>(plans.size()));
  for (size_t i = 0; i < plans.size(); ++i) {
    Impl& im = *plans[i]->impl_;
    im.dq = ws;
    im.dq_pass = pass;
    im.dq_member = static_cast<int>(i);
  }
}

bool FlexAttention::forward(const void* q, const void* k, const void* v, void* out, float* lse,
                            float softmax_scale, void* stream, Into into, Launch launch) {
  check_launch(launch, into);
  if (!(softmax_scale > 0.f) || !std::isfinite(softmax_scale))
    throw std::invalid_argument("FlexAttention: softmax scale must be positive and finite");
  check_aligned({{q, "q", 16}, {k, "k", 16}, {v, "v", 16}, {out, "out", 16}, {lse, "lse", 4}});
  MAGI_CUDA_CHECK(cudaSetDevice(impl_->device));
  auto st = static_cast<cudaStream_t>(stream);
  const int d = impl_->shape.d;
  if (impl_->dtype == DType::bf16) {
    if (d == 64) return launch_forward<__nv_bfloat16, 64>(*impl_, q, k, v, out, lse, softmax_scale, st, into, launch);
    return launch_forward<__nv_bfloat16, 128>(*impl_, q, k, v, out, lse, softmax_scale, st, into, launch);
  } else {
    if (d == 64) return launch_forward<__half, 64>(*impl_, q, k, v, out, lse, softmax_scale, st, into, launch);
    return launch_forward<__half, 128>(*impl_, q, k, v, out, lse, softmax_scale, st, into, launch);
  }
}

bool FlexAttention::backward(const void* q, const void* k, const void* v, const void* out,
                             const void* dout, const float* lse, float softmax_scale, void* dq,
                             void* dk, void* dv, void* stream, Into dq_into, const float* delta,
                             Launch launch) {
  if (dq_into == Into::write_keyed) throw std::invalid_argument("FlexAttention: Into::write_keyed is for the forward only");
  check_launch(launch, dq_into);
  if (!(softmax_scale > 0.f) || !std::isfinite(softmax_scale))
    throw std::invalid_argument("FlexAttention: softmax scale must be positive and finite");
  check_aligned({{q, "q", 16}, {k, "k", 16}, {v, "v", 16}, {out, "out", 16}, {dout, "dout", 16}, {lse, "lse", 4},
                 {dq, "dq", 16}, {dk, "dk", 16}, {dv, "dv", 16}, {delta, "delta", 4}});
  MAGI_CUDA_CHECK(cudaSetDevice(impl_->device));
  auto st = static_cast<cudaStream_t>(stream);
  const int d = impl_->shape.d;
  if (impl_->dtype == DType::bf16) {
    if (d == 64) return launch_backward<__nv_bfloat16, 64>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st, dq_into, delta, launch);
    return launch_backward<__nv_bfloat16, 128>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st, dq_into, delta, launch);
  } else {
    if (d == 64) return launch_backward<__half, 64>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st, dq_into, delta, launch);
    return launch_backward<__half, 128>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st, dq_into, delta, launch);
  }
}

void compute_delta(const void* out, const void* dout, float* delta, int64_t rows, int d, DType dtype, void* stream) {
  if (!head_dim_supported(d))
    throw std::invalid_argument("compute_delta: head dim " + std::to_string(d) + " not supported (64 or 128)");
  if (rows < 0) throw std::invalid_argument("compute_delta: rows " + std::to_string(rows) + " < 0");
  check_aligned({{out, "out", 16}, {dout, "dout", 16}, {delta, "delta", 4}});
  auto st = static_cast<cudaStream_t>(stream);
  if (dtype == DType::bf16) {
    if (d == 64) launch_delta<__nv_bfloat16, 64>(out, dout, delta, rows, st);
    else launch_delta<__nv_bfloat16, 128>(out, dout, delta, rows, st);
  } else if (dtype == DType::fp16) {
    if (d == 64) launch_delta<__half, 64>(out, dout, delta, rows, st);
    else launch_delta<__half, 128>(out, dout, delta, rows, st);
  } else {
    throw std::invalid_argument("compute_delta: dtype fp32 not supported (bf16 or fp16)");
  }
}

}  // namespace magi::kernels::cuda
