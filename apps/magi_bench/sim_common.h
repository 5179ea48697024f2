// What `simulate` and `calibrate` share: a case's mask from its config, the calibration a cluster
// names, and the kernel's tile shapes per head dim.
#pragma once

#include "core/sim/calibration.h"
#include "core/sim/cluster.h"
#include "core/workload/workload.h"

#include <string>

namespace magi::app {

// The calibration for `cluster`: `path` when given, else the file the cluster names (relative to
// the cluster file's directory). UsageError when neither exists.
Calibration calibration_for(const ClusterSpec& cluster, const std::string& path);

// The flexible CUDA kernel's tiles at a head dim (kernels/cuda/flex_tiles.h) and the CPU
// reference's (1 x 1: tiles are pairs, items rows).
KernelTiles gpu_kernel_tiles(int head_dim);
KernelTiles cpu_kernel_tiles();

}  // namespace magi::app
