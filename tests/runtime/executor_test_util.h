// Helpers for the distributed executor tests: small cases over every catalogue mask and an
// explicit random slice list, run on the first cp ranks of MPI_COMM_WORLD.
#pragma once

#include "core/base/slice.h"
#include "core/mask/catalogue.h"
#include "core/plan/planner.h"
#include "core/workload/documents.h"
#include "core/workload/workload.h"
#include "runtime/cpu_device.h"
#include "runtime/executor.h"

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

namespace magi::testing {

struct MaskCase {
  std::string name;
  MaskSpec spec;
};

inline std::vector<MaskCase> test_masks() {
  std::vector<MaskCase> m;
  auto add = [&](std::string type, auto&& set) {
    MaskSpec s;
    s.type = type;
    set(s);
    m.push_back({type, s});
  };
  auto none = [](MaskSpec&) {};
  add("full", none);
  add("causal", none);
  add("varlen_full", none);
  add("varlen_causal", none);
  add("sliding_window", [](MaskSpec& s) { s.window = 96; });
  add("varlen_sliding_window", [](MaskSpec& s) { s.window = 48; });
  add("block_causal", [](MaskSpec& s) { s.block_tokens = 64; });
  add("varlen_block_causal", [](MaskSpec& s) { s.block_tokens = 32; });
  add("shared_question", [](MaskSpec& s) { s.question_tokens = 96; });
  add("prefix_lm", [](MaskSpec& s) { s.prefix_tokens = 160; });
  add("sink_sliding_window", [](MaskSpec& s) { s.sink_tokens = 8; s.window = 64; });
  add("slices", none);  // filled by random_slices
  return m;
}

// Disjoint grid cells of random types over [0, S): every slice type, rows covered by several
// slices, rows covered by none (lse = -inf).
inline std::vector<AttnSlice> random_slices(uint64_t seed, int64_t S) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto cuts = [&](int n) {
    std::vector<int64_t> c{0, S};
    for (int i = 0; i < n; ++i) c.push_back(uni(0, S));
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    return c;
  };
  const auto qc = cuts(5), kc = cuts(5);
  std::vector<AttnSlice> mask;
  for (size_t i = 0; i + 1 < qc.size(); ++i) {
    for (size_t j = 0; j + 1 < kc.size(); ++j) {
      if (uni(0, 2) == 0) continue;
      mask.push_back({{qc[i], qc[i + 1]}, {kc[j], kc[j + 1]}, static_cast<SliceType>(uni(0, 3))});
    }
  }
  return mask;
}

inline Case make_exec_case(const MaskSpec& mask, int64_t S, int cp, Strategy strategy, ModelShape model,
                           int overlap_degree, int64_t chunk = 32) {
  Case c;
  c.name = "mpi_test/" + mask.type;
  c.model = model;
  c.model.dtype = DType::fp32;
  c.total_tokens = S;
  c.documents.distribution = DocDistribution::uniform;
  c.documents.min_tokens = 24;
  c.documents.max_tokens = 160;
  c.documents.seed = 3;
  c.mask = mask;
  c.parallel.cp = cp;
  c.parallel.strategy = strategy;
  c.parallel.chunk_tokens = chunk;
  c.parallel.overlap_degree = overlap_degree;
  return c;
}

inline std::vector<AttnSlice> make_mask(const Case& c) {
  const std::vector<int64_t> docs = mask_uses_documents(c.mask.type)
                                        ? sample_documents(c.documents, c.total_tokens)
                                        : std::vector<int64_t>{c.total_tokens};
  return build_mask(c.mask, c.total_tokens, docs);
}

// One checked pass of `plan` on `comm` (a one-thread CPU device, no warm-up, one iteration). An
// exception takes the job down: the other ranks may be inside a collective, and would hang.
inline ExecResult run_checked(Communicator& comm, const Plan& plan, const std::vector<AttnSlice>& mask) {
  ExecOptions opt;
  opt.check = true;
  opt.warmup = 0;
  opt.iters = 1;
  CpuDevice dev(1);
  try {
    return execute_plan(comm, comm, dev, plan, mask, opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] execute_plan threw: %s\n", comm.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return {};
}

}  // namespace magi::testing
