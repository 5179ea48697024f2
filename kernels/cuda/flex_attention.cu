// Host side of the flexible attention kernels: validation, work lists (heaviest first), device
// buffers, launches. See flex_attention.h for the contract and flex_fwd.cuh / flex_bwd.cuh for
// the kernels.
#include "cuda/flex_attention.h"

#include "flex_bwd.cuh"
#include "flex_fwd.cuh"

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace magi::kernels::cuda {

namespace {

using detail::BwdEntry;
using detail::BwdItem;
using detail::DevSlice;
using detail::FwdEntry;
using detail::FwdItem;

void cuda_check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) {
    int dev = -1;
    cudaGetDevice(&dev);
    std::ostringstream os;
    os << "CUDA error '" << cudaGetErrorString(e) << "' in " << call << " at " << file << ":" << line
       << " (device " << dev << ")";
    throw std::runtime_error(os.str());
  }
}
#define FLEX_CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)

// Forward kernel variants (warpgroups of 64 query rows, key tile, blocks per SM). The default is
// the fastest measured on an H100 (results/kernel/NOTES.md); MAGI_FLEX_FWD_VARIANT picks another
// for experiments (the tests run the default only). The backward has one kernel.
struct FwdVariant {
  int nwg, bn, minb;
  int bm() const { return nwg * 64; }
};
constexpr FwdVariant kFwdVariants[] = {
    {2, 128, 1},  // 0: default at head dim 128
    {2, 64, 1},   // 1
    {3, 64, 1},   // 2
    {2, 64, 2},   // 3: two blocks per SM (fit at head dim 64 only); default at head dim 64
};
// H100, 32k tokens, 16 heads, forward TFLOP/s of variant 0 / 3: d 128 full 440 / 403;
// d 64 full 335 / 345, varlen causal 283 / 306.
int default_fwd_variant(int head_dim) { return head_dim == 64 ? 3 : 0; }
constexpr int kNumFwdVariants = sizeof(kFwdVariants) / sizeof(kFwdVariants[0]);
constexpr int kBwdBM = 64, kBwdBN = 128;  // the backward kernel's query and key tiles

int variant_from_env(const char* name, int fallback, int count) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  const int v = std::atoi(e);
  if (v < 0 || v >= count) throw std::invalid_argument(std::string(name) + " out of range");
  return v;
}

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  void upload(const std::vector<T>& host) {
    n = host.size();
    if (n == 0) return;
    FLEX_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T)));
    FLEX_CUDA_CHECK(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void reset() {
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    n = 0;
  }
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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
  FLEX_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  FLEX_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::ostringstream os;
  os << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount
     << " SMs)";
  return os.str();
}

bool head_dim_supported(int d) { return d == 64 || d == 128; }

struct FlexAttention::Impl {
  AttnShape shape;
  DType dtype;
  int device = 0;
  FlexAttentionStats stats;
  DeviceArray<DevSlice> slices;
  DeviceArray<FwdEntry> fwd_entries;
  DeviceArray<FwdItem> fwd_items;
  DeviceArray<BwdEntry> bwd_entries;
  DeviceArray<BwdItem> bwd_items;
  float* dq_acc = nullptr;
  float* delta = nullptr;
  int fwd_variant = 0;

  ~Impl() {
    slices.reset();
    fwd_entries.reset();
    fwd_items.reset();
    bwd_entries.reset();
    bwd_items.reset();
    if (dq_acc) cudaFree(dq_acc);
    if (delta) cudaFree(delta);
  }
};

namespace {

// A run of rows [r0, r1) (at most one tile tall) and the slices that may cover it.
struct Segment {
  int r0, r1;
  std::vector<int> slices;
};

// Cuts the rows [0, n) of one axis (queries for the forward, keys for the backward) into segments
// of at most `tile` rows. When no two slices share a row on this axis (`disjoint`: documents, the
// common case), segments start at each slice's first row, so a tile never straddles two
// documents; rows no slice covers get segments with no slice (their outputs are still written).
// Otherwise segments are the fixed grid [b * tile, (b + 1) * tile) with every slice that meets them.
std::vector<Segment> make_segments(int n, int tile, const std::vector<DevSlice>& sl, bool on_q,
                                   bool disjoint) {
  auto lo = [&](const DevSlice& s) { return on_q ? s.qs : s.ks; };
  auto hi = [&](const DevSlice& s) { return on_q ? s.qe : s.ke; };
  std::vector<Segment> segs;
  auto chunk = [&](int a, int b, int slice) {
    for (int r = a; r < b; r += tile) {
      Segment g{r, std::min(b, r + tile), {}};
      if (slice >= 0) g.slices.push_back(slice);
      segs.push_back(std::move(g));
    }
  };
  if (disjoint) {
    std::vector<int> order;
    for (size_t i = 0; i < sl.size(); ++i)
      if (hi(sl[i]) > lo(sl[i])) order.push_back(static_cast<int>(i));
    std::sort(order.begin(), order.end(), [&](int x, int y) { return lo(sl[x]) < lo(sl[y]); });
    int cursor = 0;
    for (int i : order) {
      chunk(cursor, lo(sl[i]), -1);
      chunk(lo(sl[i]), hi(sl[i]), i);
      cursor = hi(sl[i]);
    }
    chunk(cursor, n, -1);
    return segs;
  }
  const int nblocks = static_cast<int>(ceil_div(n, tile));
  for (int b = 0; b < nblocks; ++b) segs.push_back(Segment{b * tile, std::min(n, (b + 1) * tile), {}});
  for (size_t i = 0; i < sl.size(); ++i) {
    if (hi(sl[i]) <= lo(sl[i])) continue;
    for (int b = lo(sl[i]) / tile; b <= (hi(sl[i]) - 1) / tile; ++b)
      segs[static_cast<size_t>(b)].slices.push_back(static_cast<int>(i));
  }
  return segs;
}

bool ranges_overlap(std::vector<std::pair<int, int>> r) {
  std::sort(r.begin(), r.end());
  for (size_t i = 1; i < r.size(); ++i)
    if (r[i].first < r[i - 1].second) return true;
  return false;
}

// Launch order of the work items (the hardware hands out thread blocks roughly in index order).
// Items that stream the same operands (forward: K and V; backward: Q, dO and the dQ accumulator)
// form a group, (kv head, first slice), and run side by side, so those operands come from HBM
// once and then from L2. Ordered by size alone, the blocks running at one time read different
// documents and heads and the kernel turns memory-bound (H100, 32k varlen causal with 4k
// documents: 346 TFLOP/s forward against 418 with 8k documents, whose equal-size items happened
// to pair up). Groups run heaviest first and so do the items within a group, so the last wave is
// small items. (Grouping by document instead, the slices joined by shared rows or keys, measured
// the same backward and 5-10% slower forward on varlen block-causal.)
template <typename Item, typename GroupOf>
void order_items(std::vector<Item>& items, GroupOf group_of) {
  struct Key {
    int64_t group_tiles;
    std::pair<int, int> group;
    int ntiles;
    size_t index;
  };
  std::map<std::pair<int, int>, int64_t> group_tiles;
  for (const Item& it : items) group_tiles[group_of(it)] += it.ntiles;
  std::vector<Key> keys;
  keys.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto g = group_of(items[i]);
    keys.push_back(Key{group_tiles[g], g, items[i].ntiles, i});
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    if (a.group_tiles != b.group_tiles) return a.group_tiles > b.group_tiles;
    if (a.group != b.group) return a.group < b.group;
    if (a.ntiles != b.ntiles) return a.ntiles > b.ntiles;
    return a.index < b.index;
  });
  std::vector<Item> ordered;
  ordered.reserve(items.size());
  for (const Key& k : keys) ordered.push_back(items[k.index]);
  items = std::move(ordered);
}

// Forward entries and items: one item per (segment of query rows, head). For segment rows
// [r0, r1) and slice s the rows are rr0 = max(r0, qs) .. rr1 = min(r1, qe); their visible keys
// lie in [max(lo(rr0), ks), min(hi(rr1 - 1), ke)) since lo and hi are non-decreasing in q.
void build_forward(const AttnShape& shape, const std::vector<DevSlice>& sl,
                   std::vector<FwdEntry>& entries, std::vector<FwdItem>& items,
                   FlexAttentionStats& stats, const int bm, const int bn, bool disjoint) {
  const std::vector<Segment> segs = make_segments(static_cast<int>(shape.sq), bm, sl, true, disjoint);
  for (const Segment& g : segs) {
    const int begin = static_cast<int>(entries.size());
    int tiles = 0;
    for (int i : g.slices) {
      const DevSlice& s = sl[static_cast<size_t>(i)];
      if (s.ke <= s.ks) continue;
      if (s.type == 3 && (s.ke - s.ks) < (s.qe - s.qs)) continue;  // bi_causal band empty
      const int rr0 = std::max(g.r0, s.qs), rr1 = std::min(g.r1, s.qe);
      if (rr1 <= rr0) continue;
      const int k_lo = std::max(detail::band_lo(s, rr0), s.ks);
      const int k_hi = std::min(detail::band_hi(s, rr1 - 1), s.ke);
      if (k_hi <= k_lo) continue;
      const int n = static_cast<int>(ceil_div(k_hi - k_lo, bn));
      entries.push_back(FwdEntry{i, k_lo, n, 0});
      tiles += n;
    }
    for (int h = 0; h < shape.hq; ++h) {
      FwdItem it{};
      it.q0 = g.r0;
      it.head = h;
      it.entry_begin = begin;
      it.entry_end = static_cast<int>(entries.size());
      it.ntiles = tiles;
      it.q_end = g.r1;
      items.push_back(it);
      stats.forward_tiles += tiles;
    }
  }
  const int group = shape.hq / shape.hkv;
  order_items(items, [&](const FwdItem& it) {
    return std::make_pair(it.head / group, it.entry_end > it.entry_begin ? entries[it.entry_begin].slice : -1);
  });
  stats.forward_items = static_cast<int64_t>(items.size());
}

// Backward entries and items: one item per (segment of key rows, kv head). For segment keys
// [k0, k1) and slice s the keys are kk0 = max(k0, ks) .. kk1 = min(k1, ke); key k is seen by
// queries [max(qs, k + qe - ke) (causal, bi_causal) or qs, min(qe, k - ks + qs + 1) (inv_causal,
// bi_causal) or qe), non-decreasing in k.
void build_backward(const AttnShape& shape, const std::vector<DevSlice>& sl,
                    std::vector<BwdEntry>& entries, std::vector<BwdItem>& items,
                    FlexAttentionStats& stats, const int bm, const int bn, bool disjoint) {
  const std::vector<Segment> segs = make_segments(static_cast<int>(shape.sk), bn, sl, false, disjoint);
  const int group = shape.hq / shape.hkv;
  for (const Segment& g : segs) {
    const int begin = static_cast<int>(entries.size());
    int tiles = 0;
    for (int i : g.slices) {
      const DevSlice& s = sl[static_cast<size_t>(i)];
      if (s.qe <= s.qs) continue;
      if (s.type == 3 && (s.ke - s.ks) < (s.qe - s.qs)) continue;
      const int kk0 = std::max(g.r0, s.ks), kk1 = std::min(g.r1, s.ke);
      if (kk1 <= kk0) continue;
      const int q_lo = (s.type & 1) ? std::max(s.qs, kk0 + s.qe - s.ke) : s.qs;
      const int q_hi = (s.type & 2) ? std::min(s.qe, (kk1 - 1) - s.ks + s.qs + 1) : s.qe;
      if (q_hi <= q_lo) continue;
      const int n = static_cast<int>(ceil_div(q_hi - q_lo, bm));
      entries.push_back(BwdEntry{i, q_lo, n, 0});
      tiles += n;
    }
    for (int h = 0; h < shape.hkv; ++h) {
      BwdItem it{};
      it.k0 = g.r0;
      it.kvhead = h;
      it.entry_begin = begin;
      it.entry_end = static_cast<int>(entries.size());
      it.ntiles = tiles;
      it.k_end = g.r1;
      items.push_back(it);
      stats.backward_tiles += static_cast<int64_t>(tiles) * group;
    }
  }
  order_items(items, [&](const BwdItem& it) {
    return std::make_pair(it.kvhead, it.entry_end > it.entry_begin ? entries[it.entry_begin].slice : -1);
  });
  stats.backward_items = static_cast<int64_t>(items.size());
}

int64_t slice_area(const DevSlice& s) {
  const int64_t lq = s.qe - s.qs, lk = s.ke - s.ks;
  if (lq <= 0 || lk <= 0) return 0;
  switch (s.type) {
    case 0: return lq * lk;
    case 1:
    case 2: return lk >= lq ? (2 * lk - lq + 1) * lq / 2 : lk * (lk + 1) / 2;
    default: return lk >= lq ? (lk - lq + 1) * lq : 0;
  }
}

// Raises kernel K's dynamic shared-memory limit to `smem` bytes, once per kernel.
template <auto K>
void allow_smem(int smem) {
  static bool configured = false;
  if (!configured) {
    FLEX_CUDA_CHECK(cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
}

template <typename T>
detail::FwdParams<T> forward_params(const FlexAttention::Impl& im, const void* q, const void* k,
                                    const void* v, void* out, float* lse, float scale) {
  detail::FwdParams<T> p{};
  p.q = static_cast<const T*>(q);
  p.k = static_cast<const T*>(k);
  p.v = static_cast<const T*>(v);
  p.out = static_cast<T*>(out);
  p.lse = lse;
  p.slices = im.slices.ptr;
  p.entries = im.fwd_entries.ptr;
  p.items = im.fwd_items.ptr;
  p.sq = static_cast<int>(im.shape.sq);
  p.sk = static_cast<int>(im.shape.sk);
  p.hq = im.shape.hq;
  p.hkv = im.shape.hkv;
  p.scale_log2 = scale * detail::kLog2e;
  return p;
}

template <typename T, int D, int NWG, int BN, int MINB>
void launch_forward_wg(const FlexAttention::Impl& im, const void* q, const void* k, const void* v,
                       void* out, float* lse, float scale, cudaStream_t stream) {
  constexpr int smem = detail::fwd_wgmma_smem_bytes<D, NWG * 64, BN, 2>();
  constexpr auto kernel = detail::flex_fwd_wgmma_kernel<T, D, NWG, BN, 2, MINB>;
  allow_smem<kernel>(smem);
  const unsigned grid = static_cast<unsigned>(im.fwd_items.n);
  if (grid == 0) return;
  kernel<<<grid, NWG * 128, smem, stream>>>(forward_params<T>(im, q, k, v, out, lse, scale));
  FLEX_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int D>
void launch_forward(const FlexAttention::Impl& im, const void* q, const void* k, const void* v,
                    void* out, float* lse, float scale, cudaStream_t stream) {
  switch (im.fwd_variant) {
#define FWD_CASE(i)                                                                          \
  case i:                                                                                   \
    launch_forward_wg<T, D, kFwdVariants[i].nwg, kFwdVariants[i].bn, kFwdVariants[i].minb>( \
        im, q, k, v, out, lse, scale, stream);                                              \
    break;
    FWD_CASE(0) FWD_CASE(1) FWD_CASE(2) FWD_CASE(3)
#undef FWD_CASE
    default: throw std::logic_error("forward variant");
  }
}

template <typename T, int D>
void launch_backward(FlexAttention::Impl& im, const void* q, const void* k, const void* v,
                     const void* out, const void* dout, const float* lse, float scale, void* dq,
                     void* dk, void* dv, cudaStream_t stream) {
  const AttnShape& sh = im.shape;
  const int64_t qrows = sh.sq * sh.hq;
  const int64_t qelems = qrows * sh.d;
  if (!im.dq_acc && qelems > 0) {
    FLEX_CUDA_CHECK(cudaMalloc(&im.dq_acc, static_cast<size_t>(qelems) * sizeof(float)));
    FLEX_CUDA_CHECK(cudaMalloc(&im.delta, static_cast<size_t>(qrows) * sizeof(float)));
  }
  if (qelems > 0) {
    FLEX_CUDA_CHECK(cudaMemsetAsync(im.dq_acc, 0, static_cast<size_t>(qelems) * sizeof(float), stream));
    detail::flex_bwd_delta_kernel<T, D><<<static_cast<unsigned>(ceil_div(qrows, 8)), 256, 0, stream>>>(
        static_cast<const T*>(out), static_cast<const T*>(dout), im.delta, qrows);
    FLEX_CUDA_CHECK(cudaGetLastError());
  }
  constexpr int smem = detail::bwd_wgmma_smem_bytes<D, kBwdBM, kBwdBN>();
  constexpr auto kernel = detail::flex_bwd_wgmma_kernel<T, D>;
  allow_smem<kernel>(smem);
  detail::BwdParams<T> p{};
  p.q = static_cast<const T*>(q);
  p.k = static_cast<const T*>(k);
  p.v = static_cast<const T*>(v);
  p.dout = static_cast<const T*>(dout);
  p.lse = lse;
  p.delta = im.delta;
  p.dq_acc = im.dq_acc;
  p.dk = static_cast<T*>(dk);
  p.dv = static_cast<T*>(dv);
  p.slices = im.slices.ptr;
  p.entries = im.bwd_entries.ptr;
  p.items = im.bwd_items.ptr;
  p.sq = static_cast<int>(sh.sq);
  p.sk = static_cast<int>(sh.sk);
  p.hq = sh.hq;
  p.hkv = sh.hkv;
  p.scale = scale;
  p.scale_log2 = scale * detail::kLog2e;
  const unsigned grid = static_cast<unsigned>(im.bwd_items.n);
  if (grid > 0) {
    kernel<<<grid, 256, smem, stream>>>(p);
    FLEX_CUDA_CHECK(cudaGetLastError());
  }
  if (qelems > 0) {
    detail::flex_convert_kernel<T><<<1024, 256, 0, stream>>>(im.dq_acc, static_cast<T*>(dq), qelems);
    FLEX_CUDA_CHECK(cudaGetLastError());
  }
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
  if (num_slices > 0 && slices == nullptr) throw std::invalid_argument("FlexAttention: null slices");
  impl_->shape = shape;
  impl_->dtype = dtype;
  if (device >= 0) FLEX_CUDA_CHECK(cudaSetDevice(device));
  FLEX_CUDA_CHECK(cudaGetDevice(&impl_->device));

  std::vector<DevSlice> ds;
  ds.reserve(num_slices);
  std::vector<std::pair<int, int>> qranges;
  for (size_t i = 0; i < num_slices; ++i) {
    const KernelSlice& s = slices[i];
    if (s.q_start < 0 || s.q_end < s.q_start || s.q_end > shape.sq || s.k_start < 0 ||
        s.k_end < s.k_start || s.k_end > shape.sk)
      throw std::invalid_argument("FlexAttention: slice " + std::to_string(i) + " out of bounds or reversed");
    const int t = static_cast<int>(s.type);
    if (t < 0 || t > 3) throw std::invalid_argument("FlexAttention: slice " + std::to_string(i) + " has an unknown type");
    // A slice with no query rows or no keys covers nothing. It must not reach the work lists: a
    // key segment of an empty-q slice would make a backward item that writes zero dK/dV over
    // keys that another slice's items write.
    if (s.q_end == s.q_start || s.k_end == s.k_start) continue;
    ds.push_back(DevSlice{static_cast<int>(s.q_start), static_cast<int>(s.q_end), static_cast<int>(s.k_start),
                          static_cast<int>(s.k_end), t});
    impl_->stats.area += slice_area(ds.back());
    qranges.emplace_back(ds.back().qs, ds.back().qe);
  }
  std::sort(qranges.begin(), qranges.end());
  for (size_t i = 1; i < qranges.size(); ++i)
    if (qranges[i].first < qranges[i - 1].second) impl_->stats.q_ranges_overlap = true;

  impl_->fwd_variant = variant_from_env("MAGI_FLEX_FWD_VARIANT", default_fwd_variant(shape.d), kNumFwdVariants);
  const FwdVariant& fv = kFwdVariants[impl_->fwd_variant];
  std::vector<FwdEntry> fe;
  std::vector<FwdItem> fi;
  std::vector<std::pair<int, int>> kranges;
  for (const DevSlice& d : ds) kranges.emplace_back(d.ks, d.ke);
  const bool aligned = std::getenv("MAGI_FLEX_GRID_TILES") == nullptr;  // experiments only
  build_forward(shape, ds, fe, fi, impl_->stats, fv.bm(), fv.bn, aligned && !impl_->stats.q_ranges_overlap);
  std::vector<BwdEntry> be;
  std::vector<BwdItem> bi;
  build_backward(shape, ds, be, bi, impl_->stats, kBwdBM, kBwdBN, aligned && !ranges_overlap(kranges));
  impl_->slices.upload(ds);
  impl_->fwd_entries.upload(fe);
  impl_->fwd_items.upload(fi);
  impl_->bwd_entries.upload(be);
  impl_->bwd_items.upload(bi);
}

FlexAttention::~FlexAttention() = default;

const FlexAttentionStats& FlexAttention::stats() const { return impl_->stats; }
const AttnShape& FlexAttention::shape() const { return impl_->shape; }

void FlexAttention::forward(const void* q, const void* k, const void* v, void* out, float* lse,
                            float softmax_scale, void* stream) {
  if (!(softmax_scale > 0.f) || !std::isfinite(softmax_scale))
    throw std::invalid_argument("FlexAttention: softmax scale must be positive and finite");
  FLEX_CUDA_CHECK(cudaSetDevice(impl_->device));
  auto st = static_cast<cudaStream_t>(stream);
  const int d = impl_->shape.d;
  if (impl_->dtype == DType::bf16) {
    if (d == 64) launch_forward<__nv_bfloat16, 64>(*impl_, q, k, v, out, lse, softmax_scale, st);
    else launch_forward<__nv_bfloat16, 128>(*impl_, q, k, v, out, lse, softmax_scale, st);
  } else {
    if (d == 64) launch_forward<__half, 64>(*impl_, q, k, v, out, lse, softmax_scale, st);
    else launch_forward<__half, 128>(*impl_, q, k, v, out, lse, softmax_scale, st);
  }
}

void FlexAttention::backward(const void* q, const void* k, const void* v, const void* out,
                             const void* dout, const float* lse, float softmax_scale, void* dq,
                             void* dk, void* dv, void* stream) {
  if (!(softmax_scale > 0.f) || !std::isfinite(softmax_scale))
    throw std::invalid_argument("FlexAttention: softmax scale must be positive and finite");
  FLEX_CUDA_CHECK(cudaSetDevice(impl_->device));
  auto st = static_cast<cudaStream_t>(stream);
  const int d = impl_->shape.d;
  if (impl_->dtype == DType::bf16) {
    if (d == 64) launch_backward<__nv_bfloat16, 64>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st);
    else launch_backward<__nv_bfloat16, 128>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st);
  } else {
    if (d == 64) launch_backward<__half, 64>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st);
    else launch_backward<__half, 128>(*impl_, q, k, v, out, dout, lse, softmax_scale, dq, dk, dv, st);
  }
}

}  // namespace magi::kernels::cuda
