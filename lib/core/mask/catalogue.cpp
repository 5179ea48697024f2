// The mask catalogue as one table: each entry names a mask, the MaskSpec fields it reads and a
// generator that writes its slices per document (or per block), never per token.
#include "core/mask/catalogue.h"

#include "core/base/error.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <string_view>

namespace magi {
namespace {

// The MaskSpec fields a type may read; every other field must be left at its default.
enum Param : unsigned {
  kWindow = 1u << 0,
  kBlock = 1u << 1,
  kPrefix = 1u << 2,
  kSink = 1u << 3,
  kQuestion = 1u << 4,
  kSlices = 1u << 5,
};

using Slices = std::vector<AttnSlice>;
using Docs = std::vector<int64_t>;
using Generator = Slices (*)(const MaskSpec&, int64_t total_tokens, const Docs&);

struct MaskKind {
  std::string_view name;
  bool uses_documents;
  unsigned params;
  Generator build;
};

// Appends the slice unless it covers no pair.
void add(Slices& out, Range q, Range k, SliceType type) {
  const AttnSlice s{q, k, type};
  if (slice_area(s) > 0) out.push_back(s);
}

// Calls f(start, length) for each document, in order.
template <class F>
void for_each_doc(const Docs& docs, F&& f) {
  int64_t start = 0;
  for (int64_t len : docs) {
    f(start, len);
    start += len;
  }
}

// q sees k in [q - w, q] inside [ds, ds + len): a causal head over the first w tokens and a band of
// width w + 1 (bi_causal with lk - lq = w) for the rest.
void add_window(Slices& out, int64_t ds, int64_t len, int64_t w) {
  const int64_t head = std::min(w, len);
  add(out, {ds, ds + head}, {ds, ds + head}, SliceType::causal);
  if (len > w) add(out, {ds + w, ds + len}, {ds, ds + len}, SliceType::bi_causal);
}

// Blocks of b tokens restarting at ds: the queries of a block see every key up to the block's end.
void add_blocks(Slices& out, int64_t ds, int64_t len, int64_t b) {
  for (int64_t off = 0; off < len;) {
    const int64_t end = off + std::min(b, len - off);
    add(out, {ds + off, ds + end}, {ds, ds + end}, SliceType::full);
    off = end;
  }
}

Slices gen_full(const MaskSpec&, int64_t s, const Docs&) {
  return {AttnSlice{{0, s}, {0, s}, SliceType::full}};
}

Slices gen_causal(const MaskSpec&, int64_t s, const Docs&) {
  return {AttnSlice{{0, s}, {0, s}, SliceType::causal}};
}

Slices gen_varlen_full(const MaskSpec&, int64_t, const Docs& docs) {
  Slices out;
  out.reserve(docs.size());
  for_each_doc(docs, [&](int64_t ds, int64_t len) {
    add(out, {ds, ds + len}, {ds, ds + len}, SliceType::full);
  });
  return out;
}

Slices gen_varlen_causal(const MaskSpec&, int64_t, const Docs& docs) {
  Slices out;
  out.reserve(docs.size());
  for_each_doc(docs, [&](int64_t ds, int64_t len) {
    add(out, {ds, ds + len}, {ds, ds + len}, SliceType::causal);
  });
  return out;
}

Slices gen_sliding_window(const MaskSpec& m, int64_t s, const Docs&) {
  Slices out;
  add_window(out, 0, s, m.window);
  return out;
}

Slices gen_varlen_sliding_window(const MaskSpec& m, int64_t, const Docs& docs) {
  Slices out;
  out.reserve(2 * docs.size());
  for_each_doc(docs, [&](int64_t ds, int64_t len) { add_window(out, ds, len, m.window); });
  return out;
}

size_t block_count(int64_t len, int64_t b) { return static_cast<size_t>(len / b + (len % b != 0)); }

Slices gen_block_causal(const MaskSpec& m, int64_t s, const Docs&) {
  Slices out;
  out.reserve(block_count(s, m.block_tokens));
  add_blocks(out, 0, s, m.block_tokens);
  return out;
}

Slices gen_varlen_block_causal(const MaskSpec& m, int64_t, const Docs& docs) {
  size_t n = 0;
  for (int64_t len : docs) n += block_count(len, m.block_tokens);
  Slices out;
  out.reserve(n);
  for_each_doc(docs, [&](int64_t ds, int64_t len) { add_blocks(out, ds, len, m.block_tokens); });
  return out;
}

// The question [0, qn) is causal; every answer sees the whole question (one full slice for all
// answers) and itself causally. Answers are the documents cut at qn.
Slices gen_shared_question(const MaskSpec& m, int64_t s, const Docs& docs) {
  const int64_t qn = std::min(m.question_tokens, s);
  Slices out;
  out.reserve(docs.size() + 2);
  add(out, {0, qn}, {0, qn}, SliceType::causal);
  add(out, {qn, s}, {0, qn}, SliceType::full);
  for_each_doc(docs, [&](int64_t ds, int64_t len) {
    const Range answer = intersect({ds, ds + len}, {qn, s});
    add(out, answer, answer, SliceType::causal);
  });
  return out;
}

// Queries in the prefix see the whole prefix; later queries see every key up to themselves.
Slices gen_prefix_lm(const MaskSpec& m, int64_t s, const Docs&) {
  const int64_t p = m.prefix_tokens;
  Slices out;
  add(out, {0, p}, {0, p}, SliceType::full);
  add(out, {p, s}, {0, s}, SliceType::causal);
  return out;
}

// Rows q <= sink + w see the contiguous [0, q]: one causal head. Later rows see the sink and a
// window separated by a gap: a full slice onto the sink and a band of width w + 1.
Slices gen_sink_sliding_window(const MaskSpec& m, int64_t s, const Docs&) {
  const int64_t sink = std::min(m.sink_tokens, s);
  const int64_t w = m.window;
  const int64_t head = w >= s - sink ? s : sink + w + 1;
  Slices out;
  add(out, {0, head}, {0, head}, SliceType::causal);
  add(out, {head, s}, {0, sink}, SliceType::full);
  add(out, {head, s}, {head - w, s}, SliceType::bi_causal);
  return out;
}

// The explicit list, unchanged once checked.
Slices gen_slices(const MaskSpec& m, int64_t s, const Docs&) {
  if (m.slices.empty()) {
    throw ConfigError("mask.slices: got an empty list, expected at least one slice for type slices");
  }
  auto check_range = [&](size_t i, const char* field, Range r) {
    if (r.start < 0 || r.end < r.start || r.end > s) {
      throw ConfigError(fmt::format(
          "mask.slices[{}].{}: got [{}, {}], expected 0 <= start <= end <= total_tokens = {}", i,
          field, r.start, r.end, s));
    }
  };
  for (size_t i = 0; i < m.slices.size(); ++i) {
    check_range(i, "q", m.slices[i].q);
    check_range(i, "k", m.slices[i].k);
  }
  if (auto pair = find_double_cover(m.slices)) {
    const auto [a, b] = *pair;
    throw ConfigError(fmt::format(
        "mask.slices: got mask.slices[{}] = {} and mask.slices[{}] = {} covering a common (q, k) "
        "pair, expected every pair covered at most once",
        a, m.slices[a], b, m.slices[b]));
  }
  return m.slices;
}

constexpr std::array<MaskKind, 12> kCatalogue{{
    {"full", false, 0, gen_full},
    {"causal", false, 0, gen_causal},
    {"varlen_full", true, 0, gen_varlen_full},
    {"varlen_causal", true, 0, gen_varlen_causal},
    {"sliding_window", false, kWindow, gen_sliding_window},
    {"varlen_sliding_window", true, kWindow, gen_varlen_sliding_window},
    {"block_causal", false, kBlock, gen_block_causal},
    {"varlen_block_causal", true, kBlock, gen_varlen_block_causal},
    {"shared_question", true, kQuestion, gen_shared_question},
    {"prefix_lm", false, kPrefix, gen_prefix_lm},
    {"sink_sliding_window", false, kSink | kWindow, gen_sink_sliding_window},
    {"slices", false, kSlices, gen_slices},
}};

const MaskKind& find_kind(const std::string& type) {
  for (const MaskKind& k : kCatalogue) {
    if (k.name == type) return k;
  }
  throw ConfigError(fmt::format("mask.type: got \"{}\", expected one of {}", type,
                                fmt::join(mask_types(), ", ")));
}

// The types that read `param`, for error messages.
std::string users_of(unsigned param) {
  std::vector<std::string_view> names;
  for (const MaskKind& k : kCatalogue) {
    if (k.params & param) names.push_back(k.name);
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

void require_unset(const MaskKind& kind, unsigned param, const char* field, bool is_set,
                   const std::string& value) {
  if (!(kind.params & param) && is_set) {
    throw ConfigError(fmt::format("mask.{}: got {}, expected it unset for {} (only {} use it)",
                                  field, value, kind.name, users_of(param)));
  }
}

void require_at_least(int64_t value, int64_t min, const char* field, std::string_view type) {
  if (value < min) {
    throw ConfigError(fmt::format("mask.{}: got {}, expected an integer >= {} for {}", field,
                                  value, min, type));
  }
}

// Block masks make one slice per block, so a small block over a long sequence asks for more
// memory than a machine has (16-token blocks over 2^31 tokens: 2^27 slices, 5 GB before any plan);
// explicit slice lists have the same bound (configs/README.md).
constexpr int64_t kMaxBlockSlices = int64_t{1} << 22;

void validate_params(const MaskKind& kind, const MaskSpec& m, int64_t s, size_t num_docs) {
  auto num = [](int64_t v) { return std::to_string(v); };
  require_unset(kind, kWindow, "window", m.window != 0, num(m.window));
  require_unset(kind, kBlock, "block_tokens", m.block_tokens != 0, num(m.block_tokens));
  require_unset(kind, kPrefix, "prefix_tokens", m.prefix_tokens != 0, num(m.prefix_tokens));
  require_unset(kind, kSink, "sink_tokens", m.sink_tokens != 0, num(m.sink_tokens));
  require_unset(kind, kQuestion, "question_tokens", m.question_tokens != 0, num(m.question_tokens));
  require_unset(kind, kSlices, "slices", !m.slices.empty(),
                fmt::format("a list of {} slice(s)", m.slices.size()));

  if (kind.params & kWindow) require_at_least(m.window, 1, "window", kind.name);
  if (kind.params & kBlock) {
    require_at_least(m.block_tokens, 1, "block_tokens", kind.name);
    // With documents, at most one partial block per document beyond s / block_tokens.
    const int64_t partial = kind.uses_documents ? static_cast<int64_t>(num_docs) : (s % m.block_tokens != 0);
    const int64_t blocks = s / m.block_tokens + partial;
    if (blocks > kMaxBlockSlices) {
      throw ConfigError(fmt::format(
          "mask.block_tokens: got {}, which makes up to {} blocks (one slice each) over total_tokens = "
          "{}; expected at most {} blocks (a larger block_tokens)",
          m.block_tokens, blocks, s, kMaxBlockSlices));
    }
  }
  if (kind.params & kQuestion) require_at_least(m.question_tokens, 1, "question_tokens", kind.name);
  if (kind.params & kSink) require_at_least(m.sink_tokens, 0, "sink_tokens", kind.name);
  if ((kind.params & kPrefix) && (m.prefix_tokens < 0 || m.prefix_tokens > s)) {
    throw ConfigError(fmt::format(
        "mask.prefix_tokens: got {}, expected an integer in [0, total_tokens = {}] for {}",
        m.prefix_tokens, s, kind.name));
  }
}

}  // namespace

const std::vector<std::string>& mask_types() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const MaskKind& k : kCatalogue) v.emplace_back(k.name);
    return v;
  }();
  return names;
}

bool mask_uses_documents(const std::string& type) { return find_kind(type).uses_documents; }

std::vector<AttnSlice> build_mask(const MaskSpec& spec, int64_t total_tokens,
                                  const std::vector<int64_t>& doc_lengths) {
  MAGI_CHECK(total_tokens >= 1, "total_tokens = {}", total_tokens);
  int64_t sum = 0;
  for (int64_t len : doc_lengths) {
    MAGI_CHECK(len >= 1, "document length {} is not positive", len);
    sum += len;
  }
  MAGI_CHECK(sum == total_tokens, "document lengths sum to {}, not total_tokens = {}", sum,
             total_tokens);
  const MaskKind& kind = find_kind(spec.type);
  validate_params(kind, spec, total_tokens, doc_lengths.size());
  return kind.build(spec, total_tokens, doc_lengths);
}

}  // namespace magi
