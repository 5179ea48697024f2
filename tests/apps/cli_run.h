// Runs the magi-bench executable as a user would (single process, no mpirun) for the CLI tests:
// its exit code and its stdout and stderr together. The test target defines MAGI_BENCH_EXE.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace magi::testing {

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs magi-bench with `args`, in directory `cwd` when given, with `env` ("NAME=value ...")
// added to its environment; a command that blocks is ended after two minutes (exit 124).
// Each run gets an Open MPI session directory of its own: singletons started side by side
// (ctest -j) under one shared /tmp/ompi.* race to create and remove it ("orte_session_dir
// failed"). It is removed once the output's pipe closes, which the singleton's forked Open MPI
// daemon holds until it has cleaned up there (removed earlier, the daemon's own cleanup fails
// and says so in the output).
inline Outcome run(const std::string& args, const std::string& cwd = "", const std::string& env = "") {
  Outcome o;
  std::string session = (std::filesystem::temp_directory_path() / "magi-cli-XXXXXX").string();
  if (::mkdtemp(session.data()) == nullptr) {
    o.output = "cli_run.h: mkdtemp failed for " + session;
    return o;
  }
  const std::string cmd = (cwd.empty() ? "" : "cd '" + cwd + "' && ") + "OMPI_MCA_orte_tmpdir_base='" + session +
                          "' " + env + " timeout 120 " + std::string(MAGI_BENCH_EXE) + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe) {
    std::array<char, 4096> buf{};
    size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) o.output.append(buf.data(), n);
    const int status = ::pclose(pipe);
    o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::error_code ec;
  std::filesystem::remove_all(session, ec);
  return o;
}

}  // namespace magi::testing
