// The CUDA implementation of Device (runtime/device.h): bf16 or fp16 buffers on one GPU, the
// flexible kernel of kernels/cuda for attention, conversion / row-copy / merge kernels, and one
// non-blocking compute stream timed by CUDA events (docs/execution.md, "CUDA device").
//
// Plain C++ (no CUDA types): host code includes this; the implementation is cuda_device.cu.
#pragma once

#include "runtime/device.h"

#include "common/dtype.h"

#include <memory>
#include <string>

namespace magi {

// CUDA devices visible to this process: 0 when there is no driver or no device (never throws).
int cuda_device_count();
// The PCI bus id of visible device `index` ("0000:19:00.0"): which physical GPU it is, whatever
// CUDA_VISIBLE_DEVICES numbers it; empty when it cannot be read.
std::string cuda_device_bus_id(int index);

// How long a GPU's timed warm-up lasts at least: `run` and `kernel` time a pass only once the
// card has worked this long (Device::min_warmup_seconds). Under sustained work a Hopper card
// reaches its power cap 0.5-1 s in and its clocks fall (results/runtime/NOTES.md, 2026-12-04).
constexpr double kCudaMinWarmupSeconds = 1.0;
// How long a GPU's timed iterations last at least after such a warm-up (Device::min_timed_seconds):
// at the cap the clock swings by up to 25% over a period of about 1 s (results/runtime/NOTES.md,
// 2026-12-06), so the median is taken over two periods or more, not over one phase of a swing.
constexpr double kCudaMinTimedSeconds = 2.0;

// A device on GPU `device_index` storing tensors in `dtype` (bf16 or fp16; fp32 throws
// std::invalid_argument naming it, before any CUDA call). CUDA errors throw std::runtime_error
// quoting the call, the error and the device.
std::unique_ptr<Device> make_cuda_device(int device_index, DType dtype);

}  // namespace magi
