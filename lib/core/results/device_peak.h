// The dense peak TFLOP/s of a device, the denominator of every MFU figure (README.md,
// "Reported numbers"): one table for every command.
#pragma once

#include "common/dtype.h"

#include <string_view>

namespace magi {

// Datasheet dense (no sparsity) tensor-core peak of the device named `device` (as the CUDA
// runtime names it, e.g. "NVIDIA H100 80GB HBM3") for `dtype`; 0 when unknown (a CPU, fp32, a
// card not in the table): the report then shows no MFU.
double dense_peak_tflops(std::string_view device, DType dtype);

}  // namespace magi
