#include "sim_common.h"

#include "core/base/error.h"

#include "cuda/flex_tiles.h"

#include <filesystem>

namespace magi::app {

Calibration calibration_for(const ClusterSpec& cluster, const std::string& path) {
  if (!path.empty()) return load_calibration(path);
  if (cluster.calibration.empty()) {
    throw UsageError(fmt::format("--cluster {}: the cluster names no calibration; give --calibration CAL.json "
                                 "(magi-bench calibrate writes one)", cluster.path));
  }
  const std::filesystem::path dir = std::filesystem::path(cluster.path).parent_path();
  return load_calibration((dir / cluster.calibration).lexically_normal().string());
}

KernelTiles gpu_kernel_tiles(int head_dim) {
  const kernels::flex::TileShape t = kernels::cuda::flex_work_list_tiles(head_dim);
  return KernelTiles{t.fwd_bm, t.fwd_bn, t.bwd_bm, t.bwd_bn};
}

KernelTiles cpu_kernel_tiles() { return KernelTiles{1, 1, 1, 1}; }

}  // namespace magi::app
