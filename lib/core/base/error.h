// One error path for the whole tool: typed errors carrying a process exit code.
// Only main() catches; everything else throws. MAGI_CHECK stays on in release builds.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace magi {

// Exit codes of the magi-bench process. Each kind of failure has its own code so that
// scripts and CI can tell a bad workload from a wrong result from a crash.
enum class ExitCode : int {
  ok = 0,
  usage = 2,         // bad command line
  config = 3,        // workload file parsed but invalid (field, value, expectation named)
  file = 4,          // file unreadable, not JSON, or an output that would be overwritten
  runtime = 5,       // MPI / CUDA / NCCL / system failure at run time
  wrong_result = 6,  // --check found a mismatch (like nccl-tests' #wrong)
  regression = 7,    // `compare` found a regression beyond the threshold
  internal = 70,     // a MAGI_CHECK invariant failed: a bug in magi-bench
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

struct UsageError : Error {
  explicit UsageError(const std::string& w) : Error(ExitCode::usage, w) {}
};
struct ConfigError : Error {
  explicit ConfigError(const std::string& w) : Error(ExitCode::config, w) {}
};
struct FileError : Error {
  explicit FileError(const std::string& w) : Error(ExitCode::file, w) {}
};
struct RuntimeError : Error {
  explicit RuntimeError(const std::string& w) : Error(ExitCode::runtime, w) {}
};
struct InternalError : Error {
  explicit InternalError(const std::string& w) : Error(ExitCode::internal, w) {}
};

}  // namespace magi

// MAGI_CHECK(cond, "fmt {}", args...): an invariant; throws InternalError quoting file:line.
#define MAGI_CHECK(cond, ...)                                                          \
  do {                                                                                 \
    if (!(cond)) [[unlikely]] {                                                        \
      throw ::magi::InternalError(fmt::format("{}:{}: check `{}` failed: {}", __FILE__, \
                                              __LINE__, #cond, fmt::format(__VA_ARGS__))); \
    }                                                                                  \
  } while (0)
