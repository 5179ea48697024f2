#include "system_info.h"

#include "runtime/mpi_communicator.h"
#ifdef MAGI_HAVE_CUDA
#include "cuda/flex_attention.h"

#include <cuda_runtime.h>
#endif

#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <thread>

extern char** environ;

namespace magi::app {

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      const auto value = colon == std::string::npos ? colon : line.find_first_not_of(" \t", colon + 1);
      if (value != std::string::npos) return line.substr(value);
    }
  }
  return "unknown";
}

std::string mpi_library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string v(buf, static_cast<size_t>(len));
  if (const auto nl = v.find_first_of("\n,"); nl != std::string::npos) v.resize(nl);
  return v;
}

namespace {

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json relevant_environment() {
  nlohmann::json env = nlohmann::json::object();
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = kv.substr(0, eq);
    for (const char* prefix : {"OMPI_MCA_", "NCCL_", "CUDA_VISIBLE", "MAGI_", "OMP_NUM_THREADS"}) {
      if (key.rfind(prefix, 0) == 0) env[key] = kv.substr(eq + 1);
    }
  }
  return env;
}

// The CPU, and in CUDA builds the visible GPU, of this process.
nlohmann::json devices() {
  nlohmann::json d = nlohmann::json::array();
  d.push_back({{"kind", "cpu"}, {"name", cpu_model()}, {"threads", std::thread::hardware_concurrency()}});
#ifdef MAGI_HAVE_CUDA
  if (kernels::cuda::device_available()) {
    d.push_back({{"kind", "cuda"}, {"name", kernels::cuda::device_description()}});
  }
#endif
  return d;
}

#ifdef MAGI_HAVE_CUDA
// "13.0" from the CUDA runtime's 13000.
std::string cuda_version(int v) { return fmt::format("{}.{}", v / 1000, v % 1000 / 10); }
#endif

nlohmann::json libraries() {
  nlohmann::json l = {
      {"mpi", mpi_library_version()},
      {"fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100)},
      {"nlohmann_json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
                                    NLOHMANN_JSON_VERSION_PATCH)}};
#ifdef MAGI_HAVE_CUDA
  int runtime = 0, driver = 0;
  l["cuda_runtime"] = cudaRuntimeGetVersion(&runtime) == cudaSuccess ? cuda_version(runtime) : "unknown";
  // 0 (and no error) when no driver is installed.
  l["cuda_driver"] = cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0 ? cuda_version(driver) : "none";
#endif
  return l;
}

}  // namespace

nlohmann::json collect_metadata(const Context& ctx) {
  // Every rank's host, gathered on rank 0.
  constexpr int kHostLen = 256;
  std::string mine = hostname();
  mine.resize(kHostLen, '\0');
  std::vector<char> all(static_cast<size_t>(kHostLen) * ctx.world_size);
  MAGI_MPI_CHECK(MPI_Gather(mine.data(), kHostLen, MPI_CHAR, all.data(), kHostLen, MPI_CHAR, 0,
                            MPI_COMM_WORLD));
  nlohmann::json hosts = nlohmann::json::array();
  for (int r = 0; r < ctx.world_size; ++r) hosts.push_back(std::string(all.data() + r * kHostLen));

  return {{"tool", "magi-bench"},
          {"version", MAGI_VERSION},
          {"git_sha", MAGI_GIT_SHA},
          {"start_time_utc", utc_now()},
          {"argv", ctx.argv},
          {"world_size", ctx.world_size},
          {"hosts", hosts},
          {"devices", devices()},
          {"libraries", libraries()},
#ifdef MAGI_HAVE_CUDA
          {"cuda_build", true},
#else
          {"cuda_build", false},
#endif
          {"environment", relevant_environment()}};
}

void stamp_end_time(nlohmann::json& metadata) { metadata["end_time_utc"] = utc_now(); }

std::string metadata_header(const nlohmann::json& m) {
  std::map<std::string, int> per_host;
  for (const auto& h : m["hosts"]) per_host[h.get<std::string>()]++;
  std::string hosts;
  for (const auto& [h, n] : per_host) hosts += fmt::format(" {} ({} rank{})", h, n, n == 1 ? "" : "s");
  std::string out = fmt::format("# magi-bench {} (git {}), {}\n", m["version"].get<std::string>(),
                                m["git_sha"].get<std::string>(), m["start_time_utc"].get<std::string>());
  out += fmt::format("# World: {} rank{} on{}\n", m["world_size"].get<int>(),
                     m["world_size"].get<int>() == 1 ? "" : "s", hosts);
  for (const auto& d : m["devices"]) {
    if (d["kind"] == "cpu") {
      out += fmt::format("# CPU: {}, {} hardware threads\n", d["name"].get<std::string>(),
                         d["threads"].get<unsigned>());
    } else {
      out += fmt::format("# Device: {}\n", d["name"].get<std::string>());
    }
  }
  out += fmt::format("# MPI: {}; CUDA build: {}\n", m["libraries"]["mpi"].get<std::string>(),
                     m["cuda_build"].get<bool>() ? "yes" : "no");
  return out;
}

}  // namespace magi::app
