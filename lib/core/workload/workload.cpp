// Workload loading, the orchestration: the file parsed (core/base/json_reader), each section
// read (model, parallel and run through their field tables here; sequence.documents in
// documents_config.cpp; mask in mask_config.cpp), the sweep expanded (sweep.cpp), every
// (sequence, mask) pair built once so that a bad combination fails at load (case_inputs.cpp),
// and one Case per point of the cartesian product; a case's resolved config and key are put
// together from its values here, where the values are read. configs/README.md is the schema.
#include "core/workload/workload.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"
#include "core/workload/case_inputs.h"
#include "core/workload/documents_config.h"
#include "core/workload/mask_config.h"
#include "core/workload/sweep.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <limits>
#include <memory>
#include <string_view>

namespace magi {

std::string_view to_string(DispatchSolver s) {
  switch (s) {
    case DispatchSolver::greedy: return "greedy";
    case DispatchSolver::refine: return "refine";
  }
  return "?";
}

namespace {

using json = nlohmann::json;

// Limits (configs/README.md).
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxHeadDim = 256;
constexpr int64_t kMaxOverlap = 1024;
constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
constexpr size_t kMaxNameChars = 200;
constexpr size_t kMaxFileBytes = size_t{16} << 20;

constexpr std::array kDTypes{DType::bf16, DType::fp16, DType::fp32};
constexpr std::array kStrategies{Strategy::magi, Strategy::ring, Strategy::ulysses,
                                 Strategy::allgather};
constexpr std::array kSolvers{DispatchSolver::greedy, DispatchSolver::refine};

// ---- sections as tables of fields ------------------------------------------------------------

json positive_tokens(const JsonReader& r, const std::string& p, const json& v) {
  return r.integer(p, v, 1, kMaxTokens);
}

const std::vector<Field>& model_fields() {
  static const std::vector<Field> fields = {
      {"heads_q", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxHeads);
       },
       ModelShape{}.heads_q, ""},
      {"heads_kv", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxHeads);
       },
       ModelShape{}.heads_kv, ""},
      {"head_dim", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         const int64_t d = r.integer(p, v, 8, kMaxHeadDim);
         if (d % 8 != 0) r.fail(p, "not a multiple of 8", v, "a multiple of 8 in [8, 256]");
         return d;
       },
       ModelShape{}.head_dim, ""},
      {"dtype", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, enum_names(kDTypes), "dtype");
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

const std::vector<Field>& parallel_fields() {
  static const ParallelSpec d{};
  static const std::vector<Field> fields = {
      {"cp", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxCp);
       },
       d.cp, ""},
      {"heads", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxHeads);
       },
       nullptr, ""},
      {"strategy", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, enum_names(kStrategies), "strategy");
       },
       std::string(to_string(d.strategy)), ""},
      {"chunk_tokens", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         if (v.is_string()) {  // auto: the size the cost model prefers (core/plan/planner.h)
           if (v.get_ref<const std::string&>() != "auto")
             r.fail(p, "unknown chunk size", v, fmt::format("an integer in [1, {}] or \"auto\"", kMaxTokens));
           return "auto";
         }
         return positive_tokens(r, p, v);
       },
       d.chunk_tokens, ""},
      {"overlap_degree", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
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
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.choice(p, v, enum_names(kSolvers), "solver");
       },
       std::string(to_string(d.solver)), ""},
      {"ranks_per_node", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         const std::string expected = fmt::format("an integer in [1, {}] dividing parallel.cp, or \"auto\"", kMaxCp);
         if (v.is_string()) {
           if (v.get_ref<const std::string&>() != "auto") r.fail(p, "unknown ranks per node", v, expected);
           return "auto";
         }
         if (!v.is_number()) r.fail(p, "wrong type", v, expected);
         return r.integer(p, v, 1, kMaxCp);
       },
       "auto", ""},
      {"compute_tflops", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.number(p, v, 0, kMaxRate, true);
       },
       d.compute_tflops, ""},
      {"comm_gbps", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
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
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         const char* expected = "a non-empty list of \"fwd\" and \"bwd\", each at most once";
         r.array(p, v, expected);
         if (v.empty()) r.fail(p, "no passes", v, expected);
         json out = json::array();
         for (size_t i = 0; i < v.size(); ++i) {
           const std::string pass = r.choice(item_path(p, i), v[i], {"fwd", "bwd"}, "pass");
           if (std::find(out.begin(), out.end(), pass) != out.end()) {
             r.fail(item_path(p, i), "duplicate pass", v[i], expected);
           }
           out.push_back(pass);
         }
         if (out.size() == 2) out = {"fwd", "bwd"};  // the order they run in
         return out;
       },
       json::array({"fwd", "bwd"}), ""},
      {"warmup", false,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 0, kMaxInt);
       },
       d.warmup, ""},
      {"iters", false,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
         return r.integer(p, v, 1, kMaxInt);
       },
       d.iters, ""},
      {"check", false,
       [](const JsonReader& r, const std::string& p, const json& v) -> json { return r.boolean(p, v); },
       d.check, ""},
      {"seed", false,
       [](const JsonReader& r, const std::string& p, const json& v) -> json { return r.seed(p, v); },
       d.seed, ""},
  };
  return fields;
}

const std::vector<std::string>& top_keys() {
  static const std::vector<std::string> keys = {"name", "description", "model", "sequence",
                                                "mask", "parallel",    "run"};
  return keys;
}

const std::vector<std::pair<std::string, std::vector<std::string>>>& section_keys() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> sections = {
      {"", top_keys()},
      {"model", field_keys(model_fields())},
      {"sequence", field_keys(sequence_fields())},
      {"sequence.documents", document_keys()},
      {"mask", mask_keys()},
      {"parallel", field_keys(parallel_fields())},
      {"run", field_keys(run_fields())},
  };
  return sections;
}

// The section other than the one at `path` whose keys hold `key` ("" for none): the hint for a
// key put in the wrong section.
std::string section_of_key(const std::string& path, std::string_view key) {
  for (const auto& [section, keys] : section_keys()) {
    if (child_path("", section) != path && std::find(keys.begin(), keys.end(), key) != keys.end()) {
      return section;
    }
  }
  return "";
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
  p.heads = v.contains("heads") ? v["heads"].get<int>() : 1;
  p.strategy = enum_named(v["strategy"].get<std::string>(), kStrategies);
  p.chunk_tokens = v["chunk_tokens"].is_string() ? 0 : v["chunk_tokens"].get<int64_t>();
  p.overlap_degree = v["overlap_degree"].is_string() ? 0 : v["overlap_degree"].get<int>();
  p.solver = enum_named(v["solver"].get<std::string>(), kSolvers);
  p.ranks_per_node = v["ranks_per_node"].is_string() ? 0 : v["ranks_per_node"].get<int>();
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

// The inverses of the three above: a section's resolved values from the typed ones.
json model_json(const ModelShape& m) {
  return {{"heads_q", m.heads_q},
          {"heads_kv", m.heads_kv},
          {"head_dim", m.head_dim},
          {"dtype", to_string(m.dtype)}};
}

json parallel_json(const ParallelSpec& p) {
  json out = {{"cp", p.cp},
              {"strategy", to_string(p.strategy)},
              {"chunk_tokens", p.chunk_tokens == 0 ? json("auto") : json(p.chunk_tokens)},
              {"overlap_degree", p.overlap_degree == 0 ? json("auto") : json(p.overlap_degree)},
              {"solver", to_string(p.solver)},
              {"ranks_per_node", p.ranks_per_node == 0 ? json("auto") : json(p.ranks_per_node)},
              {"compute_tflops", p.compute_tflops},
              {"comm_gbps", p.comm_gbps}};
  // Absent at its default, so that the case keys of results without it stay what they were.
  if (p.heads != 1) out["heads"] = p.heads;
  return out;
}

json run_json(const RunSpec& run) {
  json passes = json::array();
  if (run.fwd) passes.push_back("fwd");
  if (run.bwd) passes.push_back("bwd");
  return {{"passes", std::move(passes)},
          {"warmup", run.warmup},
          {"iters", run.iters},
          {"check", run.check},
          {"seed", run.seed}};
}

// A section object, or an empty one when absent.
const json& section(const JsonReader& r, const json& doc, const char* key) {
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


}  // namespace

Workload parse_workload(const json& doc, const std::string& origin) {
  const JsonReader r(origin, section_of_key);
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
  const std::vector<SweepPoint> models =
      expand_sweep(r, "model", section(r, doc, "model"), model_fields(), model_resolved);
  for (const SweepPoint& m : models) {
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
  const std::vector<SweepPoint> lengths =
      expand_sweep(r, "sequence", seq, sequence_fields(), sequence_resolved);
  DocumentSpec documents;
  json documents_resolved = {{"distribution", "single"}};
  if (const auto it = seq.find("documents"); it != seq.end()) {
    documents = read_documents(r, "sequence.documents", *it, documents_resolved);
  }
  sequence_resolved["documents"] = documents_resolved;

  const std::vector<MaskSweepPoint> masks =
      read_masks(r, doc.contains("mask") ? doc["mask"] : json::object(), mask_resolved);
  const std::vector<SweepPoint> parallels =
      expand_sweep(r, "parallel", section(r, doc, "parallel"), parallel_fields(), parallel_resolved);
  for (const SweepPoint& p : parallels) {
    const int64_t cp = p.values["cp"].get<int64_t>();
    const json& rpn = p.values["ranks_per_node"];
    if (rpn.is_number() && cp % rpn.get<int64_t>() != 0) {
      r.fail(p.paths.at("ranks_per_node"), "does not divide parallel.cp", rpn,
             fmt::format("a divisor of {} = {} (whole nodes of equal size), or \"auto\"", p.paths.at("cp"), cp));
    }
  }
  const std::vector<SweepPoint> runs =
      expand_sweep(r, "run", section(r, doc, "run"), run_fields(), run_resolved);
  MAGI_CHECK(runs.size() == 1, "run fields are not sweepable");
  const RunSpec run = run_of(runs.front().values);
  // Head parallelism combines with a context strategy between groups: magi or ring.
  for (const SweepPoint& p : parallels) {
    if (!p.values.contains("heads")) continue;
    const int64_t heads = p.values["heads"].get<int64_t>();
    const int64_t cp = p.values["cp"].get<int64_t>();
    const std::string strategy = p.values["strategy"].get<std::string>();
    if (heads > 1 && strategy != "magi" && strategy != "ring") {
      r.fail(p.paths.at("heads"), "head parallelism with a strategy that has its own layout", p.values["heads"],
             fmt::format("1 with {} = \"{}\" (parallel.heads > 1 runs Ulysses inside groups of that many "
                         "ranks and magi or ring between them)", p.paths.at("strategy"), strategy));
    }
    const json& rpn = p.values["ranks_per_node"];
    if (heads > 1 && rpn.is_number() && rpn.get<int64_t>() != cp) {
      r.fail(p.paths.at("ranks_per_node"), "node-aware routing between head groups is not built", rpn,
             fmt::format("\"auto\" or {} (one node) with {} > 1", p.paths.at("cp"), p.paths.at("heads")));
    }
    if (heads * cp > kMaxCp) {
      r.fail(p.paths.at("heads"), "too many ranks", p.values["heads"],
             fmt::format("parallel.heads x {} = {} <= {} ranks", p.paths.at("cp"), cp, kMaxCp));
    }
  }

  int64_t count = 1;
  for (size_t n : {models.size(), lengths.size(), masks.size(), parallels.size()}) {
    count *= static_cast<int64_t>(n);  // each factor <= kMaxCases, so no overflow before the check
    if (count > kMaxCases) {
      too_many_cases(r, count,
                     fmt::format("{} x {} x {} x {} points of model, sequence, mask, parallel",
                                 models.size(), lengths.size(), masks.size(), parallels.size()));
    }
  }

  // Every (sequence length, mask) pair must build, as every command builds it, so that a bad
  // combination fails here, before any work starts.
  for (const SweepPoint& len : lengths) {
    const int64_t total = len.values["total_tokens"].get<int64_t>();
    for (const MaskSweepPoint& m : masks) {
      try {
        build_case_inputs(documents, m.spec, total);
      } catch (const ConfigError& e) {
        throw ConfigError(fmt::format("{}: {}", origin, relocate_mask_message(e.what(), m)));
      }
    }
  }

  w.resolved["model"] = model_resolved;
  w.resolved["sequence"] = sequence_resolved;
  w.resolved["mask"] = mask_resolved;
  w.resolved["parallel"] = parallel_resolved;
  w.resolved["run"] = run_resolved;

  json workload_config = {{"name", w.name}, {"sequence", {{"documents", documents_resolved}}}};
  if (w.resolved.contains("description")) {
    workload_config["description"] = w.resolved["description"];
  }
  const auto shared_config = std::make_shared<const json>(std::move(workload_config));

  w.cases.reserve(static_cast<size_t>(count));
  for (const SweepPoint& m : models) {
    for (const SweepPoint& len : lengths) {
      for (const MaskSweepPoint& mask : masks) {
        for (const SweepPoint& p : parallels) {
          Case c;
          c.name = fmt::format("{}/{}", w.name, w.cases.size());
          c.model = model_of(m.values);
          c.total_tokens = len.values["total_tokens"].get<int64_t>();
          c.documents = documents;
          c.mask = mask.spec;
          c.parallel = parallel_of(p.values);
          c.run = run;
          c.workload_config = shared_config;
          c.mask_config = mask.resolved;
          w.cases.push_back(std::move(c));
        }
      }
    }
  }
  return w;
}

json resolved_config(const Case& c) {
  MAGI_CHECK(c.workload_config && c.mask_config, "case {} was not loaded from a workload", c.name);
  json out = *c.workload_config;
  out.erase("description");
  out["model"] = model_json(c.model);
  out["sequence"]["total_tokens"] = c.total_tokens;
  out["mask"] = *c.mask_config;
  out["parallel"] = parallel_json(c.parallel);
  out["run"] = run_json(c.run);
  return out;
}

std::string case_key(const Case& c) {
  json key = resolved_config(c);
  key.erase("name");
  // One node (auto, or every rank) is the flat plan that existed before the field: the same key.
  const json& rpn = key["parallel"]["ranks_per_node"];
  if (rpn.is_string() || rpn.get<int>() == c.parallel.cp) key["parallel"].erase("ranks_per_node");
  key["parallel"].erase("cp");
  key["parallel"].erase("strategy");
  return key.dump();
}

Workload load_workload(const std::string& path) {
  Workload w = parse_workload(parse_json(path, read_file(path, kMaxFileBytes)), path);
  w.path = path;
  return w;
}

}  // namespace magi
