#include "cpu/reference_attention.h"

#include "common/slice_band.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace magi::kernels::cpu {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// (Row, query head) pairs (forward, dq) or keys (dk, dv) per task. Any value gives the same bits:
// tasks only decide which thread computes an output element, never the order of its sums.
constexpr int64_t kBlock = 32;
// Keys per chunk of the forward's and dq's sweeps (sweep_keys_by_chunk).
constexpr int64_t kKeyChunk = 256;

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("reference attention: " + what); }

std::string describe(const KernelSlice& s, size_t index) {
  return "slice " + std::to_string(index) + " ([" + std::to_string(s.q_start) + ", " +
         std::to_string(s.q_end) + ") x [" + std::to_string(s.k_start) + ", " + std::to_string(s.k_end) +
         "), type " + std::to_string(static_cast<int32_t>(s.type)) + ")";
}

void require_buffer(const void* p, int64_t elements, const char* name) {
  if (elements > 0 && p == nullptr) fail(std::string("buffer '") + name + "' is null");
}

void validate_shape(const AttnShape& shape, const KernelSlice* slices, size_t num_slices) {
  if (shape.sq < 0 || shape.sk < 0) {
    fail("negative length (sq " + std::to_string(shape.sq) + ", sk " + std::to_string(shape.sk) + ")");
  }
  if (shape.hq <= 0 || shape.hkv <= 0 || shape.d <= 0) {
    fail("heads and head dim must be positive (hq " + std::to_string(shape.hq) + ", hkv " +
         std::to_string(shape.hkv) + ", d " + std::to_string(shape.d) + ")");
  }
  if (shape.hq % shape.hkv != 0) {
    fail("hq (" + std::to_string(shape.hq) + ") is not a multiple of hkv (" + std::to_string(shape.hkv) + ")");
  }
  if (num_slices > 0 && slices == nullptr) fail("slice list is null");
  for (size_t i = 0; i < num_slices; ++i) {
    const KernelSlice& s = slices[i];
    if (s.q_start < 0 || s.q_start > s.q_end || s.q_end > shape.sq || s.k_start < 0 || s.k_start > s.k_end ||
        s.k_end > shape.sk) {
      fail(describe(s, i) + " is reversed or outside the buffers [0, " + std::to_string(shape.sq) + ") x [0, " +
           std::to_string(shape.sk) + ")");
    }
    const auto t = static_cast<int32_t>(s.type);
    if (t < 0 || t > 3) fail(describe(s, i) + " has an unknown type");
  }
}

int resolve_threads(int num_threads) {
  if (num_threads < 0) fail("negative thread count " + std::to_string(num_threads));
  if (num_threads > 0) return num_threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// [lo, hi) with the slice it came from; empty when lo >= hi.
struct Interval {
  int64_t lo = 0, hi = 0;
  size_t slice = 0;
};

// The keys query row q (q in [q_start, q_end)) sees in slice s (common/slice_band.h).
Interval visible_keys(const KernelSlice& s, int64_t q) {
  return {band_lo(s.type, s.q_start, s.k_start, q), band_hi(s.type, s.q_end, s.k_end, q), 0};
}

// The transpose: the rows that see key j (j in [k_start, k_end)) in slice s.
Interval visible_rows(const KernelSlice& s, int64_t j) {
  return {rows_lo(s.type, s.q_start, s.q_end, s.k_end, j), rows_hi(s.type, s.q_start, s.q_end, s.k_start, j), 0};
}

// For each position p of one axis (query rows, or keys), the non-empty intervals of the other axis
// it meets, from all slices, sorted by lo (compressed rows: intervals[offsets[p], offsets[p + 1])).
struct IntervalIndex {
  std::vector<int64_t> offsets;
  std::vector<Interval> intervals;
  const Interval* begin(int64_t p) const { return intervals.data() + offsets[p]; }
  const Interval* end(int64_t p) const { return intervals.data() + offsets[p + 1]; }
};

enum class Axis { rows, keys };

IntervalIndex build_index(Axis axis, int64_t n, const KernelSlice* slices, size_t num_slices) {
  IntervalIndex index;
  index.offsets.assign(n + 1, 0);
  auto for_each_interval = [&](auto&& visit) {
    for (size_t i = 0; i < num_slices; ++i) {
      const KernelSlice& s = slices[i];
      const int64_t first = axis == Axis::rows ? s.q_start : s.k_start;
      const int64_t last = axis == Axis::rows ? s.q_end : s.k_end;
      for (int64_t p = first; p < last; ++p) {
        Interval iv = axis == Axis::rows ? visible_keys(s, p) : visible_rows(s, p);
        iv.slice = i;
        if (iv.lo < iv.hi) visit(p, iv);
      }
    }
  };
  for_each_interval([&](int64_t p, const Interval&) { ++index.offsets[p + 1]; });
  for (int64_t p = 0; p < n; ++p) index.offsets[p + 1] += index.offsets[p];
  index.intervals.resize(index.offsets[n]);
  std::vector<int64_t> fill(index.offsets.begin(), index.offsets.end() - 1);
  for_each_interval([&](int64_t p, const Interval& iv) { index.intervals[fill[p]++] = iv; });
  for (int64_t p = 0; p < n; ++p) {
    std::sort(index.intervals.begin() + index.offsets[p], index.intervals.begin() + index.offsets[p + 1],
              [](const Interval& a, const Interval& b) { return a.lo < b.lo; });
  }
  return index;
}

// The per-row key index; throws if two slices cover a common (q, k) pair.
IntervalIndex build_row_index(const AttnShape& shape, const KernelSlice* slices, size_t num_slices) {
  IntervalIndex rows = build_index(Axis::rows, shape.sq, slices, num_slices);
  for (int64_t q = 0; q < shape.sq; ++q) {
    for (const Interval* iv = rows.begin(q); iv + 1 < rows.end(q); ++iv) {
      if (iv->hi > iv[1].lo) {
        fail(describe(slices[iv->slice], iv->slice) + " and " + describe(slices[iv[1].slice], iv[1].slice) +
             " both cover (q " + std::to_string(q) + ", k " + std::to_string(iv[1].lo) + ")");
      }
    }
  }
  return rows;
}

// Runs fn(task) for every task in [0, num_tasks) on up to num_threads threads. Tasks must write
// disjoint outputs; the first exception thrown by a task is rethrown here after all threads end.
template <class Fn>
void run_tasks(int64_t num_tasks, int num_threads, const Fn& fn) {
  const int64_t workers = std::min<int64_t>(num_threads, num_tasks);
  if (workers <= 1) {
    for (int64_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    try {
      for (int64_t t = next.fetch_add(1); t < num_tasks; t = next.fetch_add(1)) fn(t);
    } catch (...) {
      const std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(num_tasks);
    }
  };
  {
    std::vector<std::jthread> threads;
    for (int64_t w = 1; w < workers; ++w) threads.emplace_back(worker);
    worker();
  }
  if (error) std::rethrow_exception(error);
}

// Dot product in float64 with four partial sums in a fixed order (deterministic, and four times
// the throughput of one serial chain).
double dot(const double* a, const float* b, int32_t d) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  int32_t c = 0;
  for (; c + 4 <= d; c += 4) {
    for (int32_t l = 0; l < 4; ++l) s[l] += a[c + l] * static_cast<double>(b[c + l]);
  }
  for (; c < d; ++c) s[0] += a[c] * static_cast<double>(b[c]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void to_double(const float* src, int32_t d, double* dst) {
  for (int32_t c = 0; c < d; ++c) dst[c] = static_cast<double>(src[c]);
}

// acc += w * x
void axpy(double w, const float* x, int32_t d, double* acc) {
  for (int32_t c = 0; c < d; ++c) acc[c] += w * static_cast<double>(x[c]);
}

// Element offsets of row i, head h in a [rows, heads, d] buffer and in a [rows, heads] buffer.
struct Strides {
  int64_t hq, hkv, d, group;
  int64_t q(int64_t i, int64_t h) const { return (i * hq + h) * d; }
  int64_t kv(int64_t j, int64_t g) const { return (j * hkv + g) * d; }
  int64_t row(int64_t i, int64_t h) const { return i * hq + h; }
};

Strides strides_of(const AttnShape& shape) {
  return {shape.hq, shape.hkv, shape.d, shape.hq / shape.hkv};
}

// The forward's and dq's tasks: a few query rows with every query head of one kv head. A task
// holds about kBlock (row, head) pairs, each of which reads every K and V row it sees: the pairs
// share those reads while the key chunk they come from is in cache.
struct RowTask {
  int64_t row_begin, row_end, kv_head, head_begin, head_end, pairs;
};

struct RowTasks {
  int64_t sq, rows_per_task, blocks;
  Strides st;
  RowTasks(int64_t sq_, const Strides& st_)
      : sq(sq_), rows_per_task(std::max<int64_t>(1, kBlock / st_.group)),
        blocks((sq_ + rows_per_task - 1) / rows_per_task), st(st_) {}
  int64_t count() const { return blocks * st.hkv; }
  RowTask at(int64_t task) const {
    const int64_t g = task % st.hkv;
    const int64_t first = task / st.hkv * rows_per_task;
    const int64_t end = std::min(sq, first + rows_per_task);
    return {first, end, g, g * st.group, (g + 1) * st.group, (end - first) * st.group};
  }
};

int64_t visible_count(const IntervalIndex& rows, int64_t i) {
  int64_t n = 0;
  for (const Interval* iv = rows.begin(i); iv != rows.end(i); ++iv) n += iv->hi - iv->lo;
  return n;
}

// Calls visit(i, j) for every key j that a row i in [row_begin, row_end) sees, kKeyChunk keys at a
// time: within a chunk rows ascending, within a row keys ascending. Each row meets its keys in
// ascending order as a plain walk would, so its sums run in the same order and give the same
// bits, while a chunk's K and V rows (d 128: 256 KB) stay in the core's cache for all the rows.
template <class Visit>
void sweep_keys_by_chunk(const IntervalIndex& rows, int64_t row_begin, int64_t row_end, const Visit& visit) {
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (int64_t i = row_begin; i < row_end; ++i) {
    if (rows.begin(i) == rows.end(i)) continue;
    lo = std::min(lo, rows.begin(i)->lo);
    hi = std::max(hi, (rows.end(i) - 1)->hi);  // sorted by lo and disjoint, so by hi too
  }
  for (int64_t chunk = lo; chunk < hi; chunk += kKeyChunk) {
    const int64_t chunk_end = std::min(hi, chunk + kKeyChunk);
    for (int64_t i = row_begin; i < row_end; ++i) {
      for (const Interval* iv = rows.begin(i); iv != rows.end(i) && iv->lo < chunk_end; ++iv) {
        for (int64_t j = std::max(iv->lo, chunk); j < std::min(iv->hi, chunk_end); ++j) visit(i, j);
      }
    }
  }
}

}  // namespace

void attention_forward(const AttnShape& shape, const KernelSlice* slices, size_t num_slices, const float* q,
                       const float* k, const float* v, float softmax_scale, float* out, float* lse,
                       int num_threads) {
  validate_shape(shape, slices, num_slices);
  if (!std::isfinite(softmax_scale)) fail("softmax scale is not finite");
  const int threads = resolve_threads(num_threads);
  const Strides st = strides_of(shape);
  require_buffer(q, shape.sq * st.hq * st.d, "q");
  require_buffer(k, shape.sk * st.hkv * st.d, "k");
  require_buffer(v, shape.sk * st.hkv * st.d, "v");
  require_buffer(out, shape.sq * st.hq * st.d, "out");
  require_buffer(lse, shape.sq * st.hq, "lse");
  const IntervalIndex rows = build_row_index(shape, slices, num_slices);
  const double scale = softmax_scale;
  const int32_t d = shape.d;
  const RowTasks tasks(shape.sq, st);

  run_tasks(tasks.count(), threads, [&](int64_t task) {
    const RowTask t = tasks.at(task);
    const int64_t n_rows = t.row_end - t.row_begin;
    // Per (row, head) pair p = (i - row_begin) * group + (h - first head): q in float64, the
    // running max, sum and output; and each row's scores, in the order the row meets its keys.
    std::vector<double> qd(t.pairs * d), acc(t.pairs * d, 0.0), max_score(t.pairs, kNegInf), sum(t.pairs, 0.0);
    std::vector<int64_t> keys_seen(n_rows), score_base(n_rows + 1, 0), seen(n_rows, 0);
    for (int64_t i = t.row_begin; i < t.row_end; ++i) {
      const int64_t r = i - t.row_begin;
      keys_seen[r] = visible_count(rows, i);
      score_base[r + 1] = score_base[r] + st.group * keys_seen[r];
      for (int64_t p = (i - t.row_begin) * st.group, h = t.head_begin; h < t.head_end; ++h, ++p) {
        to_double(q + st.q(i, h), d, qd.data() + p * d);
      }
    }
    std::vector<double> scores(score_base[n_rows]);
    // The scores of row i's n-th key, one per head: scores[score_base[r] + n * group + head].
    auto next_scores = [&](int64_t i) {
      const int64_t r = i - t.row_begin;
      return scores.data() + score_base[r] + seen[r]++ * st.group;
    };
    sweep_keys_by_chunk(rows, t.row_begin, t.row_end, [&](int64_t i, int64_t j) {
      double* sc = next_scores(i);
      const float* kj = k + st.kv(j, t.kv_head);
      for (int64_t hh = 0, p = (i - t.row_begin) * st.group; hh < st.group; ++hh, ++p) {
        sc[hh] = scale * dot(qd.data() + p * d, kj, d);
        max_score[p] = std::max(max_score[p], sc[hh]);
      }
    });
    std::fill(seen.begin(), seen.end(), 0);
    sweep_keys_by_chunk(rows, t.row_begin, t.row_end, [&](int64_t i, int64_t j) {
      const double* sc = next_scores(i);
      const float* vj = v + st.kv(j, t.kv_head);
      for (int64_t hh = 0, p = (i - t.row_begin) * st.group; hh < st.group; ++hh, ++p) {
        const double e = std::exp(sc[hh] - max_score[p]);
        sum[p] += e;
        axpy(e, vj, d, acc.data() + p * d);
      }
    });
    for (int64_t i = t.row_begin; i < t.row_end; ++i) {
      for (int64_t p = (i - t.row_begin) * st.group, h = t.head_begin; h < t.head_end; ++h, ++p) {
        float* o = out + st.q(i, h);
        if (keys_seen[i - t.row_begin] == 0) {
          std::fill(o, o + d, 0.0f);
          lse[st.row(i, h)] = static_cast<float>(kNegInf);
          continue;
        }
        for (int32_t c = 0; c < d; ++c) o[c] = static_cast<float>(acc[p * d + c] / sum[p]);
        lse[st.row(i, h)] = static_cast<float>(max_score[p] + std::log(sum[p]));
      }
    }
  });
}

void attention_backward(const AttnShape& shape, const KernelSlice* slices, size_t num_slices, const float* q,
                        const float* k, const float* v, const float* out, const float* dout, const float* lse,
                        float softmax_scale, float* dq, float* dk, float* dv, int num_threads) {
  validate_shape(shape, slices, num_slices);
  if (!std::isfinite(softmax_scale)) fail("softmax scale is not finite");
  const int threads = resolve_threads(num_threads);
  const Strides st = strides_of(shape);
  const int64_t q_elems = shape.sq * st.hq * st.d;
  const int64_t kv_elems = shape.sk * st.hkv * st.d;
  require_buffer(q, q_elems, "q");
  require_buffer(k, kv_elems, "k");
  require_buffer(v, kv_elems, "v");
  require_buffer(out, q_elems, "out");
  require_buffer(dout, q_elems, "dout");
  require_buffer(lse, shape.sq * st.hq, "lse");
  require_buffer(dq, q_elems, "dq");
  if (dk != nullptr || dv != nullptr) {  // both null: dq alone
    require_buffer(dk, kv_elems, "dk");
    require_buffer(dv, kv_elems, "dv");
  }
  const IntervalIndex rows = build_row_index(shape, slices, num_slices);
  const double scale = softmax_scale;
  const int32_t d = shape.d;

  // Pass 1, per (query row, head): D_i = rowsum(dout_i * out_i) and dq_i.
  std::vector<double> delta(shape.sq * st.hq);
  const RowTasks tasks(shape.sq, st);
  run_tasks(tasks.count(), threads, [&](int64_t task) {
    const RowTask t = tasks.at(task);
    // Per (row, head) pair, as in the forward: q and dout in float64, lse, D and the dq sum.
    std::vector<double> qd(t.pairs * d), dod(t.pairs * d), acc(t.pairs * d, 0.0), lse_d(t.pairs), delta_d(t.pairs);
    for (int64_t i = t.row_begin; i < t.row_end; ++i) {
      for (int64_t p = (i - t.row_begin) * st.group, h = t.head_begin; h < t.head_end; ++h, ++p) {
        to_double(dout + st.q(i, h), d, dod.data() + p * d);
        delta_d[p] = dot(dod.data() + p * d, out + st.q(i, h), d);
        delta[st.row(i, h)] = delta_d[p];
        lse_d[p] = lse[st.row(i, h)];
        to_double(q + st.q(i, h), d, qd.data() + p * d);
      }
    }
    sweep_keys_by_chunk(rows, t.row_begin, t.row_end, [&](int64_t i, int64_t j) {
      const float* kj = k + st.kv(j, t.kv_head);
      const float* vj = v + st.kv(j, t.kv_head);
      for (int64_t p = (i - t.row_begin) * st.group, end = p + st.group; p < end; ++p) {
        const double prob = std::exp(scale * dot(qd.data() + p * d, kj, d) - lse_d[p]);
        const double ds = prob * (dot(dod.data() + p * d, vj, d) - delta_d[p]);
        axpy(ds, kj, d, acc.data() + p * d);
      }
    });
    for (int64_t i = t.row_begin; i < t.row_end; ++i) {
      for (int64_t p = (i - t.row_begin) * st.group, h = t.head_begin; h < t.head_end; ++h, ++p) {
        float* dqi = dq + st.q(i, h);
        for (int32_t c = 0; c < d; ++c) dqi[c] = static_cast<float>(scale * acc[p * d + c]);
      }
    }
  });
  if (dk == nullptr && dv == nullptr) return;
  const IntervalIndex keys = build_index(Axis::keys, shape.sk, slices, num_slices);

  // Pass 2, per (key, kv head): dk_j and dv_j over every query head of the group and every row
  // that sees key j.
  const int64_t key_blocks = (shape.sk + kBlock - 1) / kBlock;
  run_tasks(key_blocks * st.hkv, threads, [&](int64_t task) {
    const int64_t g = task % st.hkv;
    const int64_t key_end = std::min(shape.sk, (task / st.hkv + 1) * kBlock);
    std::vector<double> kd(d), vd(d), dk_acc(d), dv_acc(d);
    for (int64_t j = task / st.hkv * kBlock; j < key_end; ++j) {
      to_double(k + st.kv(j, g), d, kd.data());
      to_double(v + st.kv(j, g), d, vd.data());
      std::fill(dk_acc.begin(), dk_acc.end(), 0.0);
      std::fill(dv_acc.begin(), dv_acc.end(), 0.0);
      for (int64_t h = g * st.group; h < (g + 1) * st.group; ++h) {
        for (const Interval* iv = keys.begin(j); iv != keys.end(j); ++iv) {
          for (int64_t i = iv->lo; i < iv->hi; ++i) {
            const float* qi = q + st.q(i, h);
            const float* doi = dout + st.q(i, h);
            const double p = std::exp(scale * dot(kd.data(), qi, d) - static_cast<double>(lse[st.row(i, h)]));
            const double ds = p * (dot(vd.data(), doi, d) - delta[st.row(i, h)]);
            axpy(p, doi, d, dv_acc.data());
            axpy(ds, qi, d, dk_acc.data());
          }
        }
      }
      float* dkj = dk + st.kv(j, g);
      float* dvj = dv + st.kv(j, g);
      for (int32_t c = 0; c < d; ++c) {
        dkj[c] = static_cast<float>(scale * dk_acc[c]);
        dvj[c] = static_cast<float>(dv_acc[c]);
      }
    }
  });
}

void merge_partial(int64_t rows, int32_t heads, int32_t d, float* out_acc, float* lse_acc, const float* out_part,
                   const float* lse_part) {
  if (rows < 0 || heads <= 0 || d <= 0) {
    fail("merge_partial: bad shape (rows " + std::to_string(rows) + ", heads " + std::to_string(heads) + ", d " +
         std::to_string(d) + ")");
  }
  const int64_t n = rows * heads;
  require_buffer(out_acc, n * d, "out_acc");
  require_buffer(lse_acc, n, "lse_acc");
  require_buffer(out_part, n * d, "out_part");
  require_buffer(lse_part, n, "lse_part");
  for (int64_t r = 0; r < n; ++r) {
    const double a = lse_acc[r];
    const double b = lse_part[r];
    float* o = out_acc + r * d;
    const float* op = out_part + r * d;
    if (b == kNegInf) continue;
    if (a == kNegInf) {
      std::copy(op, op + d, o);
      lse_acc[r] = lse_part[r];
      continue;
    }
    const double m = std::max(a, b);
    const double lse = m + std::log(std::exp(a - m) + std::exp(b - m));
    const double wa = std::exp(a - lse);
    const double wb = std::exp(b - lse);
    for (int32_t c = 0; c < d; ++c) {
      o[c] = static_cast<float>(wa * static_cast<double>(o[c]) + wb * static_cast<double>(op[c]));
    }
    lse_acc[r] = static_cast<float>(lse);
  }
}

}  // namespace magi::kernels::cpu
