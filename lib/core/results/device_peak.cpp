#include "core/results/device_peak.h"

namespace magi {

namespace {

struct Peak {
  std::string_view name_part;  // first entry whose text occurs in the device name wins
  double bf16_tflops;          // fp16 is the same on these cards
};

// NVIDIA datasheets, dense bf16 / fp16 tensor-core TFLOP/s. The PCIe and NVL cards come before
// the bare name: they run fewer SMs or lower clocks than the SXM one.
constexpr Peak kPeaks[] = {
    {"H100 PCIe", 756.0},
    {"H100 NVL", 835.0},
    {"H100", 989.0},  // SXM
    {"H200", 989.0},
    {"H800", 989.0},
    {"A100", 312.0},
};

}  // namespace

double dense_peak_tflops(std::string_view device, DType dtype) {
  if (dtype != DType::bf16 && dtype != DType::fp16) return 0;
  for (const Peak& p : kPeaks) {
    if (device.find(p.name_part) != std::string_view::npos) return p.bf16_tflops;
  }
  return 0;
}

}  // namespace magi
