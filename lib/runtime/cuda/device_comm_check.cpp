#include "runtime/cuda/device_comm_check.h"

#include "core/base/error.h"

#include <fmt/format.h>

namespace magi::detail {

void device_comm_fail(const char* library, const char* call, const std::string& error, int rank,
                      const std::string& host, const char* file, int line) {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
  throw RuntimeError(fmt::format("{} call `{}` failed on rank {} ({}, device {}) at {}:{}: {}",
                                 library, call, rank, host, dev, file, line, error));
}

}  // namespace magi::detail
