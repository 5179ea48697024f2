// Runs the magi-bench executable as a user would (single process, no mpirun) for the CLI tests:
// its exit code and its stdout and stderr together. The test target defines MAGI_BENCH_EXE.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace magi::testing {

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs magi-bench with `args`, in directory `cwd` when given, with `env` ("NAME=value ...")
// added to its environment; a command that blocks is ended after two minutes (exit 124).
// Each run gets its own Open MPI session directory: singletons started side by side (ctest -j)
// under one shared /tmp/ompi.* race to create and remove it ("orte_session_dir failed").
inline Outcome run(const std::string& args, const std::string& cwd = "", const std::string& env = "") {
  const std::string cmd = "s=$(mktemp -d) || exit 125; " + (cwd.empty() ? "" : "cd '" + cwd + "' || exit 125; ") +
                          "OMPI_MCA_orte_tmpdir_base=\"$s\" " + env + " timeout 120 " + std::string(MAGI_BENCH_EXE) +
                          " " + args + " 2>&1; rc=$?; rm -rf \"$s\"; exit $rc";
  Outcome o;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return o;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) o.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

}  // namespace magi::testing
