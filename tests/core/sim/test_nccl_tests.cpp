// Link figures from nccl-tests JSON: the fit recovers the latency and bandwidth the shipped sample
// was written from (tests/core/sim/data/README.md) and exact ones from points on the line; bad
// files are refused naming the field.
#include "core/base/error.h"
#include "core/sim/nccl_tests.h"

#include <gtest/gtest.h>

#include <string>

namespace magi {
namespace {

nlohmann::json record(int64_t size, double time_us, double bus_gbps) {
  return {{"size", size}, {"count", size / 4}, {"type", "float"}, {"redop", "none"}, {"root", "    -1"},
          {"out_of_place", {{"time", time_us}, {"alg_bw", bus_gbps}, {"bus_bw", bus_gbps}, {"nwrong", 0.0}}}};
}

// A send/recv run (bus bytes = size) of a link with `lat_us` and `gbps`.
nlohmann::json sendrecv(double lat_us, double gbps) {
  nlohmann::json doc{{"version", 3}, {"args", {"/opt/nccl-tests/sendrecv_perf"}}, {"results", nlohmann::json::array()}};
  for (int64_t size = 1024; size <= (int64_t{1} << 30); size *= 8) {
    const double t_us = lat_us + static_cast<double>(size) / (gbps * 1e3);
    doc["results"].push_back(record(size, t_us, static_cast<double>(size) / (t_us * 1e3)));
  }
  return doc;
}

TEST(NcclTests, ShippedSampleGivesTheFiguresItWasWrittenFrom) {
  const std::string path = std::string(MAGI_SIM_TEST_DATA) + "/nccl_tests_alltoall_8gpu.json";
  const NcclTestsRun run = load_nccl_tests(path);
  EXPECT_EQ(run.program, "alltoall_perf");
  EXPECT_EQ(run.ranks, 8);
  ASSERT_EQ(run.points.size(), 14u);
  // All-to-all on 8 ranks: a rank's link carries 7/8 of the size.
  EXPECT_NEAR(run.points.back().link_bytes / (static_cast<double>(run.points.back().size) * 7 / 8), 1, 1e-5);
  const LinkTier t = fit_nccl_tests(run, path);
  EXPECT_NEAR(t.latency_us, 25, 25 * 0.05);
  EXPECT_NEAR(t.bandwidth_gbps, 150, 150 * 0.05);
  EXPECT_EQ(t.efficiency, 1);
}

TEST(NcclTests, PointsOnTheLineAreFittedExactly) {
  for (auto [lat, gbps] : {std::pair{2.0, 400.0}, std::pair{30.0, 45.0}, std::pair{0.0, 12.5}}) {
    const LinkTier t = fit_nccl_tests(parse_nccl_tests(sendrecv(lat, gbps), "mem"), "mem");
    EXPECT_NEAR(t.latency_us, lat, 1e-6 + lat * 1e-6) << lat << " us, " << gbps << " GB/s";
    EXPECT_NEAR(t.bandwidth_gbps / gbps, 1, 1e-6);
  }
}

TEST(NcclTests, InPlaceServesWhenOutOfPlaceIsNull) {
  nlohmann::json doc = sendrecv(10, 100);
  for (nlohmann::json& r : doc["results"]) {
    r["in_place"] = r["out_of_place"];
    r["out_of_place"] = nullptr;
  }
  const LinkTier t = fit_nccl_tests(parse_nccl_tests(doc, "mem"), "mem");
  EXPECT_NEAR(t.latency_us, 10, 1e-5);
  EXPECT_NEAR(t.bandwidth_gbps, 100, 1e-4);
}

void expect_config_error(const nlohmann::json& doc, const std::string& needle) {
  try {
    fit_nccl_tests(parse_nccl_tests(doc, "f.json"), "f.json");
    ADD_FAILURE() << "accepted; expected an error naming " << needle;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(NcclTests, BadFilesAreRefusedNamingTheField) {
  expect_config_error(nlohmann::json{{"version", 3}}, "results");
  nlohmann::json cpu = sendrecv(10, 100);
  cpu["results"][1]["out_of_place"].erase("time");
  cpu["results"][1]["out_of_place"]["cpu_time"] = 12.0;
  expect_config_error(cpu, "results[1].out_of_place.cpu_time");
  nlohmann::json neg = sendrecv(10, 100);
  neg["results"][2]["out_of_place"]["time"] = -1.0;
  expect_config_error(neg, "results[2].out_of_place.time");
  nlohmann::json nan = sendrecv(10, 100);
  nan["results"][0]["out_of_place"]["bus_bw"] = "nan";
  expect_config_error(nan, "results[0].out_of_place.bus_bw");
  nlohmann::json one = sendrecv(10, 100);
  one["results"] = nlohmann::json::array({one["results"][0]});  // one size: no bandwidth
  expect_config_error(one, "fix no bandwidth");
}

}  // namespace
}  // namespace magi
