// A seeded mutation fuzzer over the workload loader: the shipped configs, mutated at the JSON level
// (keys deleted and inserted, values retyped, numbers made huge or negative, values wrapped in
// lists) and at the text level (truncation, garbage bytes, spliced spans). Every load either
// succeeds or throws a magi::Error of the config or file kind with a non-empty one-line message;
// any other exception fails the test, a crash or hang fails ctest.
#include "common/test_seed.h"
#include "core/base/error.h"
#include "core/workload/workload.h"
#include "workload_test_util.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

namespace magi {
namespace {

using json = nlohmann::json;

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }
  bool coin(int percent) { return below(100) < static_cast<size_t>(percent); }

  json random_value(int depth = 0) {
    static const std::vector<json> numbers = {0,
                                              1,
                                              -1,
                                              2,
                                              3,
                                              7,
                                              8,
                                              64,
                                              100,
                                              1024,
                                              1 << 20,
                                              int64_t{1} << 31,
                                              (int64_t{1} << 31) + 1,
                                              std::numeric_limits<int64_t>::max(),
                                              std::numeric_limits<int64_t>::min(),
                                              std::numeric_limits<uint64_t>::max(),
                                              1.5,
                                              2.0,
                                              -0.0,
                                              0.25,
                                              1e300,
                                              -1e300,
                                              1e-300,
                                              9007199254740993.0};
    static const std::vector<std::string> strings = {"",
                                                     "auto",
                                                     "fwd",
                                                     "bwd",
                                                     "causal",
                                                     "varlen_causal",
                                                     "sliding_window",
                                                     "slices",
                                                     "full",
                                                     "bi_causal",
                                                     "histogram",
                                                     "lognormal",
                                                     "fixed",
                                                     "list",
                                                     "zipf",
                                                     "uniform",
                                                     "single",
                                                     "pretrain_corpus",
                                                     "magi",
                                                     "ring",
                                                     "ulysses",
                                                     "allgather",
                                                     "bf16",
                                                     "fp32",
                                                     "greedy",
                                                     "refine",
                                                     "x\x01y",
                                                     "\xc3\xa9t\xc3\xa9",
                                                     std::string(300, 'z')};
    switch (below(depth < 2 ? 8 : 5)) {
      case 0: return nullptr;
      case 1: return coin(50);
      case 2: return numbers[below(numbers.size())];
      case 3: return static_cast<int64_t>(rng_() >> below(64)) * (coin(20) ? -1 : 1);
      case 4: return strings[below(strings.size())];
      case 5: {
        json a = json::array();
        for (size_t i = below(4); i > 0; --i) a.push_back(random_value(depth + 1));
        return a;
      }
      case 6: return json::array({random_value(depth + 1), random_value(depth + 1)});
      default: {
        json o = json::object();
        for (size_t i = below(3); i > 0; --i) o[random_key()] = random_value(depth + 1);
        return o;
      }
    }
  }

  std::string random_key() {
    static const std::vector<std::string> keys = {"name",
                                                  "description",
                                                  "model",
                                                  "sequence",
                                                  "mask",
                                                  "parallel",
                                                  "run",
                                                  "heads_q",
                                                  "heads_kv",
                                                  "head_dim",
                                                  "dtype",
                                                  "total_tokens",
                                                  "documents",
                                                  "distribution",
                                                  "tokens",
                                                  "min_tokens",
                                                  "max_tokens",
                                                  "mean_tokens",
                                                  "sigma",
                                                  "alpha",
                                                  "lengths",
                                                  "bins",
                                                  "lo",
                                                  "hi",
                                                  "weight",
                                                  "preset",
                                                  "max_doc_fraction",
                                                  "seed",
                                                  "type",
                                                  "window",
                                                  "block_tokens",
                                                  "prefix_tokens",
                                                  "sink_tokens",
                                                  "question_tokens",
                                                  "slices",
                                                  "q",
                                                  "k",
                                                  "cp",
                                                  "strategy",
                                                  "chunk_tokens",
                                                  "overlap_degree",
                                                  "solver",
                                                  "compute_tflops",
                                                  "comm_gbps",
                                                  "passes",
                                                  "warmup",
                                                  "iters",
                                                  "check",
                                                  "",
                                                  "heads",
                                                  "x y",
                                                  "\n"};
    return keys[below(keys.size())];
  }

  // Every node of the document, parents before children.
  static void collect(json& node, std::vector<json*>& out) {
    out.push_back(&node);
    if (node.is_object()) {
      for (auto& [k, v] : node.items()) collect(v, out);
    } else if (node.is_array()) {
      for (auto& v : node) collect(v, out);
    }
  }

  void mutate_json(json& doc) {
    std::vector<json*> nodes;
    collect(doc, nodes);
    json& node = *nodes[below(nodes.size())];
    switch (below(6)) {
      case 0:  // delete a key or an element
        if (node.is_object() && !node.empty()) {
          auto it = node.begin();
          std::advance(it, static_cast<std::ptrdiff_t>(below(node.size())));
          node.erase(it);
        } else if (node.is_array() && !node.empty()) {
          node.erase(node.begin() + static_cast<std::ptrdiff_t>(below(node.size())));
        }
        break;
      case 1:  // insert a key (often a known one) or an element
        if (node.is_object()) {
          node[random_key()] = random_value();
        } else if (node.is_array()) {
          node.push_back(node.empty() || coin(50) ? random_value()
                                                  : json(node[below(node.size())]));
        }
        break;
      case 2: node = random_value(); break;                                  // retype
      case 3: node = coin(80) ? json::array({node}) : json::array(); break;  // wrap in a list
      case 4:                                                                // nudge a number
        if (node.is_number()) {
          const int64_t deltas[] = {-1, 1, -1000000, 1 << 30};
          const double x = node.get<double>() + static_cast<double>(deltas[below(4)]);
          node = x;
          if (coin(50) && std::abs(x) < 0x1p62) node = static_cast<int64_t>(x);
        } else {
          node = random_value();
        }
        break;
      default:  // duplicate a sibling list into a sweep
        node = json::array({node, random_value()});
        break;
    }
  }

  void mutate_text(std::string& text) {
    if (text.empty()) {
      text = "{";
      return;
    }
    const size_t pos = below(text.size());
    switch (below(5)) {
      case 0: text.resize(pos); break;  // truncate
      case 1:                           // garbage bytes
        for (size_t i = below(8) + 1; i > 0; --i)
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(below(text.size() + 1)),
                      static_cast<char>(rng_()));
        break;
      case 2: text[pos] = static_cast<char>(rng_()); break;  // flip a byte
      case 3: text.erase(pos, below(40)); break;             // delete a span
      default:
        text.insert(pos, text.substr(below(text.size()), below(60)));
        break;  // splice a span
    }
  }

 private:
  std::mt19937_64 rng_;
};

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(WorkloadFuzz, MutatedWorkloadsLoadOrFailCleanly) {
  const uint64_t seed = testing::test_seed("WorkloadFuzz.MutatedWorkloads", 20240611);
  Mutator mut(seed);
  std::vector<std::string> corpus;
  for (const auto& path : testing::shipped_configs()) corpus.push_back(read_all(path));
  ASSERT_FALSE(corpus.empty());

  constexpr int kIterations = 5000;
  int accepted = 0, config_errors = 0, file_errors = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int it = 0; it < kIterations; ++it) {
    std::string text = corpus[mut.below(corpus.size())];
    if (mut.coin(65)) {
      json doc = json::parse(text);
      for (size_t m = mut.below(3) + 1; m > 0; --m) mut.mutate_json(doc);
      text = doc.dump(mut.coin(50) ? 2 : -1, ' ', false, json::error_handler_t::replace);
    }
    if (mut.coin(40)) {
      for (size_t m = mut.below(3) + 1; m > 0; --m) mut.mutate_text(text);
    }
    // A fresh name each time: rewriting one file makes the file system flush on every close.
    const std::string path = testing::write_scratch(fmt::format("fuzz{}.json", it), text);
    try {
      load_workload(path);
      ++accepted;
    } catch (const Error& e) {
      const std::string msg = e.what();
      const bool kind_ok = e.code() == ExitCode::config || e.code() == ExitCode::file;
      bool utf8 = true;  // bytes of the input that are not UTF-8 are escaped in messages
      try {
        (void)json(msg).dump();
      } catch (const json::exception&) {
        utf8 = false;
      }
      if (!kind_ok || !utf8 || msg.empty() || msg.find('\n') != std::string::npos ||
          msg.rfind(path + ": ", 0) != 0) {
        ADD_FAILURE() << "iteration " << it << " (MAGI_TEST_SEED=" << seed
                      << "): bad error: " << msg << "\ninput:\n"
                      << text.substr(0, 2000);
      }
      (e.code() == ExitCode::config ? config_errors : file_errors)++;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << it << " (MAGI_TEST_SEED=" << seed << "): " << e.what()
                    << "\ninput:\n"
                    << text.substr(0, 2000);
    }
    std::filesystem::remove(path);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[fuzz] %d inputs: %d accepted, %d config errors, %d file errors, %.2f s\n",
              kIterations, accepted, config_errors, file_errors, seconds);
  // The mutator must exercise all three outcomes, or it is not testing much.
  EXPECT_GT(accepted, 0);
  EXPECT_GT(config_errors, kIterations / 10);
  EXPECT_GT(file_errors, kIterations / 20);
}

}  // namespace
}  // namespace magi
