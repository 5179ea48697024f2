// MAGI_CUDA_CHECK(call): throws std::runtime_error naming the failing call, its file and line, the
// CUDA error and the current device, when a CUDA runtime call does not return cudaSuccess.
// Host code only.
#pragma once

#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>

namespace magi::kernels::cuda {

inline void throw_on_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  int dev = -1;
  cudaGetDevice(&dev);
  std::ostringstream os;
  os << "CUDA error '" << cudaGetErrorString(e) << "' in " << call << " at " << file << ":" << line
     << " (device " << dev << ")";
  throw std::runtime_error(os.str());
}

}  // namespace magi::kernels::cuda

#define MAGI_CUDA_CHECK(call) ::magi::kernels::cuda::throw_on_cuda_error((call), #call, __FILE__, __LINE__)
