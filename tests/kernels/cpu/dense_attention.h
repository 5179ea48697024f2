// Test-only helpers for the CPU reference attention: random problems, random slice lists, and an
// independent dense implementation (boolean mask from the definition, plain softmax in double).
#pragma once

#include "common/kernel_args.h"
#include "cpu/reference_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace magi::kernels::testing {

inline constexpr double kNegInf = -std::numeric_limits<double>::infinity();

inline std::vector<float> random_normal(std::mt19937_64& rng, int64_t n) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& e : x) e = dist(rng);
  return x;
}

inline std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

// Whether slice s covers (q, k), from DESIGN.md §1 in its corner-aligned form: causal keeps
// k - k_end <= q - q_end (bottom-right), inv_causal keeps k - k_start >= q - q_start (top-left),
// bi_causal keeps both.
inline bool covers(const KernelSlice& s, int64_t q, int64_t k) {
  if (q < s.q_start || q >= s.q_end || k < s.k_start || k >= s.k_end) return false;
  const bool bottom_right = k - s.k_end <= q - s.q_end;
  const bool top_left = k - s.k_start >= q - s.q_start;
  switch (s.type) {
    case KernelSliceType::full: return true;
    case KernelSliceType::causal: return bottom_right;
    case KernelSliceType::inv_causal: return top_left;
    case KernelSliceType::bi_causal: return bottom_right && top_left;
  }
  return false;
}

// Dense [sq, sk] mask by brute force over every (q, k) pair and slice.
inline std::vector<char> dense_mask(const AttnShape& shape, const std::vector<KernelSlice>& slices) {
  std::vector<char> mask(shape.sq * shape.sk, 0);
  for (int64_t q = 0; q < shape.sq; ++q) {
    for (int64_t k = 0; k < shape.sk; ++k) {
      for (const KernelSlice& s : slices) {
        if (covers(s, q, k)) mask[q * shape.sk + k] = 1;
      }
    }
  }
  return mask;
}

struct DenseForward {
  std::vector<double> out, lse;
};

// Plain softmax attention in double over the dense mask.
inline DenseForward dense_forward(const AttnShape& sh, const std::vector<char>& mask, const std::vector<double>& q,
                                  const std::vector<double>& k, const std::vector<double>& v, double scale) {
  DenseForward r{std::vector<double>(sh.sq * sh.hq * sh.d, 0.0), std::vector<double>(sh.sq * sh.hq, kNegInf)};
  const int64_t group = sh.hq / sh.hkv;
  for (int64_t i = 0; i < sh.sq; ++i) {
    for (int64_t h = 0; h < sh.hq; ++h) {
      const int64_t g = h / group;
      std::vector<double> s(sh.sk, kNegInf);
      double m = kNegInf;
      for (int64_t j = 0; j < sh.sk; ++j) {
        if (!mask[i * sh.sk + j]) continue;
        double acc = 0.0;
        for (int64_t c = 0; c < sh.d; ++c) acc += q[(i * sh.hq + h) * sh.d + c] * k[(j * sh.hkv + g) * sh.d + c];
        s[j] = scale * acc;
        m = std::max(m, s[j]);
      }
      if (m == kNegInf) continue;
      double z = 0.0;
      for (int64_t j = 0; j < sh.sk; ++j) z += mask[i * sh.sk + j] ? std::exp(s[j] - m) : 0.0;
      for (int64_t j = 0; j < sh.sk; ++j) {
        if (!mask[i * sh.sk + j]) continue;
        const double p = std::exp(s[j] - m) / z;
        for (int64_t c = 0; c < sh.d; ++c) r.out[(i * sh.hq + h) * sh.d + c] += p * v[(j * sh.hkv + g) * sh.d + c];
      }
      r.lse[i * sh.hq + h] = m + std::log(z);
    }
  }
  return r;
}

struct DenseGrads {
  std::vector<double> dq, dk, dv;
};

// Textbook softmax-attention gradients in double, from P recomputed densely (D_i = sum_j P_ij dP_ij).
inline DenseGrads dense_backward(const AttnShape& sh, const std::vector<char>& mask, const std::vector<double>& q,
                                 const std::vector<double>& k, const std::vector<double>& v,
                                 const std::vector<double>& dout, double scale) {
  DenseGrads g{std::vector<double>(q.size(), 0.0), std::vector<double>(k.size(), 0.0),
               std::vector<double>(v.size(), 0.0)};
  const DenseForward f = dense_forward(sh, mask, q, k, v, scale);
  const int64_t group = sh.hq / sh.hkv;
  auto qi = [&](int64_t i, int64_t h, int64_t c) { return (i * sh.hq + h) * sh.d + c; };
  auto kj = [&](int64_t j, int64_t kvh, int64_t c) { return (j * sh.hkv + kvh) * sh.d + c; };
  for (int64_t i = 0; i < sh.sq; ++i) {
    for (int64_t h = 0; h < sh.hq; ++h) {
      if (f.lse[i * sh.hq + h] == kNegInf) continue;
      const int64_t kvh = h / group;
      std::vector<double> p(sh.sk, 0.0), dp(sh.sk, 0.0);
      double delta = 0.0;
      for (int64_t j = 0; j < sh.sk; ++j) {
        if (!mask[i * sh.sk + j]) continue;
        double s = 0.0;
        for (int64_t c = 0; c < sh.d; ++c) {
          s += q[qi(i, h, c)] * k[kj(j, kvh, c)];
          dp[j] += dout[qi(i, h, c)] * v[kj(j, kvh, c)];
        }
        p[j] = std::exp(scale * s - f.lse[i * sh.hq + h]);
        delta += p[j] * dp[j];
      }
      for (int64_t j = 0; j < sh.sk; ++j) {
        if (!mask[i * sh.sk + j]) continue;
        const double ds = p[j] * (dp[j] - delta);
        for (int64_t c = 0; c < sh.d; ++c) {
          g.dq[qi(i, h, c)] += scale * ds * k[kj(j, kvh, c)];
          g.dk[kj(j, kvh, c)] += scale * ds * q[qi(i, h, c)];
          g.dv[kj(j, kvh, c)] += p[j] * dout[qi(i, h, c)];
        }
      }
    }
  }
  return g;
}

// A random slice list with no doubly covered pair: the key axis is cut into disjoint pieces and
// most pieces get a slice with a random query range and type, so query ranges overlap freely
// (rows see several key ranges), slices with more queries than keys occur, the last
// `uncovered_rows` rows are covered by no slice, and two empty slices are added.
inline std::vector<KernelSlice> random_slices(std::mt19937_64& rng, int64_t sq, int64_t sk,
                                              int64_t uncovered_rows) {
  std::vector<KernelSlice> slices;
  std::uniform_int_distribution<int> type(0, 3);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const int64_t q_limit = std::max<int64_t>(0, sq - uncovered_rows);
  std::vector<int64_t> cuts{0, sk};
  const int64_t num_cuts = std::min<int64_t>(sk - 1, pick(1, 4));
  for (int64_t c = 0; c < num_cuts; ++c) cuts.push_back(pick(1, sk - 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (size_t p = 0; p + 1 < cuts.size(); ++p) {
    if (pick(0, 9) < 2) continue;
    int64_t a = pick(0, q_limit), b = pick(0, q_limit);
    if (a > b) std::swap(a, b);
    slices.push_back({a, b, cuts[p], cuts[p + 1], static_cast<KernelSliceType>(type(rng))});
  }
  const int64_t e = pick(0, sq);
  slices.push_back({e, e, 0, sk, static_cast<KernelSliceType>(type(rng))});
  const int64_t ek = pick(0, sk);
  slices.push_back({0, sq, ek, ek, KernelSliceType::full});
  std::shuffle(slices.begin(), slices.end(), rng);
  return slices;
}

// |actual - expected| <= atol + rtol * |expected| element-wise; -inf exactly where expected is -inf.
inline void expect_close(const std::vector<float>& actual, const std::vector<double>& expected, double atol,
                         double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    const bool ok = e == kNegInf ? a == kNegInf : std::abs(a - e) <= atol + rtol * std::abs(e);
    if (!ok && reported++ < 5) ADD_FAILURE() << what << "[" << i << "]: got " << a << ", expected " << e;
  }
}

// The largest |x|, at least 1: the absolute tolerance scale for gradients, whose entries vary in size.
inline double peak_abs(const std::vector<double>& x) {
  double peak = 1.0;
  for (double e : x) peak = std::max(peak, std::abs(e));
  return peak;
}

struct Problem {
  AttnShape shape;
  std::vector<KernelSlice> slices;
  std::vector<float> q, k, v, dout;  // dout doubles as the weights G of the loss sum(out * G)
  float scale = 1.0f;
};

inline Problem random_problem(std::mt19937_64& rng, const AttnShape& shape, int64_t uncovered_rows) {
  Problem p{shape, random_slices(rng, shape.sq, shape.sk, uncovered_rows), {}, {}, {}, {}, 0.0f};
  p.q = random_normal(rng, shape.sq * shape.hq * shape.d);
  p.k = random_normal(rng, shape.sk * shape.hkv * shape.d);
  p.v = random_normal(rng, shape.sk * shape.hkv * shape.d);
  p.dout = random_normal(rng, shape.sq * shape.hq * shape.d);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.d)));
  return p;
}

inline constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

struct Forward {
  std::vector<float> out, lse;
};

// The kernel's forward into NaN-poisoned buffers, so that an element it fails to write shows.
inline Forward run_forward(const Problem& p, const std::vector<KernelSlice>& slices, int threads = 0) {
  Forward f{std::vector<float>(p.q.size(), kPoison), std::vector<float>(p.shape.sq * p.shape.hq, kPoison)};
  cpu::attention_forward(p.shape, slices.data(), slices.size(), p.q.data(), p.k.data(), p.v.data(), p.scale,
                         f.out.data(), f.lse.data(), threads);
  return f;
}

struct Grads {
  std::vector<float> dq, dk, dv;
};

// The kernel's backward into NaN-poisoned buffers, with out and lse from `f`.
inline Grads run_backward(const Problem& p, const std::vector<KernelSlice>& slices, const Forward& f,
                          int threads = 0) {
  Grads g{std::vector<float>(p.q.size(), kPoison), std::vector<float>(p.k.size(), kPoison),
          std::vector<float>(p.v.size(), kPoison)};
  cpu::attention_backward(p.shape, slices.data(), slices.size(), p.q.data(), p.k.data(), p.v.data(), f.out.data(),
                          p.dout.data(), f.lse.data(), p.scale, g.dq.data(), g.dk.data(), g.dv.data(), threads);
  return g;
}

}  // namespace magi::kernels::testing
