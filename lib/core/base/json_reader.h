// Reading a JSON input file on the user's behalf: parsing (no key twice in one object, bounded
// nesting, nothing after the value), JSON paths for messages, values rendered bounded in
// messages, and typed fields checked against what is expected. It knows no section of any file
// format: callers name the paths and the expectations. Every problem is one line:
//   <origin>: <path>: <problem>; got <value>, expected <what>
// and no input, however large or deep, makes a message long or slow to build.
#pragma once

#include "core/base/error.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

// Objects and lists may nest this deep (the top-level value is depth 1). The parser and every
// walk over a value recurse once per level, so the depth is refused before any of that work.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`, read from `origin` (a file name). Throws FileError
//   "<origin>: not valid JSON at line L, column C: <reason>"
// for text that is not one JSON value (a NUL byte anywhere included: the parser would take it as
// the end of the text), and ConfigError naming the place for a key given twice in one object or
// for nesting deeper than kMaxJsonDepth. Time and memory are linear in the text's size.
nlohmann::json parse_json(const std::string& origin, const std::string& text);

// `s` as a JSON-like string literal for messages: at most 60 bytes of it, "..." when cut,
// quotes, backslashes and control characters escaped, bytes that are not UTF-8 as \xNN.
std::string quote(std::string_view s);
// `s` with bytes that are not UTF-8 and control characters as \xNN, cut to max_bytes ("..."):
// for text quoted from elsewhere (a parser's message).
std::string printable(std::string_view s, size_t max_bytes);
// A value on one line of at most about 120 characters, whatever its size or depth.
std::string show(const nlohmann::json& v);

// JSON paths in messages: "parallel.cp", "mask[2].window", "model[\"odd key\"]". A key that is
// not a short identifier is quoted (and so clipped) by quote().
std::string child_path(const std::string& path, std::string_view key);
std::string item_path(const std::string& path, size_t index);

// Enumerations named by their to_string(): the names of `all`, and the enumerator named `name`
// (which must be one of them: callers validate first).
template <class E, size_t N>
std::vector<std::string> enum_names(const std::array<E, N>& all) {
  std::vector<std::string> names;
  for (E e : all) names.emplace_back(to_string(e));
  return names;
}
template <class E, size_t N>
E enum_named(std::string_view name, const std::array<E, N>& all) {
  for (E e : all) {
    if (to_string(e) == name) return e;
  }
  throw InternalError(fmt::format("\"{}\" names no enumerator", name));
}

// Typed access to parsed values; every failure throws ConfigError in the one-line form above.
class JsonReader {
 public:
  // Where else an unknown key belongs: given the object's path and the key, a place to name in
  // the hint ("parallel"), or "" for none.
  using KeyHome = std::function<std::string(const std::string& path, std::string_view key)>;

  explicit JsonReader(std::string origin, KeyHome key_home = nullptr)
      : origin_(std::move(origin)), key_home_(std::move(key_home)) {}

  const std::string& origin() const { return origin_; }

  // `got` already rendered (show(), quote(), or a description such as "3 slices").
  [[noreturn]] void fail_text(const std::string& path, std::string_view problem,
                              std::string_view got, std::string_view expected) const;
  [[noreturn]] void fail(const std::string& path, std::string_view problem,
                         const nlohmann::json& got, std::string_view expected) const;
  [[noreturn]] void missing(const std::string& path, std::string_view expected) const;

  // An integer in [lo, hi]; integral floats (2048.0, 1e3) count as integers.
  int64_t integer(const std::string& path, const nlohmann::json& v, int64_t lo, int64_t hi) const;
  // An integer in [0, 2^64 - 1].
  uint64_t seed(const std::string& path, const nlohmann::json& v) const;
  // A finite number in [lo, hi] ((lo, hi] when lo_open).
  double number(const std::string& path, const nlohmann::json& v, double lo, double hi,
                bool lo_open) const;
  bool boolean(const std::string& path, const nlohmann::json& v) const;
  // A string, one of `allowed`; `what` names the kind in the problem ("unknown dtype").
  std::string choice(const std::string& path, const nlohmann::json& v,
                     const std::vector<std::string>& allowed, std::string_view what) const;
  template <class E, size_t N>
  E enumerator(const std::string& path, const nlohmann::json& v, const std::array<E, N>& all,
               std::string_view what) const {
    return enum_named(choice(path, v, enum_names(all), what), all);
  }
  // `v` itself when it is an object (a list); `what` says what was expected.
  const nlohmann::json& object(const std::string& path, const nlohmann::json& v,
                               std::string_view what) const;
  const nlohmann::json& array(const std::string& path, const nlohmann::json& v,
                              std::string_view what) const;
  // Every key of the object `obj` must be in `known`; an unknown one is named with the closest
  // known key, or else with where key_home says it belongs.
  void known_keys(const std::string& path, const nlohmann::json& obj,
                  const std::vector<std::string>& known) const;

 private:
  std::string origin_;
  KeyHome key_home_;
};

}  // namespace magi
