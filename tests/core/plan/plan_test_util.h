// Helpers for the plan tests: cases, random masks, document packs and a dense coverage oracle.
#pragma once

#include "core/base/slice.h"
#include "core/plan/plan.h"
#include "core/workload/workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace magi::testing {

inline Case make_case(int64_t S, int cp, int64_t chunk, Strategy strategy = Strategy::magi,
                      int overlap_degree = 0, DispatchSolver solver = DispatchSolver::refine) {
  Case c;
  c.name = "test/0";
  c.model = ModelShape{16, 8, 128, DType::bf16};
  c.total_tokens = S;
  c.parallel.cp = cp;
  c.parallel.strategy = strategy;
  c.parallel.chunk_tokens = chunk;
  c.parallel.overlap_degree = overlap_degree;
  c.parallel.solver = solver;
  return c;
}

inline int64_t uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {  // inclusive
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// Random mask of all four slice types over [0, S): the q and k axes are cut at random points into
// a grid; a random subset of cells gets a slice of a random type (disjoint cells: no double cover;
// several slices may share rows).
inline std::vector<AttnSlice> random_mask(std::mt19937_64& rng, int64_t S) {
  auto cuts = [&](int n) {
    std::vector<int64_t> c{0, S};
    for (int i = 0; i < n; ++i) c.push_back(uniform(rng, 0, S));
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    return c;
  };
  const auto qc = cuts(static_cast<int>(uniform(rng, 0, 6)));
  const auto kc = cuts(static_cast<int>(uniform(rng, 0, 6)));
  std::vector<AttnSlice> mask;
  for (size_t i = 0; i + 1 < qc.size(); ++i) {
    for (size_t j = 0; j + 1 < kc.size(); ++j) {
      if (uniform(rng, 0, 2) == 0) continue;
      mask.push_back(AttnSlice{Range{qc[i], qc[i + 1]}, Range{kc[j], kc[j + 1]},
                               static_cast<SliceType>(uniform(rng, 0, 3))});
    }
  }
  return mask;
}

// Documents drawn from the real-corpus histogram (DESIGN.md §2), cut at max_fraction x S, the
// last one cut at the end of the pack.
inline std::vector<int64_t> corpus_documents(std::mt19937_64& rng, int64_t S, double max_fraction = 0.25) {
  struct Bin { int64_t lo, hi; double w; };
  static const Bin bins[] = {{1, 10, 0.22}, {11, 50, 2.91}, {51, 100, 5.2}, {101, 200, 10.23},
                             {201, 500, 28.19}, {501, 1024, 24.64}, {1025, 2048, 15.65},
                             {2049, 4096, 7.34}, {4097, 8192, 3.05}, {8193, 16384, 1.29},
                             {16385, 32768, 0.85}, {32769, 65536, 0.14}, {65537, 131072, 0.17},
                             {131073, 196608, 0.14}};
  std::vector<double> w;
  for (const Bin& b : bins) w.push_back(b.w);
  std::discrete_distribution<size_t> pick(w.begin(), w.end());
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(max_fraction * static_cast<double>(S)));
  std::vector<int64_t> docs;
  int64_t total = 0;
  while (total < S) {
    const Bin& b = bins[pick(rng)];
    int64_t len = uniform(rng, b.lo, b.hi);
    while (len > 0 && total < S) {
      const int64_t piece = std::min({len, cap, S - total});
      docs.push_back(piece);
      total += piece;
      len -= piece;
    }
  }
  return docs;
}

inline std::vector<AttnSlice> varlen_causal(const std::vector<int64_t>& docs) {
  std::vector<AttnSlice> mask;
  int64_t t = 0;
  for (int64_t len : docs) {
    mask.push_back(AttnSlice{Range{t, t + len}, Range{t, t + len}, SliceType::causal});
    t += len;
  }
  return mask;
}

// Dense pair counts of a slice list over an S x S grid.
inline std::vector<uint8_t> dense(const std::vector<AttnSlice>& slices, int64_t S) {
  std::vector<uint8_t> m(static_cast<size_t>(S * S), 0);
  for (const AttnSlice& s : slices) {
    for (int64_t q = s.q.start; q < s.q.end; ++q) {
      const Range v = visible_keys(s, q);
      for (int64_t k = v.start; k < v.end; ++k) ++m[static_cast<size_t>(q * S + k)];
    }
  }
  return m;
}

// Global token of every row of a buffer laid out as `layout`.
inline std::vector<int64_t> rows_of(const std::vector<Range>& layout) {
  std::vector<int64_t> g;
  for (const Range& r : layout) {
    for (int64_t t = r.start; t < r.end; ++t) g.push_back(t);
  }
  return g;
}

// Whether a local range lies inside one range of `layout`.
inline bool inside_one_range(const std::vector<Range>& layout, Range local) {
  int64_t off = 0;
  for (const Range& r : layout) {
    if (local.start >= off && local.start < off + r.size()) return local.end <= off + r.size();
    off += r.size();
  }
  return false;
}

// Dense pair counts of the plan's slices of every rank and stage, mapped back to global
// coordinates row by row (for ulysses: rank 0's slices, whose rows are the whole sequence).
// Also checks that slices are inside their buffers, tight, and that only full slices span
// several layout ranges.
inline std::vector<uint8_t> plan_dense(const Plan& plan) {
  const int64_t S = plan.total_tokens;
  std::vector<uint8_t> m(static_cast<size_t>(S * S), 0);
  for (const RankPlan& rk : plan.ranks) {
    const std::vector<int64_t> qg = plan.strategy == Strategy::ulysses ? rows_of({Range{0, S}}) : rows_of(rk.q_ranges);
    for (const Stage& st : rk.stages) {
      const std::vector<int64_t> kg = rows_of(st.kv_ranges);
      for (const AttnSlice& s : st.slices) {
        EXPECT_GT(slice_area(s), 0);
        EXPECT_LE(s.q.end, static_cast<int64_t>(qg.size()));
        EXPECT_LE(s.k.end, static_cast<int64_t>(kg.size()));
        if (s.type != SliceType::full && plan.strategy != Strategy::ulysses) {
          EXPECT_TRUE(inside_one_range(rk.q_ranges, s.q)) << fmt::format("{} straddles host ranges", s);
          EXPECT_TRUE(inside_one_range(st.kv_ranges, s.k)) << fmt::format("{} straddles stage ranges", s);
        }
        for (int64_t q = s.q.start; q < s.q.end; ++q) {
          const Range v = visible_keys(s, q);
          EXPECT_FALSE(v.empty()) << fmt::format("empty row {} in {}", q, s);
          for (int64_t k = v.start; k < v.end; ++k) {
            ++m[static_cast<size_t>(qg[static_cast<size_t>(q)] * S + kg[static_cast<size_t>(k)])];
          }
        }
      }
    }
    if (plan.strategy == Strategy::ulysses) break;
  }
  return m;
}

// Coverage: the plan's pairs, mapped back to global, equal the mask's, each once.
inline void expect_covers_exactly(const Plan& plan, const std::vector<AttnSlice>& mask) {
  const int64_t S = plan.total_tokens;
  const std::vector<uint8_t> want = dense(mask, S);
  const std::vector<uint8_t> got = plan_dense(plan);
  int64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      if (++bad <= 5) {
        ADD_FAILURE() << to_string(plan.strategy) << " cp " << plan.cp << ": pair (q " << static_cast<int64_t>(i) / S
                      << ", k " << static_cast<int64_t>(i) % S << ") mask " << int(want[i]) << " plan " << int(got[i]);
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace magi::testing
