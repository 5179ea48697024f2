// Document-length sampling. The generator is std::mt19937_64 (its output is fixed by the
// standard); every transform from its 64-bit words to lengths is written out here, because the
// standard library's distributions differ between implementations.
#include "core/workload/documents.h"

#include "core/base/error.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <random>

namespace magi {
namespace {

// The real pre-training corpus of DESIGN.md §2 (about 13.4M documents): percent per length bin.
const std::vector<HistogramBin> kPretrainCorpus = {
    {1, 10, 0.22},         {11, 50, 2.91},         {51, 100, 5.2},       {101, 200, 10.23},
    {201, 500, 28.19},     {501, 1024, 24.64},     {1025, 2048, 15.65},  {2049, 4096, 7.34},
    {4097, 8192, 3.05},    {8193, 16384, 1.29},    {16385, 32768, 0.85}, {32769, 65536, 0.14},
    {65537, 131072, 0.17}, {131073, 196608, 0.14},
};

class Draws {
 public:
  explicit Draws(uint64_t seed) : rng_(seed) {}

  // Uniform in [0, 1) with 53 random bits.
  double unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  // Uniform integer in [lo, hi] without modulo bias: words below 2^64 mod span are rejected, so
  // the accepted ones are a whole number of copies of [0, span).
  int64_t integer(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    const uint64_t reject_below = (0 - span) % span;
    uint64_t x = rng_();
    while (x < reject_below) x = rng_();
    return lo + static_cast<int64_t>(x % span);
  }

  // Standard normal by Box-Muller (the second value is not kept).
  double normal() {
    const double u1 = 1.0 - unit();  // (0, 1]
    const double u2 = unit();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 rng_;
};

int64_t clamp_to_length(double x, int64_t lo, int64_t hi) {
  if (!(x >= static_cast<double>(lo))) return lo;  // also NaN
  if (x >= static_cast<double>(hi)) return hi;
  return std::clamp(static_cast<int64_t>(std::llround(x)), lo, hi);
}

// P(k) proportional to k^-alpha on the integers [a, b], exactly, by rejection from the
// continuous power law on [a, b + 1) floored: a proposal k has mass g(k) = integral of x^-alpha
// over [k, k + 1), the target t(k) = k^-alpha, and t/g is largest at k = a, so accepting with
// probability (t(k) / g(k)) / (t(a) / g(a)) leaves exactly t.
class Zipf {
 public:
  Zipf(double alpha, int64_t a, int64_t b) : alpha_(alpha), a_(a), b_(b) {
    one_minus_alpha_ = 1.0 - alpha;
    linear_ = std::abs(one_minus_alpha_) < 1e-12;
    if (!linear_) {
      lo_pow_ = std::pow(static_cast<double>(a), one_minus_alpha_);
      hi_pow_ = std::pow(static_cast<double>(b) + 1.0, one_minus_alpha_);
    }
    max_ratio_ = target(a) / cell(a);
  }

  int64_t operator()(Draws& d) const {
    for (;;) {
      const int64_t k = std::clamp(static_cast<int64_t>(std::floor(inverse_cdf(d.unit()))), a_, b_);
      if (d.unit() * max_ratio_ * cell(k) <= target(k)) return k;
    }
  }

 private:
  double target(int64_t k) const { return std::pow(static_cast<double>(k), -alpha_); }

  // Integral of x^-alpha over [k, k + 1), written to keep precision for large k.
  double cell(int64_t k) const {
    const double x = static_cast<double>(k);
    const double l = std::log1p(1.0 / x);
    if (linear_) return l;
    return std::pow(x, one_minus_alpha_) * std::expm1(one_minus_alpha_ * l) / one_minus_alpha_;
  }

  double inverse_cdf(double u) const {
    if (linear_) {
      const double a = static_cast<double>(a_);
      return a * std::exp(u * std::log((static_cast<double>(b_) + 1.0) / a));
    }
    return std::pow(lo_pow_ + u * (hi_pow_ - lo_pow_), 1.0 / one_minus_alpha_);
  }

  double alpha_;
  int64_t a_, b_;
  double one_minus_alpha_ = 0;
  bool linear_ = false;
  double lo_pow_ = 0, hi_pow_ = 0;
  double max_ratio_ = 1;
};

class BinPicker {
 public:
  explicit BinPicker(const std::vector<HistogramBin>& bins) : bins_(bins) {
    double sum = 0;
    for (const HistogramBin& b : bins) {
      MAGI_CHECK(b.lo >= 1 && b.hi >= b.lo && std::isfinite(b.weight) && b.weight >= 0,
                 "bad histogram bin [{}, {}] weight {}", b.lo, b.hi, b.weight);
      sum += b.weight;
      cumulative_.push_back(sum);
      if (b.weight > 0) last_ = cumulative_.size() - 1;
    }
    MAGI_CHECK(sum > 0, "histogram weights sum to {}", sum);
  }

  int64_t operator()(Draws& d) const {
    const double r = d.unit() * cumulative_.back();
    size_t i = static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), r) -
                                   cumulative_.begin());
    if (i > last_) i = last_;  // r rounded up to the total
    return d.integer(bins_[i].lo, bins_[i].hi);
  }

 private:
  const std::vector<HistogramBin>& bins_;
  std::vector<double> cumulative_;
  size_t last_ = 0;
};

}  // namespace

const std::vector<std::string>& histogram_preset_names() {
  static const std::vector<std::string> names = {"pretrain_corpus"};
  return names;
}

std::optional<std::vector<HistogramBin>> histogram_preset(std::string_view name) {
  if (name == "pretrain_corpus") return kPretrainCorpus;
  return std::nullopt;
}

std::vector<int64_t> sample_documents(const DocumentSpec& spec, int64_t total_tokens) {
  MAGI_CHECK(total_tokens >= 1, "total_tokens = {}", total_tokens);
  if (spec.distribution == DocDistribution::single) return {total_tokens};
  MAGI_CHECK(spec.max_doc_fraction > 0 && spec.max_doc_fraction <= 1, "max_doc_fraction = {}",
             spec.max_doc_fraction);

  const int64_t lo = spec.min_tokens;
  const int64_t hi = spec.max_tokens == 0 ? std::max(lo, total_tokens) : spec.max_tokens;
  Draws draws(spec.seed);
  std::vector<HistogramBin> preset_bins;
  const std::vector<HistogramBin>* bins = &spec.bins;
  if (spec.distribution == DocDistribution::histogram && spec.bins.empty()) {
    auto preset = histogram_preset(spec.preset);
    MAGI_CHECK(preset.has_value(), "histogram without bins and unknown preset \"{}\"", spec.preset);
    preset_bins = std::move(*preset);
    bins = &preset_bins;
  }

  // One drawn length per call, >= 1.
  std::function<int64_t()> draw;
  switch (spec.distribution) {
    case DocDistribution::single: break;  // returned above
    case DocDistribution::fixed:
      MAGI_CHECK(spec.tokens >= 1, "fixed tokens = {}", spec.tokens);
      draw = [&] { return spec.tokens; };
      break;
    case DocDistribution::uniform:
      MAGI_CHECK(lo >= 1 && hi >= lo, "uniform range [{}, {}]", lo, hi);
      draw = [&] { return draws.integer(lo, hi); };
      break;
    case DocDistribution::lognormal: {
      MAGI_CHECK(lo >= 1 && hi >= lo && spec.mean_tokens > 0 && std::isfinite(spec.mean_tokens) &&
                     spec.sigma >= 0 && spec.sigma <= 10,
                 "lognormal mean {} sigma {} range [{}, {}]", spec.mean_tokens, spec.sigma, lo, hi);
      // mean of exp(N(mu, sigma^2)) is exp(mu + sigma^2 / 2).
      const double mu = std::log(spec.mean_tokens) - spec.sigma * spec.sigma / 2;
      draw = [&, mu] {
        return clamp_to_length(std::exp(mu + spec.sigma * draws.normal()), lo, hi);
      };
      break;
    }
    case DocDistribution::zipf: {
      MAGI_CHECK(lo >= 1 && hi >= lo && spec.alpha > 0 && spec.alpha <= 10,
                 "zipf alpha {} range [{}, {}]", spec.alpha, lo, hi);
      draw = [&, zipf = Zipf(spec.alpha, lo, hi)] { return zipf(draws); };
      break;
    }
    case DocDistribution::list: {
      MAGI_CHECK(!spec.lengths.empty(), "empty length list");
      for (int64_t len : spec.lengths) MAGI_CHECK(len >= 1, "list length {}", len);
      draw = [&, next = size_t{0}]() mutable { return spec.lengths[next++ % spec.lengths.size()]; };
      break;
    }
    case DocDistribution::histogram:
      draw = [&, pick = BinPicker(*bins)] { return pick(draws); };
      break;
  }

  const double cap_tokens = std::floor(spec.max_doc_fraction * static_cast<double>(total_tokens));
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(cap_tokens));
  std::vector<int64_t> lengths;
  int64_t left = total_tokens;
  while (left > 0) {
    for (int64_t len = draw(); len > 0 && left > 0;) {
      if (static_cast<int64_t>(lengths.size()) == kMaxDocuments) {
        throw ConfigError(fmt::format(
            "sequence.documents: too many documents; got more than {} in a pack of {} tokens, "
            "expected at most {} (longer documents or a shorter sequence.total_tokens)",
            kMaxDocuments, total_tokens, kMaxDocuments));
      }
      const int64_t piece = std::min({len, cap, left});
      lengths.push_back(piece);
      len -= piece;
      left -= piece;
    }
  }
  return lengths;
}

DocumentStats document_stats(const std::vector<int64_t>& lengths) {
  DocumentStats s;
  if (lengths.empty()) return s;
  std::vector<int64_t> sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  auto rank = [&](size_t pct) { return sorted[(pct * n + 99) / 100 - 1]; };
  double sum = 0;
  for (int64_t len : sorted) sum += static_cast<double>(len);
  s.count = static_cast<int64_t>(n);
  s.min = sorted.front();
  s.p50 = rank(50);
  s.p90 = rank(90);
  s.p99 = rank(99);
  s.max = sorted.back();
  s.mean = sum / static_cast<double>(n);
  return s;
}

nlohmann::json to_json(const DocumentStats& s) {
  return {{"count", s.count}, {"min", s.min}, {"p50", s.p50}, {"p90", s.p90},
          {"p99", s.p99},     {"max", s.max}, {"mean", s.mean}};
}

}  // namespace magi
