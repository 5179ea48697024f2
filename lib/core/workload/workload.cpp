// Workload loading: JSON -> validated sweep -> one Case per point (configs/README.md is the
// schema). Each section (model, sequence, mask, parallel, run) is read through a table of
// fields; a scalar field given as a list is a sweep axis. Every problem is one ConfigError line:
//   <origin>: <path>: <problem>; got <value>, expected <what>
// Values in messages are rendered with bounded depth and length, so no input can blow up an
// error path.
#include "core/workload/workload.h"

#include "core/base/error.h"
#include "core/mask/catalogue.h"
#include "core/base/file_io.h"
#include "core/workload/documents.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string_view>

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

std::string_view to_string(DispatchSolver s) {
  switch (s) {
    case DispatchSolver::greedy: return "greedy";
    case DispatchSolver::refine: return "refine";
  }
  return "?";
}

namespace {

using json = nlohmann::json;

// Limits (configs/README.md). Token counts stay below 2^31 so that every area fits in int64.
constexpr int64_t kMaxTokens = int64_t{1} << 31;
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxHeadDim = 256;
constexpr int64_t kMaxOverlap = 1024;
constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
constexpr int64_t kMaxCases = 10000;
constexpr int64_t kMaxSlices = int64_t{1} << 20;
constexpr int64_t kMaxBins = 1 << 16;
constexpr size_t kMaxNameChars = 200;
constexpr size_t kMaxFileBytes = size_t{16} << 20;
constexpr double kMaxRate = 1e9;  // TFLOP/s or GB/s: anything larger is a typo

constexpr std::array kDTypes{DType::bf16, DType::fp16, DType::fp32};
constexpr std::array kStrategies{Strategy::magi, Strategy::ring, Strategy::ulysses,
                                 Strategy::allgather};
constexpr std::array kSolvers{DispatchSolver::greedy, DispatchSolver::refine};
constexpr std::array kDistributions{DocDistribution::single,   DocDistribution::fixed,
                                    DocDistribution::uniform,  DocDistribution::lognormal,
                                    DocDistribution::zipf,     DocDistribution::list,
                                    DocDistribution::histogram};
constexpr std::array kSliceTypes{SliceType::full, SliceType::causal, SliceType::inv_causal,
                                 SliceType::bi_causal};

template <class E, size_t N>
std::vector<std::string> names_of(const std::array<E, N>& all) {
  std::vector<std::string> v;
  for (E e : all) v.emplace_back(to_string(e));
  return v;
}

// The enum whose name is `s`; `s` was validated against names_of(all).
template <class E, size_t N>
E enum_named(std::string_view s, const std::array<E, N>& all) {
  for (E e : all) {
    if (to_string(e) == s) return e;
  }
  throw InternalError(fmt::format("\"{}\" names no enumerator", s));
}

// ---- rendering values, keys and paths for messages ------------------------------------------

std::string quote(std::string_view s) {
  constexpr size_t kMaxChars = 60;
  const bool cut = s.size() > kMaxChars;
  std::string q = json(std::string(s.substr(0, cut ? kMaxChars : s.size())))
                      .dump(-1, ' ', false, json::error_handler_t::replace);
  if (cut) q.insert(q.size() - 1, "...");
  return q;
}

void render(const json& v, std::string& out, int depth) {
  constexpr size_t kMaxItems = 4;
  constexpr size_t kMaxChars = 100;
  if (out.size() > kMaxChars) return;
  switch (v.type()) {
    case json::value_t::object: {
      if (depth >= 2) {
        out += v.empty() ? "{}" : "{...}";
        return;
      }
      out += '{';
      size_t i = 0;
      for (auto it = v.begin(); it != v.end(); ++it, ++i) {
        if (i == kMaxItems) {
          out += ", ...";
          break;
        }
        out += (i ? ", " : "") + quote(it.key()) + ": ";
        render(it.value(), out, depth + 1);
      }
      out += '}';
      return;
    }
    case json::value_t::array: {
      if (depth >= 2) {
        out += v.empty() ? "[]" : "[...]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i == kMaxItems) {
          out += ", ...";
          break;
        }
        if (i) out += ", ";
        render(v[i], out, depth + 1);
      }
      out += ']';
      return;
    }
    case json::value_t::string: out += quote(v.get_ref<const std::string&>()); return;
    case json::value_t::number_float: out += fmt::format("{}", v.get<double>()); return;
    default: out += v.dump(); return;
  }
}

// One line, at most about 100 characters, whatever the value's size or depth.
std::string show(const json& v) {
  std::string s;
  render(v, s, 0);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

bool is_identifier(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string child(const std::string& path, std::string_view key) {
  if (!is_identifier(key)) return fmt::format("{}[{}]", path, quote(key));
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string item(const std::string& path, size_t i) { return fmt::format("{}[{}]", path, i); }

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "; did you mean "x"?" when one candidate is close to `word`, else "".
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates) {
  if (word.size() > 64) return "";
  const size_t limit = std::max<size_t>(2, word.size() / 3);
  const std::string* best = nullptr;
  size_t best_d = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = &c;
    }
  }
  return best ? fmt::format("; did you mean \"{}\"?", *best) : "";
}

// The sections' keys, for "it belongs in parallel" hints.
const std::vector<std::pair<std::string, std::vector<std::string>>>& section_keys();

// ---- the reader: typed access with errors naming origin, path, value and expectation ---------

class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  // `got` already rendered.
  [[noreturn]] void fail_text(const std::string& path, std::string_view problem,
                              std::string_view got, std::string_view expected) const {
    throw ConfigError(fmt::format("{}: {}: {}; got {}, expected {}", origin_,
                                  path.empty() ? "(top level)" : path, problem, got, expected));
  }
  [[noreturn]] void fail(const std::string& path, std::string_view problem, const json& got,
                         std::string_view expected) const {
    fail_text(path, problem, show(got), expected);
  }
  [[noreturn]] void missing(const std::string& path, std::string_view expected) const {
    fail_text(path, "missing", "nothing", expected);
  }

  int64_t integer(const std::string& path, const json& v, int64_t lo, int64_t hi) const {
    const std::string expected = fmt::format("an integer in [{}, {}]", lo, hi);
    int64_t x = 0;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) fail(path, "out of range", v, expected);
      x = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      if (!std::isfinite(d) || d != std::floor(d)) fail(path, "not an integer", v, expected);
      if (d < -0x1p62 || d > 0x1p62) fail(path, "out of range", v, expected);
      x = static_cast<int64_t>(d);
    } else {
      fail(path, "wrong type", v, expected);
    }
    if (x < lo || x > hi) fail(path, "out of range", v, expected);
    return x;
  }

  uint64_t seed(const std::string& path, const json& v) const {
    const std::string expected =
        fmt::format("an integer in [0, {}]", std::numeric_limits<uint64_t>::max());
    if (v.is_number_unsigned()) return v.get<uint64_t>();  // every non-negative parsed integer
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return v.get<uint64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (!std::isfinite(d) || d != std::floor(d)) fail(path, "not an integer", v, expected);
      if (d >= 0 && d < 0x1p64) return static_cast<uint64_t>(d);
    }
    fail(path, v.is_number() ? "out of range" : "wrong type", v, expected);
  }

  // A finite number in [lo, hi] ((lo, hi] when lo_open).
  double number(const std::string& path, const json& v, double lo, double hi, bool lo_open) const {
    const std::string expected = fmt::format("a number in {}{}, {}]", lo_open ? '(' : '[', lo, hi);
    if (!v.is_number()) fail(path, "wrong type", v, expected);
    const double d = v.get<double>();
    if (!std::isfinite(d) || d > hi || d < lo || (lo_open && d == lo)) {
      fail(path, "out of range", v, expected);
    }
    return d;
  }

  bool boolean(const std::string& path, const json& v) const {
    if (!v.is_boolean()) fail(path, "wrong type", v, "true or false");
    return v.get<bool>();
  }

  // One of `allowed`; `what` names the kind in the problem ("unknown dtype").
  std::string choice(const std::string& path, const json& v,
                     const std::vector<std::string>& allowed, std::string_view what) const {
    const std::string expected = fmt::format("one of {}", fmt::join(allowed, ", "));
    if (!v.is_string()) fail(path, "wrong type", v, expected);
    const std::string& s = v.get_ref<const std::string&>();
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
      fail(path, fmt::format("unknown {}", what), v, expected + suggestion(s, allowed));
    }
    return s;
  }

  const json& object(const std::string& path, const json& v, std::string_view what) const {
    if (!v.is_object()) fail(path, "wrong type", v, what);
    return v;
  }

  const json& array(const std::string& path, const json& v, std::string_view what) const {
    if (!v.is_array()) fail(path, "wrong type", v, what);
    return v;
  }

  // Every key of `obj` must be in `known`.
  void known_keys(const std::string& path, const json& obj,
                  const std::vector<std::string>& known) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string& key = it.key();
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string hint = suggestion(key, known);
      if (hint.empty()) {
        for (const auto& [section, keys] : section_keys()) {
          if (child("", section) != path &&
              std::find(keys.begin(), keys.end(), key) != keys.end()) {
            hint = fmt::format("; \"{}\" belongs in {}", key, section);
            break;
          }
        }
      }
      fail_text(child(path, key), "unknown key", quote(key),
                fmt::format("one of {}{}", fmt::join(known, ", "), hint));
    }
  }

 private:
  std::string origin_;
};

// ---- sections as tables of fields ------------------------------------------------------------

// Validates one scalar value and returns its normalized form.
using Check = json (*)(const Reader&, const std::string& path, const json& v);

struct Field {
  std::string key;
  bool sweepable = true;
  Check check = nullptr;  // nullptr: a structured field the caller reads itself
  json fallback;          // the default; null = stays absent
  std::string required;   // non-empty: the key must be present; this says what is expected
};

// One point of a section's sweep: its normalized scalars, and where each came from in the file.
struct Variant {
  json values = json::object();
  std::map<std::string, std::string> paths;  // key -> "parallel.cp[1]" (or "parallel.cp")
};

std::vector<std::string> keys_of(const std::vector<Field>& fields) {
  std::vector<std::string> keys;
  for (const Field& f : fields) keys.push_back(f.key);
  return keys;
}

[[noreturn]] void too_many_cases(const Reader& r, int64_t count_at_least, std::string_view where) {
  r.fail_text("sweep", "too many cases", fmt::format("at least {} ({})", count_at_least, where),
              fmt::format("at most {}", kMaxCases));
}

// Expands a section object into its sweep points (cartesian product; fields in table order, the
// last one varying fastest). `resolved` receives the section with defaults filled in and sweep
// lists kept as (normalized) lists.
std::vector<Variant> expand(const Reader& r, const std::string& path, const json& obj,
                            const std::vector<Field>& fields, json& resolved) {
  r.known_keys(path, obj, keys_of(fields));
  std::vector<Variant> points(1);
  resolved = json::object();
  for (const Field& f : fields) {
    if (!f.check) continue;
    const std::string p = child(path, f.key);
    for (Variant& v : points) v.paths[f.key] = p;
    const auto it = obj.find(f.key);
    if (it == obj.end()) {
      if (!f.required.empty()) r.missing(p, f.required);
      if (f.fallback.is_null()) continue;
      for (Variant& v : points) v.values[f.key] = f.fallback;
      resolved[f.key] = f.fallback;
      continue;
    }
    std::vector<std::pair<json, std::string>> choices;
    if (f.sweepable && it->is_array()) {
      if (it->empty()) r.fail(p, "empty sweep", *it, "a value or a non-empty list of values");
      for (size_t i = 0; i < it->size(); ++i) {
        choices.emplace_back(f.check(r, item(p, i), (*it)[i]), item(p, i));
      }
      resolved[f.key] = json::array();
      for (const auto& c : choices) resolved[f.key].push_back(c.first);
    } else {
      choices.emplace_back(f.check(r, p, *it), p);
      resolved[f.key] = choices.front().first;
    }
    const int64_t count =
        static_cast<int64_t>(points.size()) * static_cast<int64_t>(choices.size());
    if (count > kMaxCases) too_many_cases(r, count, path);
    std::vector<Variant> next;
    next.reserve(static_cast<size_t>(count));
    for (const Variant& base : points) {
      for (const auto& [value, value_path] : choices) {
        Variant v = base;
        v.values[f.key] = value;
        v.paths[f.key] = value_path;
        next.push_back(std::move(v));
      }
    }
    points = std::move(next);
  }
  return points;
}

json positive_tokens(const Reader& r, const std::string& p, const json& v) {
  return r.integer(p, v, 1, kMaxTokens);
}
json optional_tokens(const Reader& r, const std::string& p, const json& v) {
  return r.integer(p, v, 0, kMaxTokens);
}

const std::vector<Field>& model_fields() {
  static const std::vector<Field> fields = {
      {"heads_q", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxHeads);
       },
       ModelShape{}.heads_q, ""},
      {"heads_kv", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxHeads);
       },
       ModelShape{}.heads_kv, ""},
      {"head_dim", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         const int64_t d = r.integer(p, v, 8, kMaxHeadDim);
         if (d % 8 != 0) r.fail(p, "not a multiple of 8", v, "a multiple of 8 in [8, 256]");
         return d;
       },
       ModelShape{}.head_dim, ""},
      {"dtype", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, names_of(kDTypes), "dtype");
       },
       std::string(to_string(ModelShape{}.dtype)), ""},
  };
  return fields;
}

const std::vector<Field>& sequence_fields() {
  static const std::vector<Field> fields = {
      {"total_tokens", true, positive_tokens, nullptr,
       fmt::format("an integer in [1, {}] (or a list of them)", kMaxTokens)},
      {"documents", false, nullptr, nullptr, ""},
  };
  return fields;
}

const std::vector<Field>& mask_fields() {
  static const std::vector<Field> fields = {
      {"type", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, mask_types(), "mask type");
       },
       MaskSpec{}.type, ""},
      {"window", true, optional_tokens, nullptr, ""},
      {"block_tokens", true, optional_tokens, nullptr, ""},
      {"prefix_tokens", true, optional_tokens, nullptr, ""},
      {"sink_tokens", true, optional_tokens, nullptr, ""},
      {"question_tokens", true, optional_tokens, nullptr, ""},
      {"slices", false, nullptr, nullptr, ""},
  };
  return fields;
}

const std::vector<Field>& parallel_fields() {
  static const ParallelSpec d{};
  static const std::vector<Field> fields = {
      {"cp", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxCp);
       },
       d.cp, ""},
      {"strategy", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, names_of(kStrategies), "strategy");
       },
       std::string(to_string(d.strategy)), ""},
      {"chunk_tokens", true, positive_tokens, d.chunk_tokens, ""},
      {"overlap_degree", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         const std::string expected = fmt::format("an integer in [1, {}] or \"auto\"", kMaxOverlap);
         if (v.is_string()) {
           if (v.get_ref<const std::string&>() != "auto")
             r.fail(p, "unknown overlap degree", v, expected);
           return "auto";
         }
         if (!v.is_number()) r.fail(p, "wrong type", v, expected);
         return r.integer(p, v, 1, kMaxOverlap);
       },
       "auto", ""},
      {"solver", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, names_of(kSolvers), "solver");
       },
       std::string(to_string(d.solver)), ""},
      {"compute_tflops", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.number(p, v, 0, kMaxRate, true);
       },
       d.compute_tflops, ""},
      {"comm_gbps", true,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.number(p, v, 0, kMaxRate, true);
       },
       d.comm_gbps, ""},
  };
  return fields;
}

const std::vector<Field>& run_fields() {
  static const RunSpec d{};
  static const std::vector<Field> fields = {
      {"passes", false,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         const char* expected = "a non-empty list of \"fwd\" and \"bwd\", each at most once";
         r.array(p, v, expected);
         if (v.empty()) r.fail(p, "no passes", v, expected);
         json out = json::array();
         for (size_t i = 0; i < v.size(); ++i) {
           const std::string pass = r.choice(item(p, i), v[i], {"fwd", "bwd"}, "pass");
           if (std::find(out.begin(), out.end(), pass) != out.end()) {
             r.fail(item(p, i), "duplicate pass", v[i], expected);
           }
           out.push_back(pass);
         }
         return out;
       },
       json::array({"fwd", "bwd"}), ""},
      {"warmup", false,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 0, kMaxInt);
       },
       d.warmup, ""},
      {"iters", false,
       [](const Reader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxInt);
       },
       d.iters, ""},
      {"check", false,
       [](const Reader& r, const std::string& p, const json& v) -> json { return r.boolean(p, v); },
       d.check, ""},
      {"seed", false,
       [](const Reader& r, const std::string& p, const json& v) -> json { return r.seed(p, v); },
       d.seed, ""},
  };
  return fields;
}

const std::vector<std::string>& top_keys() {
  static const std::vector<std::string> keys = {"name", "description", "model", "sequence",
                                                "mask", "parallel",    "run"};
  return keys;
}

const std::vector<std::string>& document_keys() {
  static const std::vector<std::string> keys = {
      "distribution", "tokens",  "min_tokens", "max_tokens", "mean_tokens",      "sigma",
      "alpha",        "lengths", "bins",       "preset",     "max_doc_fraction", "seed"};
  return keys;
}

const std::vector<std::pair<std::string, std::vector<std::string>>>& section_keys() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> sections = {
      {"", top_keys()},
      {"model", keys_of(model_fields())},
      {"sequence", keys_of(sequence_fields())},
      {"sequence.documents", document_keys()},
      {"mask", keys_of(mask_fields())},
      {"parallel", keys_of(parallel_fields())},
      {"run", keys_of(run_fields())},
  };
  return sections;
}

// ---- sequence.documents ----------------------------------------------------------------------

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

DocumentSpec read_documents(const Reader& r, const std::string& path, const json& v,
                            json& resolved) {
  r.object(path, v, "an object with a \"distribution\" and its fields");
  r.known_keys(path, v, document_keys());
  const std::string dist_path = child(path, "distribution");
  if (!v.contains("distribution")) {
    r.missing(dist_path, fmt::format("one of {}", fmt::join(names_of(kDistributions), ", ")));
  }
  DocumentSpec spec;
  spec.distribution =
      enum_named(r.choice(dist_path, v["distribution"], names_of(kDistributions), "distribution"),
                 kDistributions);
  const std::string_view dist_name = to_string(spec.distribution);
  const DistributionRule& rule =
      *std::find_if(distribution_rules().begin(), distribution_rules().end(),
                    [&](const DistributionRule& d) { return d.distribution == spec.distribution; });

  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    if (key == "distribution" || reads(rule, key)) continue;
    const std::string users = users_of(key);
    r.fail(child(path, key), fmt::format("not used by the {} distribution", dist_name), *it,
           fmt::format("no {} for {} (only {} read{} it)", key, dist_name, users,
                       users.find(',') == std::string::npos ? "s" : ""));
  }
  for (const std::string& key : rule.required) {
    if (!v.contains(key)) {
      r.missing(child(path, key), fmt::format("{} for the {} distribution", key, dist_name));
    }
  }

  resolved = json::object();
  resolved["distribution"] = dist_name;
  auto field = [&](const char* key) -> const json* {
    const auto it = v.find(key);
    return it == v.end() ? nullptr : &*it;
  };
  const auto p = [&](const char* key) { return child(path, key); };
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
      spec.lengths.push_back(r.integer(item(p("lengths"), i), (*x)[i], 1, kMaxTokens));
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
      const std::string bp = item(p("bins"), i);
      const json& b = r.object(bp, (*x)[i], expected);
      r.known_keys(bp, b, {"lo", "hi", "weight"});
      for (const char* key : {"lo", "hi", "weight"}) {
        if (!b.contains(key)) r.missing(child(bp, key), expected);
      }
      HistogramBin bin;
      bin.lo = r.integer(child(bp, "lo"), b["lo"], 1, kMaxTokens);
      bin.hi = r.integer(child(bp, "hi"), b["hi"], 1, kMaxTokens);
      if (bin.hi < bin.lo) {
        r.fail(child(bp, "hi"), "reversed bin", b["hi"],
               fmt::format("an integer >= lo = {}", bin.lo));
      }
      bin.weight = r.number(child(bp, "weight"), b["weight"], 0, 1e300, false);
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

// ---- mask ------------------------------------------------------------------------------------

struct MaskVariant {
  Variant variant;
  std::vector<AttnSlice> slices;
  json slices_json;  // null when the alternative has no slices
};

Range read_range(const Reader& r, const std::string& path, const json& v) {
  const char* expected = "[start, end] with 0 <= start <= end (half-open token range)";
  r.array(path, v, expected);
  if (v.size() != 2) r.fail(path, "not a pair", v, expected);
  const int64_t start = r.integer(item(path, 0), v[0], 0, kMaxTokens);
  const int64_t end = r.integer(item(path, 1), v[1], 0, kMaxTokens);
  if (end < start) r.fail(path, "reversed range", v, expected);
  return {start, end};
}

std::vector<AttnSlice> read_slices(const Reader& r, const std::string& path, const json& v) {
  const char* expected =
      "a list of {\"q\": [start, end], \"k\": [start, end], \"type\": slice type}";
  r.array(path, v, expected);
  if (static_cast<int64_t>(v.size()) > kMaxSlices) {
    r.fail_text(path, "too many slices", fmt::format("{} slices", v.size()),
                fmt::format("at most {}", kMaxSlices));
  }
  std::vector<AttnSlice> slices;
  slices.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string sp = item(path, i);
    const json& s = r.object(sp, v[i], expected);
    r.known_keys(sp, s, {"q", "k", "type"});
    for (const char* key : {"q", "k", "type"}) {
      if (!s.contains(key)) r.missing(child(sp, key), expected);
    }
    AttnSlice slice;
    slice.q = read_range(r, child(sp, "q"), s["q"]);
    slice.k = read_range(r, child(sp, "k"), s["k"]);
    slice.type = enum_named(
        r.choice(child(sp, "type"), s["type"], names_of(kSliceTypes), "slice type"), kSliceTypes);
    slices.push_back(slice);
  }
  return slices;
}

json slices_to_json(const std::vector<AttnSlice>& slices) {
  json out = json::array();
  for (const AttnSlice& s : slices) {
    out.push_back({{"q", {s.q.start, s.q.end}},
                   {"k", {s.k.start, s.k.end}},
                   {"type", std::string(to_string(s.type))}});
  }
  return out;
}

// `mask` is one object or a list of objects (alternatives, each possibly swept itself): the
// mask's sweep points are the alternatives' points in order.
std::vector<MaskVariant> read_masks(const Reader& r, const json& v, json& resolved) {
  const char* expected = "an object {\"type\": ..., parameters} or a non-empty list of them";
  std::vector<std::pair<std::string, const json*>> alternatives;
  if (v.is_array()) {
    if (v.empty()) r.fail("mask", "empty sweep", v, expected);
    for (size_t i = 0; i < v.size(); ++i) alternatives.emplace_back(item("mask", i), &v[i]);
    resolved = json::array();
  } else {
    alternatives.emplace_back("mask", &v);
  }
  std::vector<MaskVariant> out;
  for (const auto& [path, alt] : alternatives) {
    r.object(path, *alt, expected);
    json alt_resolved;
    std::vector<Variant> points = expand(r, path, *alt, mask_fields(), alt_resolved);
    std::vector<AttnSlice> slices;
    json slices_json;
    if (const auto it = alt->find("slices"); it != alt->end()) {
      slices = read_slices(r, child(path, "slices"), *it);
      slices_json = slices_to_json(slices);
      alt_resolved["slices"] = slices_json;
    }
    if (static_cast<int64_t>(out.size() + points.size()) > kMaxCases) {
      too_many_cases(r, static_cast<int64_t>(out.size() + points.size()), "mask");
    }
    for (Variant& p : points) {
      p.paths["slices"] = child(path, "slices");
      out.push_back({std::move(p), slices, slices_json});
    }
    if (v.is_array()) {
      resolved.push_back(std::move(alt_resolved));
    } else {
      resolved = std::move(alt_resolved);
    }
  }
  return out;
}

MaskSpec mask_of(const MaskVariant& m) {
  const json& v = m.variant.values;
  MaskSpec spec;
  spec.type = v["type"].get<std::string>();
  auto param = [&](const char* key) { return v.contains(key) ? v[key].get<int64_t>() : 0; };
  spec.window = param("window");
  spec.block_tokens = param("block_tokens");
  spec.prefix_tokens = param("prefix_tokens");
  spec.sink_tokens = param("sink_tokens");
  spec.question_tokens = param("question_tokens");
  spec.slices = m.slices;
  return spec;
}

json mask_json(const MaskVariant& m) {
  json out = m.variant.values;
  if (!m.slices_json.is_null()) out["slices"] = m.slices_json;
  return out;
}

// A catalogue message names a mask field as "mask.<key>..."; point it at where the value came
// from ("mask[2].window", "mask.window[1]").
std::string relocate(const std::string& message, const std::map<std::string, std::string>& paths) {
  constexpr std::string_view prefix = "mask.";
  if (!message.starts_with(prefix)) return message;
  size_t end = prefix.size();
  while (end < message.size() && is_identifier(std::string_view(&message[end], 1))) ++end;
  const auto it = paths.find(message.substr(prefix.size(), end - prefix.size()));
  return it == paths.end() ? message : it->second + message.substr(end);
}

// ---- typed values of the other sections ------------------------------------------------------

ModelShape model_of(const json& v) {
  ModelShape m;
  m.heads_q = v["heads_q"].get<int>();
  m.heads_kv = v["heads_kv"].get<int>();
  m.head_dim = v["head_dim"].get<int>();
  m.dtype = enum_named(v["dtype"].get<std::string>(), kDTypes);
  return m;
}

ParallelSpec parallel_of(const json& v) {
  ParallelSpec p;
  p.cp = v["cp"].get<int>();
  p.strategy = enum_named(v["strategy"].get<std::string>(), kStrategies);
  p.chunk_tokens = v["chunk_tokens"].get<int64_t>();
  p.overlap_degree = v["overlap_degree"].is_string() ? 0 : v["overlap_degree"].get<int>();
  p.solver = enum_named(v["solver"].get<std::string>(), kSolvers);
  p.compute_tflops = v["compute_tflops"].get<double>();
  p.comm_gbps = v["comm_gbps"].get<double>();
  return p;
}

RunSpec run_of(const json& v) {
  RunSpec run;
  const json& passes = v["passes"];
  run.fwd = std::find(passes.begin(), passes.end(), "fwd") != passes.end();
  run.bwd = std::find(passes.begin(), passes.end(), "bwd") != passes.end();
  run.warmup = v["warmup"].get<int>();
  run.iters = v["iters"].get<int>();
  run.check = v["check"].get<bool>();
  run.seed = v["seed"].get<uint64_t>();
  return run;
}

// A section object, or an empty one when absent.
const json& section(const Reader& r, const json& doc, const char* key) {
  static const json empty = json::object();
  const auto it = doc.find(key);
  if (it == doc.end()) return empty;
  return r.object(key, *it, fmt::format("an object with keys {}", [&] {
                    for (const auto& [name, keys] : section_keys()) {
                      if (name == key) return fmt::format("{}", fmt::join(keys, ", "));
                    }
                    return std::string();
                  }()));
}

// Replays a failed parse through the SAX interface to learn where it failed and why.
class ErrorLocator : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    position_ = position;
    reason_ = ex.what();
    return false;
  }

  size_t position() const { return position_; }
  // nlohmann's text without its "[json.exception...] " tag and "parse error at line..: " lead.
  std::string reason() const {
    std::string r = reason_;
    if (r.starts_with("[json.exception.")) r = r.substr(std::min(r.size(), r.find("] ") + 2));
    if (r.starts_with("parse error at line")) r = r.substr(std::min(r.size(), r.find(": ") + 2));
    return r;
  }

 private:
  size_t position_ = 0;
  std::string reason_ = "unknown error";
};

[[noreturn]] void throw_not_json(const std::string& path, const std::string& text) {
  ErrorLocator locator;
  json::sax_parse(text, &locator);
  // The position counts the characters read, the offending one (or the end of input) included;
  // line and column as nlohmann counts them.
  const size_t read = std::min(locator.position(), text.size());
  const auto end = text.begin() + static_cast<std::ptrdiff_t>(read);
  const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), end, '\n'));
  const size_t newline = read == 0 ? std::string::npos : text.rfind('\n', read - 1);
  const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
  throw FileError(fmt::format("{}: not valid JSON at line {}, column {}: {}", path, line,
                              locator.position() - line_start, locator.reason()));
}

}  // namespace

Workload parse_workload(const json& doc, const std::string& origin) {
  const Reader r(origin);
  r.object("", doc, "an object with keys name, model, sequence, mask, parallel, run");
  r.known_keys("", doc, top_keys());

  Workload w;
  w.resolved = json::object();
  const auto name_it = doc.find("name");
  const std::string name_expected =
      fmt::format("a non-empty string of at most {} printable characters", kMaxNameChars);
  if (name_it == doc.end()) r.missing("name", name_expected);
  if (!name_it->is_string()) r.fail("name", "wrong type", *name_it, name_expected);
  w.name = name_it->get<std::string>();
  if (w.name.empty() || w.name.size() > kMaxNameChars ||
      std::any_of(w.name.begin(), w.name.end(), [](char c) { return c >= 0 && c < 0x20; })) {
    r.fail("name", "bad name", *name_it, name_expected);
  }
  w.resolved["name"] = w.name;
  if (const auto it = doc.find("description"); it != doc.end()) {
    if (!it->is_string()) r.fail("description", "wrong type", *it, "a string");
    w.resolved["description"] = *it;
  }

  json model_resolved, sequence_resolved, parallel_resolved, run_resolved, mask_resolved;
  const std::vector<Variant> models =
      expand(r, "model", section(r, doc, "model"), model_fields(), model_resolved);
  for (const Variant& m : models) {
    const int64_t hq = m.values["heads_q"].get<int64_t>();
    const int64_t hkv = m.values["heads_kv"].get<int64_t>();
    if (hq % hkv != 0) {
      r.fail(m.paths.at("heads_q"), "not divisible by heads_kv", m.values["heads_q"],
             fmt::format("a multiple of {} = {} (GQA)", m.paths.at("heads_kv"), hkv));
    }
  }

  if (!doc.contains("sequence")) {
    r.missing("sequence", "an object with total_tokens (and optionally documents)");
  }
  const json& seq = section(r, doc, "sequence");
  const std::vector<Variant> lengths =
      expand(r, "sequence", seq, sequence_fields(), sequence_resolved);
  DocumentSpec documents;
  json documents_resolved = {{"distribution", "single"}};
  if (const auto it = seq.find("documents"); it != seq.end()) {
    documents = read_documents(r, "sequence.documents", *it, documents_resolved);
  }
  sequence_resolved["documents"] = documents_resolved;

  const std::vector<MaskVariant> masks =
      read_masks(r, doc.contains("mask") ? doc["mask"] : json::object(), mask_resolved);
  const std::vector<Variant> parallels =
      expand(r, "parallel", section(r, doc, "parallel"), parallel_fields(), parallel_resolved);
  const std::vector<Variant> runs =
      expand(r, "run", section(r, doc, "run"), run_fields(), run_resolved);
  MAGI_CHECK(runs.size() == 1, "run fields are not sweepable");
  const RunSpec run = run_of(runs.front().values);

  int64_t count = 1;
  for (size_t n : {models.size(), lengths.size(), masks.size(), parallels.size()}) {
    count *= static_cast<int64_t>(n);  // each factor <= kMaxCases, so no overflow before the check
    if (count > kMaxCases) {
      too_many_cases(r, count,
                     fmt::format("{} x {} x {} x {} points of model, sequence, mask, parallel",
                                 models.size(), lengths.size(), masks.size(), parallels.size()));
    }
  }

  // Every (sequence length, mask) pair must build: documents sampled (whatever the mask: runs
  // sample them for every case) and slices generated once per pair, so a bad combination fails
  // here, before any work starts.
  std::vector<MaskSpec> mask_specs;
  for (const MaskVariant& m : masks) mask_specs.push_back(mask_of(m));
  for (const Variant& len : lengths) {
    const int64_t total = len.values["total_tokens"].get<int64_t>();
    const std::vector<int64_t> single{total};
    std::vector<int64_t> docs;
    try {
      docs = sample_documents(documents, total);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("{}: {}", origin, e.what()));
    }
    for (size_t i = 0; i < masks.size(); ++i) {
      try {
        build_mask(mask_specs[i], total, mask_uses_documents(mask_specs[i].type) ? docs : single);
      } catch (const ConfigError& e) {
        throw ConfigError(
            fmt::format("{}: {}", origin, relocate(e.what(), masks[i].variant.paths)));
      }
    }
  }

  w.resolved["model"] = model_resolved;
  w.resolved["sequence"] = sequence_resolved;
  w.resolved["mask"] = mask_resolved;
  w.resolved["parallel"] = parallel_resolved;
  w.resolved["run"] = run_resolved;

  w.cases.reserve(static_cast<size_t>(count));
  for (const Variant& m : models) {
    for (const Variant& len : lengths) {
      for (size_t i = 0; i < masks.size(); ++i) {
        for (const Variant& p : parallels) {
          Case c;
          c.name = fmt::format("{}/{}", w.name, w.cases.size());
          c.model = model_of(m.values);
          c.total_tokens = len.values["total_tokens"].get<int64_t>();
          c.documents = documents;
          c.mask = mask_specs[i];
          c.parallel = parallel_of(p.values);
          c.run = run;
          c.resolved = {
              {"name", w.name},
              {"model", m.values},
              {"sequence", {{"total_tokens", c.total_tokens}, {"documents", documents_resolved}}},
              {"mask", mask_json(masks[i])},
              {"parallel", p.values},
              {"run", runs.front().values}};
          if (w.resolved.contains("description"))
            c.resolved["description"] = w.resolved["description"];
          w.cases.push_back(std::move(c));
        }
      }
    }
  }
  return w;
}

namespace {

// JSON keeps the last of two equal keys in one object: a workload with one is refused instead,
// naming the key and where it is ("mask[].type": [] for any element of a list).
json parse_without_duplicate_keys(const std::string& path, const std::string& text) {
  struct Frame {
    std::string where;
    bool is_object;
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> frames;
  auto child_where = [&]() -> std::string {
    if (frames.empty()) return "";
    const Frame& f = frames.back();
    if (!f.is_object) return f.where + "[]";
    return f.where.empty() ? f.last_key : f.where + "." + f.last_key;
  };
  using event = json::parse_event_t;
  return json::parse(text, [&](int, event e, json& parsed) {
    switch (e) {
      case event::object_start: frames.push_back({child_where(), true, {}, {}}); break;
      case event::array_start: frames.push_back({child_where(), false, {}, {}}); break;
      case event::object_end:
      case event::array_end: frames.pop_back(); break;
      case event::key: {
        Frame& f = frames.back();
        f.last_key = parsed.get<std::string>();
        if (!f.keys.insert(f.last_key).second) {
          throw ConfigError(fmt::format("{}: key \"{}\" appears twice in {} (remove one)", path, f.last_key,
                                        f.where.empty() ? std::string("the top-level object") : f.where));
        }
        break;
      }
      default: break;
    }
    return true;
  });
}

}  // namespace

Workload load_workload(const std::string& path) {
  const std::string text = read_file(path, kMaxFileBytes);
  json doc;
  try {
    doc = parse_without_duplicate_keys(path, text);
  } catch (const json::exception&) {
    throw_not_json(path, text);
  }
  Workload w = parse_workload(doc, path);
  w.path = path;
  return w;
}

}  // namespace magi
