// The JSON reader: what parse_json refuses (keys twice, nesting past the cap, NUL bytes) and
// where it says the problem is; messages stay short, one line and printable whatever the input;
// typed reads name the path, the value and what was expected.
#include "common/test_seed.h"
#include "core/base/error.h"
#include "core/base/json_reader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>

namespace magi {
namespace {

using json = nlohmann::json;

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

template <class E>
std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(JsonReader, NestingUpToTheCapParses) {
  const json v = parse_json("f.json", nested(kMaxJsonDepth));
  EXPECT_TRUE(v.is_array());
  // Brackets inside strings are text, not nesting.
  EXPECT_NO_THROW(parse_json("f.json", "[\"" + std::string(1000, '[') + "\\\"{\"]"));
}

TEST(JsonReader, NestingPastTheCapIsRefusedWhereItHappens) {
  const std::string msg =
      message_of<ConfigError>([] { parse_json("f.json", "{\"a\":\n " + nested(kMaxJsonDepth)); });
  EXPECT_EQ(msg, fmt::format("f.json: line 2, column {}: nested too deep; got more than {} levels "
                             "of objects and lists, expected at most {}",
                             kMaxJsonDepth + 1, kMaxJsonDepth, kMaxJsonDepth));
}

// The cap is checked before parsing: a text nested 100,000 deep (200 KB) is refused at once; it
// took 46 s and 10 GB when each level built its own path.
TEST(JsonReader, DeepTextIsRefusedInLinearTime) {
  const std::string text = nested(100000);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(parse_json("deep.json", text), ConfigError);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 0.5);
}

TEST(JsonReader, NulBytesAreRefused) {
  for (const std::string& text :
       {std::string("{}\0", 3), std::string("{\"a\": 1}\n\0garbage", 17), std::string("\0", 1)}) {
    const std::string msg = message_of<FileError>([&] { parse_json("f.json", text); });
    EXPECT_NE(msg.find("f.json: not valid JSON at line"), std::string::npos) << msg;
    EXPECT_NE(msg.find("NUL byte"), std::string::npos) << msg;
  }
  EXPECT_EQ(message_of<FileError>([] { parse_json("f.json", std::string("{}\n \0", 5)); }),
            "f.json: not valid JSON at line 2, column 2: a NUL byte (0x00), which JSON text "
            "cannot hold");
}

TEST(JsonReader, DuplicateKeysAreNamedWithTheirPlace) {
  EXPECT_EQ(message_of<ConfigError>([] { parse_json("f.json", R"({"a": {"b c": [{"x": 1, "x": 2}]}})"); }),
            "f.json: key \"x\" appears twice in a[\"b c\"][] (remove one)");
  // A long key is clipped in the message, as values are.
  const std::string key(1 << 20, 'k');
  const std::string msg = message_of<ConfigError>(
      [&] { parse_json("f.json", "{\"" + key + "\": {\"" + key + "\": 1, \"" + key + "\": 2}}"); });
  EXPECT_LT(msg.size(), 300u) << msg.substr(0, 300);
}

TEST(JsonReader, ParseErrorsEscapeBytesThatAreNotUtf8) {
  const std::string msg = message_of<FileError>([] { parse_json("f.json", "{\"a\": \"\xff\xfe\"}"); });
  EXPECT_NE(msg.find("\\xFF"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\xff'), std::string::npos) << msg;
  // A long unterminated string is quoted clipped.
  const std::string long_msg =
      message_of<FileError>([] { parse_json("f.json", "{\"a\": \"" + std::string(1 << 20, 'x')); });
  EXPECT_LT(long_msg.size(), 500u);
}

TEST(JsonReader, QuoteClipsAndEscapes) {
  EXPECT_EQ(quote("plain"), "\"plain\"");
  EXPECT_EQ(quote("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
  EXPECT_EQ(quote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");          // UTF-8 kept
  EXPECT_EQ(quote("x\xff\xc3(y"), "\"x\\xFF\\xC3(y\"");        // not UTF-8: \xNN
  EXPECT_EQ(quote("\xed\xa0\x80"), "\"\\xED\\xA0\\x80\"");     // a surrogate is not UTF-8
  EXPECT_EQ(quote(std::string(100, 'x')), "\"" + std::string(60, 'x') + "...\"");
  // A character cut by the clip is left out whole.
  EXPECT_EQ(quote(std::string(59, 'x') + "\xc3\xa9"), "\"" + std::string(59, 'x') + "...\"");
  EXPECT_EQ(printable("a\xff\tb", 10), "a\\xFF\\x09b");
  EXPECT_EQ(printable("abcdef", 3), "abc...");
}

// Any value, whatever its size, depth or bytes, shows on one short line of valid UTF-8.
TEST(JsonReader, ShowIsBoundedForRandomValues) {
  std::mt19937_64 rng(testing::test_seed("JsonReader.ShowIsBoundedForRandomValues", 11));
  std::function<json(int)> random_value = [&](int depth) -> json {
    switch (rng() % (depth < 6 ? 6 : 3)) {
      case 0: return static_cast<int64_t>(rng());
      case 1: {
        std::string s(rng() % 300, ' ');
        for (char& c : s) c = static_cast<char>(rng() % 128);
        return s;
      }
      case 2: return static_cast<double>(rng() % 1000) / 7.0;
      case 3: {
        json a = json::array();
        for (size_t i = rng() % 8; i > 0; --i) a.push_back(random_value(depth + 1));
        return a;
      }
      default: {
        json o = json::object();
        for (size_t i = rng() % 8; i > 0; --i) {
          o[std::string(rng() % 100, static_cast<char>('a' + rng() % 26))] = random_value(depth + 1);
        }
        return o;
      }
    }
  };
  for (int i = 0; i < 500; ++i) {
    const json v = random_value(0);
    const std::string s = show(v);
    EXPECT_LE(s.size(), 120u) << v.dump().substr(0, 200);
    EXPECT_EQ(s.find('\n'), std::string::npos);
    EXPECT_NO_THROW(json(s).dump()) << "not UTF-8: " << s;
  }
}

TEST(JsonReader, PathsQuoteAndClipKeys) {
  EXPECT_EQ(child_path("", "model"), "model");
  EXPECT_EQ(child_path("model", "heads_q"), "model.heads_q");
  EXPECT_EQ(child_path("model", "odd key"), "model[\"odd key\"]");
  EXPECT_EQ(item_path("mask", 2), "mask[2]");
  EXPECT_EQ(child_path("m", std::string(1 << 20, 'k')), "m[\"" + std::string(60, 'k') + "...\"]");
}

TEST(JsonReader, TypedReadsNameOriginPathValueAndExpectation) {
  const JsonReader r("f.json");
  EXPECT_EQ(r.integer("a.b", json(2048.0), 1, 4096), 2048);
  EXPECT_EQ(message_of<ConfigError>([&] { r.integer("a.b", json(1.5), 1, 4096); }),
            "f.json: a.b: not an integer; got 1.5, expected an integer in [1, 4096]");
  EXPECT_EQ(message_of<ConfigError>([&] { r.integer("a.b", json("x"), 1, 4096); }),
            "f.json: a.b: wrong type; got \"x\", expected an integer in [1, 4096]");
  EXPECT_EQ(r.seed("s", json(uint64_t{18446744073709551615u})), 18446744073709551615u);
  EXPECT_THROW(r.seed("s", json(-1)), ConfigError);
  EXPECT_EQ(r.number("n", json(0.5), 0, 1, true), 0.5);
  EXPECT_THROW(r.number("n", json(0), 0, 1, true), ConfigError);
  EXPECT_EQ(message_of<ConfigError>([&] { r.choice("t", json("casual"), {"causal", "full"}, "mask type"); }),
            "f.json: t: unknown mask type; got \"casual\", expected one of causal, full; did you mean "
            "\"causal\"?");
  EXPECT_EQ(message_of<ConfigError>([&] { r.missing("", "an object"); }),
            "f.json: (top level): missing; got nothing, expected an object");
}

TEST(JsonReader, UnknownKeysNameTheClosestKeyOrTheirHome) {
  const JsonReader r("f.json", [](const std::string& path, std::string_view key) {
    return path != "other" && key == "cp" ? std::string("other") : std::string();
  });
  EXPECT_EQ(message_of<ConfigError>([&] { r.known_keys("sec", json{{"windw", 1}}, {"window"}); }),
            "f.json: sec.windw: unknown key; got \"windw\", expected one of window; did you mean "
            "\"window\"?");
  EXPECT_EQ(message_of<ConfigError>([&] { r.known_keys("sec", json{{"cp", 1}}, {"window"}); }),
            "f.json: sec.cp: unknown key; got \"cp\", expected one of window; \"cp\" belongs in other");
  const std::string msg = message_of<ConfigError>(
      [&] { r.known_keys("sec", json{{std::string(1 << 20, 'k'), 1}}, {"window"}); });
  EXPECT_LT(msg.size(), 300u);
}

}  // namespace
}  // namespace magi
