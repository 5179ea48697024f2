// Developer tool: times the flexible CUDA attention on catalogue masks without the app or a
// workload file. Usage: flex_bench_quick S HQ HKV D mask[,mask...] [iters] [check 0/1]
// Documents for varlen masks: uniform lengths in [512, 8192], seed 7 (like ANCHORS.md's peers);
// mask parameters as configs/kernel_h100.json and configs/kernel_catalogue.json.
#include "core/base/stats.h"
#include "core/mask/catalogue.h"
#include "core/model/vocabulary.h"
#include "runtime/cuda/kernel_benchmark.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s S HQ HKV D mask[,mask...] [iters] [check]\n", argv[0]);
    return 2;
  }
  const int64_t S = std::atoll(argv[1]);
  magi::kernels::AttnShape sh{S, S, std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4])};
  std::vector<std::string> masks;
  std::stringstream ss(argv[5]);
  for (std::string m; std::getline(ss, m, ',');) masks.push_back(m);
  magi::KernelBenchOptions o;
  if (argc > 6) o.iters = std::atoi(argv[6]);
  const bool check = argc > 7 && std::atoi(argv[7]) != 0;
  std::mt19937_64 rng(7);
  std::vector<int64_t> docs;
  for (int64_t left = S; left > 0;) {
    int64_t len = std::min<int64_t>(left, std::uniform_int_distribution<int64_t>(512, 8192)(rng));
    docs.push_back(len);
    left -= len;
  }
  std::printf("device %s  S=%lld hq=%d hkv=%d d=%d docs=%zu\n",
              magi::kernels::cuda::device_description().c_str(), static_cast<long long>(S), sh.hq,
              sh.hkv, sh.d, docs.size());
  std::printf("%-22s %10s %10s %9s %9s  %s\n", "mask", "fwd_ms", "bwd_ms", "fwd_TF", "bwd_TF",
              "check (tensor figure / tolerance)");
  int fails = 0;
  for (const std::string& m : masks) {
    magi::MaskSpec spec;
    spec.type = m;
    if (m.find("sliding_window") != std::string::npos) spec.window = m == "varlen_sliding_window" ? 1024 : 4096;
    if (m.find("block_causal") != std::string::npos) spec.block_tokens = 2048;
    if (m == "sink_sliding_window") spec.sink_tokens = 64;
    if (m == "shared_question") spec.question_tokens = std::min<int64_t>(4096, S);
    if (m == "prefix_lm") spec.prefix_tokens = S / 4;
    const auto mask = magi::build_mask(spec, S, magi::mask_uses_documents(m) ? docs : std::vector<int64_t>{S});
    const magi::KernelBenchResult r = magi::time_kernel(sh, mask, o);
    const double fwd_ms = magi::median(r.fwd_ms), bwd_ms = magi::median(r.bwd_ms);
    std::string cells = check ? "" : "-";
    for (const magi::TensorError& e : check ? magi::check_kernel(sh, mask, o) : std::vector<magi::TensorError>{}) {
      const double figure = e.bound == magi::ErrorBound::rel_l2 ? e.rel_l2 : e.max_abs;
      char cell[96];
      std::snprintf(cell, sizeof cell, "%s %.1e/%.0e%s ", e.name.c_str(), figure, e.tolerance,
                    e.ok ? "" : " FAILED");
      cells += cell;
      fails += e.ok ? 0 : 1;
    }
    std::printf("%-22s %10.3f %10.3f %9.1f %9.1f  %s\n", m.c_str(), fwd_ms, bwd_ms,
                magi::attention_fwd_flops(r.stats.area, sh.d, sh.hq) / (fwd_ms * 1e-3) / 1e12,
                magi::attention_bwd_flops(r.stats.area, sh.d, sh.hq) / (bwd_ms * 1e-3) / 1e12,
                cells.c_str());
    std::fflush(stdout);
  }
  return fails ? 1 : 0;
}
