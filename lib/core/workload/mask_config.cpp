#include "core/workload/mask_config.h"

#include "core/mask/catalogue.h"
#include "core/workload/workload.h"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <memory>

namespace magi {

namespace {

using json = nlohmann::json;

constexpr int64_t kMaxSlices = int64_t{1} << 20;

constexpr std::array kSliceTypes{SliceType::full, SliceType::causal, SliceType::inv_causal,
                                 SliceType::bi_causal};

Range read_range(const JsonReader& r, const std::string& path, const json& v) {
  const char* expected = "[start, end] with 0 <= start <= end (half-open token range)";
  r.array(path, v, expected);
  if (v.size() != 2) r.fail(path, "not a pair", v, expected);
  const int64_t start = r.integer(item_path(path, 0), v[0], 0, kMaxTokens);
  const int64_t end = r.integer(item_path(path, 1), v[1], 0, kMaxTokens);
  if (end < start) r.fail(path, "reversed range", v, expected);
  return {start, end};
}

std::vector<AttnSlice> read_slices(const JsonReader& r, const std::string& path, const json& v) {
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
    const std::string sp = item_path(path, i);
    const json& s = r.object(sp, v[i], expected);
    r.known_keys(sp, s, {"q", "k", "type"});
    for (const char* key : {"q", "k", "type"}) {
      if (!s.contains(key)) r.missing(child_path(sp, key), expected);
    }
    AttnSlice slice;
    slice.q = read_range(r, child_path(sp, "q"), s["q"]);
    slice.k = read_range(r, child_path(sp, "k"), s["k"]);
    slice.type = r.enumerator(child_path(sp, "type"), s["type"], kSliceTypes, "slice type");
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

json optional_tokens(const JsonReader& r, const std::string& p, const json& v) {
  return r.integer(p, v, 0, kMaxTokens);
}

const std::vector<Field>& mask_fields() {
  static const std::vector<Field> fields = {
      {"type", true,
       [](const JsonReader& r, const std::string& p, const json& v) -> json {
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

MaskSpec mask_spec_of(const json& values, const std::vector<AttnSlice>& slices) {
  MaskSpec spec;
  spec.type = values["type"].get<std::string>();
  auto param = [&](const char* key) {
    return values.contains(key) ? values[key].get<int64_t>() : 0;
  };
  spec.window = param("window");
  spec.block_tokens = param("block_tokens");
  spec.prefix_tokens = param("prefix_tokens");
  spec.sink_tokens = param("sink_tokens");
  spec.question_tokens = param("question_tokens");
  spec.slices = slices;
  return spec;
}

}  // namespace

std::vector<std::string> mask_keys() { return field_keys(mask_fields()); }

std::vector<MaskSweepPoint> read_masks(const JsonReader& r, const json& v, json& resolved) {
  const char* expected = "an object {\"type\": ..., parameters} or a non-empty list of them";
  std::vector<std::pair<std::string, const json*>> alternatives;
  if (v.is_array()) {
    if (v.empty()) r.fail("mask", "empty sweep", v, expected);
    for (size_t i = 0; i < v.size(); ++i) alternatives.emplace_back(item_path("mask", i), &v[i]);
    resolved = json::array();
  } else {
    alternatives.emplace_back("mask", &v);
  }
  std::vector<MaskSweepPoint> out;
  for (const auto& [path, alt] : alternatives) {
    r.object(path, *alt, expected);
    json alt_resolved;
    std::vector<SweepPoint> points = expand_sweep(r, path, *alt, mask_fields(), alt_resolved);
    std::vector<AttnSlice> slices;
    if (const auto it = alt->find("slices"); it != alt->end()) {
      slices = read_slices(r, child_path(path, "slices"), *it);
      alt_resolved["slices"] = slices_to_json(slices);
    }
    if (static_cast<int64_t>(out.size() + points.size()) > kMaxCases) {
      too_many_cases(r, static_cast<int64_t>(out.size() + points.size()), "mask");
    }
    for (SweepPoint& p : points) {
      json point_resolved = p.values;
      if (alt->contains("slices")) point_resolved["slices"] = alt_resolved["slices"];
      p.paths["slices"] = child_path(path, "slices");
      out.push_back({mask_spec_of(p.values, slices),
                     std::make_shared<const json>(std::move(point_resolved)), std::move(p.paths)});
    }
    if (v.is_array()) {
      resolved.push_back(std::move(alt_resolved));
    } else {
      resolved = std::move(alt_resolved);
    }
  }
  return out;
}

std::string relocate_mask_message(const std::string& message, const MaskSweepPoint& point) {
  constexpr std::string_view prefix = "mask.";
  if (!message.starts_with(prefix)) return message;
  size_t end = prefix.size();
  while (end < message.size() && (std::isalnum(static_cast<unsigned char>(message[end])) ||
                                  message[end] == '_')) {
    ++end;
  }
  const auto it = point.paths.find(message.substr(prefix.size(), end - prefix.size()));
  return it == point.paths.end() ? message : it->second + message.substr(end);
}

}  // namespace magi
