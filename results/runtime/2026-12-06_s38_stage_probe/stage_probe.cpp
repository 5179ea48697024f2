// Diagnostic (not part of the product; built by build.sh beside it, host code only): where the cp 1 forward loses
// when cut into stages (issue 12's stage benchmark, configs/gpu_stages_bench.json). For each case
// of a workload (cp 1, magi, an explicit overlap degree), the plan `run` builds, and the same
// FlexAttention calls the runtime makes (stage 0 writes, or fills lse = -inf and writes its keyed
// rows; each later stage accumulates into out / lse with the rows the earlier stages reach as its
// merged rows), timed forward only, with variants that take one thing away at a time:
//   one        : one plan over the whole mask, Into::write (the benchmark's denominator)
//   mergek     : the same plan, Into::accumulate with no merged rows: the MERGE kernel, no merge reads
//   mergeall   : the same plan, Into::accumulate, every row merged (lse = -inf before each call):
//                the MERGE kernel and every item's merge reads
//   stages     : the stage calls as the runtime makes them, later ones Launch::overlap
//   after      : the same with Launch::after (no programmatic dependent launch)
//   keyed      : every stage Into::write_keyed, Launch::after: the same kernels' work with no merge
//                (the MERGE kernel, its reads and its waits taken away; out is wrong, timing only)
//   serial[s]  : stage s alone, from events around it in `after` (how long each kernel takes)
//   again      : the one launch again, listed last: the control. At the card's power cap the clock
//                drifts as a process runs (session 42), so a variant's place in the round can
//                weigh as much as what it does; `again` against `one` shows how much
// Variants alternate in rounds, every other round in reverse order, so that with an even number
// of rounds every variant stands on average at the same place; each is warmed for at least 1 s
// and timed for at least --seconds, CUDA events around each iteration, the median reported; the
// last column is the geometric mean over the rounds of one / variant. The first variant of a process is timed
// once more before the rounds and that time dropped, so that no variant is the first a process
// times (session 39 suspected that one; session 40 found the one launch varying by up to 4% within
// and between processes instead: results/runtime/NOTES.md). The staged out is checked against one
// launch (max abs difference) before timing. --only keeps the named variants (comma-separated; `one` and `again` always).
// Built with -DMAGI_FWD_TRACE against kernels with probe G's trace.patch
// (results/runtime/2026-12-07_s43_block_trace/), each kept variant is then run once more with every
// forward launch writing, per thread block, its start, its first product, its end, its SM and its
// items and tiles, and the run's time on each SM is split into: idle before its first block, the
// blocks' ramps (start to first product), their work (first product to end), the gaps between
// one launch's block and the next launch's on the SM, and idle after its last block; with the
// work's cost per tile and per item fitted over the blocks, and the SM clock the blocks ran at.
// Built also with -DMAGI_FWD_TRACE_WORDS=16 against kernels with probe J's trace2.patch
// (results/runtime/2026-12-07_s45_j_trace_inputs/), it adds where consumer 0 waited, per SM (us at
// the blocks' clock): for the stage before (MERGE kernels), for an item's Q, for an item's first
// K tile, and in its epilogues, with the items it merged and ran.
// Usage: stage_probe CONFIG [--rounds N] [--seconds S] [--only a,b,...]
#include "core/base/range.h"
#include "core/base/slice.h"
#include "core/plan/planner.h"
#include "core/workload/case_inputs.h"
#include "core/workload/workload.h"
#include "cuda/flex_attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace kc = magi::kernels::cuda;
namespace mk = magi::kernels;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Uniform in [-1, 1) by a hash of the index, rounded to bf16 (round to nearest even).
std::vector<uint16_t> random_bf16(int64_t n, uint64_t seed) {
  std::vector<uint16_t> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t h = (static_cast<uint64_t>(i) + seed * 0x100000000ull) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const float f = static_cast<float>(h & 0xFFFFFF) / 16777216.f * 2.f - 1.f;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    x[static_cast<size_t>(i)] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
  return x;
}

struct Buffers {
  uint16_t *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;  // bf16
  float *lse = nullptr, *neg_inf = nullptr;
  int64_t q_elems = 0, rows = 0;
};

// Median ms of `body` (enqueues one iteration on `st`) after >= 1 s of warm-up, timed >= seconds.
double time_ms(const std::function<void()>& body, cudaStream_t st, double seconds) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto t0 = now();
  do {
    body();
    check(cudaStreamSynchronize(st), "warm-up");
  } while (std::chrono::duration<double>(now() - t0).count() < 1.0);
  std::vector<float> ms;
  t0 = now();
  do {
    check(cudaEventRecord(a, st), "record");
    body();
    check(cudaEventRecord(b, st), "record");
    check(cudaEventSynchronize(b), "sync");
    float m = 0;
    check(cudaEventElapsedTime(&m, a, b), "elapsed");
    ms.push_back(m);
  } while (std::chrono::duration<double>(now() - t0).count() < seconds);
  std::sort(ms.begin(), ms.end());
  check(cudaEventDestroy(a), "event");
  check(cudaEventDestroy(b), "event");
  return ms[ms.size() / 2];
}

struct StageCall {
  std::unique_ptr<kc::FlexAttention> plan;
  int64_t k0 = 0;  // the stage's first key
};

#ifdef MAGI_FWD_TRACE
#ifndef MAGI_FWD_TRACE_WORDS
#define MAGI_FWD_TRACE_WORDS 8  // probe G's trace.patch; 16 with probe J's trace2.patch
#endif
constexpr size_t kTraceWords = MAGI_FWD_TRACE_WORDS;
// Probe G: runs `body` for >= 0.5 s with every launch of `plans` tracing its blocks (the last
// iteration's trace is read) and prints where the run's time on each SM went (header above).
void trace_variant(const std::string& mask, const std::string& name, const std::vector<kc::FlexAttention*>& plans,
                   const std::function<void()>& body, cudaStream_t st) {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "attribute");
  const size_t words = static_cast<size_t>(sms) * kTraceWords;
  std::vector<unsigned long long*> bufs(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    check(cudaMalloc(&bufs[i], words * 8), "malloc");
    check(cudaMemset(bufs[i], 0, words * 8), "memset");
    plans[i]->set_trace(bufs[i]);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int iters = 0;
  do {
    body();
    check(cudaStreamSynchronize(st), "trace run");
  } while (++iters < 3 || std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 0.5);
  struct Blk {
    double start, first, end, end0;
    unsigned long long clk0, clk1;
    int sm, items, launch;
    long long tiles;
    unsigned long long waits[6];  // probe J: words 8-13, zero under probe G
  };
  std::vector<Blk> blks;
  for (size_t i = 0; i < plans.size(); ++i) {
    std::vector<unsigned long long> w(words);
    check(cudaMemcpy(w.data(), bufs[i], words * 8, cudaMemcpyDeviceToHost), "copy");
    plans[i]->set_trace(nullptr);
    check(cudaFree(bufs[i]), "free");
    for (int b = 0; b < sms; ++b) {
      const unsigned long long* x = &w[static_cast<size_t>(b) * kTraceWords];
      if (x[0] == 0) continue;
      const double end = static_cast<double>(std::max(x[3], x[5]));
      blks.push_back({static_cast<double>(x[0]), x[2] ? static_cast<double>(x[2]) : end, end, static_cast<double>(x[3]), x[1], x[4],
                      static_cast<int>(x[6] & 0xFFFF), static_cast<int>(x[6] >> 16), static_cast<int>(i),
                      static_cast<long long>(x[7]), {}});
      for (size_t j = 0; j < 6 && 8 + j < kTraceWords; ++j) blks.back().waits[j] = x[8 + j];
    }
  }
  if (blks.empty()) return;
  double t_first = blks[0].start, t_last = blks[0].end;
  for (const Blk& b : blks) {
    t_first = std::min(t_first, b.start);
    t_last = std::max(t_last, b.end);
  }
  std::map<int, std::vector<const Blk*>> by_sm;
  for (const Blk& b : blks) by_sm[b.sm].push_back(&b);
  double head = 0, ramp = 0, work = 0, gaps = 0, tail = 0, cycles = 0, ns = 0;
  for (auto& [sm, v] : by_sm) {
    std::sort(v.begin(), v.end(), [](const Blk* a, const Blk* b) { return a->start < b->start; });
    head += v.front()->start - t_first;
    tail += t_last - v.back()->end;
    for (size_t i = 0; i < v.size(); ++i) {
      ramp += v[i]->first - v[i]->start;
      work += v[i]->end - v[i]->first;
      if (i > 0) gaps += v[i]->start - v[i - 1]->end;
      cycles += static_cast<double>(v[i]->clk1 - v[i]->clk0);
      ns += v[i]->end0 - v[i]->start;
    }
  }
  const double n = static_cast<double>(by_sm.size());
  // work of a block (consumer 0: first product to end) = a tiles + b items, least squares.
  double stt = 0, sti = 0, sii = 0, sty = 0, siy = 0;
  long long tiles = 0, items = 0;
  for (const Blk& b : blks) {
    const double y = b.end0 - b.first, t = static_cast<double>(b.tiles), it = b.items;
    stt += t * t, sti += t * it, sii += it * it, sty += t * y, siy += it * y;
    tiles += b.tiles;
    items += b.items;
  }
  const double det = stt * sii - sti * sti;
  const double a = det != 0 ? (sty * sii - siy * sti) / det : 0, c = det != 0 ? (siy * stt - sty * sti) / det : 0;
  std::printf("trace %-14s %-8s span %8.1f us on %3.0f SMs, %zu launches, %lld items, %lld tiles | per SM (us): "
              "head %6.1f ramp %6.1f work %8.1f gaps %6.1f tail %6.1f | work = %.1f ns/tile + %.0f ns/item | %4.0f MHz\n",
              mask.c_str(), name.c_str(), (t_last - t_first) / 1e3, n, plans.size(), items, tiles, head / n / 1e3, ramp / n / 1e3,
              work / n / 1e3, gaps / n / 1e3, tail / n / 1e3, a, c, ns > 0 ? cycles / ns * 1e3 : 0.0);
  if (kTraceWords >= 14) {  // probe J: consumer 0's waits, cycles turned into us at the blocks' clock
    double wsum[4] = {};
    unsigned long long merged = 0, epilogues = 0;
    for (const Blk& b : blks) {
      for (int j = 0; j < 4; ++j) wsum[j] += static_cast<double>(b.waits[j]);
      merged += b.waits[4];
      epilogues += b.waits[5];
    }
    const double us_per_cycle = cycles > 0 ? ns / cycles / 1e3 : 0;  // ns / cycle over the blocks, in us
    std::printf("waits %-14s %-8s per SM (us): stage before %7.1f  Q %7.1f  first K %7.1f  epilogues %7.1f | "
                "consumer 0's epilogues %llu, merged %llu\n",
                mask.c_str(), name.c_str(), wsum[0] * us_per_cycle / n, wsum[1] * us_per_cycle / n, wsum[2] * us_per_cycle / n,
                wsum[3] * us_per_cycle / n, epilogues, merged);
  }
  std::fflush(stdout);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: stage_probe CONFIG [--rounds N] [--seconds S] [--only a,b,...]\n");
    return 2;
  }
  int rounds = 2;
  double seconds = 1.5;
  std::string only;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--only") only = "," + std::string(argv[i + 1]) + ",";
  }
  auto kept = [&](const std::string& name) { return name == "one" || name == "again" || only.empty() || only.find("," + name + ",") != std::string::npos; };
  bool first_timed = true;
  const magi::Workload w = magi::load_workload(argv[1]);
  cudaStream_t st;
  check(cudaStreamCreate(&st), "stream");
  std::printf("# %s\n", kc::device_description().c_str());

  // Cases grouped by mask: one denominator per mask, its staged variants beside it.
  std::map<std::string, std::vector<const magi::Case*>> by_mask;
  std::vector<std::string> order;
  for (const magi::Case& c : w.cases) {
    const std::string m = c.mask.type;
    if (!by_mask.count(m)) order.push_back(m);
    by_mask[m].push_back(&c);
  }
  for (const std::string& m : order) {
    const magi::Case& c0 = *by_mask[m].front();
    const magi::CaseInputs in = magi::build_case_inputs(c0.documents, c0.mask, c0.total_tokens);
    const int64_t S = c0.total_tokens;
    const int hq = c0.model.heads_q, hkv = c0.model.heads_kv, d = c0.model.head_dim;
    Buffers b;
    b.rows = S * hq;
    b.q_elems = b.rows * d;
    const int64_t kv_elems = S * hkv * d;
    check(cudaMalloc(&b.q, b.q_elems * 2), "malloc");
    check(cudaMalloc(&b.k, kv_elems * 2), "malloc");
    check(cudaMalloc(&b.v, kv_elems * 2), "malloc");
    check(cudaMalloc(&b.out, b.q_elems * 2), "malloc");
    check(cudaMalloc(&b.lse, b.rows * 4), "malloc");
    check(cudaMalloc(&b.neg_inf, b.rows * 4), "malloc");
    {
      const std::vector<float> ninf(static_cast<size_t>(b.rows), -std::numeric_limits<float>::infinity());
      check(cudaMemcpy(b.neg_inf, ninf.data(), b.rows * 4, cudaMemcpyHostToDevice), "copy");
      check(cudaMemcpy(b.q, random_bf16(b.q_elems, 1).data(), b.q_elems * 2, cudaMemcpyHostToDevice), "copy");
      check(cudaMemcpy(b.k, random_bf16(kv_elems, 2).data(), kv_elems * 2, cudaMemcpyHostToDevice), "copy");
      check(cudaMemcpy(b.v, random_bf16(kv_elems, 3).data(), kv_elems * 2, cudaMemcpyHostToDevice), "copy");
    }
    const float scale = 1.f / std::sqrt(static_cast<float>(d));
    const mk::AttnShape whole{S, S, hq, hkv, d};
    const std::vector<mk::KernelSlice> all = magi::to_kernel_slices(in.mask);
    kc::FlexAttention one(whole, all.data(), all.size(), magi::DType::bf16);
    kc::FlexAttention merging(whole, all.data(), all.size(), magi::DType::bf16);
    auto neg_inf = [&] { check(cudaMemcpyAsync(b.lse, b.neg_inf, b.rows * 4, cudaMemcpyDeviceToDevice, st), "copy"); };

    std::vector<std::pair<std::string, std::function<void()>>> variants;
    std::map<std::string, std::vector<kc::FlexAttention*>> plans_of;  // the plans each variant launches
    plans_of["one"] = plans_of["again"] = {&one};
    plans_of["mergek"] = {&merging};
    variants.push_back({"one", [&] { one.forward(b.q, b.k, b.v, b.out, b.lse, scale, st); }});
    merging.set_merged_rows({});
    variants.push_back({"mergek", [&] { merging.forward(b.q, b.k, b.v, b.out, b.lse, scale, st, mk::Into::accumulate); }});
    // A second plan: set_merged_rows is the plan's, and mergek keeps none.
    kc::FlexAttention merging_all(whole, all.data(), all.size(), magi::DType::bf16);
    plans_of["mergeall"] = {&merging_all};
    variants.push_back({"mergeall", [&] {
                          neg_inf();
                          merging_all.forward(b.q, b.k, b.v, b.out, b.lse, scale, st, mk::Into::accumulate);
                        }});

    // The staged calls of each degree, made as the runtime's PlanRunner makes them.
    std::vector<std::vector<StageCall>> staged;
    std::vector<bool> keyed_first;  // stage 0 writes only its keyed rows (lse filled first)
    std::vector<int> degrees;  // a degree listed twice (the stage configs' palindromic order) is staged once
    for (const magi::Case* c : by_mask[m]) {
      if (c->parallel.overlap_degree <= 0 || std::ranges::find(degrees, c->parallel.overlap_degree) != degrees.end()) continue;
      degrees.push_back(c->parallel.overlap_degree);
      const magi::Plan p = magi::build_plan(in.mask, *c);
      const magi::RankPlan& rk = p.ranks[0];
      if (rk.q_ranges.size() != 1 || rk.q_ranges[0].start != 0 || rk.q_ranges[0].end != S) {
        std::fprintf(stderr, "%s: the host buffer is not the sequence in order\n", c->name.c_str());
        return 1;
      }
      std::vector<StageCall> calls;
      std::vector<magi::Range> reached, all_rows;
      for (const magi::Stage& s : rk.stages)
        for (const magi::AttnSlice& sl : s.slices) all_rows.push_back(sl.q);
      all_rows = magi::merge_ranges(std::move(all_rows));
      bool first_keyed = false;
      for (size_t si = 0; si < rk.stages.size(); ++si) {
        const magi::Stage& s = rk.stages[si];
        if (s.kv_ranges.size() != 1) {
          std::fprintf(stderr, "stage %zu of %s has %zu key ranges (cp 1 local stages have one)\n", si, c->name.c_str(),
                       s.kv_ranges.size());
          return 1;
        }
        const int64_t k0 = s.kv_ranges[0].start, kn = s.kv_ranges[0].size();
        const std::vector<mk::KernelSlice> ks = magi::to_kernel_slices(s.slices);
        StageCall call;
        call.k0 = k0;
        call.plan = std::make_unique<kc::FlexAttention>(mk::AttnShape{S, kn, hq, hkv, d}, ks.data(), ks.size(),
                                                        magi::DType::bf16);
        std::vector<magi::Range> rows;
        for (const magi::AttnSlice& sl : s.slices) rows.push_back(sl.q);
        rows = magi::merge_ranges(std::move(rows));
        std::vector<mk::RowSpan> merged;
        for (const magi::Range& r : reached) merged.push_back({r.start, r.end});
        call.plan->set_merged_rows(merged);
        if (si == 0) first_keyed = rows != all_rows;
        reached.insert(reached.end(), rows.begin(), rows.end());
        reached = magi::merge_ranges(std::move(reached));
        calls.push_back(std::move(call));
      }
      keyed_first.push_back(first_keyed);
      staged.push_back(std::move(calls));
    }
    const size_t kv_row = static_cast<size_t>(hkv) * d;
    // merge = false: every stage writes its keyed rows (timing only).
    auto run_stages = [&](size_t g, kc::Launch later, std::vector<cudaEvent_t>* marks, bool merge = true) {
      const std::vector<StageCall>& calls = staged[g];
      if (keyed_first[g]) neg_inf();
      for (size_t si = 0; si < calls.size(); ++si) {
        if (marks) check(cudaEventRecord((*marks)[si], st), "record");
        const mk::Into into = !merge ? mk::Into::write_keyed
                              : si == 0 ? (keyed_first[g] ? mk::Into::write_keyed : mk::Into::write)
                                        : mk::Into::accumulate;
        calls[si].plan->forward(b.q, b.k + calls[si].k0 * kv_row, b.v + calls[si].k0 * kv_row, b.out, b.lse, scale, st,
                                into, si == 0 ? kc::Launch::after : later);
      }
      if (marks) check(cudaEventRecord(marks->back(), st), "record");
    };
    for (size_t g = 0; g < staged.size(); ++g) {
      const std::string tag = std::to_string(staged[g].size());
      for (const std::string v : {"stages", "after", "keyed"})
        for (const StageCall& call : staged[g]) plans_of[v + tag].push_back(call.plan.get());
      variants.push_back({"stages" + tag, [&, g] { run_stages(g, kc::Launch::overlap, nullptr); }});
      variants.push_back({"after" + tag, [&, g] { run_stages(g, kc::Launch::after, nullptr); }});
      variants.push_back({"keyed" + tag, [&, g] { run_stages(g, kc::Launch::after, nullptr, false); }});
    }
    variants.push_back({"again", [&] { one.forward(b.q, b.k, b.v, b.out, b.lse, scale, st); }});
    std::erase_if(variants, [&](const auto& v) { return !kept(v.first); });

    // The staged results against one launch.
    std::vector<uint16_t> ref(static_cast<size_t>(b.q_elems)), got(ref.size());
    one.forward(b.q, b.k, b.v, b.out, b.lse, scale, st);
    check(cudaMemcpyAsync(ref.data(), b.out, b.q_elems * 2, cudaMemcpyDeviceToHost, st), "copy");
    check(cudaStreamSynchronize(st), "sync");
    auto to_f = [](uint16_t x) {
      uint32_t u = static_cast<uint32_t>(x) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    };
    for (size_t g = 0; g < staged.size(); ++g) {
      run_stages(g, kc::Launch::overlap, nullptr);
      check(cudaMemcpyAsync(got.data(), b.out, b.q_elems * 2, cudaMemcpyDeviceToHost, st), "copy");
      check(cudaStreamSynchronize(st), "sync");
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(to_f(ref[i]) - to_f(got[i]))));
      std::printf("# %s %zu stages: max |staged out - one launch| = %.3g\n", m.c_str(), staged[g].size(), worst);
    }

    std::map<std::string, std::vector<double>> ms;
    if (first_timed) time_ms(variants.front().second, st, seconds);
    first_timed = false;
    for (int r = 0; r < rounds; ++r)
      for (size_t i = 0; i < variants.size(); ++i) {
        auto& [name, body] = variants[r % 2 == 0 ? i : variants.size() - 1 - i];
        ms[name].push_back(time_ms(body, st, seconds));
      }
#ifdef MAGI_FWD_TRACE
    for (auto& [name, body] : variants)
      if (name != "again") trace_variant(m, name, plans_of[name], body, st);
#endif
    // Each stage alone: events between the stages of `after`, medians over 200 iterations.
    std::vector<std::vector<double>> serial(staged.size());
    for (size_t g = 0; g < staged.size(); ++g) {
      if (!kept("serial" + std::to_string(staged[g].size()))) continue;
      std::vector<cudaEvent_t> marks(staged[g].size() + 1);
      for (cudaEvent_t& e : marks) check(cudaEventCreate(&e), "event");
      std::vector<std::vector<float>> per(staged[g].size());
      for (int it = 0; it < 200; ++it) {
        run_stages(g, kc::Launch::after, &marks);
        check(cudaStreamSynchronize(st), "sync");
        for (size_t si = 0; si < staged[g].size(); ++si) {
          float t = 0;
          check(cudaEventElapsedTime(&t, marks[si], marks[si + 1]), "elapsed");
          per[si].push_back(t);
        }
      }
      for (auto& v : per) {
        std::sort(v.begin(), v.end());
        serial[g].push_back(v[v.size() / 2]);
      }
      for (cudaEvent_t& e : marks) check(cudaEventDestroy(e), "event");
    }
    const double base = ms["one"].front();
    std::printf("%-14s %-10s", m.c_str(), "variant");
    for (int r = 0; r < rounds; ++r) std::printf("   ms r%d  ratio", r);
    std::printf("   mean ratio\n");
    for (auto& [name, body] : variants) {
      std::printf("%-14s %-10s", m.c_str(), name.c_str());
      double log_sum = 0;
      for (int r = 0; r < rounds; ++r) {
        std::printf(" %7.3f %6.3f", ms[name][r], ms["one"][r] / ms[name][r]);
        log_sum += std::log(ms["one"][r] / ms[name][r]);
      }
      std::printf("   %6.3f\n", std::exp(log_sum / rounds));
    }
    for (size_t g = 0; g < staged.size(); ++g) {
      if (serial[g].empty()) continue;
      double sum = 0;
      std::printf("%-14s serial%-4zu", m.c_str(), staged[g].size());
      for (double t : serial[g]) {
        std::printf(" %.3f", t);
        sum += t;
      }
      std::printf("  sum %.3f (one %.3f)\n", sum, base);
    }
    std::fflush(stdout);
    check(cudaFree(b.q), "free");
    check(cudaFree(b.k), "free");
    check(cudaFree(b.v), "free");
    check(cudaFree(b.out), "free");
    check(cudaFree(b.lse), "free");
    check(cudaFree(b.neg_inf), "free");
  }
  return 0;
}
