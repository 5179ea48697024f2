// Checks for the CUDA runtime calls of the device communicators (staged_mpi_communicator.h,
// nccl_communicator.h): a failure throws RuntimeError naming the call, the CUDA error, the rank
// and host of the communicator, and file:line. Host code (g++), no fmt types in the macro.
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace magi::detail {

// `library` is "CUDA" or "NCCL"; `error` its error string (and NCCL's last-error detail).
[[noreturn]] void device_comm_fail(const char* library, const char* call, const std::string& error,
                                   int rank, const std::string& host, const char* file, int line);

}  // namespace magi::detail

// MAGI_COMM_CUDA_CHECK(rank, host, call): `rank` and `host` are the communicator's.
#define MAGI_COMM_CUDA_CHECK(rank, host, call)                                                \
  do {                                                                                        \
    cudaError_t magi_cuda_rc_ = (call);                                                       \
    if (magi_cuda_rc_ != cudaSuccess) [[unlikely]] {                                          \
      ::magi::detail::device_comm_fail("CUDA", #call, cudaGetErrorString(magi_cuda_rc_), (rank), \
                                       (host), __FILE__, __LINE__);                           \
    }                                                                                         \
  } while (0)
