#include "core/base/json_reader.h"

#include "core/base/suggest.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace magi {

namespace {

using json = nlohmann::json;

// The length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
size_t utf8_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

// Appends s[0, max_bytes) with bytes that are not UTF-8 as \xNN; control characters as JSON
// escapes when `json_escapes` (quotes and backslashes too), else as \xNN. Returns whether `s` was
// cut.
bool append_escaped(std::string& out, std::string_view s, size_t max_bytes, bool json_escapes) {
  const size_t end = std::min(s.size(), max_bytes);
  for (size_t i = 0; i < end;) {
    const char c = s[i];
    const size_t n = utf8_length(s, i);
    if (n == 0) {
      out += fmt::format("\\x{:02X}", static_cast<unsigned char>(c));
      ++i;
      continue;
    }
    if (n > 1) {
      if (i + n > end) break;  // a character cut in two stays out whole
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
    const bool control = static_cast<unsigned char>(c) < 0x20 || c == 0x7F;
    if (!json_escapes) {
      if (control) {
        out += fmt::format("\\x{:02X}", static_cast<unsigned char>(c));
      } else {
        out += c;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (control) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return s.size() > max_bytes;
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

bool is_identifier(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// Line and column of a position as nlohmann counts them: `read` characters were read, the
// offending one (or the end of the text, which counts as one more) included; the column counts
// from the line's start.
std::string location(const std::string& text, size_t read) {
  const size_t in_text = std::min(read, text.size());
  const auto end = text.begin() + static_cast<std::ptrdiff_t>(in_text);
  const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), end, '\n'));
  const size_t newline = in_text == 0 ? std::string::npos : text.rfind('\n', in_text - 1);
  const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
  return fmt::format("line {}, column {}", line, read - line_start);
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
  // nlohmann's text without its "[json.exception...] " tag and "parse error at line..: " lead;
  // it quotes what it last read, which may be long or not UTF-8.
  std::string reason() const {
    std::string r = reason_;
    if (r.starts_with("[json.exception.")) r = r.substr(std::min(r.size(), r.find("] ") + 2));
    if (r.starts_with("parse error at line")) r = r.substr(std::min(r.size(), r.find(": ") + 2));
    return printable(r, 300);
  }

 private:
  size_t position_ = 0;
  std::string reason_ = "unknown error";
};

[[noreturn]] void throw_not_json(const std::string& origin, const std::string& text,
                                 size_t read, const std::string& reason) {
  throw FileError(
      fmt::format("{}: not valid JSON at {}: {}", origin, location(text, read), reason));
}

// Refuses what the parser would accept wrongly (a NUL byte ends its text) or build at a cost
// that grows with the depth, in one pass before any parsing.
void check_bytes_and_depth(const std::string& origin, const std::string& text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\0') {
      throw_not_json(origin, text, i + 1, "a NUL byte (0x00), which JSON text cannot hold");
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        throw ConfigError(fmt::format(
            "{}: {}: nested too deep; got more than {} levels of objects and lists, expected at "
            "most {}",
            origin, location(text, i + 1), kMaxJsonDepth, kMaxJsonDepth));
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

// JSON keeps the last of two equal keys in one object: such a file is refused instead, naming
// the key and where it is ("mask[].type": [] for any element of a list).
json parse_without_duplicate_keys(const std::string& origin, const std::string& text) {
  struct Frame {
    bool is_object;
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> frames;  // at most kMaxJsonDepth: the depth was checked first
  // The path of the innermost frame, built only for a message.
  const auto innermost_path = [&] {
    std::string path;
    for (size_t i = 0; i + 1 < frames.size(); ++i) {
      path = frames[i].is_object ? child_path(path, frames[i].last_key) : path + "[]";
    }
    return path;
  };
  using event = json::parse_event_t;
  return json::parse(text, [&](int, event e, json& parsed) {
    switch (e) {
      case event::object_start: frames.push_back({true, {}, {}}); break;
      case event::array_start: frames.push_back({false, {}, {}}); break;
      case event::object_end:
      case event::array_end: frames.pop_back(); break;
      case event::key: {
        Frame& f = frames.back();
        f.last_key = parsed.get<std::string>();
        if (!f.keys.insert(f.last_key).second) {
          const std::string where = innermost_path();
          throw ConfigError(fmt::format("{}: key {} appears twice in {} (remove one)", origin,
                                        quote(f.last_key),
                                        where.empty() ? std::string("the top-level object") : where));
        }
        break;
      }
      default: break;
    }
    return true;
  });
}

}  // namespace

json parse_json(const std::string& origin, const std::string& text) {
  check_bytes_and_depth(origin, text);
  try {
    return parse_without_duplicate_keys(origin, text);
  } catch (const json::exception&) {
    ErrorLocator locator;
    json::sax_parse(text, &locator);
    throw_not_json(origin, text, locator.position(), locator.reason());
  }
}

std::string quote(std::string_view s) {
  std::string q = "\"";
  const bool cut = append_escaped(q, s, 60, true);
  return q + (cut ? "...\"" : "\"");
}

std::string printable(std::string_view s, size_t max_bytes) {
  std::string out;
  if (append_escaped(out, s, max_bytes, false)) out += "...";
  return out;
}

std::string show(const json& v) {
  std::string s;
  render(v, s, 0);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

std::string child_path(const std::string& path, std::string_view key) {
  constexpr size_t kMaxKeyChars = 60;
  if (!is_identifier(key) || key.size() > kMaxKeyChars) {
    return fmt::format("{}[{}]", path, quote(key));
  }
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string item_path(const std::string& path, size_t index) {
  return fmt::format("{}[{}]", path, index);
}

// ---- JsonReader ---------------------------------------------------------------------------------

void JsonReader::fail_text(const std::string& path, std::string_view problem,
                           std::string_view got, std::string_view expected) const {
  throw ConfigError(fmt::format("{}: {}: {}; got {}, expected {}", origin_,
                                path.empty() ? "(top level)" : path, problem, got, expected));
}

void JsonReader::fail(const std::string& path, std::string_view problem, const json& got,
                      std::string_view expected) const {
  fail_text(path, problem, show(got), expected);
}

void JsonReader::missing(const std::string& path, std::string_view expected) const {
  fail_text(path, "missing", "nothing", expected);
}

int64_t JsonReader::integer(const std::string& path, const json& v, int64_t lo, int64_t hi) const {
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

uint64_t JsonReader::seed(const std::string& path, const json& v) const {
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

double JsonReader::number(const std::string& path, const json& v, double lo, double hi,
                          bool lo_open) const {
  const std::string expected = fmt::format("a number in {}{}, {}]", lo_open ? '(' : '[', lo, hi);
  if (!v.is_number()) fail(path, "wrong type", v, expected);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d > hi || d < lo || (lo_open && d == lo)) {
    fail(path, "out of range", v, expected);
  }
  return d;
}

bool JsonReader::boolean(const std::string& path, const json& v) const {
  if (!v.is_boolean()) fail(path, "wrong type", v, "true or false");
  return v.get<bool>();
}

std::string JsonReader::choice(const std::string& path, const json& v,
                               const std::vector<std::string>& allowed,
                               std::string_view what) const {
  const std::string expected = fmt::format("one of {}", fmt::join(allowed, ", "));
  if (!v.is_string()) fail(path, "wrong type", v, expected);
  const std::string& s = v.get_ref<const std::string&>();
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
    fail(path, fmt::format("unknown {}", what), v, expected + did_you_mean(s, allowed));
  }
  return s;
}

const json& JsonReader::object(const std::string& path, const json& v,
                               std::string_view what) const {
  if (!v.is_object()) fail(path, "wrong type", v, what);
  return v;
}

const json& JsonReader::array(const std::string& path, const json& v,
                              std::string_view what) const {
  if (!v.is_array()) fail(path, "wrong type", v, what);
  return v;
}

void JsonReader::known_keys(const std::string& path, const json& obj,
                            const std::vector<std::string>& known) const {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& key = it.key();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string hint = did_you_mean(key, known);
    if (hint.empty() && key_home_) {
      const std::string home = key_home_(path, key);
      if (!home.empty()) hint = fmt::format("; \"{}\" belongs in {}", key, home);
    }
    fail_text(child_path(path, key), "unknown key", quote(key),
              fmt::format("one of {}{}", fmt::join(known, ", "), hint));
  }
}

}  // namespace magi
