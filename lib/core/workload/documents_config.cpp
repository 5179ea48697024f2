#include "core/workload/documents_config.h"

#include "core/workload/documents.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace magi {

std::string_view to_string(DocDistribution d) {
  switch (d) {
    case DocDistribution::single: return "single";
    case DocDistribution::fixed: return "fixed";
    case DocDistribution::uniform: return "uniform";
    case DocDistribution::lognormal: return "lognormal";
    case DocDistribution::zipf: return "zipf";
    case DocDistribution::list: return "list";
    case DocDistribution::histogram: return "histogram";
  }
  return "?";
}

namespace {

using json = nlohmann::json;

constexpr int64_t kMaxBins = 1 << 16;

constexpr std::array kDistributions{DocDistribution::single,   DocDistribution::fixed,
                                    DocDistribution::uniform,  DocDistribution::lognormal,
                                    DocDistribution::zipf,     DocDistribution::list,
                                    DocDistribution::histogram};

struct DistributionRule {
  DocDistribution distribution;
  std::vector<std::string> required;
  std::vector<std::string> optional;
};

const std::vector<DistributionRule>& distribution_rules() {
  static const std::vector<DistributionRule> rules = {
      {DocDistribution::single, {}, {}},
      {DocDistribution::fixed, {"tokens"}, {"max_doc_fraction", "seed"}},
      {DocDistribution::uniform, {}, {"min_tokens", "max_tokens", "max_doc_fraction", "seed"}},
      {DocDistribution::lognormal,
       {"mean_tokens"},
       {"sigma", "min_tokens", "max_tokens", "max_doc_fraction", "seed"}},
      {DocDistribution::zipf,
       {},
       {"alpha", "min_tokens", "max_tokens", "max_doc_fraction", "seed"}},
      {DocDistribution::list, {"lengths"}, {"max_doc_fraction", "seed"}},
      {DocDistribution::histogram, {}, {"bins", "preset", "max_doc_fraction", "seed"}},
  };
  return rules;
}

bool reads(const DistributionRule& rule, std::string_view key) {
  const auto in = [&](const std::vector<std::string>& keys) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  return in(rule.required) || in(rule.optional);
}

// The distributions that read `key`, for messages.
std::string users_of(const std::string& key) {
  std::vector<std::string_view> users;
  for (const DistributionRule& rule : distribution_rules()) {
    if (reads(rule, key)) users.push_back(to_string(rule.distribution));
  }
  return fmt::format("{}", fmt::join(users, ", "));
}

}  // namespace

const std::vector<std::string>& document_keys() {
  static const std::vector<std::string> keys = {
      "distribution", "tokens",  "min_tokens", "max_tokens", "mean_tokens",      "sigma",
      "alpha",        "lengths", "bins",       "preset",     "max_doc_fraction", "seed"};
  return keys;
}

DocumentSpec read_documents(const JsonReader& r, const std::string& path, const json& v,
                            json& resolved) {
  r.object(path, v, "an object with a \"distribution\" and its fields");
  r.known_keys(path, v, document_keys());
  const std::string dist_path = child_path(path, "distribution");
  if (!v.contains("distribution")) {
    r.missing(dist_path, fmt::format("one of {}", fmt::join(enum_names(kDistributions), ", ")));
  }
  DocumentSpec spec;
  spec.distribution = r.enumerator(dist_path, v["distribution"], kDistributions, "distribution");
  const std::string_view dist_name = to_string(spec.distribution);
  const DistributionRule& rule =
      *std::find_if(distribution_rules().begin(), distribution_rules().end(),
                    [&](const DistributionRule& d) { return d.distribution == spec.distribution; });

  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    if (key == "distribution" || reads(rule, key)) continue;
    const std::string users = users_of(key);
    r.fail(child_path(path, key), fmt::format("not used by the {} distribution", dist_name), *it,
           fmt::format("no {} for {} (only {} read{} it)", key, dist_name, users,
                       users.find(',') == std::string::npos ? "s" : ""));
  }
  for (const std::string& key : rule.required) {
    if (!v.contains(key)) {
      r.missing(child_path(path, key), fmt::format("{} for the {} distribution", key, dist_name));
    }
  }

  resolved = json::object();
  resolved["distribution"] = dist_name;
  auto field = [&](const char* key) -> const json* {
    const auto it = v.find(key);
    return it == v.end() ? nullptr : &*it;
  };
  const auto p = [&](const char* key) { return child_path(path, key); };
  if (const json* x = field("tokens")) spec.tokens = r.integer(p("tokens"), *x, 1, kMaxTokens);
  if (const json* x = field("min_tokens")) {
    spec.min_tokens = r.integer(p("min_tokens"), *x, 1, kMaxTokens);
  }
  if (const json* x = field("max_tokens")) {
    spec.max_tokens = r.integer(p("max_tokens"), *x, 1, kMaxTokens);
    if (spec.max_tokens < spec.min_tokens) {
      r.fail(p("max_tokens"), "below min_tokens", *x,
             fmt::format("an integer >= min_tokens = {}", spec.min_tokens));
    }
  }
  if (const json* x = field("mean_tokens")) {
    spec.mean_tokens = r.number(p("mean_tokens"), *x, 1, static_cast<double>(kMaxTokens), false);
  }
  if (const json* x = field("sigma")) spec.sigma = r.number(p("sigma"), *x, 0, 10, false);
  if (const json* x = field("alpha")) spec.alpha = r.number(p("alpha"), *x, 0, 10, true);
  if (const json* x = field("lengths")) {
    const char* expected = "a non-empty list of document lengths (integers >= 1)";
    r.array(p("lengths"), *x, expected);
    if (x->empty() || static_cast<int64_t>(x->size()) > kMaxDocuments) {
      r.fail(p("lengths"), "bad length list", *x, fmt::format("1 to {} lengths", kMaxDocuments));
    }
    for (size_t i = 0; i < x->size(); ++i) {
      spec.lengths.push_back(r.integer(item_path(p("lengths"), i), (*x)[i], 1, kMaxTokens));
    }
  }
  if (const json* x = field("bins")) {
    const char* expected = "a non-empty list of {\"lo\": int, \"hi\": int, \"weight\": number}";
    r.array(p("bins"), *x, expected);
    if (x->empty() || static_cast<int64_t>(x->size()) > kMaxBins) {
      r.fail(p("bins"), "bad bin list", *x, fmt::format("1 to {} bins", kMaxBins));
    }
    double total = 0;
    for (size_t i = 0; i < x->size(); ++i) {
      const std::string bp = item_path(p("bins"), i);
      const json& b = r.object(bp, (*x)[i], expected);
      r.known_keys(bp, b, {"lo", "hi", "weight"});
      for (const char* key : {"lo", "hi", "weight"}) {
        if (!b.contains(key)) r.missing(child_path(bp, key), expected);
      }
      HistogramBin bin;
      bin.lo = r.integer(child_path(bp, "lo"), b["lo"], 1, kMaxTokens);
      bin.hi = r.integer(child_path(bp, "hi"), b["hi"], 1, kMaxTokens);
      if (bin.hi < bin.lo) {
        r.fail(child_path(bp, "hi"), "reversed bin", b["hi"],
               fmt::format("an integer >= lo = {}", bin.lo));
      }
      bin.weight = r.number(child_path(bp, "weight"), b["weight"], 0, 1e300, false);
      total += bin.weight;
      spec.bins.push_back(bin);
    }
    if (!(total > 0) || !std::isfinite(total)) {
      r.fail(p("bins"), "bad weights", *x, "weights >= 0 with a positive, finite sum");
    }
  }
  if (const json* x = field("preset")) {
    if (!spec.bins.empty()) {
      r.fail(p("preset"), "preset with bins", *x, "either bins or a preset, not both");
    }
    spec.preset = r.choice(p("preset"), *x, histogram_preset_names(), "histogram preset");
  }
  if (spec.distribution == DocDistribution::histogram && spec.bins.empty() && spec.preset.empty()) {
    r.missing(p("bins"), fmt::format("bins (or a preset, one of {}) for the histogram distribution",
                                     fmt::join(histogram_preset_names(), ", ")));
  }
  if (const json* x = field("max_doc_fraction")) {
    spec.max_doc_fraction = r.number(p("max_doc_fraction"), *x, 0, 1, true);
  }
  if (const json* x = field("seed")) spec.seed = r.seed(p("seed"), *x);

  // Resolved: the fields this distribution reads, defaults filled in (max_tokens stays absent
  // when it means "the pack").
  const DocumentSpec d{};
  auto put = [&](const char* key, json value) {
    if (reads(rule, key)) resolved[key] = std::move(value);
  };
  if (spec.tokens != d.tokens) put("tokens", spec.tokens);
  put("min_tokens", spec.min_tokens);
  if (spec.max_tokens != d.max_tokens) put("max_tokens", spec.max_tokens);
  if (spec.mean_tokens != d.mean_tokens) put("mean_tokens", spec.mean_tokens);
  put("sigma", spec.sigma);
  put("alpha", spec.alpha);
  if (!spec.lengths.empty()) put("lengths", spec.lengths);
  if (!spec.bins.empty()) {
    json bins = json::array();
    for (const HistogramBin& b : spec.bins)
      bins.push_back({{"lo", b.lo}, {"hi", b.hi}, {"weight", b.weight}});
    put("bins", std::move(bins));
  }
  if (!spec.preset.empty()) put("preset", spec.preset);
  put("max_doc_fraction", spec.max_doc_fraction);
  put("seed", spec.seed);
  return spec;
}

}  // namespace magi
