// A workload file (configs/*.json) resolved into plain values: one Case per point of the sweep.
// Loading validates every field; any problem is a ConfigError naming the file, the JSON path,
// the value and what was expected (or a FileError for an unreadable / non-JSON file).
#pragma once

#include "core/base/slice.h"
#include "core/model/vocabulary.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace magi {

// The largest parallel.cp a workload may ask for (configs/README.md); command-line overrides
// keep to it too.
inline constexpr int kMaxCp = 1 << 20;
// The largest parallel.compute_tflops (TFLOP/s) or comm_gbps (GB/s): anything larger is a typo.
inline constexpr double kMaxRate = 1e9;
// The longest packed sequence (and any token position) a workload may name: below 2^31, every
// mask area fits in int64.
inline constexpr int64_t kMaxTokens = int64_t{1} << 31;

enum class DocDistribution { single, fixed, uniform, lognormal, zipf, list, histogram };
std::string_view to_string(DocDistribution d);

struct HistogramBin {
  int64_t lo = 1;  // inclusive
  int64_t hi = 1;  // inclusive
  double weight = 0;
};

// How the packed sequence splits into documents (DESIGN.md §2). `single` = one document of
// total_tokens (what a workload without `sequence.documents` gets).
struct DocumentSpec {
  DocDistribution distribution = DocDistribution::single;
  std::string preset;               // a named histogram preset, e.g. "pretrain_corpus"; else ""
  int64_t tokens = 0;               // fixed: every document's length
  int64_t min_tokens = 1;           // uniform / lognormal / zipf: lengths clamped to [min, max]
  int64_t max_tokens = 0;           // 0 = no upper bound beyond the pack
  double mean_tokens = 0;           // lognormal: mean of the length distribution
  double sigma = 1.0;               // lognormal: sigma of log(length)
  double alpha = 1.5;               // zipf: exponent, P(len) ~ len^-alpha on [min, max]
  std::vector<int64_t> lengths;     // list: explicit lengths, cycled until the pack is full
  std::vector<HistogramBin> bins;   // histogram: pick a bin by weight, a length uniformly in it
  double max_doc_fraction = 0.25;   // documents longer than this fraction of the pack are cut
  uint64_t seed = 0;                // sampling seed (same on every rank)
};

enum class DispatchSolver { greedy, refine };
std::string_view to_string(DispatchSolver s);

struct ParallelSpec {
  int cp = 1;                             // context-parallel degree (groups when heads > 1)
  int heads = 1;                          // head-parallel degree h: world = cp x heads ranks,
                                          // Ulysses inside each group of h (core/plan/hybrid_plan.h)
  Strategy strategy = Strategy::magi;
  int64_t chunk_tokens = 512;
  int overlap_degree = 0;                 // 0 = auto (chosen by the cost estimate)
  DispatchSolver solver = DispatchSolver::refine;
  // Ranks per node for magi's node-aware GroupCast (0 = auto: `run` takes the MPI job's node
  // split, `plan` one node of cp ranks). Must divide cp.
  int ranks_per_node = 0;
  double compute_tflops = 400.0;          // cost estimate for `auto`: kernel rate per GPU
  double comm_gbps = 100.0;               // cost estimate for `auto`: per-rank bandwidth, GB/s
};

struct RunSpec {
  bool fwd = true;
  bool bwd = true;
  int warmup = 5;
  int iters = 20;
  bool check = false;
  uint64_t seed = 1234;                   // input tensors' seed
};

struct Case {
  std::string name;                       // "<workload>/<index>", unique in the workload
  ModelShape model;
  int64_t total_tokens = 0;
  DocumentSpec documents;
  MaskSpec mask;
  ParallelSpec parallel;
  RunSpec run;
  // The parts of the case's resolved config that do not follow from the values above, each held
  // once and shared by the cases that have it in common (resolved_config() puts the whole config
  // together):
  std::shared_ptr<const nlohmann::json> workload_config;  // {"name", "description" (when given),
                                                          //  "sequence": {"documents"}}
  std::shared_ptr<const nlohmann::json> mask_config;      // the mask point, slices included
};

struct Workload {
  std::string name;
  std::string path;                       // file it came from ("" when parsed from memory)
  nlohmann::json resolved;                // the file with defaults filled in (sweep lists kept;
                                          // "mask" is a list when the file gives alternatives)
  std::vector<Case> cases;                // the sweep, cartesian product, in a stable order:
                                          // schema order, last axis fastest (configs/README.md)
};

// A case's identity in reports. Its fully resolved config: the config that, loaded alone, gives
// this one case. It follows the case's values, so a command-line override shows in it. The
// workload's free-text `description` is left out: it is the workload's, not the case's, and a
// report holds it once (metadata.workload.resolved) rather than once per row.
nlohmann::json resolved_config(const Case& c);
// The case key: the sweep point up to cp and strategy, which matches the rows of one point across
// cp and across runs: resolved_config without the workload's name, parallel.cp and
// parallel.strategy, as compact JSON text.
std::string case_key(const Case& c);

// Reads and validates a workload file. Throws FileError (unreadable, not JSON) or ConfigError.
Workload load_workload(const std::string& path);
// Validates an already parsed document; `origin` names it in error messages.
Workload parse_workload(const nlohmann::json& doc, const std::string& origin);

}  // namespace magi
