#include "core/sim/nccl_tests.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"

#include <cmath>
#include <filesystem>

namespace magi {

namespace {

constexpr size_t kMaxNcclTestsBytes = 64 << 20;

}  // namespace

NcclTestsRun parse_nccl_tests(const nlohmann::json& doc, const std::string& origin) {
  const JsonReader rd(origin);
  rd.object("", doc, "nccl-tests JSON output (all_to_all_perf ... -J FILE)");
  NcclTestsRun run;
  if (doc.contains("args") && doc["args"].is_array() && !doc["args"].empty() && doc["args"][0].is_string()) {
    run.program = std::filesystem::path(doc["args"][0].get<std::string>()).filename().string();
  }
  if (doc.contains("config") && doc["config"].is_object() && doc["config"].contains("devices") &&
      doc["config"]["devices"].is_array()) {
    run.ranks = static_cast<int>(doc["config"]["devices"].size());
  }
  if (!doc.contains("results")) rd.missing("results", "a list of per-size records (nccl-tests -J)");
  const nlohmann::json& results = rd.array("results", doc["results"], "a list of per-size records");
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string at = item_path("results", i);
    const nlohmann::json& r = rd.object(at, results[i], "a record with size and out_of_place / in_place");
    if (!r.contains("size")) rd.missing(child_path(at, "size"), "bytes");
    NcclTestsPoint p;
    p.size = rd.integer(child_path(at, "size"), r["size"], 0, int64_t{1} << 50);
    const char* which = r.contains("out_of_place") && r["out_of_place"].is_object() ? "out_of_place" : "in_place";
    const std::string wp = child_path(at, which);
    if (!r.contains(which)) rd.missing(wp, "an object with time, alg_bw and bus_bw");
    const nlohmann::json& t = rd.object(wp, r[which], "an object with time, alg_bw and bus_bw");
    if (t.contains("cpu_time")) {
      rd.fail(child_path(wp, "cpu_time"), "CPU time, not the operation's latency", t["cpu_time"],
              "time (run nccl-tests without -C 1)");
    }
    if (!t.contains("time")) rd.missing(child_path(wp, "time"), "microseconds");
    if (!t.contains("bus_bw")) rd.missing(child_path(wp, "bus_bw"), "GB/s");
    p.time_us = rd.number(child_path(wp, "time"), t["time"], 0, 1e12, true);
    p.bus_gbps = rd.number(child_path(wp, "bus_bw"), t["bus_bw"], 0, 1e9, false);
    p.link_bytes = p.bus_gbps * p.time_us * 1e3;  // GB/s x us
    run.points.push_back(p);
  }
  return run;
}

NcclTestsRun load_nccl_tests(const std::string& path) {
  return parse_nccl_tests(parse_json(path, read_file(path, kMaxNcclTestsBytes)), path);
}

LinkTier fit_nccl_tests(const NcclTestsRun& run, const std::string& origin) {
  // Relative residual of point i: (a + b x_i) / t_i - 1, with a the latency (s), b the seconds per
  // byte and x_i the link bytes. Normal equations of the two unknowns; a < 0 clamps to 0.
  double s11 = 0, s12 = 0, s22 = 0, r1 = 0, r2 = 0;
  for (const NcclTestsPoint& p : run.points) {
    const double t = p.time_us * 1e-6, u = 1 / t, v = p.link_bytes / t;
    s11 += u * u;
    s12 += u * v;
    s22 += v * v;
    r1 += u;
    r2 += v;
  }
  const double det = s11 * s22 - s12 * s12;
  double a = 0, b = 0;
  if (run.points.size() >= 2 && std::abs(det) > 1e-12 * s11 * s22) {
    a = (r1 * s22 - r2 * s12) / det;
    b = (s11 * r2 - s12 * r1) / det;
  }
  if (a < 0 || !(b > 0)) {
    a = 0;
    b = s22 > 0 ? r2 / s22 : 0;
  }
  if (run.points.size() < 2 || !(b > 0)) {
    throw ConfigError(fmt::format("{}: {} nccl-tests records fix no bandwidth (expected at least two sizes, the "
                                  "largest big enough for the link's bandwidth to show: nccl-tests -b 8 -e 1G -f 4)",
                                  origin, run.points.size()));
  }
  return LinkTier{1e-9 / b, a * 1e6, 1.0};
}

}  // namespace magi
