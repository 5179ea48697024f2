#include "core/results/device_peak.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

TEST(DevicePeak, KnownCardsByTheirRuntimeNames) {
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)", DType::bf16), 989.0);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", DType::fp16), 989.0);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 PCIe", DType::bf16), 756.0);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H200", DType::bf16), 989.0);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA A100-SXM4-80GB", DType::bf16), 312.0);
}

TEST(DevicePeak, UnknownMeansNoMfu) {
  EXPECT_DOUBLE_EQ(dense_peak_tflops("Intel(R) Xeon(R) Platinum 8480+", DType::fp32), 0.0);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", DType::fp32), 0.0);
  EXPECT_DOUBLE_EQ(dense_peak_tflops("NVIDIA GeForce RTX 4090", DType::bf16), 0.0);
}

}  // namespace
}  // namespace magi
