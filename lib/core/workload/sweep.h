// The sweep engine (configs/README.md): a workload section is read through a table of fields; a
// scalar field given as a list is a sweep axis, and the section's sweep points are the cartesian
// product of its axes, fields in table order, the last one varying fastest.
#pragma once

#include "core/base/json_reader.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

// The most cases one workload may expand to (configs/README.md).
inline constexpr int64_t kMaxCases = 10000;

// Validates one scalar value at `path` and returns its normalized form.
using FieldCheck = nlohmann::json (*)(const JsonReader& r, const std::string& path,
                                      const nlohmann::json& v);

struct Field {
  std::string key;
  bool sweepable = true;
  FieldCheck check = nullptr;  // nullptr: a structured field its section reads itself
  nlohmann::json fallback;     // the default; null = stays absent
  std::string required;        // non-empty: the key must be present; this says what is expected
};

// One point of a section's sweep: its normalized scalars, and where each came from in the file.
struct SweepPoint {
  nlohmann::json values = nlohmann::json::object();
  std::map<std::string, std::string> paths;  // key -> "parallel.cp[1]" (or "parallel.cp")
};

std::vector<std::string> field_keys(const std::vector<Field>& fields);

// Expands the section object `obj` at `path` into its sweep points. `resolved` receives the
// section with defaults filled in and sweep lists kept as (normalized) lists. Throws ConfigError
// for an unknown key, a bad value, an empty list or more than kMaxCases points.
std::vector<SweepPoint> expand_sweep(const JsonReader& r, const std::string& path,
                                     const nlohmann::json& obj, const std::vector<Field>& fields,
                                     nlohmann::json& resolved);

// The ConfigError for a sweep of more than kMaxCases cases; `where` says which axes.
[[noreturn]] void too_many_cases(const JsonReader& r, int64_t count_at_least,
                                 std::string_view where);

}  // namespace magi
