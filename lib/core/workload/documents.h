// Document lengths of a packed sequence (DESIGN.md §2): drawn from a DocumentSpec with a seeded
// generator whose transforms are written here, so the same spec gives the same lengths on every
// rank, compiler and standard library.
#pragma once

#include "core/workload/workload.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

// The most documents one pack may hold; sampling more is a ConfigError on `sequence.documents`.
inline constexpr int64_t kMaxDocuments = int64_t{1} << 20;

// Lengths (each >= 1) summing exactly to total_tokens, in pack order. Lengths are drawn from the
// distribution in order; a drawn length longer than max(1, floor(max_doc_fraction * total_tokens))
// is cut into pieces of at most that size; the last document is cut at the end of the pack.
// `single` gives {total_tokens}. Deterministic in (spec, total_tokens).
// Throws ConfigError when the pack would hold more than kMaxDocuments documents.
std::vector<int64_t> sample_documents(const DocumentSpec& spec, int64_t total_tokens);

// Summary of a list of lengths. Quantiles are nearest-rank: pX = the ceil(X/100 * count)-th
// smallest length. All zero for an empty list.
struct DocumentStats {
  int64_t count = 0;
  int64_t min = 0;
  int64_t p50 = 0;
  int64_t p90 = 0;
  int64_t p99 = 0;
  int64_t max = 0;
  double mean = 0;
};
DocumentStats document_stats(const std::vector<int64_t>& lengths);
// The stats as reports write them: {"count", "min", "p50", "p90", "p99", "max", "mean"}.
nlohmann::json to_json(const DocumentStats& s);

// Named histogram presets ("pretrain_corpus": the real-corpus histogram of DESIGN.md §2, weights
// in percent of documents).
const std::vector<std::string>& histogram_preset_names();
std::optional<std::vector<HistogramBin>> histogram_preset(std::string_view name);

}  // namespace magi
