// The element types of attention tensors, shared by every layer (workloads, plans, reports,
// kernels). Kept here, beside the kernels' argument structs, because kernels may not include
// lib/core while lib/core may include kernels/common.
#pragma once

#include <string_view>

namespace magi {

enum class DType { bf16, fp16, fp32 };

constexpr int dtype_bytes(DType t) { return t == DType::fp32 ? 4 : 2; }

constexpr std::string_view to_string(DType t) {
  switch (t) {
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
    case DType::fp32: return "fp32";
  }
  return "?";
}

}  // namespace magi
