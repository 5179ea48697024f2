#include "core/workload/sweep.h"

#include <fmt/format.h>

namespace magi {

using json = nlohmann::json;

std::vector<std::string> field_keys(const std::vector<Field>& fields) {
  std::vector<std::string> keys;
  for (const Field& f : fields) keys.push_back(f.key);
  return keys;
}

void too_many_cases(const JsonReader& r, int64_t count_at_least, std::string_view where) {
  r.fail_text("sweep", "too many cases", fmt::format("at least {} ({})", count_at_least, where),
              fmt::format("at most {}", kMaxCases));
}

std::vector<SweepPoint> expand_sweep(const JsonReader& r, const std::string& path, const json& obj,
                                     const std::vector<Field>& fields, json& resolved) {
  r.known_keys(path, obj, field_keys(fields));
  std::vector<SweepPoint> points(1);
  resolved = json::object();
  for (const Field& f : fields) {
    if (!f.check) continue;
    const std::string p = child_path(path, f.key);
    for (SweepPoint& point : points) point.paths[f.key] = p;
    const auto it = obj.find(f.key);
    if (it == obj.end()) {
      if (!f.required.empty()) r.missing(p, f.required);
      if (f.fallback.is_null()) continue;
      for (SweepPoint& point : points) point.values[f.key] = f.fallback;
      resolved[f.key] = f.fallback;
      continue;
    }
    std::vector<std::pair<json, std::string>> choices;  // (normalized value, its path)
    if (f.sweepable && it->is_array()) {
      if (it->empty()) r.fail(p, "empty sweep", *it, "a value or a non-empty list of values");
      for (size_t i = 0; i < it->size(); ++i) {
        choices.emplace_back(f.check(r, item_path(p, i), (*it)[i]), item_path(p, i));
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
    std::vector<SweepPoint> next;
    next.reserve(static_cast<size_t>(count));
    for (const SweepPoint& base : points) {
      for (const auto& [value, value_path] : choices) {
        SweepPoint point = base;
        point.values[f.key] = value;
        point.paths[f.key] = value_path;
        next.push_back(std::move(point));
      }
    }
    points = std::move(next);
  }
  return points;
}

}  // namespace magi
